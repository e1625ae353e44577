//! `specctl` as a user runs it: exit codes as its `--help` lists them, and output into a
//! pipe whose reader has gone. These cases need no Kafka: specctl must decide them first.

use std::process::{Command, Output, Stdio};

const SPECCTL: &str = env!("CARGO_BIN_EXE_specctl");

/// specctl with a broker nobody listens on, so a case that wrongly asks Kafka fails.
fn specctl(args: &[&str]) -> Command {
    let mut command = Command::new(SPECCTL);
    command.args(["--brokers", "127.0.0.1:1"]).args(args).env_remove("SPECAUDIT_BROKERS").stdin(Stdio::null());
    command
}

fn run(args: &[&str]) -> Output {
    specctl(args).output().expect("run specctl")
}

#[test]
fn the_help_lists_the_exit_codes() {
    let help = String::from_utf8(run(&["--help"]).stdout).unwrap();
    assert!(help.contains("2 usage") && help.contains("5 spec or version not found"), "{help}");
}

/// Versions in the wrong order are a mistake in the command line, not a missing version.
#[test]
fn a_diff_with_bad_versions_is_a_usage_error() {
    let cases: [(&[&str], &str); 3] = [
        (&["diff", "shop", "3", "1"], "the first version (3) must be older than the second (1)"),
        (&["diff", "shop", "2", "2"], "the first version (2) must be older than the second (2)"),
        (&["diff", "shop", "0", "2"], "versions start at 1"),
    ];
    for (args, message) in cases {
        let output = run(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "specctl {}: {stderr}", args.join(" "));
        assert!(stderr.contains(message), "specctl {}: {stderr}", args.join(" "));
    }
}

/// `specctl … | head -1`: the reader takes what it wants and closes the pipe; specctl then
/// ends quietly with 0 instead of panicking. The read end is closed before specctl starts,
/// so its first write always meets a closed pipe.
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/compute-service.yaml");
    for format in ["text", "json", "yaml"] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let output = specctl(&["--format", format, "validate", "-f", spec])
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .expect("run specctl");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "--format {format}: {stderr}");
        assert!(stderr.is_empty(), "--format {format}: {stderr}");
    }
}
