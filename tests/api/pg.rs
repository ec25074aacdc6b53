//! A PostgreSQL for the tests that need one: `AUTHLEDGER_TEST_DATABASE_URL` when set (a
//! server of your own, whose role may create databases), else a private cluster this test
//! process creates in a temporary directory with the installed `initdb` and `pg_ctl`, and
//! stops when it exits. Each test gets a database of its own. Without PostgreSQL the tests
//! fail and say how to get one; they never skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The variable that names a server to use instead of a private cluster.
pub const URL_ENV: &str = "AUTHLEDGER_TEST_DATABASE_URL";

pub struct Cluster {
    /// Base URL without a database name.
    base: String,
    psql: PathBuf,
    /// For a private cluster: how to stop and start it again.
    control: Option<Control>,
}

struct Control {
    pg_ctl: PathBuf,
    data: PathBuf,
    options: String,
    log: PathBuf,
    root: bool,
}

impl Cluster {
    /// A cluster of this test's own (to stop and start under load), with one database.
    pub fn private() -> (Cluster, String) {
        let c = start_private().unwrap_or_else(|e| panic!("starting a private PostgreSQL: {e}"));
        let url = format!("{}/postgres", c.base);
        (c, url)
    }

    fn pg_ctl(&self, action: &str) {
        let c = self.control.as_ref().expect("a private cluster");
        let out = as_owner(&c.pg_ctl, c.root)
            .args(["-w", "-t", "60", "-m", "fast", "-D"])
            .arg(&c.data)
            .args(["-o", &c.options, "-l"])
            .arg(&c.log)
            .arg(action)
            .stdout(Stdio::null())
            .output()
            .expect("running pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the server (fast shutdown: sessions are cut).
    pub fn stop(&self) {
        self.pg_ctl("stop");
    }

    /// Starts it again on the same port.
    pub fn start(&self) {
        self.pg_ctl("start");
    }
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

fn bin_dir() -> Result<PathBuf, String> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if dir.join("initdb").exists() {
                return Ok(dir);
            }
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists())
        .collect();
    found.sort();
    found
        .pop()
        .ok_or_else(|| "no initdb under /usr/lib/postgresql".into())
}

/// Runs a PostgreSQL program as the user that owns the cluster: `postgres` when the tests
/// run as root (initdb refuses root), else the current user.
fn as_owner(program: &Path, root: bool) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn start_private() -> Result<Cluster, String> {
    let bin = bin_dir()?;
    let root = rustix::process::geteuid().is_root();
    let dir = tempfile::Builder::new()
        .prefix("authledger-pg-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    if root {
        let chown = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .map_err(|e| e.to_string())?;
        if !chown.success() {
            return Err("chown of the cluster directory to postgres failed".into());
        }
    }
    let data = dir.join("data");
    let init = as_owner(&bin.join("initdb"), root)
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            "-D",
        ])
        .arg(&data)
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("running initdb: {e}"))?;
    if !init.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr)
        ));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let options = format!(
        "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=on -c max_connections=200 \
         -c idle_in_transaction_session_timeout=60000",
        dir.display()
    );
    let start = as_owner(&bin.join("pg_ctl"), root)
        .args(["-w", "-t", "60", "-D"])
        .arg(&data)
        .args(["-o", &options, "-l"])
        .arg(dir.join("log"))
        .arg("start")
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("running pg_ctl: {e}"))?;
    if !start.status.success() {
        return Err(format!(
            "pg_ctl start failed: {}{}",
            String::from_utf8_lossy(&start.stderr),
            std::fs::read_to_string(dir.join("log")).unwrap_or_default()
        ));
    }
    // The cluster goes when this process does: a watcher stops it once our pid is gone.
    let pg_ctl = bin.join("pg_ctl");
    let stop = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {runuser}{pg_ctl} -D {data} -m immediate stop; rm -rf {dir}",
        pid = std::process::id(),
        runuser = if root { "runuser -u postgres -- " } else { "" },
        pg_ctl = pg_ctl.display(),
        data = data.display(),
        dir = dir.display(),
    );
    Command::new("sh")
        .args(["-c", &stop])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    Ok(Cluster {
        base: format!("postgres://postgres@127.0.0.1:{port}"),
        psql: bin.join("psql"),
        control: Some(Control {
            pg_ctl: bin.join("pg_ctl"),
            data,
            options,
            log: dir.join("log"),
            root,
        }),
    })
}

fn cluster() -> &'static Cluster {
    let made = CLUSTER.get_or_init(|| match std::env::var(URL_ENV) {
        Ok(url) => {
            let base = match url.rfind('/') {
                Some(i) if i > "postgres://".len() => url[..i].to_owned(),
                _ => url.clone(),
            };
            Ok(Cluster {
                base,
                psql: bin_dir()
                    .map(|b| b.join("psql"))
                    .unwrap_or_else(|_| "psql".into()),
                control: None,
            })
        }
        Err(_) => start_private(),
    });
    match made {
        Ok(c) => c,
        Err(e) => panic!(
            "this test needs PostgreSQL and could not start a private cluster: {e}. Install \
             PostgreSQL (Debian: apt-get install postgresql; scripts/test.sh does so), or set \
             {URL_ENV}=postgres://user@host:port/db to a server whose role may create databases"
        ),
    }
}

/// Runs SQL on the cluster's `postgres` database (or `db`) with psql; panics with its error.
pub fn psql(db: &str, sql: &str) -> String {
    let c = cluster();
    let out = Command::new(&c.psql)
        .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(format!("{}/{db}", c.base))
        .args(["-c", sql])
        .output()
        .expect("running psql");
    assert!(
        out.status.success(),
        "psql {sql:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A fresh, empty database: its URL.
pub fn database() -> String {
    let name = format!("t_{}", uuid::Uuid::now_v7().simple());
    psql("postgres", &format!("CREATE DATABASE {name}"));
    format!("{}/{name}", cluster().base)
}
