//! Helpers of the bad-input suite: the case files of `tests/bad-input/`, the service
//! binaries built once, and long-running service processes that must stay alive.

#![allow(dead_code, unreachable_pub)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use specaudit_tests::TestEnv;

/// `tests/bad-input/`.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bad-input")
}

/// A case file of `tests/bad-input/`.
pub fn cases<T: DeserializeOwned>(file: &str) -> T {
    let path = data_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Bytes from hex digits; spaces are ignored.
pub fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).expect("ascii"), 16).expect("hex digits"))
        .collect()
}

const BINARIES: [&str; 5] = ["specctl", "specaudit-sidecar", "specaudit-ingester", "specaudit-alarmer", "specaudit-reporter"];

/// The path of a service binary, all of them built from the current sources once per
/// test process.
pub fn bin(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut command = Command::new(cargo);
        // Without what cargo sets for a running test (package variables, the library
        // path): build scripts that watch them would make this build and the next
        // `cargo test` rebuild each other's dependencies every time.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            let keep = ["CARGO_HOME", "CARGO_TARGET_DIR"].contains(&name.as_ref()) || name.starts_with("CARGO_BUILD_");
            if (name.starts_with("CARGO_") && !keep) || name == "LD_LIBRARY_PATH" || name == "OUT_DIR" {
                command.env_remove(name.as_ref());
            }
        }
        command.args(["build", "-q"]);
        for package in ["specaudit-producer", "specaudit-ingester", "specaudit-alarmer", "specaudit-reporter"] {
            command.args(["-p", package]);
        }
        for binary in BINARIES {
            command.args(["--bin", binary]);
        }
        let status = command.status().expect("cannot run cargo to build the service binaries");
        assert!(status.success(), "cannot build the service binaries");
        // Tests run from target/<profile>/deps; the binaries are in target/<profile>.
        let exe = std::env::current_exe().expect("test binary path");
        exe.parent().and_then(Path::parent).expect("target dir").to_path_buf()
    });
    assert!(BINARIES.contains(&name), "{name} is not a service binary");
    dir.join(name)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// The overrides that put a service on `env`'s topics (and database, when it has one).
pub fn stack_env(env: &TestEnv, clickhouse: bool) -> Vec<(String, String)> {
    let mut vars = vec![
        ("SPECAUDIT__KAFKA__BROKERS".to_owned(), env.kafka.brokers.clone()),
        ("SPECAUDIT__KAFKA__TOPIC_PREFIX".to_owned(), env.kafka.topic_prefix.clone()),
    ];
    if clickhouse {
        vars.push(("SPECAUDIT__CLICKHOUSE__URL".to_owned(), env.clickhouse.url.clone()));
        vars.push(("SPECAUDIT__CLICKHOUSE__DATABASE".to_owned(), env.clickhouse.database.clone()));
    }
    vars
}

/// Runs a command to its end within `limit`, killing it (and failing) if it does not end.
pub fn run_within(mut command: Command, limit: Duration) -> Result<Output, String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    let (mut out, mut err) = (child.stdout.take().expect("stdout"), child.stderr.take().expect("stderr"));
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let error_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("still running after {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = reader.join().unwrap_or_default();
    let stderr = error_reader.join().unwrap_or_default();
    Ok(Output { status, stdout, stderr })
}

/// A long-running service process; killed when dropped.
pub struct Service {
    pub name: String,
    child: Child,
    log: PathBuf,
    /// Base URL of the endpoint that serves `/health`.
    pub base: String,
}

impl Service {
    /// Starts `name ARGS` with `env`, logging to a temporary file; `/health` is served on
    /// `health_port`.
    pub fn spawn(name: &str, args: &[&str], env: &[(String, String)], health_port: u16) -> Service {
        let log = std::env::temp_dir().join(format!("specaudit-bad-input-{name}-{}.log", uuid::Uuid::new_v4().simple()));
        let file = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(bin(name));
        command
            .args(args)
            .env_remove("SPECAUDIT_CONFIG")
            .env("RUST_LOG", std::env::var("SPECAUDIT_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file);
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Service { name: name.to_owned(), child, log, base: format!("http://127.0.0.1:{health_port}") }
    }

    /// The process's warnings and errors, and the end of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines.len().saturating_sub(10);
        let mut kept: Vec<&str> = lines[..tail].iter().copied().filter(|l| l.contains("WARN") || l.contains("ERROR")).collect();
        kept.extend(&lines[tail..]);
        kept.join("\n")
    }

    /// Panics unless the process is running and answers `/health` with 200 within `within`.
    pub async fn assert_alive(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("client");
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited with {status}:\n{}", self.name, self.log_tail());
            }
            let health = http.get(format!("{}/health", self.base)).send().await;
            if health.is_ok_and(|r| r.status() == 200) {
                return;
            }
            assert!(Instant::now() < deadline, "{} does not answer /health within {within:?}:\n{}", self.name, self.log_tail());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then the exit status: a service ends cleanly after any input.
    pub fn terminate(mut self) -> ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "{} did not stop within 30 s of SIGTERM:\n{}", self.name, self.log_tail());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Fails the test with every failed case listed, after `cases` cases were run.
pub fn report(area: &str, cases: usize, failures: &[String]) {
    assert!(failures.is_empty(), "{} of {cases} {area} cases failed:\n\n{}", failures.len(), failures.join("\n\n"));
    eprintln!("{area}: {cases} cases passed");
}
