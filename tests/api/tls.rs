//! HTTPS of the server's own: the test certificates of `fixtures/tls`, a reload on SIGHUP
//! that drops no connection, HSTS, and the issuer check at start.

use crate::helpers::{failed_start, send_signal, spawn_app_with, Readiness, BIN};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/tls")
        .join(name)
}

fn leaf(name: &str) -> CertificateDer<'static> {
    CertificateDer::pem_file_iter(fixture(name))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection to 127.0.0.1:`port` that trusts only the test CA.
fn connect(port: u16) -> Tls {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(leaf("ca.pem")).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// One HTTP/1.1 GET on an open connection, kept alive; answers status, headers and body.
fn get(stream: &mut Tls, path: &str) -> (u16, Vec<(String, String)>, String) {
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n"
    )
    .unwrap();
    stream.flush().unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status: u16 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap();
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    (status, headers, String::from_utf8(body).unwrap())
}

fn presented(stream: &Tls) -> CertificateDer<'static> {
    stream.conn.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

struct TlsServer {
    child: Child,
    port: u16,
    url: String,
    log: PathBuf,
    /// Where the server tells its service manager it is ready, and how each reload ended.
    ready: Readiness,
    _dir: tempfile::TempDir,
}

impl TlsServer {
    /// Sends SIGHUP and waits for the reload's outcome (systemd's reload protocol).
    fn reload(&self) -> String {
        send_signal(self.child.id() as i32, "HUP");
        self.ready
            .next_ready(Duration::from_secs(10))
            .expect("a reload reports its outcome as STATUS=")
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_tls(dir: tempfile::TempDir, cert: &Path, key: &Path) -> TlsServer {
    let log = dir.path().join("serve.log");
    let file = std::fs::File::create(&log).unwrap();
    let ready = Readiness::new();
    let child = Command::new(BIN)
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--tls-cert",
        ])
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "info")
        .env("NOTIFY_SOCKET", &ready.path)
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file))
        .spawn()
        .unwrap();
    ready.wait(Duration::from_secs(30));
    let info: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("data/server.json")).unwrap(),
    )
    .unwrap();
    let addr = info["addr"].as_str().unwrap();
    TlsServer {
        child,
        port: addr.rsplit(':').next().unwrap().parse().unwrap(),
        url: info["url"].as_str().unwrap().to_owned(),
        log,
        ready,
        _dir: dir,
    }
}

#[test]
fn https_is_served_with_hsts_and_a_sighup_reloads_the_certificate_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::copy(fixture("server-a.pem"), &cert).unwrap();
    std::fs::copy(fixture("server-a.key"), &key).unwrap();
    let server = serve_tls(dir, &cert, &key);
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );

    let mut kept = connect(server.port);
    let (status, headers, _) = get(&mut kept, "/healthz");
    assert_eq!(status, 200);
    assert_eq!(presented(&kept), leaf("server-a.pem"));
    let hsts = headers
        .iter()
        .find(|(k, _)| k == "strict-transport-security");
    assert_eq!(hsts.map(|(_, v)| v.as_str()), Some("max-age=31536000"));
    // The issuer defaults to the https address.
    let (_, _, body) = get(&mut kept, "/.well-known/oauth-authorization-server");
    let meta: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(meta["issuer"], server.url.as_str());

    // Plain HTTP to the TLS port gets no answer in clear.
    let mut plain = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!answer.starts_with(b"HTTP/1.1 200"), "served in clear");

    // Renewal: new files, SIGHUP. New handshakes get the new certificate; the connection
    // already open keeps working.
    std::fs::copy(fixture("server-b.pem"), &cert).unwrap();
    std::fs::copy(fixture("server-b.key"), &key).unwrap();
    assert_eq!(server.reload(), "TLS certificate reloaded");
    let mut fresh = connect(server.port);
    assert_eq!(get(&mut fresh, "/healthz").0, 200);
    assert_eq!(presented(&fresh), leaf("server-b.pem"));
    assert_eq!(
        get(&mut kept, "/healthz").0,
        200,
        "the open connection survived"
    );

    // A botched renewal (a key that is not the certificate's) keeps the working pair.
    std::fs::copy(fixture("server-a.key"), &key).unwrap();
    let status = server.reload();
    assert!(
        status.starts_with("TLS certificate not reloaded") && status.contains("does not belong"),
        "{status}"
    );
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(log.contains("does not belong to the certificate"), "{log}");
    let mut after = connect(server.port);
    assert_eq!(get(&mut after, "/healthz").0, 200);
    assert_eq!(presented(&after), leaf("server-b.pem"));
}

#[test]
fn a_plain_http_issuer_off_this_machine_is_refused_at_start_unless_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let err = failed_start(dir.path(), &["--issuer", "http://auth.example.com"], &[]);
    assert!(
        err.contains("plain http") && err.contains("--insecure-http"),
        "{err}"
    );
    let err = failed_start(dir.path(), &["--issuer", "http://10.0.0.5:8080"], &[]);
    assert!(err.contains("plain http"), "{err}");
    // Behind a proxy that terminates TLS, the operator says so.
    let app = spawn_app_with(&["--issuer", "http://auth.example.com", "--insecure-http"]);
    assert_eq!(app.get("/healthz").0, 200);
    // An unreadable certificate stops the start with the file's name.
    let missing = dir.path().join("missing.pem");
    let err = failed_start(
        dir.path(),
        &[
            "--tls-cert",
            missing.to_str().unwrap(),
            "--tls-key",
            fixture("server-a.key").to_str().unwrap(),
        ],
        &[],
    );
    assert!(err.contains("missing.pem"), "{err}");
    // A server without TLS sends no HSTS (browsers ignore it over HTTP anyway).
    let res = crate::helpers::agent()
        .get(&format!("{}/healthz", app.base))
        .call()
        .unwrap();
    assert!(res.headers().get("strict-transport-security").is_none());
}
