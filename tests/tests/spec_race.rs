//! Safe concurrent updates against real Kafka: many `specctl` processes race to publish
//! the next version of one spec. Made against the same version, exactly one lands and the
//! others get a conflict naming the current version; made without an expected version,
//! every one lands, each as its own version. The history never has a gap or a repeat.

mod spec_support;

use std::process::Child;
use std::time::Duration;

use specaudit_core::spec::Spec;
use specaudit_producer::history::load_history;
use specaudit_producer::publish::{publish, Change, Meta};
use specaudit_tests::TestEnv;
use spec_support::{scratch, specctl_command, write_file, EXAMPLE};

const RACERS: usize = 12;

fn racer_files(env: &TestEnv) -> Vec<String> {
    let dir = scratch(env);
    (0..RACERS)
        .map(|i| {
            let text = EXAMPLE.replace("description: Virtual compute service", &format!("description: racer {i}"));
            write_file(&dir, &format!("racer-{i}.yaml"), &text)
        })
        .collect()
}

async fn publish_first_version(env: &TestEnv) {
    let meta = Meta { author: "alice".into(), comment: "first".into(), expect_version: Some(0) };
    publish(&env.kafka, Change::Replace(Spec::parse(EXAMPLE).unwrap()), meta).await.unwrap();
}

/// Starts every racer at once and waits for all of them.
fn race(children: Vec<Child>) -> Vec<(Option<i32>, String)> {
    children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
        })
        .collect()
}

fn history_versions(env: &TestEnv) -> Vec<(i64, String)> {
    load_history(&env.kafka, "compute-service", Duration::from_secs(30))
        .unwrap()
        .into_iter()
        .map(|v| (v.version, v.author))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_updates_against_one_version_exactly_one_wins() {
    let env = TestEnv::new().await;
    publish_first_version(&env).await;
    let files = racer_files(&env);
    spec_support::specctl_path();
    let children = files
        .iter()
        .enumerate()
        .map(|(i, file)| {
            specctl_command(&env, &["apply", "-f", file, "--expect-version", "1", "--author", &format!("racer-{i}")])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let results = tokio::task::spawn_blocking(move || race(children)).await.unwrap();

    let winners: Vec<usize> = results.iter().enumerate().filter(|(_, r)| r.0 == Some(0)).map(|(i, _)| i).collect();
    assert_eq!(winners.len(), 1, "exactly one racer must win: {results:?}");
    for (i, (code, stderr)) in results.iter().enumerate().filter(|(i, _)| *i != winners[0]) {
        assert_eq!(*code, Some(4), "racer {i} must get a conflict: {stderr}");
        assert!(
            stderr.contains("made against version 1, but the current version is 2"),
            "racer {i}: {stderr}"
        );
    }
    let history = history_versions(&env);
    assert_eq!(history, [(1, "alice".to_owned()), (2, format!("racer-{}", winners[0]))]);
    // The compacted topic agrees with the history.
    let latest = specaudit_producer::catalog::load_latest(&env.kafka, Duration::from_secs(30)).unwrap();
    assert_eq!(latest["compute-service"].version, 2);
    assert!(latest["compute-service"].document.contains(&format!("racer {}", winners[0])));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_unconditional_updates_all_land_without_gaps_or_repeats() {
    let env = TestEnv::new().await;
    publish_first_version(&env).await;
    let files = racer_files(&env);
    spec_support::specctl_path();
    // Fewer racers: without an expected version every one must land, one after another.
    let children = files[..8]
        .iter()
        .enumerate()
        .map(|(i, file)| {
            specctl_command(&env, &["apply", "-f", file, "--author", &format!("racer-{i}")])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let results = tokio::task::spawn_blocking(move || race(children)).await.unwrap();
    assert!(results.iter().all(|r| r.0 == Some(0)), "{results:?}");

    let history = history_versions(&env);
    let versions: Vec<i64> = history.iter().map(|(v, _)| *v).collect();
    assert_eq!(versions, (1..=9).collect::<Vec<_>>());
    let mut authors: Vec<&str> = history[1..].iter().map(|(_, a)| a.as_str()).collect();
    authors.sort();
    authors.dedup();
    assert_eq!(authors.len(), 8, "every racer landed exactly once: {history:?}");
    env.cleanup().await;
}
