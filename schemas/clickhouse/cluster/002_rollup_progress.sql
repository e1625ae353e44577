-- Cluster layout of 002_rollup_progress.sql: the per-minute rollup, written by the
-- ingester together with its progress rows (ingester/src/rollup.rs). A cluster database
-- starts empty, so there is no view to drop and nothing to rebuild.
--
-- Sharded by `kafka_partition`, and unlike the one-server layout the rollup rows carry
-- the partition of the assertions they count (there they carry -1). So an insert's rows
-- and progress row of one Kafka partition go to the same shard, where they land as one
-- part: all or nothing, as on one server. Readers are unaffected: they select by spec and
-- sum, and progress rows have an empty spec. A rollup key includes the instance, whose
-- assertions share a Kafka key and so a partition: carrying it adds no rows.

CREATE TABLE IF NOT EXISTS {database}.assertions_minutely_local ON CLUSTER {cluster} (
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
    kafka_partition Int32 DEFAULT -1,
    kafka_offsets UInt64 DEFAULT 0
) ENGINE = ReplicatedSummingMergeTree('{zookeeper_path}/assertions_minutely_local', '{replica}')
PARTITION BY tuple()
ORDER BY (spec, component, requirement, instance, spec_version, severity, minute, kafka_partition);

CREATE TABLE IF NOT EXISTS {database}.assertions_minutely ON CLUSTER {cluster}
AS {database}.assertions_minutely_local
ENGINE = Distributed({cluster}, {database}, assertions_minutely_local, kafka_partition)
