-- The per-minute rollup is written by the ingester instead of a materialized view, in
-- inserts that also carry the rollup's own progress (see ingester/src/rollup.rs).
--
-- Why: a materialized view is fed after the block lands in `assertions`; a server crash or
-- a failing view insert in between leaves rows in the raw table that the rollup never
-- counts, and a retry skips them because they are present. The ingester now rolls up each
-- batch itself and writes, in the same one-part insert, a progress row per Kafka
-- partition (`spec = ''`, `kafka_partition` = the partition, `kafka_offsets` = how far
-- this insert moved it). A one-part insert lands entirely or not at all, so
-- `sum(kafka_offsets)` of a partition's progress rows is exactly the next offset whose
-- assertions are not rolled up yet; SummingMergeTree keeps that sum through merges.
--
-- The table is unpartitioned so that an insert spanning months is still one part.
-- Reports read it as before: rollup rows have kafka_partition = -1, kafka_offsets = 0,
-- and progress rows have an empty spec (never a valid spec name) and zero counts.
--
-- Upgrade with the ingesters stopped (they drain on SIGTERM): the existing rollup is
-- rebuilt from the raw table, and progress starts after the highest offset stored.

DROP TABLE IF EXISTS {database}.assertions_minutely_mv;

DROP TABLE IF EXISTS {database}.assertions_minutely;

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
    skips UInt64,
    -- -1 on rollup rows; on progress rows (spec = '') the partition they count.
    kafka_partition Int32 DEFAULT -1,
    -- Progress rows: offsets of kafka_partition covered by their insert; summed.
    kafka_offsets UInt64 DEFAULT 0
) ENGINE = SummingMergeTree()
PARTITION BY tuple()
ORDER BY (spec, component, requirement, instance, spec_version, severity, minute, kafka_partition);

INSERT INTO {database}.assertions_minutely
    (minute, spec, spec_version, component, instance, requirement, severity, passes, failures, errors, skips)
SELECT
    toStartOfMinute(toDateTime(intDiv(ts_ms, 1000))) AS minute,
    spec,
    spec_version,
    component,
    instance,
    requirement,
    severity,
    sum(if(outcome = 'pass', toUInt64(count), toUInt64(0))),
    sum(if(outcome = 'fail', toUInt64(count), toUInt64(0))),
    sum(if(outcome = 'error', toUInt64(count), toUInt64(0))),
    sum(if(outcome = 'skip', toUInt64(count), toUInt64(0)))
FROM {database}.assertions
GROUP BY minute, spec, spec_version, component, instance, requirement, severity;

INSERT INTO {database}.assertions_minutely (minute, spec, severity, kafka_partition, kafka_offsets)
SELECT toDateTime(0), '', 'critical', kafka_partition, toUInt64(max(kafka_offset) + 1)
FROM {database}.assertions
GROUP BY kafka_partition
