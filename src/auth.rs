//! Passwords (argon2id), session tokens, failed-login back-off and the request extractor that
//! enforces roles server-side.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::config::AuthConfig;
use crate::domain::{now_ms, Role, User};
use crate::error::ApiError;
use crate::server::AppState;
use crate::store::FailedLogins;

pub const SESSION_COOKIE: &str = "hub_session";
pub const MIN_PASSWORD_CHARS: usize = 8;

/// Hashes a password with argon2id and a random salt (PHC string). CPU-heavy: call off the
/// async runtime (`spawn_blocking`).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hash: {e}"))?
        .to_string())
}

pub fn verify_password(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash no password matches, verified for unknown usernames so that a login attempt takes
/// the same time whether or not the user exists.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let mut random = [0u8; 24];
        rand::rng().fill_bytes(&mut random);
        hash_password(&hex(&random)).unwrap_or_default()
    })
}

pub fn check_password_policy(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "password must have at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    if password.len() > 1024 {
        return Err("password is longer than 1024 bytes".into());
    }
    Ok(())
}

pub fn check_username(username: &str) -> Result<(), String> {
    let ok = !username.is_empty()
        && username.len() <= 64
        && username
            .chars()
            .all(|c| c.is_alphanumeric() || "._-@".contains(c));
    if ok {
        Ok(())
    } else {
        Err("username: 1-64 letters, digits or . _ - @".into())
    }
}

/// Lower-case hex of some bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random session token and the hash under which it is stored (the token itself never is).
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = hex(&bytes);
    let hash = token_hash(&token);
    (token, hash)
}

pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Seconds the account stays locked, if it is.
pub fn locked_for(state: FailedLogins, now: i64) -> Option<i64> {
    (state.locked_until > now).then(|| (state.locked_until - now + 999) / 1000)
}

/// The back-off after one more failed login: the first `max_failed_logins` failures are free,
/// then each failure locks the account for `lockout_base_secs`, doubling up to
/// `lockout_max_secs`. A quiet period as long as the longest lock-out forgives old failures.
pub fn after_failure(prev: FailedLogins, now: i64, cfg: &AuthConfig) -> FailedLogins {
    let forgotten = now - prev.last_failure_at > cfg.lockout_max_secs.max(60) * 1000;
    let failures = if forgotten { 1 } else { prev.failures + 1 };
    let over = failures - cfg.max_failed_logins;
    let locked_until = if over >= 0 {
        let secs = cfg
            .lockout_base_secs
            .saturating_mul(1i64 << over.min(30))
            .min(cfg.lockout_max_secs);
        now + secs * 1000
    } else {
        0
    };
    FailedLogins {
        failures,
        locked_until,
        last_failure_at: now,
    }
}

/// The logged-in user of a request, from `Authorization: Bearer` or the session cookie.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user: User,
    pub token_hash: String,
}

impl AuthUser {
    /// Refuses the request unless the user has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.user.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the role {}; you are {}",
                roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(" or "),
                self.user.role
            )))
        }
    }
}

/// The token a request carries, bearer first.
pub fn request_token(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get(axum::http::header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        return v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .map(|t| t.trim().to_string());
    }
    for v in headers.get_all(axum::http::header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for pair in v.split(';') {
            if let Some((k, val)) = pair.trim().split_once('=') {
                if k == SESSION_COOKIE && !val.is_empty() {
                    return Some(val.to_string());
                }
            }
        }
    }
    None
}

/// The user a request's token or cookie belongs to.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<AuthUser, ApiError> {
    let token = request_token(headers).ok_or_else(ApiError::unauthorized)?;
    if token.len() != 64 {
        return Err(ApiError::unauthorized());
    }
    let hash = token_hash(&token);
    match state.store.session_user(&hash, now_ms()).await? {
        Some((user, _expires)) => Ok(AuthUser {
            user,
            token_hash: hash,
        }),
        None => Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "session_expired",
            "the session has expired or was logged out; log in again",
        )),
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authenticate(state, &parts.headers).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "correct horse"));
        assert!(!verify_password(&h, "wrong horse"));
        assert!(!verify_password("garbage", "correct horse"));
        assert_ne!(h, hash_password("correct horse").unwrap(), "salted");
    }

    #[test]
    fn back_off_grows_then_is_forgiven() {
        let cfg = AuthConfig::default(); // 5 free, 30 s doubling to 900 s
        let mut s = FailedLogins::default();
        let t0 = 1_000_000_000_000;
        for i in 0..4 {
            s = after_failure(s, t0 + i, &cfg);
            assert_eq!(locked_for(s, t0 + i), None);
        }
        s = after_failure(s, t0 + 10, &cfg);
        assert_eq!(locked_for(s, t0 + 10), Some(30));
        s = after_failure(s, t0 + 20, &cfg);
        assert_eq!(locked_for(s, t0 + 20), Some(60));
        for _ in 0..10 {
            s = after_failure(s, t0 + 30, &cfg);
        }
        assert_eq!(locked_for(s, t0 + 30), Some(900), "capped");
        let later = t0 + 30 + 901_000;
        assert_eq!(locked_for(s, later), None);
        s = after_failure(s, later + 1000, &cfg);
        assert_eq!(s.failures, 1, "a quiet period forgives old failures");
    }

    #[test]
    fn tokens_are_random_and_stored_hashed() {
        let (a, ha) = new_token();
        let (b, _) = new_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(ha, token_hash(&a));
        assert_ne!(ha, a);
    }
}
