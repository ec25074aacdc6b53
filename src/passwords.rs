//! User passwords: argon2id (RFC 9106) with the `argon2` crate's defaults (19 MiB, t=2, p=1,
//! OWASP's recommended minimum), stored as PHC strings. Hashing costs tens of milliseconds of
//! CPU on purpose, so callers run it on a blocking thread.

use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use domain::values::PasswordHash;
use std::sync::OnceLock;

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest password accepted (argon2 takes any length; this bounds the work per attempt).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Too short or too long.
    #[error("a password must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters")]
    Length,
    /// The hasher failed.
    #[error("hashing the password failed: {0}")]
    Hash(String),
}

/// Hashes a new password with a fresh random salt.
pub fn hash(password: &str) -> Result<PasswordHash, PasswordError> {
    let len = password.chars().count();
    if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&len) {
        return Err(PasswordError::Length);
    }
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    let phc = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| PasswordError::Hash(e.to_string()))?
        .to_string();
    PasswordHash::parse(&phc).map_err(|e| PasswordError::Hash(e.0))
}

/// Verifies a password against a stored hash (argon2's comparison is constant-time).
pub fn verify(password: &str, stored: &PasswordHash) -> bool {
    if password.len() > MAX_PASSWORD_LEN * 4 {
        return false;
    }
    let Ok(parsed) = argon2::password_hash::PasswordHash::new(stored.as_str()) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Spends the time of a verification for a name no user has, so that response times do not
/// tell which usernames exist.
pub fn verify_nobody(password: &str) {
    static DUMMY: OnceLock<Option<PasswordHash>> = OnceLock::new();
    if let Some(h) = DUMMY.get_or_init(|| hash("not-a-real-password").ok()) {
        let _ = verify(password, h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only_and_is_argon2id() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.as_str().starts_with("$argon2id$v=19$"));
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterY", &h));
        assert_ne!(hash("correct horse battery").unwrap(), h, "salted");
        assert!(matches!(hash("short"), Err(PasswordError::Length)));
    }
}
