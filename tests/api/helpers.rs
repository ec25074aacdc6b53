//! Starting the server, calling it, and running the CLI.

use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_authledger");

/// A running server on a temp data directory.
pub struct TestApp {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub base: String,
    pub agent: ureq::Agent,
    pub flags: Vec<String>,
    /// Environment of the server process.
    pub env: Vec<(String, String)>,
    /// When set, the server logs at info level into this file.
    pub log: Option<std::path::PathBuf>,
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

/// Starts the binary on a fresh data directory and waits until it answers.
pub fn spawn_app() -> TestApp {
    spawn_app_with(&[])
}

/// Starts the binary with extra `serve` flags.
pub fn spawn_app_with(flags: &[&str]) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut app = TestApp::on(dir, flags, &[]);
    app.start();
    app
}

/// Starts `serve` on a data directory expecting it to refuse; answers its stderr.
pub fn failed_start(data_dir: &Path, flags: &[&str], env: &[(&str, &str)]) -> String {
    let mut child = Command::new(BIN)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .args(flags)
        .arg("--data-dir")
        .arg(data_dir)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let Some(status) = wait_at_most(&mut child, Duration::from_secs(20)) else {
        panic!("serve started though it should have refused");
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

impl TestApp {
    /// A server not started yet on `dir`, with `serve` flags and environment of its own.
    pub fn on(dir: tempfile::TempDir, flags: &[&str], env: &[(&str, &str)]) -> Self {
        TestApp {
            child: None,
            dir,
            base: String::new(),
            agent: agent(),
            flags: flags.iter().map(|f| f.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            log: None,
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts (or restarts) the server on this data directory.
    pub fn start(&mut self) {
        let server_file = self.data_dir().join("server.json");
        let _ = std::fs::remove_file(&server_file);
        // A restart keeps the address, and so the issuer its JWTs name.
        let bind = match self.base.strip_prefix("http://") {
            Some(addr) => addr.to_owned(),
            None => "127.0.0.1:0".to_owned(),
        };
        let (out, err, level) = match &self.log {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap();
                (
                    Stdio::from(file.try_clone().unwrap()),
                    Stdio::from(file),
                    "info",
                )
            }
            None => (Stdio::null(), Stdio::null(), "warn"),
        };
        // The server says it is ready on NOTIFY_SOCKET, as it would to systemd.
        let ready = Readiness::new();
        let child = Command::new(BIN)
            .args(["serve", "--bind", &bind, "--workers", "2"])
            .args(&self.flags)
            .arg("--data-dir")
            .arg(self.data_dir())
            .env("RUST_LOG", level)
            .env("NOTIFY_SOCKET", &ready.path)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap();
        self.child = Some(child);
        ready.wait(Duration::from_secs(30));
        let text = std::fs::read_to_string(&server_file).expect("server.json of a ready server");
        let v: Value = serde_json::from_str(&text).unwrap();
        self.base = format!("http://{}", v["addr"].as_str().unwrap());
        assert_eq!(self.get("/readyz").0, 200, "a started server is ready");
    }

    /// Stops the server with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id() as i32;
            send_signal(pid, "TERM");
            if wait_at_most(&mut child, Duration::from_secs(20)).is_none() {
                panic!("server did not stop on SIGTERM within 20 s");
            }
        }
    }

    /// Kills the server with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        answer(self.agent.get(&format!("{}{path}", self.base)).call())
    }

    /// POSTs a form with optional Basic credentials.
    pub fn post_form(
        &self,
        path: &str,
        basic: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> (u16, Value) {
        let full = self.post_form_full(path, basic, form);
        (full.0, full.1)
    }

    /// POSTs a form; answers status, body and the WWW-Authenticate header.
    pub fn post_form_full(
        &self,
        path: &str,
        basic: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> (u16, Value, Option<String>, Option<String>) {
        let mut req = self.agent.post(&format!("{}{path}", self.base));
        if let Some((id, secret)) = basic {
            use base64::Engine;
            let cred = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
            req = req.header("Authorization", &format!("Basic {cred}"));
        }
        let mut res = req.send_form(form.iter().copied()).unwrap();
        let status = res.status().as_u16();
        let www = res
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        let cache = res
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = res.body_mut().read_to_string().unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, body, www, cache)
    }

    /// Runs the CLI on this data directory.
    pub fn cli(&self, args: &[&str]) -> Output {
        cli(self.data_dir(), args)
    }

    /// Runs the CLI with `input` on its standard input.
    pub fn cli_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new(BIN)
            .args(args)
            .arg("--data-dir")
            .arg(self.data_dir())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// Registers a user through the CLI; answers its id.
    pub fn create_user(&self, username: &str, password: &str) -> String {
        let out = self.cli_stdin(
            &[
                "user",
                "create",
                "--username",
                username,
                "--password-stdin",
                "--format",
                "json",
            ],
            &format!("{password}\n"),
        );
        assert!(
            out.status.success(),
            "user create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["user_id"].as_str().unwrap().to_owned()
    }

    /// Runs the CLI and parses its stdout as JSON; panics with stderr on failure.
    pub fn cli_json(&self, args: &[&str]) -> Value {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "authledger {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Every recorded event of one type, oldest first, from the audit trail.
    pub fn events(&self, type_name: &str) -> Vec<Value> {
        let v = self.cli_json(&[
            "audit", "query", "--type", type_name, "--format", "json", "--limit", "1000",
        ]);
        v.as_array().unwrap().clone()
    }

    /// The types of a client's events in the trail, oldest first.
    pub fn event_types_of(&self, client: &str) -> Vec<String> {
        self.cli_json(&[
            "audit", "query", "--client", client, "--format", "json", "--limit", "1000",
        ])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
    }

    /// Compacts every expired access token now, in batches of 100; answers the report.
    pub fn compact_expired_tokens(&self) -> Value {
        self.cli_json(&[
            "compact",
            "--class",
            "access-tokens",
            "--older-than",
            "0s",
            "--batch",
            "100",
            "--format",
            "json",
        ])
    }

    /// Creates a confidential client; answers (id, secret).
    pub fn create_client(&self, extra: &[&str]) -> (String, String) {
        let mut args = vec![
            "client",
            "create",
            "--name",
            "test client",
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        let v = self.cli_json(&args);
        (
            v["client_id"].as_str().unwrap().to_owned(),
            v["client_secret"].as_str().unwrap().to_owned(),
        )
    }

    /// Gets a token by client_credentials with Basic authentication.
    pub fn token(&self, id: &str, secret: &str, scope: Option<&str>) -> Value {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        let (status, body) = self.post_form("/token", Some((id, secret)), &form);
        assert_eq!(status, 200, "token request failed: {body}");
        body
    }

    /// An access token of the admin client (scope `admin`), from `admin.json`.
    pub fn admin_token(&self) -> String {
        let text = std::fs::read_to_string(self.data_dir().join("admin.json")).unwrap();
        let cred: Value = serde_json::from_str(&text).unwrap();
        let id = cred["client_id"].as_str().unwrap();
        let secret = cred["client_secret"].as_str().unwrap();
        self.token(id, secret, Some("admin"))["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Moves the server's clock `ms` forward: the server must run with `--test-clock`.
    pub fn advance_clock(&self, ms: u32) {
        self.move_clock(serde_json::json!({ "advance_ms": ms }));
    }

    /// Sets the server's underlying clock `ms` back, as an NTP step would (`--test-clock`).
    pub fn set_back_clock(&self, ms: u32) {
        self.move_clock(serde_json::json!({ "set_back_ms": ms }));
    }

    fn move_clock(&self, body: Value) {
        let r = self
            .agent
            .post(&format!("{}/admin/api/clock", self.base))
            .header("Authorization", &format!("Bearer {}", self.admin_token()))
            .send_json(&body);
        assert!(
            matches!(&r, Ok(resp) if resp.status() == 200),
            "moving the clock ({body}) failed (is the server running with --test-clock?)"
        );
    }

    pub fn introspect(&self, id: &str, secret: &str, token: &str) -> Value {
        let (status, body) = self.post_form("/introspect", Some((id, secret)), &[("token", token)]);
        assert_eq!(status, 200, "introspection failed: {body}");
        body
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends a signal with kill(1): the workspace forbids unsafe code, so no libc::kill.
/// Waits for `child` to exit, at most `limit`; past that kills it and answers `None`.
pub fn wait_at_most(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let pid = child.id() as i32;
    let (exited, watch) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        let late = watch.recv_timeout(limit).is_err();
        if late {
            send_signal(pid, "KILL");
        }
        late
    });
    let status = child.wait().unwrap();
    let _ = exited.send(());
    let late = watchdog.join().unwrap();
    (!late).then_some(status)
}

/// A datagram socket a child is told of in NOTIFY_SOCKET, to hear `READY=1` from it.
pub struct Readiness {
    pub path: std::path::PathBuf,
    socket: std::os::unix::net::UnixDatagram,
}

impl Readiness {
    pub fn new() -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        // Short (a socket path has at most 107 bytes) and unique per test process and server.
        let path = std::env::temp_dir().join(format!(
            "al-ready-{}-{}.sock",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&path);
        let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        Self { path, socket }
    }

    /// Blocks until the child says `READY=1`, at most `limit`.
    pub fn wait(&self, limit: Duration) {
        self.next_ready(limit);
    }

    /// Blocks until the child's next message with `READY=1` (at start, or at the end of a
    /// reload), at most `limit`; answers its `STATUS=`, if it had one.
    pub fn next_ready(&self, limit: Duration) -> Option<String> {
        self.socket.set_read_timeout(Some(limit)).unwrap();
        let mut buf = [0u8; 4096];
        loop {
            match self.socket.recv(&mut buf) {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if text.lines().any(|l| l == "READY=1") {
                        return text
                            .lines()
                            .find_map(|l| l.strip_prefix("STATUS="))
                            .map(str::to_owned);
                    }
                }
                Err(e) => panic!("the server said nothing ready within {limit:?}: {e}"),
            }
        }
    }
}

impl Drop for Readiness {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

pub fn send_signal(pid: i32, name: &str) {
    let _ = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status();
}

pub fn answer(res: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
    let mut res = res.unwrap();
    let status = res.status().as_u16();
    let text = res.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Runs the CLI on a data directory.
pub fn cli(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// The types of the events of an audit query's JSON answer that `admin` caused, in order.
pub fn types_caused_by_admin<'a>(events: &'a Value, admin: &str) -> Vec<&'a str> {
    let cause = serde_json::json!({"kind": "admin", "id": admin});
    events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["metadata"]["caused_by"] == cause)
        .map(|e| e["type"].as_str().unwrap())
        .collect()
}
