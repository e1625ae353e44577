//! The real service binaries as child processes: built from this checkout, started with
//! their config in the environment, and stopped, killed, paused or resumed by a test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::TestEnv;

/// The service binaries the tests run, built together (one feature set, one build).
const SERVICE_BINS: [&str; 3] = ["specaudit-ingester", "specaudit-alarmer", "specctl"];

/// The service binary `bin` (one of the ingester, the alarmer and specctl), built from
/// the current sources once per test process: `cargo test` builds the binaries only of
/// the package under test.
pub fn workspace_bin(bin: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    assert!(SERVICE_BINS.contains(&bin), "{bin} is not among the service binaries the tests build");
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut command = Command::new(cargo);
        // From the workspace root, where every member's binaries are in reach.
        command.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).args(["build", "-q"]);
        for b in SERVICE_BINS {
            command.args(["--bin", b]);
        }
        let status = command.status().unwrap_or_else(|e| panic!("cannot run cargo to build the service binaries: {e}"));
        assert!(status.success(), "cannot build the service binaries");
    });
    // Tests run from target/<profile>/deps; binaries are in target/<profile>.
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent().and_then(Path::parent).expect("target dir").join(bin)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A running service binary; killed when dropped.
#[derive(Debug)]
pub struct Service {
    pub child: Child,
    /// Port of its `/metrics` and `/health` endpoint.
    pub metrics_port: u16,
    /// Its stderr (the log).
    pub log: PathBuf,
}

impl Service {
    /// Starts `exe ARGS` with `vars` set and `SPECAUDIT__TELEMETRY__LISTEN` on a free port;
    /// its log goes to a file in the temporary directory named after `name`.
    pub fn spawn(exe: &Path, args: &[&str], name: &str, vars: &[(&str, &str)]) -> Service {
        let metrics_port = free_port();
        let log = std::env::temp_dir().join(format!("{name}-{}.log", uuid::Uuid::new_v4().simple()));
        let file = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(exe);
        command
            .args(args)
            .env_remove("SPECAUDIT_CONFIG")
            .env("SPECAUDIT__TELEMETRY__LISTEN", format!("127.0.0.1:{metrics_port}"))
            .env("RUST_LOG", std::env::var("SPECAUDIT_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::null())
            .stderr(file);
        for (k, v) in vars {
            command.env(k, v);
        }
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        Service { child, metrics_port, log }
    }

    /// `specaudit-ingester run` on `env`'s topics and database, in consumer group `group`.
    pub fn spawn_ingester(exe: &Path, env: &TestEnv, group: &str, extra: &[(&str, &str)]) -> Service {
        let mut vars = vec![
            ("SPECAUDIT__KAFKA__BROKERS", env.kafka.brokers.as_str()),
            ("SPECAUDIT__KAFKA__TOPIC_PREFIX", env.kafka.topic_prefix.as_str()),
            ("SPECAUDIT__CLICKHOUSE__URL", env.clickhouse.url.as_str()),
            ("SPECAUDIT__CLICKHOUSE__DATABASE", env.clickhouse.database.as_str()),
            ("SPECAUDIT__INGEST__GROUP_ID", group),
            ("SPECAUDIT__INGEST__RETRY_MAX_BACKOFF", "2s"),
        ];
        vars.extend_from_slice(extra);
        Service::spawn(exe, &["run"], &format!("specaudit-ingester-{}", env.id), &vars)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.pid().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal} {} failed", self.pid());
    }

    /// kill -9.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGSTOP: the process is frozen, its sockets stay open.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// SIGCONT.
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        self.signal("TERM");
        self.child.wait().expect("wait")
    }

    /// SIGTERM, then the exit status if the process ends within `limit`; `None` if it is
    /// still running then (it is killed when the `Service` is dropped).
    pub fn terminate_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        self.signal("TERM");
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                _ => return None,
            }
        }
    }

    /// GET a path of the telemetry endpoint (plain HTTP/1.0, no client library needed).
    pub fn get(&self, path: &str) -> Option<String> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut out = String::new();
        stream.read_to_string(&mut out).ok()?;
        Some(out)
    }

    /// `/health` answers 200.
    pub fn healthy(&self) -> bool {
        self.get("/health").is_some_and(|h| h.lines().next().is_some_and(|status| status.contains(" 200 ")))
    }

    /// The sum of a metric's samples whose labels contain `label`.
    pub fn metric(&self, name: &str, label: &str) -> Option<f64> {
        let text = self.get("/metrics")?;
        let values: Vec<f64> = text
            .lines()
            .filter(|l| l.starts_with(name) && l.contains(label))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        (!values.is_empty()).then(|| values.iter().sum())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // SIGKILL ends a paused (SIGSTOPped) process too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
