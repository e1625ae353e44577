//! Shared helpers of the end-to-end tests, which run against the real local stack
//! (`deploy/local/stack up`). Addresses come from the environment with loopback defaults;
//! every test uses its own topic prefix and ClickHouse database, so tests never see each
//! other's data.

pub mod integrity;
pub mod process;
pub mod stack;

use specaudit_core::config::{ClickHouseConfig, KafkaConfig};

/// A fresh, isolated namespace on the real stack.
#[derive(Debug, Clone)]
pub struct TestEnv {
    pub kafka: KafkaConfig,
    pub clickhouse: ClickHouseConfig,
    pub id: String,
}

impl TestEnv {
    /// Creates the topics under a unique prefix; the database is created by migrations.
    pub async fn new() -> TestEnv {
        let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        let kafka = KafkaConfig {
            brokers: std::env::var("SPECAUDIT_TEST_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into()),
            topic_prefix: format!("test-{id}."),
            ..KafkaConfig::default()
        };
        let clickhouse = ClickHouseConfig {
            url: std::env::var("SPECAUDIT_TEST_CLICKHOUSE").unwrap_or_else(|_| "http://127.0.0.1:8123".into()),
            database: format!("specaudit_test_{id}"),
            ..ClickHouseConfig::default()
        };
        specaudit_core::kafka::ensure_topics(&kafka)
            .await
            .expect("cannot create test topics: is the local stack up (deploy/local/stack up)?");
        TestEnv { kafka, clickhouse, id }
    }

    pub fn client(&self) -> clickhouse::Client {
        specaudit_core::clickhouse::client(&self.clickhouse)
    }

    /// Drops the test database (topics stay; they are small and uniquely named).
    pub async fn cleanup(&self) {
        let server = specaudit_core::clickhouse::server_client(&self.clickhouse);
        let _ = server.query(&format!("DROP DATABASE IF EXISTS {}", self.clickhouse.database)).execute().await;
    }
}

/// Base URL of the stack's Alertmanager (`SPECAUDIT_TEST_ALERTMANAGER`).
pub fn alertmanager_url() -> String {
    std::env::var("SPECAUDIT_TEST_ALERTMANAGER").unwrap_or_else(|_| "http://127.0.0.1:9093".into())
}
