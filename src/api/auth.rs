//! Bearer-token authentication. The owner of every distribution is the token's `sub`.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;

/// Verifies HS256 tokens signed with the configured secret.
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
}

impl Authenticator {
    pub fn hs256(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        // Tolerates small clock differences between the token issuer and this service.
        validation.leeway = 30;
        Authenticator {
            key: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Returns the owner named by a valid token.
    pub fn verify(&self, token: &str) -> Result<String, ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|error| ApiError::Unauthorized(format!("invalid bearer token: {error}")))?;
        if data.claims.sub.trim().is_empty() {
            return Err(ApiError::Unauthorized(
                "invalid bearer token: the sub claim is empty".to_owned(),
            ));
        }
        Ok(data.claims.sub)
    }
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

/// The authenticated caller.
#[derive(Clone, Debug)]
pub struct Owner(pub String);

impl FromRequestParts<AppState> for Owner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
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
        let owner = authenticator.verify(token)?;
        tracing::Span::current().record("owner", owner.as_str());
        Ok(Owner(owner))
    }
}
