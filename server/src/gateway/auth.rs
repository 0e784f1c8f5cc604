//! Connect authentication with JWTs: the token is taken from the CONNECT `auth.token`, else an
//! `Authorization: Bearer` header, else the configured cookie; it must be signed by a configured
//! key (of the config, or of the backend's JWKS, `jwks.rs`) and carry `exp`. What it grants (an [`Identity`]: user id, rooms to join, room patterns the
//! client may join itself) goes to the namespace's connection (`connect.rs`).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Validation, decode, decode_header};
use serde::{Deserialize, Serialize};

use super::config::JwtConfig;
use super::jwks::Jwks;
use crate::socketio::Handshake;

/// The longest token read: a JWT is a few hundred bytes; larger is not worth decoding.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The most rooms or patterns a token may grant.
pub const MAX_CLAIM_ENTRIES: usize = 256;

/// Why a connect was refused; the message is what the client sees in `connect_error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token in `auth.token`, the `Authorization` header or the cookie.
    #[error("authentication required: no token (send auth: {{ token }})")]
    Missing,
    /// The token's `exp` has passed.
    #[error("token expired")]
    Expired,
    /// Not signed by a configured key (or with an algorithm none is for).
    #[error("invalid token signature")]
    Signature,
    /// Not a JWT, a claim of the wrong shape, or `aud`/`iss`/`nbf` refused.
    #[error("invalid token: {0}")]
    Invalid(String),
}

impl AuthError {
    /// The metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Expired => "expired",
            Self::Signature => "signature",
            Self::Invalid(_) => "invalid",
        }
    }
}

/// What a valid token (and the connect webhook, `connect_webhook.rs`) grants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// `sub`: the user id.
    pub user: Option<String>,
    /// Rooms joined at connect.
    pub rooms: Vec<String>,
    /// Patterns of the rooms the client may join itself (`*` matches any run of characters).
    pub room_patterns: Vec<String>,
    /// Patterns of the rooms the client may publish to itself (`publish`).
    #[serde(default)]
    pub publish_patterns: Vec<String>,
    /// `exp`, in seconds since the Unix epoch.
    pub expires: Option<u64>,
    /// What the connect webhook put in `socket.data` besides `user` (a token adds nothing).
    #[serde(default)]
    pub data: serde_json::Map<String, serde_json::Value>,
}

impl Identity {
    /// Whether the client may join `room` itself.
    pub fn may_join(&self, room: &str) -> bool {
        self.room_patterns.iter().any(|pattern| matches(pattern, room))
    }

    /// Whether the client may publish to `room` itself.
    pub fn may_publish(&self, room: &str) -> bool {
        self.publish_patterns.iter().any(|pattern| matches(pattern, room))
    }

    /// How long until the token expires (zero if it has), if it does.
    pub fn remaining(&self) -> Option<Duration> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        self.expires.map(|exp| Duration::from_secs(exp).saturating_sub(now))
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters (none included).
pub fn matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else { return false };
    let Some(mut rest) = text.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Checks tokens against the configured keys.
#[derive(Debug, Clone)]
pub struct Verifier {
    config: JwtConfig,
    jwks: Option<Arc<Jwks>>,
}

impl Verifier {
    /// A verifier for `config`'s keys and claims; a JWKS URL's keys come once
    /// [`Verifier::start`] ran.
    pub fn new(config: JwtConfig) -> Self {
        let jwks = config.jwks.as_ref().map(|j| Arc::new(Jwks::new(j.url.clone(), j.refresh)));
        Self { config, jwks }
    }

    /// Starts fetching the JWKS URL's keys (now, then every `jwks-refresh`), if there is one.
    pub fn start(&self) {
        if let Some(jwks) = &self.jwks {
            jwks.spawn_refresh();
        }
    }

    /// Like [`Verifier::authenticate`]; a token no known key verifies fetches the JWKS URL again
    /// first (not too often: see `jwks.rs`), as after the backend rotated its keys.
    pub async fn authenticate_fresh(&self, handshake: &Handshake) -> Result<Identity, AuthError> {
        let token = self.token(handshake).ok_or(AuthError::Missing)?;
        self.verify_fresh(&token).await
    }

    /// Like [`Verifier::verify`], fetching the JWKS URL again as [`Verifier::authenticate_fresh`].
    pub async fn verify_fresh(&self, token: &str) -> Result<Identity, AuthError> {
        match (self.verify(token), &self.jwks) {
            (Err(AuthError::Signature), Some(jwks)) => {
                jwks.refresh_for_unknown_key().await;
                self.verify(token)
            }
            (result, _) => result,
        }
    }

    /// The token the client presented, if any.
    pub fn token(&self, handshake: &Handshake) -> Option<String> {
        if let Some(token) = handshake.auth.get("token").and_then(|t| t.as_str()) {
            return Some(token.to_owned());
        }
        if let Some(value) = handshake.header("authorization") {
            let value = std::str::from_utf8(value).ok()?;
            if let Some(token) = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")) {
                return Some(token.trim().to_owned());
            }
        }
        let name = self.config.cookie.as_deref()?;
        let cookies = std::str::from_utf8(handshake.header("cookie")?).ok()?;
        cookies.split(';').find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then(|| value.to_owned())
        })
    }

    /// The identity `handshake`'s token grants.
    pub fn authenticate(&self, handshake: &Handshake) -> Result<Identity, AuthError> {
        let token = self.token(handshake).ok_or(AuthError::Missing)?;
        self.verify(&token)
    }

    /// The identity `token` grants.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Invalid(format!("longer than {MAX_TOKEN_BYTES} bytes")));
        }
        let header = decode_header(token).map_err(|_| AuthError::Invalid("not a JWT".into()))?;
        let fetched = match &self.jwks {
            Some(jwks) => jwks.keys_for(header.alg, header.kid.as_deref()),
            None => Vec::new(),
        };
        let configured = self.config.keys.iter().filter(|(a, _)| *a == header.alg).map(|(_, key)| key);
        let mut last = AuthError::Signature;
        for key in configured.chain(&fetched) {
            let mut validation = Validation::new(header.alg);
            validation.leeway = self.config.leeway.as_secs();
            validation.set_required_spec_claims(&["exp"]);
            validation.validate_nbf = true;
            match &self.config.audience {
                Some(audience) => validation.set_audience(&[audience]),
                None => validation.validate_aud = false,
            }
            if let Some(issuer) = &self.config.issuer {
                validation.set_issuer(&[issuer]);
            }
            match decode::<serde_json::Map<String, serde_json::Value>>(token, key, &validation) {
                Ok(data) => return self.identity(&data.claims),
                Err(e) => {
                    last = match e.kind() {
                        ErrorKind::InvalidSignature => AuthError::Signature,
                        ErrorKind::ExpiredSignature => return Err(AuthError::Expired),
                        ErrorKind::MissingRequiredClaim(claim) => {
                            return Err(AuthError::Invalid(format!("no `{claim}` claim")));
                        }
                        ErrorKind::InvalidAudience => return Err(AuthError::Invalid("wrong `aud`".into())),
                        ErrorKind::InvalidIssuer => return Err(AuthError::Invalid("wrong `iss`".into())),
                        ErrorKind::ImmatureSignature => {
                            return Err(AuthError::Invalid("not valid yet (`nbf`)".into()));
                        }
                        _ => AuthError::Invalid("malformed".into()),
                    }
                }
            }
        }
        Err(last)
    }

    fn identity(&self, claims: &serde_json::Map<String, serde_json::Value>) -> Result<Identity, AuthError> {
        let user = match claims.get("sub") {
            None => None,
            Some(serde_json::Value::String(sub)) => Some(sub.clone()),
            Some(_) => return Err(AuthError::Invalid("`sub` is not a string".into())),
        };
        Ok(Identity {
            user,
            rooms: strings(claims, &self.config.rooms_claim)?,
            room_patterns: strings(claims, &self.config.room_patterns_claim)?,
            publish_patterns: strings(claims, &self.config.publish_patterns_claim)?,
            expires: claims.get("exp").and_then(serde_json::Value::as_u64),
            data: serde_json::Map::new(),
        })
    }
}

/// A claim that must be a list of strings (absent: none).
fn strings(
    claims: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<Vec<String>, AuthError> {
    let bad =
        || AuthError::Invalid(format!("`{name}` must be a list of at most {MAX_CLAIM_ENTRIES} strings"));
    match claims.get(name) {
        None => Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) if items.len() <= MAX_CLAIM_ENTRIES => {
            items.iter().map(|item| item.as_str().map(str::to_owned).ok_or_else(bad)).collect()
        }
        Some(_) => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_star_matches_any_run_of_characters() {
        for (pattern, room, expected) in [
            ("chat:*", "chat:general", true),
            ("chat:*", "chat:", true),
            ("chat:*", "chats:x", false),
            ("doc:*:edit", "doc:42:edit", true),
            ("doc:*:edit", "doc:42:view", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("*", "anything", true),
            ("a*a", "a", false),
        ] {
            assert_eq!(matches(pattern, room), expected, "{pattern} ~ {room}");
        }
    }
}
