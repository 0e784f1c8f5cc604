//! Who may open the admin namespace: `@socket.io/admin-ui`'s basic auth (a username and a bcrypt
//! hash of the password, checked when the UI connects), and the session ids a successful login
//! gets so the UI reconnects without the password. The namespace's middleware (`super`) asks
//! [`Gate::check`]; a refusal reaches the UI as `invalid credentials`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::AdminAuth;
use crate::socketio::ConnectError;

/// The admin-ui's message for a refused login (the UI shows its login form again on it).
pub(crate) const INVALID_CREDENTIALS: &str = "invalid credentials";
/// Logins checked at once: bcrypt is slow on purpose, so a flood of logins would take the node's
/// cores; past this they are refused at once.
const CONCURRENT_CHECKS: usize = 2;
/// Longest password or session id looked at; bcrypt reads 72 bytes anyway.
const MAX_SECRET_BYTES: usize = 1024;
/// Sessions remembered, and for how long: a UI reconnecting within a day skips the login.
pub(crate) const MAX_SESSIONS: usize = 1000;
const SESSION_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// Checks the admin UI's credentials; see the module docs.
pub(crate) struct Gate {
    auth: AdminAuth,
    checks: Arc<Semaphore>,
    sessions: Mutex<HashMap<String, Instant>>,
}

impl Gate {
    pub(crate) fn new(auth: AdminAuth) -> Self {
        Self { auth, checks: Arc::new(Semaphore::new(CONCURRENT_CHECKS)), sessions: Mutex::default() }
    }

    /// Accepts the UI's `auth` payload or says why not; on a password login, the new session id
    /// to send the UI (`session` event).
    pub(crate) async fn check(&self, auth: &Map<String, Value>) -> Result<Option<String>, ConnectError> {
        let AdminAuth::Basic { username, password_hash } = &self.auth else {
            return Ok(None);
        };
        let text = |key: &str| auth.get(key).and_then(Value::as_str).filter(|s| s.len() <= MAX_SECRET_BYTES);
        if let Some(session) = text("sessionId")
            && self.has_session(session)
        {
            return Ok(None);
        }
        let (Some(user), Some(password)) = (text("username"), text("password")) else {
            return Err(ConnectError::new(INVALID_CREDENTIALS));
        };
        let Ok(permit) = self.checks.clone().try_acquire_owned() else {
            return Err(ConnectError::new("too many logins at once, retry"));
        };
        let hash = password_hash.clone();
        let password = password.to_owned();
        // Checked even for a wrong username, so timing does not tell usernames apart.
        let verified = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            bcrypt::verify(password, &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        let user_ok: bool = user.as_bytes().ct_eq(username.as_bytes()).into();
        if !(verified && user_ok) {
            return Err(ConnectError::new(INVALID_CREDENTIALS));
        }
        Ok(Some(self.new_session()))
    }

    fn has_session(&self, id: &str) -> bool {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.get(id).is_some_and(|since| since.elapsed() < SESSION_LIFETIME)
    }

    fn new_session(&self) -> String {
        let id: String = (0..16).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, since| since.elapsed() < SESSION_LIFETIME);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, since)| **since).map(|(id, _)| id.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(id.clone(), Instant::now());
        id
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn gate() -> Gate {
        let password_hash = bcrypt::hash("s3cret", 4).unwrap();
        Gate::new(AdminAuth::Basic { username: "admin".into(), password_hash })
    }

    fn auth(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[tokio::test]
    async fn a_login_gets_a_session_that_logs_in_again() {
        let gate = gate();
        let session = gate.check(&auth(json!({"username": "admin", "password": "s3cret"}))).await.unwrap();
        let session = session.unwrap();
        assert_eq!(session.len(), 32);
        assert_eq!(gate.check(&auth(json!({"sessionId": session}))).await.unwrap(), None);
    }

    #[tokio::test]
    async fn wrong_or_missing_credentials_are_refused() {
        let gate = gate();
        for refused in [
            json!({"username": "admin", "password": "nope"}),
            json!({"username": "root", "password": "s3cret"}),
            json!({"username": "admin"}),
            json!({"username": "admin", "password": 1}),
            json!({"sessionId": "made-up"}),
            json!({}),
        ] {
            let err = gate.check(&auth(refused.clone())).await.unwrap_err();
            assert_eq!(err.message, INVALID_CREDENTIALS, "{refused}");
        }
    }

    #[tokio::test]
    async fn no_auth_lets_anyone_in() {
        let gate = Gate::new(AdminAuth::None);
        assert_eq!(gate.check(&Map::new()).await.unwrap(), None);
    }
}
