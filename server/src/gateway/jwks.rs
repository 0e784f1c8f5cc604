//! Public keys from the backend's JWKS URL (`jwt.jwks-url`): fetched at start, again every
//! `jwt.jwks-refresh`, and at once (at most every [`MIN_REFETCH`], or `jwks-refresh` if shorter)
//! when no key of the set verifies a token, so a backend may rotate its keys without touching the gateway. The
//! fetched set replaces the previous one; a failed fetch keeps it. `auth.rs` reads the keys.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::time::Instant;

/// The largest JWKS document read.
pub const MAX_JWKS_BYTES: usize = 256 << 10;
/// The most keys kept from one document.
pub const MAX_KEYS: usize = 64;
/// How long a fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The shortest time between two fetches for unknown key ids: a client cannot make the node
/// hammer the backend with made-up ids.
pub const MIN_REFETCH: Duration = Duration::from_secs(10);

/// One usable key of the set.
#[derive(Clone)]
pub struct Key {
    /// `kid`, if the set gives one.
    pub id: Option<String>,
    /// The algorithm its type implies (RSA: RS256, EC P-256: ES256, OKP Ed25519: EdDSA).
    pub algorithm: Algorithm,
    /// The key.
    pub key: DecodingKey,
}

/// The keys of a JWKS URL, kept fresh; see the module docs.
pub struct Jwks {
    url: Uri,
    every: Duration,
    client: Client<HttpConnector, Empty<Bytes>>,
    keys: RwLock<Vec<Key>>,
    last_fetch: Mutex<Option<Instant>>,
    fetching: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks").field("url", &self.url).finish_non_exhaustive()
    }
}

impl Jwks {
    /// An empty set for `url`, to fetch `every` so often; [`Jwks::spawn_refresh`] fills it.
    pub fn new(url: Uri, every: Duration) -> Self {
        Self {
            url,
            every,
            client: Client::builder(TokioExecutor::new()).build_http(),
            keys: RwLock::new(Vec::new()),
            last_fetch: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// The keys for a token of `algorithm` naming `id` (every key of the algorithm without one).
    pub fn keys_for(&self, algorithm: Algorithm, id: Option<&str>) -> Vec<DecodingKey> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .filter(|k| k.algorithm == algorithm && (id.is_none() || k.id.as_deref() == id))
            .map(|k| k.key.clone())
            .collect()
    }

    /// Fetches now, unless a fetch ended less than `min_age` ago (or one is running: this waits
    /// for it instead).
    pub async fn refresh(&self, min_age: Duration) {
        let _one = self.fetching.lock().await;
        let recent = self
            .last_fetch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| at.elapsed() < min_age);
        if recent {
            return;
        }
        match tokio::time::timeout(FETCH_TIMEOUT, self.fetch()).await {
            Ok(Ok(keys)) => {
                tracing::debug!(url = %self.url, keys = keys.len(), "gateway: JWKS fetched");
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
            }
            Ok(Err(why)) => {
                tracing::warn!(url = %self.url, why, "gateway: JWKS not fetched, keeping the keys")
            }
            Err(_) => tracing::warn!(url = %self.url, "gateway: JWKS fetch timed out, keeping the keys"),
        }
        *self.last_fetch.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// Fetches again for a token no key verified, unless a fetch is recent (see the module docs).
    pub async fn refresh_for_unknown_key(&self) {
        self.refresh(MIN_REFETCH.min(self.every)).await;
    }

    /// Fetches at once and then every `jwks-refresh`, for as long as the set is in use.
    pub fn spawn_refresh(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let every = self.every;
        tokio::spawn(async move {
            loop {
                let Some(jwks) = weak.upgrade() else { return };
                jwks.refresh(Duration::ZERO).await;
                drop(jwks);
                tokio::time::sleep(every).await;
            }
        });
    }

    async fn fetch(&self) -> Result<Vec<Key>, String> {
        let request = Request::get(self.url.clone()).body(Empty::new()).map_err(|e| e.to_string())?;
        let response = self.client.request(request).await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        let set: RawSet = serde_json::from_slice(&body).map_err(|e| format!("not a JWK set: {e}"))?;
        Ok(usable(set))
    }
}

/// A JWK set whose keys are read one by one, so one key of a kind we do not know does not hide
/// the others.
#[derive(serde::Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

/// The public keys of `set` a token may be signed with (symmetric keys from a URL are never used).
fn usable(set: RawSet) -> Vec<Key> {
    set.keys
        .into_iter()
        .filter_map(|raw| {
            let jwk: Jwk = serde_json::from_value(raw).ok()?;
            let algorithm = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => Algorithm::ES256,
                AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
                    Algorithm::EdDSA
                }
                _ => return None,
            };
            let key = DecodingKey::from_jwk(&jwk).ok()?;
            Some(Key { id: jwk.common.key_id.clone(), algorithm, key })
        })
        .take(MAX_KEYS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_signing_keys_are_kept_and_an_unknown_kind_hides_nothing() {
        let set: RawSet = serde_json::from_value(serde_json::json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "ed"},
            {"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", "kid": "symmetric"},
            {"kty": "OKP", "crv": "X25519", "x": "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo", "kid": "agreement"},
            {"kty": "future-kind", "kid": "later"},
        ]}))
        .unwrap_or(RawSet { keys: Vec::new() });
        let kept: Vec<(Option<String>, Algorithm)> =
            usable(set).into_iter().map(|k| (k.id, k.algorithm)).collect();
        assert_eq!(kept, vec![(Some("ed".into()), Algorithm::EdDSA)]);
    }
}
