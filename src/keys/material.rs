//! Key material: generating RS256, ES256 and EdDSA keys (aws-lc-rs), reading them from PKCS#8
//! DER or PEM files (plain or passphrase-encrypted PKCS#8, PKCS#1 RSA, SEC1 EC), and the
//! public JWK, kid, jsonwebtoken verification key and parsed signer of each.

use super::KeyError;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    RSA_PKCS1_SHA256,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use domain::values::SigningAlgorithm;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::path::Path;
use zeroize::Zeroizing;

/// A private key as PKCS#8 DER, wiped from memory when dropped.
pub type PrivateDer = Zeroizing<Vec<u8>>;

/// One signing key: what verifies its tokens, and, when the private half is at hand, what
/// signs them.
pub struct KeyMaterial {
    /// Key id: the RFC 7638 SHA-256 thumbprint of the public key.
    pub kid: String,
    /// Its algorithm.
    pub algorithm: SigningAlgorithm,
    /// The public JWK, with `kid`, `use` and `alg`.
    pub jwk: serde_json::Value,
    /// Verifies.
    pub decoding: DecodingKey,
    /// Signs; none for a key whose private half is not here.
    pub signer: Option<Signer>,
}

/// A private key parsed once, when it is loaded. jsonwebtoken's `EncodingKey` keeps the DER
/// and parses it again for every signature: for RSA-2048 that check costs about a fifth of
/// the signature itself, for ES256 more than the signature (ADR 0013).
pub enum Signer {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RS256).
    Rsa(RsaKeyPair),
    /// ECDSA P-256 with SHA-256, the fixed `r || s` form JWS asks for (ES256).
    Ecdsa(EcdsaKeyPair),
    /// Ed25519 (EdDSA).
    Ed25519(Ed25519KeyPair),
}

impl Signer {
    /// The JWS signature over `message` (the `header.payload` signing input).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let failed = |_| KeyError::Sign("the signature failed".into());
        match self {
            Signer::Rsa(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    message,
                    &mut signature,
                )
                .map_err(failed)?;
                Ok(signature)
            }
            Signer::Ecdsa(pair) => Ok(pair
                .sign(&SystemRandom::new(), message)
                .map_err(failed)?
                .as_ref()
                .to_vec()),
            Signer::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }
}

/// The jsonwebtoken algorithm of ours.
pub fn jwt_algorithm(alg: SigningAlgorithm) -> Algorithm {
    match alg {
        SigningAlgorithm::RS256 => Algorithm::RS256,
        SigningAlgorithm::ES256 => Algorithm::ES256,
        SigningAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}

fn invalid(e: impl std::fmt::Display) -> KeyError {
    KeyError::Invalid(e.to_string())
}

/// Makes a new key pair.
pub fn generate(alg: SigningAlgorithm) -> Result<(KeyMaterial, PrivateDer), KeyError> {
    let der: PrivateDer = match alg {
        SigningAlgorithm::RS256 => {
            let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(invalid)?;
            let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).map_err(invalid)?;
            Zeroizing::new(der.as_ref().to_vec())
        }
        SigningAlgorithm::ES256 => {
            let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(invalid)?;
            Zeroizing::new(pair.to_pkcs8v1().map_err(invalid)?.as_ref().to_vec())
        }
        SigningAlgorithm::EdDSA => {
            let pair = Ed25519KeyPair::generate().map_err(invalid)?;
            Zeroizing::new(pair.to_pkcs8().map_err(invalid)?.as_ref().to_vec())
        }
    };
    let material = from_pkcs8(alg, &der)?;
    Ok((material, der))
}

/// Loads a PKCS#8 DER private key of `alg`.
pub fn from_pkcs8(alg: SigningAlgorithm, der: &[u8]) -> Result<KeyMaterial, KeyError> {
    let (public, signer) = match alg {
        SigningAlgorithm::RS256 => {
            let pair = RsaKeyPair::from_pkcs8(der).map_err(invalid)?;
            if pair.public_modulus_len() < 256 {
                return Err(KeyError::Invalid(
                    "RSA keys must have at least 2048 bits".into(),
                ));
            }
            let public = pair.public_key();
            let n = public.modulus().big_endian_without_leading_zero().to_vec();
            let e = public.exponent().big_endian_without_leading_zero().to_vec();
            (
                serde_json::json!({ "kty": "RSA", "n": b64(&n), "e": b64(&e) }),
                Signer::Rsa(pair),
            )
        }
        SigningAlgorithm::ES256 => {
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).map_err(invalid)?;
            let point = pair.public_key().as_ref();
            if point.len() != 65 || point[0] != 4 {
                return Err(KeyError::Invalid(
                    "EC public key is not an uncompressed P-256 point".into(),
                ));
            }
            let public = serde_json::json!({
                "kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..]),
            });
            (public, Signer::Ecdsa(pair))
        }
        SigningAlgorithm::EdDSA => {
            let pair = Ed25519KeyPair::from_pkcs8(der).map_err(invalid)?;
            let public = serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref()),
            });
            (public, Signer::Ed25519(pair))
        }
    };
    let mut material = public_only(alg, public)?;
    material.signer = Some(signer);
    Ok(material)
}

/// A key whose private half is elsewhere, from its public JWK (members beyond the key's own
/// are ignored; `kid`, `use` and `alg` are set from the thumbprint and `alg`).
pub fn public_only(
    alg: SigningAlgorithm,
    public: serde_json::Value,
) -> Result<KeyMaterial, KeyError> {
    let mut jwk: serde_json::Value = match public.get("kty").and_then(|k| k.as_str()) {
        Some("RSA") => serde_json::json!({ "kty": "RSA", "n": public["n"], "e": public["e"] }),
        Some("EC") => serde_json::json!({
            "kty": "EC", "crv": public["crv"], "x": public["x"], "y": public["y"],
        }),
        Some("OKP") => serde_json::json!({ "kty": "OKP", "crv": public["crv"], "x": public["x"] }),
        _ => return Err(KeyError::Invalid("unsupported public key type".into())),
    };
    let parsed: Jwk = serde_json::from_value(jwk.clone()).map_err(invalid)?;
    let kid = parsed.thumbprint(ThumbprintHash::SHA256).map_err(invalid)?;
    let decoding = DecodingKey::from_jwk(&parsed).map_err(invalid)?;
    jwk["kid"] = kid.clone().into();
    jwk["use"] = "sig".into();
    jwk["alg"] = alg.as_str().into();
    Ok(KeyMaterial {
        kid,
        algorithm: alg,
        jwk,
        decoding,
        signer: None,
    })
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Reads a private key from a PEM file: PKCS#8 (`PRIVATE KEY`), passphrase-encrypted PKCS#8
/// (`ENCRYPTED PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`). The
/// algorithm follows from the key: RSA → RS256, P-256 → ES256, Ed25519 → EdDSA.
pub fn from_pem_file(
    path: &Path,
    passphrase: Option<&str>,
) -> Result<(KeyMaterial, PrivateDer), KeyError> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.display().to_string(),
            source,
        })?,
    );
    let at = |why: String| KeyError::Invalid(format!("{}: {why}", path.display()));
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(at(
            "this is a legacy OpenSSL-encrypted PEM; convert it to encrypted \
             PKCS#8 with `openssl pkcs8 -topk8 -v2 aes-256-cbc -in OLD -out NEW`"
                .into(),
        ));
    }
    let (label, der) =
        pem_rfc7468::decode_vec(text.trim().as_bytes()).map_err(|e| at(format!("not PEM: {e}")))?;
    let der = Zeroizing::new(der);
    let pkcs8: PrivateDer = match label {
        "PRIVATE KEY" => der,
        "ENCRYPTED PRIVATE KEY" => {
            let Some(pass) = passphrase else {
                return Err(at(
                    "the key is encrypted: give its passphrase with --private-key-passphrase \
                     (or AUTHLEDGER_PRIVATE_KEY_PASSPHRASE)"
                        .into(),
                ));
            };
            let info = pkcs8::EncryptedPrivateKeyInfo::try_from(der.as_slice())
                .map_err(|e| at(format!("not an encrypted PKCS#8 key: {e}")))?;
            let doc = info
                .decrypt(pass.as_bytes())
                .map_err(|_| at("the passphrase does not decrypt this key".into()))?;
            Zeroizing::new(doc.as_bytes().to_vec())
        }
        "RSA PRIVATE KEY" => {
            let pair = RsaKeyPair::from_der(&der).map_err(|e| at(e.to_string()))?;
            let doc = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair)
                .map_err(|e| at(e.to_string()))?;
            Zeroizing::new(doc.as_ref().to_vec())
        }
        "EC PRIVATE KEY" => {
            let pair = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                .map_err(|e| at(format!("only P-256 EC keys are supported: {e}")))?;
            Zeroizing::new(
                pair.to_pkcs8v1()
                    .map_err(|e| at(e.to_string()))?
                    .as_ref()
                    .to_vec(),
            )
        }
        other => return Err(at(format!("a {other:?} PEM block is not a private key"))),
    };
    let alg = algorithm_of(&pkcs8).map_err(|e| at(e.to_string()))?;
    let material = from_pkcs8(alg, &pkcs8).map_err(|e| at(e.to_string()))?;
    Ok((material, pkcs8))
}

/// The algorithm a PKCS#8 key is for, from its algorithm identifier.
fn algorithm_of(der: &[u8]) -> Result<SigningAlgorithm, KeyError> {
    const RSA: &str = "1.2.840.113549.1.1.1";
    const EC: &str = "1.2.840.10045.2.1";
    const P256: &str = "1.2.840.10045.3.1.7";
    const ED25519: &str = "1.3.101.112";
    let info = pkcs8::PrivateKeyInfo::try_from(der).map_err(invalid)?;
    let oid = info.algorithm.oid.to_string();
    match oid.as_str() {
        RSA => Ok(SigningAlgorithm::RS256),
        ED25519 => Ok(SigningAlgorithm::EdDSA),
        EC => {
            let curve = info
                .algorithm
                .parameters_oid()
                .map(|o| o.to_string())
                .unwrap_or_default();
            if curve == P256 {
                Ok(SigningAlgorithm::ES256)
            } else {
                Err(KeyError::Invalid(format!(
                    "EC curve {curve} is not supported; use P-256"
                )))
            }
        }
        other => Err(KeyError::Invalid(format!(
            "key algorithm {other} is not supported; use RSA, P-256 or Ed25519"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_of_every_algorithm_reload_with_the_same_kid() {
        for alg in SigningAlgorithm::ALL {
            let (key, der) = generate(alg).unwrap();
            let again = from_pkcs8(alg, &der).unwrap();
            assert_eq!(key.kid, again.kid, "{alg}");
            assert_eq!(key.jwk["alg"], alg.as_str());
            assert_eq!(algorithm_of(&der).unwrap(), alg);
            assert!(key.jwk.get("d").is_none());
        }
    }
}
