//! The key-encryption key (KEK): AES-256-GCM over every private signing key in the log.
//!
//! It comes from `AUTHLEDGER_ENCRYPTION_KEY` (32 bytes, base64 or hex) or, when that is not
//! set, from `encryption.key` in the data directory (created 0600 on a fresh one). Keeping it
//! apart from the log means a copy of the log (a backup, a replica, an export) holds no usable
//! private key.

use super::KeyError;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use domain::event::EncryptedPrivateKey;
use domain::values::HashKey;
use hmac::Hmac;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// File of the KEK in the data directory.
pub const KEK_FILE: &str = "encryption.key";
/// Environment variable that supplies the KEK instead of the file.
pub const KEK_ENV: &str = "AUTHLEDGER_ENCRYPTION_KEY";

/// The key-encryption key.
pub struct Kek {
    /// The first 16 hex digits of a SHA-256 over it; safe to record.
    id: String,
    key: LessSafeKey,
    /// The key of the hashes at rest, derived from this one.
    hash_key: HashKey,
    /// Where it came from, for error messages.
    source: String,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kek")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn decode_key(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let text = text.trim();
    let decoded = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
            .collect::<Option<Vec<u8>>>()
    } else {
        [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|e| e.decode(text).ok())
    };
    decoded.filter(|k| k.len() == 32).map(Zeroizing::new)
}

/// The hash key: HMAC-SHA-256 of the KEK over a fixed label (a one-block KDF in counter mode,
/// NIST SP 800-108), so the KEK itself never keys two primitives and every node that shares
/// the KEK hashes alike.
fn derive_hash_key(kek: &[u8]) -> HashKey {
    // A KEK is 32 bytes; HMAC zero-pads a short key to the block size (RFC 2104 §2), and a
    // block-sized key goes through the constructor that cannot fail.
    let mut block = Zeroizing::new([0u8; 64]);
    let n = kek.len().min(64);
    block[..n].copy_from_slice(&kek[..n]);
    let mut mac = <Hmac<Sha256> as hmac::digest::KeyInit>::new(&(*block).into());
    hmac::Mac::update(&mut mac, b"\x01authledger hashes at rest v1\x00\x01\x00");
    HashKey::new(&hmac::Mac::finalize(mac).into_bytes().into())
}

impl Kek {
    fn from_bytes(bytes: &[u8], source: String) -> Result<Self, KeyError> {
        let mut h = Sha256::new();
        h.update(b"authledger-kek-id\0");
        h.update(bytes);
        let id = h.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let key = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| KeyError::Kek(format!("{source}: not a 256-bit key")))?;
        Ok(Self {
            id,
            key: LessSafeKey::new(key),
            hash_key: derive_hash_key(bytes),
            source,
        })
    }

    /// The KEK of a data directory: from the environment value when given, else from the
    /// file; `None` when neither exists.
    pub fn load(data_dir: &Path, env: Option<&str>) -> Result<Option<Self>, KeyError> {
        if let Some(value) = env.filter(|v| !v.trim().is_empty()) {
            let bytes = decode_key(value).ok_or_else(|| {
                KeyError::Kek(format!(
                    "{KEK_ENV} must be 32 bytes, base64 or 64 hex digits (e.g. from \
                     `openssl rand -base64 32`)"
                ))
            })?;
            return Self::from_bytes(&bytes, KEK_ENV.into()).map(Some);
        }
        let path = data_dir.join(KEK_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => Zeroizing::new(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(KeyError::Io {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        check_private(&path)?;
        let bytes = decode_key(&text).ok_or_else(|| {
            KeyError::Kek(format!(
                "{} does not hold a 32-byte key in base64",
                path.display()
            ))
        })?;
        Self::from_bytes(&bytes, path.display().to_string()).map(Some)
    }

    /// Creates a fresh KEK file (0600) in the data directory.
    pub fn create(data_dir: &Path) -> Result<Self, KeyError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::getrandom(bytes.as_mut()).map_err(|e| KeyError::Kek(e.to_string()))?;
        let path: PathBuf = data_dir.join(KEK_FILE);
        let text = Zeroizing::new(format!("{}\n", URL_SAFE_NO_PAD.encode(bytes.as_ref())));
        crate::fsutil::write_private(&path, text.as_bytes()).map_err(|source| KeyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(bytes.as_ref(), path.display().to_string())
    }

    /// The key under which tokens, codes and secrets are hashed at rest.
    pub fn hash_key(&self) -> HashKey {
        self.hash_key.clone()
    }

    /// Encrypts a private key; the kid is bound as associated data, so a ciphertext cannot be
    /// passed off as another key's.
    pub fn seal(&self, kid: &str, plaintext: &[u8]) -> Result<EncryptedPrivateKey, KeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::getrandom(&mut nonce).map_err(|e| KeyError::Kek(e.to_string()))?;
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kid.as_bytes()),
                &mut buf,
            )
            .map_err(|_| KeyError::Kek("encrypting a private key failed".into()))?;
        Ok(EncryptedPrivateKey {
            kek_id: self.id.clone(),
            nonce: URL_SAFE_NO_PAD.encode(nonce),
            ciphertext: URL_SAFE_NO_PAD.encode(&buf),
        })
    }

    /// Decrypts a private key sealed by [`Kek::seal`].
    pub fn open(
        &self,
        kid: &str,
        sealed: &EncryptedPrivateKey,
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        if sealed.kek_id != self.id {
            return Err(KeyError::Kek(format!(
                "signing key {kid} was encrypted under key-encryption key {}, but {} holds \
                 key-encryption key {}: set {KEK_ENV} to the key used before, or restore \
                 {KEK_FILE} from your backup",
                sealed.kek_id, self.source, self.id
            )));
        }
        let nonce: [u8; NONCE_LEN] = URL_SAFE_NO_PAD
            .decode(&sealed.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| KeyError::Kek(format!("signing key {kid}: malformed nonce")))?;
        let mut buf = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(&sealed.ciphertext)
                .map_err(|_| KeyError::Kek(format!("signing key {kid}: malformed ciphertext")))?,
        );
        let len = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kid.as_bytes()),
                buf.as_mut(),
            )
            .map_err(|_| {
                KeyError::Kek(format!(
                    "signing key {kid} does not decrypt: the log entry was altered"
                ))
            })?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

/// Refuses a KEK file others can read, as ssh refuses such a private key.
fn check_private(path: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|source| KeyError::Io {
            path: path.display().to_string(),
            source,
        })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(KeyError::Kek(format!(
            "{} is readable by others (mode {:o}); run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_key_opens_only_with_its_kek_and_kid() {
        let dir = tempfile::tempdir().unwrap();
        let kek = Kek::create(dir.path()).unwrap();
        let sealed = kek.seal("k1", b"private").unwrap();
        assert!(!sealed.ciphertext.contains("private"));
        let again = Kek::load(dir.path(), None).unwrap().unwrap();
        assert_eq!(again.open("k1", &sealed).unwrap().as_slice(), b"private");
        assert!(again.open("k2", &sealed).is_err());
        let other = Kek::load(dir.path(), Some(&"ab".repeat(32)))
            .unwrap()
            .unwrap();
        let err = other.open("k1", &sealed).unwrap_err().to_string();
        assert!(err.contains(KEK_ENV), "{err}");
        let mut tampered = sealed.clone();
        tampered.ciphertext.replace_range(
            0..1,
            if sealed.ciphertext.starts_with('A') {
                "B"
            } else {
                "A"
            },
        );
        assert!(again
            .open("k1", &tampered)
            .unwrap_err()
            .to_string()
            .contains("altered"));
    }

    #[test]
    fn a_malformed_environment_key_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let err = Kek::load(dir.path(), Some("short"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("32 bytes"), "{err}");
        assert!(Kek::load(dir.path(), None).unwrap().is_none());
    }
}
