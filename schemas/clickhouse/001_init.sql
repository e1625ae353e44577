-- specaudit tables (DESIGN.md section 6). `{database}` is replaced by the configured
-- database. Written for ClickHouse 18.16 and current releases alike: no Map, no
-- DateTime64, no LowCardinality, no TTL. Times are kept in milliseconds (`ts_ms`) with a
-- derived `ts DateTime` for partitioning and filtering. Labels are two parallel arrays:
-- label_values[indexOf(label_keys, 'region')].

CREATE TABLE IF NOT EXISTS {database}.assertions (
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
    -- Where the row came from: the ingester learns its progress from these.
    kafka_partition Int32,
    kafka_offset Int64,
    ingested_at DateTime DEFAULT now()
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (spec, component, requirement, ts);

-- Per-minute rollup for reports, fed by the view below from every insert into assertions.
CREATE TABLE IF NOT EXISTS {database}.assertions_minutely (
    minute DateTime,
    spec String,
    spec_version UInt64,
    component String,
    instance String,
    requirement String,
    severity Enum8('critical' = 1, 'major' = 2, 'minor' = 3, 'info' = 4),
    passes UInt64,
    failures UInt64,
    errors UInt64,
    skips UInt64
) ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(minute)
ORDER BY (spec, component, requirement, instance, spec_version, severity, minute);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.assertions_minutely_mv
TO {database}.assertions_minutely
AS SELECT
    toStartOfMinute(toDateTime(intDiv(ts_ms, 1000))) AS minute,
    spec,
    spec_version,
    component,
    instance,
    requirement,
    severity,
    sum(if(outcome = 'pass', toUInt64(count), toUInt64(0))) AS passes,
    sum(if(outcome = 'fail', toUInt64(count), toUInt64(0))) AS failures,
    sum(if(outcome = 'error', toUInt64(count), toUInt64(0))) AS errors,
    sum(if(outcome = 'skip', toUInt64(count), toUInt64(0))) AS skips
FROM {database}.assertions
GROUP BY minute, spec, spec_version, component, instance, requirement, severity;

-- Every published version of every spec; (spec, version) is unique, duplicates from a
-- replay collapse on merge.
CREATE TABLE IF NOT EXISTS {database}.spec_versions (
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
) ENGINE = ReplacingMergeTree()
ORDER BY (spec, version);

-- The latest heartbeat of every agent (query with FINAL or argMax(…, ts_ms)).
CREATE TABLE IF NOT EXISTS {database}.agents (
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
) ENGINE = ReplacingMergeTree(ts_ms)
ORDER BY agent_id;

-- Every alarm transition.
CREATE TABLE IF NOT EXISTS {database}.alarms (
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
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (fingerprint, ts_ms);

-- Records that could not be ingested, with the reason and where they came from.
CREATE TABLE IF NOT EXISTS {database}.dead_letters (
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
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (source_topic, source_partition, source_offset);
