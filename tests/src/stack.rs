//! Stopping and starting components of the local stack from a fault test, through
//! `deploy/local/stack` with the test's own environment (so a stack on other ports or in
//! another state folder is the one controlled).
//!
//! Fault tests live in test binaries of their own and hold [`serial`] while they run:
//! cargo runs test binaries one after another, so no other test sees the outage.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

/// The stack script of this checkout.
pub fn script() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/local/stack"))
}

/// Runs `deploy/local/stack ARGS`; panics with its output when it fails.
pub fn run(args: &[&str]) {
    let output = Command::new(script()).args(args).output().expect("cannot run deploy/local/stack");
    assert!(
        output.status.success(),
        "deploy/local/stack {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A component stopped for the guard's lifetime; started again when dropped, even when
/// the test fails.
#[derive(Debug)]
pub struct Outage {
    component: &'static str,
    restored: bool,
}

impl Outage {
    pub fn begin(component: &'static str) -> Outage {
        run(&["down", component]);
        Outage { component, restored: false }
    }

    /// Ends the outage now.
    pub fn end(mut self) {
        run(&["up", self.component]);
        self.restored = true;
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if !self.restored {
            // Best effort: a panic here would hide the test's own failure.
            let _ = Command::new(script()).args(["up", self.component]).output();
        }
    }
}

/// Serialises the fault tests of one binary.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
