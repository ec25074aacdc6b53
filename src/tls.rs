//! HTTPS of the server's own (`serve --tls-cert --tls-key`), with rustls on aws-lc-rs.
//!
//! The certificate chain and key are PEM files. SIGHUP reads them again: new handshakes get
//! the new pair, and connections already open keep theirs, so nothing is dropped. A pair
//! that fails to load (unreadable, not PEM, a key that does not match the certificate)
//! leaves the old one serving and is logged: a botched renewal must not take the server down.

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Where the certificate chain and its key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The pair the server presents, replaced on reload.
#[derive(Debug)]
pub struct ReloadingCert {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn load(files: &TlsFiles) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain = read_chain(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        anyhow::anyhow!(
            "reading the TLS key {}: {e}; it must be a PEM private key (PKCS#8, PKCS#1 or SEC1)",
            files.key.display()
        )
    })?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .with_context(|| format!("the TLS key {} is not a usable key", files.key.display()))?;
    let pair = CertifiedKey::new(chain, signing);
    pair.keys_match().map_err(|e| {
        anyhow::anyhow!(
            "the TLS key {} does not belong to the certificate {} ({e})",
            files.key.display(),
            files.cert.display()
        )
    })?;
    Ok(Arc::new(pair))
}

fn read_chain(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("reading the TLS certificate {}: {e}", path.display()))?;
    if chain.is_empty() {
        anyhow::bail!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        );
    }
    Ok(chain)
}

impl ReloadingCert {
    /// Loads the pair; the server does not start without a good one.
    pub fn load(files: TlsFiles) -> anyhow::Result<Arc<Self>> {
        let current = RwLock::new(load(&files)?);
        Ok(Arc::new(Self { files, current }))
    }

    /// Reads the files again; on failure the old pair stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let pair = load(&self.files)?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = pair;
        Ok(())
    }

    /// The rustls configuration that serves this pair (TLS 1.2 and 1.3, HTTP/1.1).
    pub fn server_config(self: &Arc<Self>) -> anyhow::Result<rustls::ServerConfig> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .context("setting up TLS")?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }
}

/// Whether `issuer` may be served over plain HTTP without `--insecure-http`: only when its
/// host is this machine (a loopback literal or `localhost`).
pub fn plain_http_allowed(issuer: &str) -> bool {
    let Ok(url) = url::Url::parse(issuer) else {
        return false;
    };
    if url.scheme() != "http" {
        return true;
    }
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/tls")
            .join(name)
    }

    #[test]
    fn a_matching_pair_loads_and_a_mismatched_one_is_refused_with_the_reason() {
        let good = TlsFiles {
            cert: fixture("server-a.pem"),
            key: fixture("server-a.key"),
        };
        let cert = ReloadingCert::load(good).unwrap();
        assert!(cert.server_config().is_ok());
        let mixed = TlsFiles {
            cert: fixture("server-a.pem"),
            key: fixture("server-b.key"),
        };
        let err = ReloadingCert::load(mixed).unwrap_err().to_string();
        assert!(err.contains("does not belong"), "{err}");
        let not_pem = TlsFiles {
            cert: fixture("README.md"),
            key: fixture("server-a.key"),
        };
        let err = ReloadingCert::load(not_pem).unwrap_err().to_string();
        assert!(err.contains("no PEM certificate"), "{err}");
    }

    #[test]
    fn plain_http_is_for_this_machine_only() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://[::1]:9",
            "http://localhost",
            "https://auth.example.com",
        ] {
            assert!(plain_http_allowed(ok), "{ok}");
        }
        for refused in [
            "http://auth.example.com",
            "http://10.0.0.5",
            "http://0.0.0.0:80",
        ] {
            assert!(!plain_http_allowed(refused), "{refused}");
        }
    }
}
