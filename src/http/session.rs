//! Browser state without server-side storage: HMAC-SHA256-sealed values (the session cookie
//! and the pending authorization request carried from `/authorize` to `/consent`), and
//! double-submit CSRF tokens.
//!
//! The key lives in `session.key` in the data directory (0600). Rotating it (deleting the
//! file) signs everybody out and nothing else.

use super::AppState;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::HttpRequest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use domain::values::UserId;
use hmac::{Hmac, Mac};
use projections::UserView;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::path::Path;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The file holding the sealing key.
pub const SESSION_KEY_FILE: &str = "session.key";
/// The session cookie.
pub const SESSION_COOKIE: &str = "authledger_session";
/// The CSRF cookie (double submit: each form repeats its value).
pub const CSRF_COOKIE: &str = "authledger_csrf";

/// The key that seals cookies and pending requests.
pub struct SessionKey([u8; 64]);

impl SessionKey {
    /// Reads the key from the data directory, creating it on first use.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join(SESSION_KEY_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let key: [u8; 64] = bytes.as_slice().try_into().map_err(|_| {
                    anyhow::anyhow!(
                        "{} is not a 64-byte key; delete it to make a new one (signs everyone out)",
                        path.display()
                    )
                })?;
                Ok(Self(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 64];
                getrandom::getrandom(&mut key)?;
                crate::fsutil::write_private(&path, &key)?;
                Ok(Self(key))
            }
            Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display())),
        }
    }

    fn mac(&self, purpose: &str, payload: &[u8]) -> Hmac<Sha256> {
        // A key of SHA-256's block size (64 bytes) makes construction infallible.
        let mut mac = <Hmac<Sha256> as hmac::digest::KeyInit>::new(&self.0.into());
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(payload);
        mac
    }

    /// Seals a value for `purpose`: readable by anyone, forgeable by no one.
    pub fn seal<T: Serialize>(&self, purpose: &str, value: &T) -> String {
        let payload = serde_json::to_vec(value).unwrap_or_default();
        let tag = self.mac(purpose, &payload).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// Opens a sealed value if it was sealed by this key for this purpose.
    pub fn open<T: DeserializeOwned>(&self, purpose: &str, sealed: &str) -> Option<T> {
        let (payload, tag) = sealed.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        self.mac(purpose, &payload).verify_slice(&tag).ok()?;
        serde_json::from_slice(&payload).ok()
    }
}

/// What the session cookie holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    /// The signed-in user.
    pub user_id: UserId,
    /// The user's password version at sign-in; a change ends the session.
    pub password_version: u32,
    /// Expiry (Unix seconds).
    pub expires_at: i64,
    /// When the user signed in (Unix seconds; an id_token's `auth_time`). Absent in cookies
    /// from before OpenID Connect: 0, which no `max_age` accepts.
    #[serde(default)]
    pub auth_time: i64,
    /// The session's id (an id_token's `sid`): 128 random bits, base64url. Absent in cookies
    /// from before OpenID Connect.
    #[serde(default)]
    pub sid: String,
    /// The user's sessions epoch at sign-in: an administrator ending the user's sessions
    /// bumps it, which ends this one. Absent in older cookies: 0.
    #[serde(default)]
    pub epoch: u32,
}

/// The signed-in user of a request, if the session is valid and the user unchanged.
pub fn current_user(req: &HttpRequest, state: &AppState, now: i64) -> Option<Arc<UserView>> {
    current_session(req, state, now).map(|(_, user)| user)
}

/// The request's session and its user, if the session is valid and the user unchanged.
pub fn current_session(
    req: &HttpRequest,
    state: &AppState,
    now: i64,
) -> Option<(Session, Arc<UserView>)> {
    let cookie = req.cookie(SESSION_COOKIE)?;
    let session: Session = state.session_key.open("session", cookie.value())?;
    if session.expires_at <= now {
        return None;
    }
    // A session that ended (a logout, here or through a relying party) stays ended, whoever
    // still holds a copy of its cookie.
    if !session.sid.is_empty()
        && state
            .engine
            .models
            .users
            .session_ended(&session.sid)
            .unwrap_or(true)
    {
        return None;
    }
    let user = state.engine.models.users.get(&session.user_id)?;
    // A password change, a locked account or an administrator ending the user's sessions
    // ends this one.
    (user.password_version == session.password_version
        && user.sessions_epoch == session.epoch
        && !user.disabled)
        .then_some((session, user))
}

/// Starts a session for a user who just signed in: records `SessionStarted` (its id is the
/// `sid` of the id_tokens issued in it) and answers the cookie that carries it.
pub async fn start_session(
    req: &HttpRequest,
    state: &AppState,
    user: &UserView,
) -> Result<Cookie<'static>, super::error::OAuthError> {
    use domain::session::SessionCommand;
    let now = state.engine.clock.unix_now();
    let mut sid = [0u8; 16];
    getrandom::getrandom(&mut sid).map_err(|e| super::error::OAuthError::server_error(&e))?;
    let sid = URL_SAFE_NO_PAD.encode(sid);
    let session = Session {
        user_id: user.user_id,
        password_version: user.password_version,
        expires_at: now + i64::from(state.grants.session_ttl_secs),
        auth_time: now,
        sid: sid.clone(),
        epoch: user.sessions_epoch,
    };
    let metadata = super::request_metadata(req, domain::Cause::User(user.user_id.to_string()));
    state
        .engine
        .users()
        .send(crate::actors::ExecuteSessionCommand {
            sid,
            command: SessionCommand::Start {
                sid: session.sid.clone(),
                user_id: user.user_id,
                auth_time: now,
                expires_at: session.expires_at,
            },
            metadata,
        })
        .await
        .map_err(|e| super::error::OAuthError::server_error(&e))?
        .map_err(super::token::command_error)?;
    Ok(session_cookie(state, &session))
}

fn base_cookie(state: &AppState, name: &'static str, value: String) -> Cookie<'static> {
    Cookie::build(name, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.issuer.starts_with("https://"))
        .finish()
}

/// The cookie that carries a session.
fn session_cookie(state: &AppState, session: &Session) -> Cookie<'static> {
    let ttl = i64::from(state.grants.session_ttl_secs);
    let mut c = base_cookie(
        state,
        SESSION_COOKIE,
        state.session_key.seal("session", session),
    );
    c.set_max_age(actix_web::cookie::time::Duration::seconds(ttl));
    c
}

/// The cookie that signs the user out.
pub fn clear_session_cookie(state: &AppState) -> Cookie<'static> {
    let mut c = base_cookie(state, SESSION_COOKIE, String::new());
    c.make_removal();
    c
}

/// The request's CSRF token, and the cookie to set when it has none yet.
pub fn csrf_token(req: &HttpRequest, state: &AppState) -> (String, Option<Cookie<'static>>) {
    if let Some(c) = req.cookie(CSRF_COOKIE) {
        if c.value().len() == 43 {
            return (c.value().to_owned(), None);
        }
    }
    let mut bytes = [0u8; 32];
    // Without randomness, fail closed: an empty token matches no cookie.
    if getrandom::getrandom(&mut bytes).is_err() {
        return (String::new(), None);
    }
    let token = URL_SAFE_NO_PAD.encode(bytes);
    (token.clone(), Some(base_cookie(state, CSRF_COOKIE, token)))
}

/// A page holding a form: rendered with the browser's CSRF token, setting the cookie when the
/// browser has none yet.
pub fn page_with_csrf(
    req: &HttpRequest,
    state: &AppState,
    status: actix_web::http::StatusCode,
    render: impl FnOnce(&str) -> maud::Markup,
) -> actix_web::HttpResponse {
    let (csrf, cookie) = csrf_token(req, state);
    let mut res = super::pages::page(status, render(&csrf));
    if let Some(c) = cookie {
        let _ = res.add_cookie(&c);
    }
    res
}

/// Whether a submitted form carries the CSRF token of its browser's cookie.
pub fn csrf_ok(req: &HttpRequest, submitted: Option<&str>) -> bool {
    match (req.cookie(CSRF_COOKIE), submitted) {
        (Some(c), Some(s)) if c.value().len() == 43 => {
            c.value().as_bytes().ct_eq(s.as_bytes()).into()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_purpose() {
        let dir = tempfile::tempdir().unwrap();
        let key = SessionKey::load_or_create(dir.path()).unwrap();
        let sealed = key.seal("session", &("alice", 7));
        assert_eq!(
            key.open::<(String, u32)>("session", &sealed),
            Some(("alice".into(), 7))
        );
        assert_eq!(key.open::<(String, u32)>("authz", &sealed), None);
        let mut forged = sealed.clone();
        forged.replace_range(0..1, if sealed.starts_with('A') { "B" } else { "A" });
        assert_eq!(key.open::<(String, u32)>("session", &forged), None);
        let again = SessionKey::load_or_create(dir.path()).unwrap();
        assert!(again.open::<(String, u32)>("session", &sealed).is_some());
    }
}
