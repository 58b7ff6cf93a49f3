//! Command-line and environment settings. Every option can be given as a flag or as the
//! environment variable named beside it.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::api::HttpSettings;
use crate::api::auth::AuthSettings;
use crate::api::auth::jwks::JwksLocation;
use crate::cloudfront::CallSettings;
use crate::lifecycle::Policy;
use crate::lifecycle::schedule::{Delays, RecheckSchedule};
use crate::store::rate_limit::{BucketLimit, RateLimitSettings};
use crate::worker::WorkerSettings;

/// A secret that never appears in logs or `Debug` output.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Secret([redacted])")
    }
}

impl std::str::FromStr for Secret {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        // HS256 is only as strong as its key; RFC 7518 requires at least 256 bits.
        if value.len() < 32 {
            return Err(format!(
                "must be at least 32 characters (got {}); generate one with: openssl rand -hex 32",
                value.len()
            ));
        }
        Ok(Secret(value.to_owned()))
    }
}

#[derive(Args, Clone, Debug)]
pub struct DatabaseArgs {
    /// Postgres connection URL, such as postgres://user:password@host:5432/cloudfront_lifecycle.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,

    /// Connections in this process's database pool.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 20)]
    pub database_max_connections: u32,
}

#[derive(Args, Clone, Debug)]
pub struct AuthArgs {
    /// HS256 secret that verifies bearer tokens (at least 32 characters). Optional when
    /// AUTH_JWKS is set; without it HS256 tokens are rejected.
    #[arg(long, env = "AUTH_JWT_SECRET", hide_env_values = true)]
    pub auth_jwt_secret: Option<Secret>,

    /// JWKS with the RS256 and ES256 keys that verify bearer tokens: a file path or an
    /// https:// URL (http:// only for a loopback host).
    #[arg(long, env = "AUTH_JWKS")]
    pub auth_jwks: Option<JwksLocation>,

    /// Required value of the tokens' iss claim; unset accepts any issuer.
    #[arg(long, env = "AUTH_ISSUER")]
    pub auth_issuer: Option<String>,

    /// Required value (one of) the tokens' aud claim; unset ignores aud.
    #[arg(long, env = "AUTH_AUDIENCE")]
    pub auth_audience: Option<String>,

    /// Seconds of clock difference tolerated when checking exp and nbf.
    #[arg(long, env = "AUTH_LEEWAY_SECONDS", default_value_t = 30)]
    pub auth_leeway_seconds: u64,

    /// The token claim that names the owner of distributions.
    #[arg(long, env = "AUTH_OWNER_CLAIM", default_value = "sub")]
    pub auth_owner_claim: String,

    /// Minimum seconds between two reloads of the JWKS, which happen when a token names an
    /// unknown kid.
    #[arg(long, env = "AUTH_JWKS_MIN_RELOAD_SECONDS", default_value_t = 30.0)]
    pub auth_jwks_min_reload_seconds: f64,

    /// Seconds after which the JWKS is reloaded on the next request, so removed keys stop
    /// verifying tokens.
    #[arg(long, env = "AUTH_JWKS_MAX_AGE_SECONDS", default_value_t = 600.0)]
    pub auth_jwks_max_age_seconds: f64,

    /// The scope a token needs for operator requests such as POST /v1/distributions/adopt,
    /// in its space-separated scope claim or its scp or permissions array.
    #[arg(long, env = "AUTH_ADMIN_SCOPE", default_value = crate::api::auth::DEFAULT_ADMIN_SCOPE)]
    pub auth_admin_scope: String,
}

impl AuthArgs {
    pub fn settings(&self) -> AuthSettings {
        AuthSettings {
            hs256_secret: self
                .auth_jwt_secret
                .as_ref()
                .map(|secret| secret.expose().as_bytes().to_vec()),
            jwks: self.auth_jwks.clone(),
            issuer: self.auth_issuer.clone(),
            audience: self.auth_audience.clone(),
            leeway_seconds: self.auth_leeway_seconds,
            owner_claim: self.auth_owner_claim.clone(),
            jwks_min_reload_interval: seconds(self.auth_jwks_min_reload_seconds),
            jwks_max_age: seconds(self.auth_jwks_max_age_seconds),
            admin_scope: self.auth_admin_scope.clone(),
        }
    }
}

/// The peer that CloudFront calls go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// An embedded CloudFront simulator on a loopback port: no AWS account needed, and no
    /// real distribution is ever touched.
    Simulator,
    /// AWS (or any CloudFront-compatible server named by AWS_ENDPOINT_URL), with credentials
    /// from aws-config's standard chain.
    Aws,
}

#[derive(Args, Clone, Debug)]
pub struct CloudFrontArgs {
    /// The peer CloudFront calls go to: the embedded simulator, or AWS.
    #[arg(long, env = "CLOUDFRONT_BACKEND", value_enum, default_value_t = BackendKind::Simulator)]
    pub cloudfront_backend: BackendKind,

    /// Seconds the embedded simulator keeps each change InProgress before Deployed.
    #[arg(long, env = "SIMULATOR_DEPLOY_SECONDS", default_value_t = 5.0)]
    pub simulator_deploy_seconds: f64,

    /// Attempts per CloudFront call, including the first, under the SDK's standard retry policy.
    #[arg(long, env = "CLOUDFRONT_MAX_ATTEMPTS", default_value_t = 3)]
    pub cloudfront_max_attempts: u32,

    /// Seconds one attempt of a CloudFront call may take.
    #[arg(
        long,
        env = "CLOUDFRONT_ATTEMPT_TIMEOUT_SECONDS",
        default_value_t = 10.0
    )]
    pub cloudfront_attempt_timeout_seconds: f64,

    /// Seconds a CloudFront call may take across all its attempts.
    #[arg(long, env = "CLOUDFRONT_CALL_TIMEOUT_SECONDS", default_value_t = 25.0)]
    pub cloudfront_call_timeout_seconds: f64,
}

impl CloudFrontArgs {
    pub fn call_settings(&self) -> CallSettings {
        CallSettings {
            max_attempts: self.cloudfront_max_attempts,
            attempt_timeout: seconds(self.cloudfront_attempt_timeout_seconds),
            call_timeout: seconds(self.cloudfront_call_timeout_seconds),
        }
    }
}

#[derive(Args, Clone, Debug)]
pub struct HttpArgs {
    /// Address the HTTP API listens on.
    #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1:8080")]
    pub bind_addr: SocketAddr,

    /// Browser origins allowed to call the API (comma-separated), such as https://app.example.com.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub cors_allowed_origins: Vec<String>,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "HTTP_BODY_LIMIT_BYTES", default_value_t = 64 * 1024)]
    pub http_body_limit_bytes: usize,

    /// Seconds a request may take before the service returns 408.
    #[arg(long, env = "HTTP_REQUEST_TIMEOUT_SECONDS", default_value_t = 15.0)]
    pub http_request_timeout_seconds: f64,

    /// Distributions one owner may have that are not deleted; more are rejected with 409.
    #[arg(long, env = "MAX_DISTRIBUTIONS_PER_OWNER", default_value_t = 100)]
    pub max_distributions_per_owner: i64,

    /// Seconds an Idempotency-Key is remembered.
    #[arg(long, env = "IDEMPOTENCY_TTL_SECONDS", default_value_t = 86_400.0)]
    pub idempotency_ttl_seconds: f64,
    /// Sustained requests per second allowed to each owner; 0 disables the limit.
    #[arg(long, env = "RATE_LIMIT_PER_SECOND", default_value_t = 10)]
    pub rate_limit_per_second: u32,

    /// Requests an owner may send in a burst before RATE_LIMIT_PER_SECOND applies.
    #[arg(long, env = "RATE_LIMIT_BURST", default_value_t = 50)]
    pub rate_limit_burst: u32,

    /// max-age, in seconds, of the Strict-Transport-Security header; 0 sends none. Set it
    /// only when clients reach the service over HTTPS.
    #[arg(long, env = "HSTS_MAX_AGE_SECONDS", default_value_t = 0)]
    pub hsts_max_age_seconds: u64,

    /// Postgres connections this process keeps, besides the pool, for reads of one
    /// distribution (GET /v1/distributions/{id}). They take one round trip per read where
    /// the pool takes two. 0 opens none and sends those reads through the pool.
    #[arg(long, env = "DATABASE_READ_CONNECTIONS", default_value_t = 10)]
    pub database_read_connections: u32,
}

impl HttpArgs {
    pub fn settings(&self) -> HttpSettings {
        HttpSettings {
            cors_allowed_origins: self.cors_allowed_origins.clone(),
            body_limit_bytes: self.http_body_limit_bytes,
            request_timeout: seconds(self.http_request_timeout_seconds),
            limits: crate::api::ApiLimits {
                max_distributions_per_owner: self.max_distributions_per_owner,
                idempotency_ttl: seconds(self.idempotency_ttl_seconds),
            },
            rate_limit_per_second: self.rate_limit_per_second,
            rate_limit_burst: self.rate_limit_burst,
            hsts_max_age_seconds: self.hsts_max_age_seconds,
            read_connections: self.database_read_connections,
        }
    }
}

#[derive(Args, Clone, Debug)]
pub struct WorkerArgs {
    /// Rows this process checks at the same time.
    #[arg(long, env = "WORKER_CONCURRENCY", default_value_t = 16)]
    pub worker_concurrency: usize,

    /// Seconds a claim keeps a row before another worker may take it over.
    #[arg(long, env = "WORKER_LEASE_SECONDS", default_value_t = 120.0)]
    pub worker_lease_seconds: f64,

    /// Maximum sleep, in seconds, between probes of the table when no notification arrives
    /// and no row is due sooner. A lost LISTEN connection triggers a probe of its own.
    #[arg(long, env = "WORKER_SAFETY_INTERVAL_SECONDS", default_value_t = 300.0)]
    pub worker_safety_interval_seconds: f64,

    /// When a row waiting for Deployed is checked again: adaptive (learned from finished
    /// waits), adaptive:DENSE,MAX (seconds), fixed:SECONDS, or backoff:FIRST,FACTOR,MAX
    /// (seconds, growth factor, seconds).
    #[arg(long, env = "RECHECK_SCHEDULE", default_value = "adaptive")]
    pub recheck_schedule: RecheckSchedule,

    /// For benchmarks only: divides every recheck, retry and confirm delay by this factor,
    /// to match a simulator whose clock runs that much faster. Keep 1 against CloudFront.
    #[arg(long, env = "TIME_SCALE", default_value_t = 1.0, value_parser = positive_number)]
    pub time_scale: f64,

    /// Failed attempts (throttling excluded) before a row is marked failed.
    #[arg(long, env = "MAX_FAILED_ATTEMPTS", default_value_t = 25)]
    pub max_failed_attempts: u32,

    /// Seconds after a delete request when a deletion still under way is reported as overdue.
    #[arg(long, env = "DELETION_DEADLINE_SECONDS", default_value_t = 3600.0)]
    pub deletion_deadline_seconds: f64,

    /// Seconds shutdown waits for checks in flight before handing their rows back.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_SECONDS", default_value_t = 30.0)]
    pub shutdown_timeout_seconds: f64,

    /// Mutating CloudFront calls per second, shared by all replicas (create, update, delete).
    #[arg(long, env = "CLOUDFRONT_MUTATING_RATE", default_value_t = 1.0)]
    pub cloudfront_mutating_rate: f64,

    /// Mutating CloudFront calls that may be made at once after a quiet period.
    #[arg(long, env = "CLOUDFRONT_MUTATING_BURST", default_value_t = 2.0)]
    pub cloudfront_mutating_burst: f64,

    /// CloudFront reads per second, shared by all replicas.
    #[arg(long, env = "CLOUDFRONT_READ_RATE", default_value_t = 5.0)]
    pub cloudfront_read_rate: f64,

    /// CloudFront reads that may be made at once after a quiet period.
    #[arg(long, env = "CLOUDFRONT_READ_BURST", default_value_t = 10.0)]
    pub cloudfront_read_burst: f64,

    /// Seconds a rate cut by Throttling takes to climb from zero back to the configured rate.
    #[arg(long, env = "CLOUDFRONT_RATE_RECOVERY_SECONDS", default_value_t = 60.0)]
    pub cloudfront_rate_recovery_seconds: f64,

    /// Maximum wait, in seconds, for a rate-limit token before a check reschedules its row.
    #[arg(long, env = "CLOUDFRONT_RATE_MAX_WAIT_SECONDS", default_value_t = 10.0)]
    pub cloudfront_rate_max_wait_seconds: f64,

    /// Seconds a deleted row and its history are kept before they are purged.
    #[arg(long, env = "RETENTION_SECONDS", default_value_t = 7.0 * 24.0 * 3600.0)]
    pub retention_seconds: f64,

    /// Seconds between purges of deleted rows past their retention.
    #[arg(long, env = "PURGE_INTERVAL_SECONDS", default_value_t = 3600.0)]
    pub purge_interval_seconds: f64,
}

impl WorkerArgs {
    /// Rejects intervals and rates that would make the worker spin. A zero lease lets a row
    /// be claimed again while its check runs, a zero safety interval polls without pause
    /// when idle, and a zero rate never grants a token. Negative and non-finite values are
    /// rejected too, because `seconds` turns them into zero.
    pub fn validate(&self) -> anyhow::Result<()> {
        let positive = [
            ("WORKER_LEASE_SECONDS", self.worker_lease_seconds),
            (
                "WORKER_SAFETY_INTERVAL_SECONDS",
                self.worker_safety_interval_seconds,
            ),
            ("CLOUDFRONT_MUTATING_RATE", self.cloudfront_mutating_rate),
            ("CLOUDFRONT_READ_RATE", self.cloudfront_read_rate),
        ];
        for (name, value) in positive {
            if !(value.is_finite() && value > 0.0) {
                anyhow::bail!("{name} must be a positive number, got {value}");
            }
        }
        Ok(())
    }

    pub fn settings(&self) -> WorkerSettings {
        WorkerSettings {
            concurrency: self.worker_concurrency.max(1),
            lease: seconds(self.worker_lease_seconds),
            safety_interval: seconds(self.worker_safety_interval_seconds),
            schedule: self.recheck_schedule.clone(),
            delays: Delays::default(),
            policy: Policy {
                max_attempts: self.max_failed_attempts.max(1),
                ..Policy::default()
            },
            deletion_deadline: seconds(self.deletion_deadline_seconds),
            shutdown_timeout: seconds(self.shutdown_timeout_seconds),
            rate_limits: RateLimitSettings {
                mutating: BucketLimit {
                    rate_per_second: self.cloudfront_mutating_rate,
                    burst: self.cloudfront_mutating_burst,
                },
                read: BucketLimit {
                    rate_per_second: self.cloudfront_read_rate,
                    burst: self.cloudfront_read_burst,
                },
                recovery: seconds(self.cloudfront_rate_recovery_seconds),
                max_wait: seconds(self.cloudfront_rate_max_wait_seconds),
            },
            retention: seconds(self.retention_seconds),
            purge_interval: seconds(self.purge_interval_seconds).max(Duration::from_secs(1)),
            time_scale: self.time_scale,
        }
    }
}

#[derive(Args, Clone, Debug)]
pub struct WebhookArgs {
    /// URL (http or https) that receives lifecycle notifications as signed JSON POSTs; none
    /// are sent when unset. Requires WEBHOOK_SECRET.
    #[arg(
        long,
        env = "WEBHOOK_URL",
        hide_env_values = true,
        requires = "webhook_secret"
    )]
    pub webhook_url: Option<reqwest::Url>,

    /// Shared secret (at least 32 characters) that signs each notification with HMAC-SHA256.
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<Secret>,

    /// Seconds one notification POST may take.
    #[arg(long, env = "WEBHOOK_TIMEOUT_SECONDS", default_value_t = 10.0)]
    pub webhook_timeout_seconds: f64,

    /// Attempts per notification, the first included, before it is abandoned. With the
    /// backoff (2 s doubling to 10 minutes) the default 40 spans about six hours.
    #[arg(long, env = "WEBHOOK_MAX_ATTEMPTS", default_value_t = 40)]
    pub webhook_max_attempts: u32,
}

impl WebhookArgs {
    /// The delivery settings, or `None` when no URL is configured.
    pub fn settings(&self) -> anyhow::Result<Option<crate::webhooks::WebhookSettings>> {
        let Some(url) = self.webhook_url.clone() else {
            return Ok(None);
        };
        if !matches!(url.scheme(), "http" | "https") {
            anyhow::bail!(
                "WEBHOOK_URL must be an http or https URL, got scheme {:?}",
                url.scheme()
            );
        }
        let Some(secret) = self.webhook_secret.clone() else {
            anyhow::bail!("WEBHOOK_SECRET is required when WEBHOOK_URL is set");
        };
        let mut settings = crate::webhooks::WebhookSettings::new(url, secret);
        settings.timeout = seconds(self.webhook_timeout_seconds).max(Duration::from_secs(1));
        settings.max_attempts = self.webhook_max_attempts.max(1);
        Ok(Some(settings))
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(Args, Clone, Debug)]
pub struct LogArgs {
    /// Log output format; the level is set with RUST_LOG (default info).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

/// Converts a number of seconds from the command line, treating negative or invalid values
/// as zero.
pub fn seconds(value: f64) -> Duration {
    if value.is_finite() && value > 0.0 {
        Duration::from_secs_f64(value)
    } else {
        Duration::ZERO
    }
}

/// Parses a finite number greater than zero, such as a time scale.
pub fn positive_number(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(value),
        _ => Err(format!(
            "invalid value {text:?}: expected a number greater than zero, such as 1 or 60"
        )),
    }
}
