//! Helpers shared by the spec lifecycle tests: running the real `specctl` binary against a
//! test's own topics.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use specaudit_tests::TestEnv;

/// The `specctl` binary, built from the current sources once per test process.
pub fn specctl_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| specaudit_tests::process::workspace_bin("specctl"))
}

/// `specctl ARGS` against `env`'s topics, as user `tester`.
pub fn specctl_command(env: &TestEnv, args: &[&str]) -> Command {
    let mut command = Command::new(specctl_path());
    command
        .args(args)
        .env("SPECAUDIT_BROKERS", &env.kafka.brokers)
        .env("SPECAUDIT_TOPIC_PREFIX", &env.kafka.topic_prefix)
        .env("USER", "tester");
    command
}

/// Runs `specctl ARGS` and returns its output.
pub fn specctl(env: &TestEnv, args: &[&str]) -> Output {
    specctl_command(env, args).output().expect("cannot run specctl")
}

/// Runs `specctl ARGS`, which must succeed, and returns its stdout.
pub fn specctl_ok(env: &TestEnv, args: &[&str]) -> String {
    let out = specctl(env, args);
    assert!(out.status.success(), "specctl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `specctl ARGS`, which must fail with `code`, and returns its stderr.
pub fn specctl_fails(env: &TestEnv, args: &[&str], code: i32) -> String {
    let out = specctl(env, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "specctl {args:?}: {stderr}");
    stderr
}

/// Writes `text` to a file in a fresh temporary directory that lives as long as the test.
pub fn write_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("cannot write test file");
    path.display().to_string()
}

pub const EXAMPLE: &str = include_str!("../../../examples/compute-service.yaml");

/// A scratch directory for one test's files.
pub fn scratch(env: &TestEnv) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("specaudit-test-{}", env.id));
    std::fs::create_dir_all(&dir).expect("cannot create scratch dir");
    dir
}
