//! Migrations against the real ClickHouse: ingesters that start together on a new
//! database apply them once, and every one of them starts.

use specaudit_ingester::migrate::{self, MIGRATIONS};
use specaudit_tests::TestEnv;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingesters_starting_together_apply_the_migrations_once() {
    let env = TestEnv::new().await;
    let starts = (0..4).map(|_| {
        let config = env.clickhouse.clone();
        tokio::spawn(async move { migrate::migrate(&config).await })
    });
    let mut ran = 0;
    for start in futures::future::join_all(starts).await {
        ran += start.expect("task").expect("every ingester gets its migrations");
    }
    assert_eq!(ran, MIGRATIONS.len(), "each migration applied by one of them");

    let client = env.client();
    let recorded: Vec<u32> = client.query("SELECT version FROM schema_migrations ORDER BY version").fetch_all().await.expect("read");
    assert_eq!(recorded, (1..=MIGRATIONS.len() as u32).collect::<Vec<_>>());
    let tables: Vec<String> = client
        .query("SELECT name FROM system.tables WHERE database = currentDatabase() AND name IN ('assertions_minutely', 'schema_migrations_lock')")
        .fetch_all()
        .await
        .expect("read");
    assert_eq!(tables, ["assertions_minutely"], "the rollup is there and the lock was given up");
    assert_eq!(migrate::migrate(&env.clickhouse).await.expect("again"), 0);
    env.cleanup().await;
}
