-- Cluster layout of 001_init.sql (docs/cluster.md): every table as a Replicated*MergeTree
-- `<name>_local` on every node of `{cluster}`, behind a Distributed table with the name
-- readers and the ingester use. `{database}` and `{cluster}` are filled from the config;
-- `{zookeeper_path}` is clickhouse.zookeeper_path, whose `{shard}` macro (and the
-- `{replica}` macro below) each server fills from its own <macros>.
--
-- The columns, orders and partitions are those of the one-server layout and must stay so:
-- the ingester's unit tests compare them. What differs:
-- - no materialized view into the rollup: migration 002 made the ingester write it, and
--   the cluster layout starts there (see cluster/002_rollup_progress.sql);
-- - sharding: rows of one Kafka partition stay on one shard (`kafka_partition`) where the
--   ingester's progress and atomic inserts need it; tables that collapse duplicates
--   (ReplacingMergeTree) are sharded by their key, so that every version of a row meets
--   the others on one shard whichever partition it came from.

CREATE TABLE IF NOT EXISTS {database}.assertions_local ON CLUSTER {cluster} (
    assertion_id UUID,
    ts_ms UInt64,
    ts DateTime DEFAULT toDateTime(intDiv(ts_ms, 1000)),
    spec String,
    spec_version UInt64,
    component String,
    instance String,
    agent_id String,
    requirement String,
    task String,
    outcome Enum8('pass' = 1, 'fail' = 2, 'error' = 3, 'skip' = 4),
    severity Enum8('critical' = 1, 'major' = 2, 'minor' = 3, 'info' = 4),
    count UInt32,
    message String,
    details String,
    label_keys Array(String),
    label_values Array(String),
    kafka_partition Int32,
    kafka_offset Int64,
    ingested_at DateTime DEFAULT now()
) ENGINE = ReplicatedMergeTree('{zookeeper_path}/assertions_local', '{replica}')
PARTITION BY toYYYYMM(ts)
ORDER BY (spec, component, requirement, ts);

CREATE TABLE IF NOT EXISTS {database}.assertions ON CLUSTER {cluster}
AS {database}.assertions_local
ENGINE = Distributed({cluster}, {database}, assertions_local, kafka_partition);

CREATE TABLE IF NOT EXISTS {database}.spec_versions_local ON CLUSTER {cluster} (
    spec String,
    version UInt64,
    ts_ms UInt64,
    ts DateTime DEFAULT toDateTime(intDiv(ts_ms, 1000)),
    author String,
    comment String,
    sha256 String,
    deleted UInt8,
    document String,
    patch String,
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplicatedReplacingMergeTree('{zookeeper_path}/spec_versions_local', '{replica}')
ORDER BY (spec, version);

CREATE TABLE IF NOT EXISTS {database}.spec_versions ON CLUSTER {cluster}
AS {database}.spec_versions_local
ENGINE = Distributed({cluster}, {database}, spec_versions_local, cityHash64(spec));

CREATE TABLE IF NOT EXISTS {database}.agents_local ON CLUSTER {cluster} (
    agent_id String,
    ts_ms UInt64,
    ts DateTime DEFAULT toDateTime(intDiv(ts_ms, 1000)),
    component String,
    instance String,
    started_at_ms UInt64,
    sdk_version String,
    spec_names Array(String),
    spec_versions Array(UInt64),
    checked UInt64,
    emitted UInt64,
    dropped UInt64,
    requirement_specs Array(String),
    requirements Array(String),
    requirement_evaluations Array(UInt64),
    label_keys Array(String),
    label_values Array(String),
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplicatedReplacingMergeTree('{zookeeper_path}/agents_local', '{replica}', ts_ms)
ORDER BY agent_id;

CREATE TABLE IF NOT EXISTS {database}.agents ON CLUSTER {cluster}
AS {database}.agents_local
ENGINE = Distributed({cluster}, {database}, agents_local, cityHash64(agent_id));

CREATE TABLE IF NOT EXISTS {database}.alarms_local ON CLUSTER {cluster} (
    fingerprint String,
    ts_ms UInt64,
    ts DateTime DEFAULT toDateTime(intDiv(ts_ms, 1000)),
    rule String,
    state Enum8('pending' = 1, 'firing' = 2, 'resolved' = 3, 'waived' = 4),
    severity Enum8('critical' = 1, 'major' = 2, 'minor' = 3, 'info' = 4),
    spec String,
    component String,
    requirement String,
    summary String,
    value Float64,
    label_keys Array(String),
    label_values Array(String),
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplicatedMergeTree('{zookeeper_path}/alarms_local', '{replica}')
PARTITION BY toYYYYMM(ts)
ORDER BY (fingerprint, ts_ms);

CREATE TABLE IF NOT EXISTS {database}.alarms ON CLUSTER {cluster}
AS {database}.alarms_local
ENGINE = Distributed({cluster}, {database}, alarms_local, kafka_partition);

CREATE TABLE IF NOT EXISTS {database}.dead_letters_local ON CLUSTER {cluster} (
    ts_ms UInt64,
    ts DateTime DEFAULT toDateTime(intDiv(ts_ms, 1000)),
    source_topic String,
    source_partition Int32,
    source_offset Int64,
    reason String,
    error String,
    payload String,
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplicatedMergeTree('{zookeeper_path}/dead_letters_local', '{replica}')
PARTITION BY toYYYYMM(ts)
ORDER BY (source_topic, source_partition, source_offset);

CREATE TABLE IF NOT EXISTS {database}.dead_letters ON CLUSTER {cluster}
AS {database}.dead_letters_local
ENGINE = Distributed({cluster}, {database}, dead_letters_local, kafka_partition);
