//! `specaudit-reporter report` as a user runs it: exit codes and output on a closed pipe.

mod reporter_support;

use std::process::Stdio;

use reporter_support::*;
use specaudit_tests::TestEnv;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_fails_cleanly() {
    let env = TestEnv::new().await;
    craft(&env, now_ms()).await;

    // A time ClickHouse cannot store is a usage error (exit 2) that names the parameter.
    for (arg, named) in [("--to=99999999999999999", "to \"99999999999999999\""), ("--from=-1", "from \"-1\"")] {
        let output = reporter_command(&env, &["report", arg]).output().expect("run the reporter");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(named) && stderr.contains("outside the range"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }

    // A reader that stops early (`report | head -1`) ends the report normally: the pipe is
    // closed before the reporter has read ClickHouse, let alone written.
    let mut child = reporter_command(&env, &["report", "--spec", "shop", "--format", "csv"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the reporter");
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("the reporter ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
    assert!(!stderr.contains("panicked"), "{stderr}");

    // And with a reader, the report is there.
    let output = reporter_command(&env, &["report", "--spec", "shop", "--format", "csv"]).output().expect("run the reporter");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("spec,version,requirement"));
    env.cleanup().await;
}
