//! Bearer-token authentication. Tokens are HS256 with a shared secret, or RS256/ES256 signed
//! by a key in a JWKS. The owner of every distribution is a claim of the token (`sub` unless
//! configured otherwise).

pub mod jwks;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use jwks::{JwksCache, JwksError, JwksLocation};

/// Token verification settings.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// Secret for HS256 tokens; `None` rejects HS256.
    pub hs256_secret: Option<Vec<u8>>,
    /// Key set for RS256 and ES256 tokens; `None` rejects them.
    pub jwks: Option<JwksLocation>,
    /// Required `iss` claim, when set.
    pub issuer: Option<String>,
    /// Required `aud` claim, when set.
    pub audience: Option<String>,
    /// Seconds of clock difference tolerated on `exp` and `nbf`.
    pub leeway_seconds: u64,
    /// The claim that names the owner.
    pub owner_claim: String,
    /// Shortest time between two reloads of the JWKS.
    pub jwks_min_reload_interval: Duration,
    /// Age after which the JWKS is reloaded on the next request, so removed keys stop working.
    pub jwks_max_age: Duration,
    /// The scope that grants operator requests such as adoption, looked up in the token's
    /// space-separated `scope` claim and in its `scp` and `permissions` arrays.
    pub admin_scope: String,
}

/// The scope that grants operator requests unless AUTH_ADMIN_SCOPE sets another.
pub const DEFAULT_ADMIN_SCOPE: &str = "cloudfront-lifecycle:admin";

impl AuthSettings {
    /// HS256 only, with the defaults of the command line.
    pub fn hs256(secret: &[u8]) -> Self {
        AuthSettings {
            hs256_secret: Some(secret.to_vec()),
            jwks: None,
            issuer: None,
            audience: None,
            leeway_seconds: 30,
            owner_claim: "sub".to_owned(),
            jwks_min_reload_interval: Duration::from_secs(30),
            jwks_max_age: Duration::from_secs(600),
            admin_scope: DEFAULT_ADMIN_SCOPE.to_owned(),
        }
    }
}

/// A failure to build the authenticator from its settings.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("no token verification is configured: set AUTH_JWT_SECRET, AUTH_JWKS, or both")]
    NothingConfigured,
    #[error(transparent)]
    Jwks(#[from] JwksError),
}

/// Verifies bearer tokens and extracts their owner.
pub struct Authenticator {
    hs256: Option<DecodingKey>,
    jwks: Option<JwksCache>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway_seconds: u64,
    owner_claim: String,
    admin_scope: String,
}

/// A verified token: its owner and every scope it grants.
#[derive(Clone, Debug)]
pub struct Verified {
    pub owner: String,
    pub scopes: Vec<String>,
}

impl Authenticator {
    /// Creates an authenticator for HS256 tokens only.
    pub fn hs256(secret: &[u8]) -> Self {
        Authenticator {
            hs256: Some(DecodingKey::from_secret(secret)),
            jwks: None,
            issuer: None,
            audience: None,
            leeway_seconds: 30,
            owner_claim: "sub".to_owned(),
            admin_scope: DEFAULT_ADMIN_SCOPE.to_owned(),
        }
    }

    /// Builds an authenticator, loading the JWKS when one is configured.
    pub async fn new(settings: &AuthSettings) -> Result<Self, AuthSetupError> {
        if settings.hs256_secret.is_none() && settings.jwks.is_none() {
            return Err(AuthSetupError::NothingConfigured);
        }
        let jwks = match &settings.jwks {
            Some(location) => Some(
                JwksCache::load(
                    location.clone(),
                    settings.jwks_min_reload_interval,
                    settings.jwks_max_age,
                )
                .await?,
            ),
            None => None,
        };
        Ok(Authenticator {
            hs256: settings
                .hs256_secret
                .as_deref()
                .map(DecodingKey::from_secret),
            jwks,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            leeway_seconds: settings.leeway_seconds,
            owner_claim: settings.owner_claim.clone(),
            admin_scope: settings.admin_scope.clone(),
        })
    }

    /// Returns the owner named by a valid token.
    pub async fn verify(&self, token: &str) -> Result<String, ApiError> {
        Ok(self.verify_with_scopes(token).await?.owner)
    }

    /// Returns the owner and the scopes of a valid token.
    pub async fn verify_with_scopes(&self, token: &str) -> Result<Verified, ApiError> {
        // `decode_header` rejects `alg: none` and any algorithm jsonwebtoken does not know.
        let header = jsonwebtoken::decode_header(token).map_err(invalid)?;
        let (algorithm, key) = self.key_for(&header).await?;

        // Exactly one algorithm is allowed per key, so a token can never pick how its key is
        // used (an RSA public key as an HMAC secret, say).
        let validation = self.validation(algorithm);
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &key,
            &validation,
        )
        .map_err(invalid)?;

        let owner = data
            .claims
            .get(&self.owner_claim)
            .and_then(serde_json::Value::as_str)
            .unwrap_or("");
        // The claim is used exactly as issued, because trimming it would give " alice" the
        // distributions of "alice", which the issuer treats as another subject.
        if owner.trim().is_empty() {
            return Err(ApiError::Unauthorized(format!(
                "invalid bearer token: the {} claim is missing or empty",
                self.owner_claim
            )));
        }
        // Postgres text cannot hold U+0000, so such an owner could never be stored.
        if owner.contains('\0') {
            return Err(ApiError::Unauthorized(format!(
                "invalid bearer token: the {} claim contains a NUL character",
                self.owner_claim
            )));
        }
        Ok(Verified {
            owner: owner.to_owned(),
            scopes: scopes(&data.claims),
        })
    }

    /// Returns the scope that grants operator requests.
    pub fn admin_scope(&self) -> &str {
        &self.admin_scope
    }

    async fn key_for(&self, header: &Header) -> Result<(Algorithm, DecodingKey), ApiError> {
        match header.alg {
            Algorithm::HS256 => match &self.hs256 {
                Some(key) => Ok((Algorithm::HS256, key.clone())),
                None => Err(ApiError::Unauthorized(
                    "invalid bearer token: HS256 tokens are not accepted; use a token signed by a key in the JWKS".to_owned(),
                )),
            },
            Algorithm::RS256 | Algorithm::ES256 => {
                let Some(jwks) = &self.jwks else {
                    return Err(ApiError::Unauthorized(format!(
                        "invalid bearer token: {:?} tokens are not accepted because no JWKS is configured",
                        header.alg
                    )));
                };
                let kid = header.kid.as_deref().ok_or_else(|| {
                    ApiError::Unauthorized(
                        "invalid bearer token: the header has no kid".to_owned(),
                    )
                })?;
                let found = jwks.find(kid).await.ok_or_else(|| {
                    ApiError::Unauthorized(format!(
                        "invalid bearer token: no key with kid {kid:?} in the JWKS"
                    ))
                })?;
                if found.algorithm != header.alg {
                    return Err(ApiError::Unauthorized(format!(
                        "invalid bearer token: key {kid:?} verifies {:?}, not {:?}",
                        found.algorithm, header.alg
                    )));
                }
                Ok((found.algorithm, found.key))
            }
            other => Err(ApiError::Unauthorized(format!(
                "invalid bearer token: algorithm {other:?} is not accepted; use HS256, RS256 or ES256"
            ))),
        }
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.leeway = self.leeway_seconds;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        match &self.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            // Without a configured audience the `aud` claim is not checked at all, because
            // jsonwebtoken would otherwise reject every token that carries one.
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        validation
    }
}

/// Collects the scopes a token grants. RFC 8693 (section 4.2) puts them in `scope` as one
/// space-separated string. Other issuers use `scp` or `permissions`, as a string or an
/// array, so every one of these forms is read.
fn scopes(claims: &serde_json::Map<String, serde_json::Value>) -> Vec<String> {
    let mut scopes = Vec::new();
    for name in ["scope", "scp", "permissions"] {
        match claims.get(name) {
            Some(serde_json::Value::String(text)) => {
                scopes.extend(text.split_whitespace().map(str::to_owned));
            }
            Some(serde_json::Value::Array(items)) => {
                scopes.extend(
                    items
                        .iter()
                        .filter_map(|item| item.as_str())
                        .map(str::to_owned),
                );
            }
            _ => {}
        }
    }
    scopes
}

fn invalid(error: jsonwebtoken::errors::Error) -> ApiError {
    ApiError::Unauthorized(format!("invalid bearer token: {error}"))
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
}

/// Signs an HS256 token for `subject` that expires `ttl_seconds` from now.
pub fn issue_token(
    secret: &[u8],
    subject: &str,
    ttl_seconds: u64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = Claims {
        sub: subject.to_owned(),
        exp: now + ttl_seconds,
        iat: Some(now),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
}

/// The authenticated caller. Extracting it also charges the caller's rate limit.
#[derive(Clone, Debug)]
pub struct Owner(pub String);

impl FromRequestParts<AppState> for Owner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let verified = authenticate(parts, state).await?;
        Ok(Owner(verified.owner))
    }
}

/// An authenticated caller whose token grants the admin scope. Extracting it also charges
/// the caller's rate limit; a valid token without the scope is rejected with 403.
#[derive(Clone, Debug)]
pub struct Admin(pub String);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let verified = authenticate(parts, state).await?;
        let required = state.authenticator.admin_scope();
        if !verified.scopes.iter().any(|scope| scope == required) {
            return Err(ApiError::Forbidden(format!(
                "this request needs the {required} scope in the token's scope, scp or permissions claim"
            )));
        }
        Ok(Admin(verified.owner))
    }
}

/// Verifies the bearer token, records its owner in the request span and charges the
/// owner's rate limit.
async fn authenticate(parts: &Parts, state: &AppState) -> Result<Verified, ApiError> {
    let value = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::Unauthorized("missing Authorization: Bearer <token> header".to_owned())
    })?;
    let token = value
        .to_str()
        .ok()
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            ApiError::Unauthorized("the Authorization header must be Bearer <token>".to_owned())
        })?;
    let authenticator: &Arc<Authenticator> = &state.authenticator;
    let verified = authenticator.verify_with_scopes(token).await?;
    tracing::Span::current().record("owner", verified.owner.as_str());
    if let Some(limiter) = &state.rate_limiter {
        limiter.check(&verified.owner)?;
    }
    Ok(verified)
}
