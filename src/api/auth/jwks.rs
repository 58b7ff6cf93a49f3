//! A JSON Web Key Set read from a file or an HTTPS URL, cached in memory and reloaded when a
//! token names a key id it does not contain.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::{Mutex, RwLock};

/// Largest JWKS document accepted, in bytes; real ones are a few kilobytes.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// Seconds one fetch of a JWKS URL may take, connection included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The source of the key set: a local file or a URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwksLocation {
    File(PathBuf),
    Url(reqwest::Url),
}

impl std::str::FromStr for JwksLocation {
    type Err = String;

    /// Parses `https://…`, `http://` with a loopback host (for tests and sidecars), or a
    /// file path. Plain HTTP to any other host is rejected because a network attacker could
    /// then substitute their own keys.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let Some((scheme, _)) = value.split_once("://") else {
            if value.trim().is_empty() {
                return Err("must be a file path or an https:// URL, got an empty value".to_owned());
            }
            return Ok(JwksLocation::File(PathBuf::from(value)));
        };
        let url = reqwest::Url::parse(value)
            .map_err(|error| format!("invalid URL {value:?}: {error}"))?;
        match scheme.to_ascii_lowercase().as_str() {
            "https" => Ok(JwksLocation::Url(url)),
            "http" if is_loopback(&url) => Ok(JwksLocation::Url(url)),
            "http" => Err(format!(
                "{value:?} uses plain HTTP to a host that is not loopback; use https://"
            )),
            other => Err(format!(
                "unsupported scheme {other:?} in {value:?}; use a file path or an https:// URL"
            )),
        }
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

impl std::fmt::Display for JwksLocation {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksLocation::File(path) => write!(formatter, "{}", path.display()),
            JwksLocation::Url(url) => write!(formatter, "{url}"),
        }
    }
}

/// A failure to load the key set.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("reading the JWKS file {path} failed: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("fetching the JWKS from {url} failed: {source}")]
    Fetch { url: String, source: reqwest::Error },
    #[error("fetching the JWKS from {url} returned HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("the JWKS from {location} is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge { location: String },
    #[error("the JWKS from {location} is not a valid JWK Set: {source}")]
    Parse {
        location: String,
        source: serde_json::Error,
    },
    #[error("the JWKS from {location} contains no RS256 or ES256 signing key with a kid")]
    NoUsableKey { location: String },
}

/// A verification key from the set and the one algorithm it may verify.
#[derive(Clone)]
pub struct VerificationKey {
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

/// Converts one JWK into a verification key, or returns why it is skipped. Only RSA keys
/// (for RS256) and P-256 keys (for ES256) are used. Symmetric `oct` keys are skipped, so a
/// published JWKS can never become an HMAC secret.
fn verification_key(jwk: &Jwk) -> Result<VerificationKey, String> {
    if matches!(&jwk.common.public_key_use, Some(usage) if *usage != PublicKeyUse::Signature) {
        return Err("its use is not sig".to_owned());
    }
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(params) if params.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        AlgorithmParameters::EllipticCurve(params) => {
            return Err(format!(
                "curve {:?} is not supported; only P-256 is",
                params.curve
            ));
        }
        _ => return Err("only RSA and EC P-256 keys are supported".to_owned()),
    };
    let expected = match algorithm {
        Algorithm::RS256 => KeyAlgorithm::RS256,
        _ => KeyAlgorithm::ES256,
    };
    if matches!(jwk.common.key_algorithm, Some(declared) if declared != expected) {
        return Err(format!(
            "its alg {:?} does not match its key type",
            jwk.common.key_algorithm
        ));
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|error| error.to_string())?;
    Ok(VerificationKey { algorithm, key })
}

/// Parses a JWKS document into verification keys by kid, skipping (and logging) keys that
/// cannot be used.
fn parse_keys(
    location: &JwksLocation,
    body: &[u8],
) -> Result<HashMap<String, VerificationKey>, JwksError> {
    let set: JwkSet = serde_json::from_slice(body).map_err(|source| JwksError::Parse {
        location: location.to_string(),
        source,
    })?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            tracing::warn!(jwks = %location, "skipping a JWKS key without a kid");
            continue;
        };
        match verification_key(jwk) {
            Ok(key) => {
                keys.insert(kid, key);
            }
            Err(reason) => tracing::warn!(jwks = %location, kid, reason, "skipping a JWKS key"),
        }
    }
    if keys.is_empty() {
        return Err(JwksError::NoUsableKey {
            location: location.to_string(),
        });
    }
    Ok(keys)
}

/// The cached key set and the bookkeeping that spaces reloads apart.
pub struct JwksCache {
    location: JwksLocation,
    client: reqwest::Client,
    keys: RwLock<LoadedKeys>,
    /// When the last reload was attempted (`None` before the first). The lock is held while
    /// a reload runs, so concurrent requests with unknown kids wait for one reload instead
    /// of each starting their own.
    last_attempt: Mutex<Option<Instant>>,
    min_reload_interval: Duration,
    max_age: Duration,
}

struct LoadedKeys {
    by_kid: HashMap<String, VerificationKey>,
    loaded_at: Instant,
}

impl JwksCache {
    /// Loads the key set once; a set that cannot be loaded stops start-up.
    pub async fn load(
        location: JwksLocation,
        min_reload_interval: Duration,
        max_age: Duration,
    ) -> Result<Self, JwksError> {
        // Redirects are not followed, so a compromised or misconfigured host cannot send the
        // fetch to another host (or to plain HTTP).
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|source| JwksError::Fetch {
                url: location.to_string(),
                source,
            })?;
        let by_kid = fetch(&client, &location).await?;
        tracing::info!(jwks = %location, keys = by_kid.len(), "JWKS loaded");
        Ok(JwksCache {
            location,
            client,
            keys: RwLock::new(LoadedKeys {
                by_kid,
                loaded_at: Instant::now(),
            }),
            last_attempt: Mutex::new(None),
            min_reload_interval,
            max_age,
        })
    }

    /// Returns the key named `kid`. An unknown kid, or a set older than the maximum age,
    /// triggers a reload unless one was attempted within the minimum reload interval, so a
    /// flood of made-up kids causes at most one fetch per interval.
    pub async fn find(&self, kid: &str) -> Option<VerificationKey> {
        let (known, stale) = {
            let keys = self.keys.read().await;
            (
                keys.by_kid.get(kid).cloned(),
                keys.loaded_at.elapsed() >= self.max_age,
            )
        };
        if known.is_some() && !stale {
            return known;
        }
        self.reload_if_due().await;
        self.keys.read().await.by_kid.get(kid).cloned()
    }

    async fn reload_if_due(&self) {
        let mut last_attempt = self.last_attempt.lock().await;
        if last_attempt.is_some_and(|at| at.elapsed() < self.min_reload_interval) {
            return;
        }
        *last_attempt = Some(Instant::now());
        match fetch(&self.client, &self.location).await {
            Ok(by_kid) => {
                tracing::info!(jwks = %self.location, keys = by_kid.len(), "JWKS reloaded");
                *self.keys.write().await = LoadedKeys {
                    by_kid,
                    loaded_at: Instant::now(),
                };
            }
            // The old keys stay in use, so an outage of the JWKS host does not lock out
            // tokens signed with keys already known.
            Err(error) => {
                tracing::warn!(%error, "reloading the JWKS failed; keeping the keys loaded before")
            }
        }
    }
}

async fn fetch(
    client: &reqwest::Client,
    location: &JwksLocation,
) -> Result<HashMap<String, VerificationKey>, JwksError> {
    let body = match location {
        JwksLocation::File(path) => {
            tokio::fs::read(path)
                .await
                .map_err(|source| JwksError::Read {
                    path: path.display().to_string(),
                    source,
                })?
        }
        JwksLocation::Url(url) => download(client, url).await?,
    };
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(JwksError::TooLarge {
            location: location.to_string(),
        });
    }
    parse_keys(location, &body)
}

async fn download(client: &reqwest::Client, url: &reqwest::Url) -> Result<Vec<u8>, JwksError> {
    let fetch_error = |source| JwksError::Fetch {
        url: url.to_string(),
        source,
    };
    let mut response = client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(fetch_error)?;
    if !response.status().is_success() {
        return Err(JwksError::Status {
            url: url.to_string(),
            status: response.status().as_u16(),
        });
    }
    // Read chunk by chunk so an endless body is cut off at the limit instead of filling memory.
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(fetch_error)? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(JwksError::TooLarge {
                location: url.to_string(),
            });
        }
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::JwksLocation;

    #[test]
    fn location_accepts_https_and_files() {
        assert!(matches!(
            "https://idp.example.com/jwks.json".parse(),
            Ok(JwksLocation::Url(_))
        ));
        assert!(matches!(
            "/etc/jwks.json".parse(),
            Ok(JwksLocation::File(_))
        ));
    }

    #[test]
    fn location_allows_http_only_on_loopback() {
        assert!("http://127.0.0.1:9000/jwks".parse::<JwksLocation>().is_ok());
        assert!("http://[::1]:9000/jwks".parse::<JwksLocation>().is_ok());
        assert!("http://localhost/jwks".parse::<JwksLocation>().is_ok());
        assert!(
            "http://idp.example.com/jwks"
                .parse::<JwksLocation>()
                .is_err()
        );
        assert!("http://10.0.0.1/jwks".parse::<JwksLocation>().is_err());
    }

    #[test]
    fn location_rejects_other_schemes() {
        assert!("ftp://127.0.0.1/jwks".parse::<JwksLocation>().is_err());
        assert!("".parse::<JwksLocation>().is_err());
    }
}
