//! ClickHouse plumbing: a client set up to work with 18.16 and current releases.

use crate::config::ClickHouseConfig;

/// A client for `config.database`.
///
/// Row validation is off: it needs `RowBinaryWithNamesAndTypes`, which ClickHouse 18.16
/// lacks (DESIGN.md section 6).
pub fn client(config: &ClickHouseConfig) -> clickhouse::Client {
    server_client(config).with_database(&config.database)
}

/// A client with no database selected, for creating it.
pub fn server_client(config: &ClickHouseConfig) -> clickhouse::Client {
    let mut client = clickhouse::Client::default()
        .with_url(&config.url)
        .with_user(&config.user)
        .with_validation(false)
        .with_compression(clickhouse::Compression::Lz4);
    if !config.password.is_empty() {
        client = client.with_password(&config.password);
    }
    client
}

/// The server's version as (major, minor), e.g. (18, 16).
pub async fn server_version(client: &clickhouse::Client) -> Result<(u32, u32), clickhouse::error::Error> {
    let version: String = client.query("SELECT version()").fetch_one().await?;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    Ok((parts.next().unwrap_or(0), parts.next().unwrap_or(0)))
}
