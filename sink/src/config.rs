use std::net::SocketAddr;
use std::time::Duration;

pub use lake::LakeFormat;
use runtime::{parse_bytes, KafkaArgs, MembershipArgs};

use lake::Compression;

/// Consumes enriched records and writes them as Delta Lake tables (or plain
/// Hive-partitioned Parquet files), partitioned by `dt`, to a local folder or
/// an object store.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "sink", version)]
pub struct Config {
    #[command(subcommand)]
    /// A one-off command instead of the stage.
    pub command: Option<Command>,

    /// Where the lake lives: a folder (`./lake`, `file:///data/lake`), or
    /// `s3://bucket/prefix` with the endpoint and credentials from the usual AWS
    /// variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    /// AWS_REGION), or `memory://` for trials.
    #[arg(long, env = "LAKE_URL", default_value = "./data")]
    pub lake_url: String,

    /// How the tables are kept: `delta` (Delta Lake tables: files become
    /// visible in atomic commits, each record once per table, compaction
    /// and vacuum) or `parquet` (plain Hive-partitioned Parquet files).
    #[arg(long, env = "LAKE_FORMAT", default_value = "delta")]
    pub lake_format: LakeFormat,

    /// Skip the start-up proof that the store refuses a second create of
    /// one key (`If-None-Match`), on which commits rely. Only for stores
    /// whose writers another mechanism serialises.
    #[arg(long, env = "SINK_TRUST_STORE", default_value_t = false, action = clap::ArgAction::Set)]
    pub trust_store: bool,

    /// Close a file after this many rows.
    #[arg(long, env = "SINK_MAX_FILE_ROWS", default_value_t = 500_000)]
    pub max_file_rows: usize,

    /// Close a file once the Parquet writer measures it at this many bytes
    /// (accepts KiB, MiB, GiB, KB, MB, GB suffixes).
    #[arg(long, env = "SINK_MAX_FILE_BYTES", default_value = "128MiB", value_parser = parse_bytes)]
    pub max_file_bytes: usize,

    /// Memory for buffered records across all partitions, including the copy
    /// made while a batch's files are closed: when buffers reach half of it,
    /// the largest batch is written early. While a write is retried (the
    /// store is down), consumption waits.
    #[arg(long, env = "SINK_MEMORY_BUDGET", default_value = "512MiB", value_parser = parse_bytes)]
    pub memory_budget: usize,

    /// Delta tables: a record whose event_id its table holds already on the
    /// record's day is left out. The ids of the days of this horizon before
    /// today are read at start and after each rebalance; an older day's
    /// when a record of it comes. The ids take up to a quarter of
    /// SINK_MEMORY_BUDGET, 20 to 39 bytes each; when they need more, older
    /// days leave first, then the horizon shortens with a warning. 0 turns
    /// deduplication off.
    #[arg(long, env = "SINK_DEDUP_HORIZON", default_value = "7d", value_parser = humantime::parse_duration)]
    pub dedup_horizon: Duration,

    /// Count, per typed column, the rows with a record it holds no value
    /// for; walk one record in 64 for fields no column reads; record each
    /// event's arrival delay (see README, Monitoring the data). File
    /// statistics are written either way.
    #[arg(long, env = "SINK_COLUMN_MONITORS", default_value_t = true, action = clap::ArgAction::Set)]
    pub column_monitors: bool,

    /// Files at least this large are uploaded in parts (multipart upload).
    #[arg(long, env = "SINK_MULTIPART_THRESHOLD", default_value = "32MiB", value_parser = parse_bytes)]
    pub multipart_threshold: usize,

    /// Part size of multipart uploads (S3 wants at least 5 MiB).
    #[arg(long, env = "SINK_MULTIPART_PART_SIZE", default_value = "16MiB", value_parser = parse_bytes)]
    pub multipart_part_size: usize,

    /// Close a file once its oldest record has waited this long, even while
    /// records keep arriving (a backlog: files otherwise fill by rows and
    /// bytes).
    #[arg(long, env = "SINK_MAX_FILE_AGE", default_value = "1m", value_parser = humantime::parse_duration)]
    pub max_file_age: Duration,

    /// Once the sink has read every record the topic holds, it writes and
    /// commits what it buffered when the oldest record has waited this long:
    /// how fresh the tables are under light traffic. All partitions' files
    /// go into one commit per table, so a table receives at most one such
    /// commit per interval per sink instance.
    #[arg(long, env = "SINK_COMMIT_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub commit_interval: Duration,

    /// Parquet compression: zstd, snappy or none.
    #[arg(long, env = "SINK_COMPRESSION", default_value = "zstd")]
    pub compression: Compression,

    /// Topic of enriched records to consume.
    #[arg(long, env = "ENRICHED_TOPIC", default_value = schemas::topics::ENRICHED)]
    pub enriched_topic: String,

    /// Topic receiving records that cannot be written, with the reason.
    #[arg(long, env = "DEAD_LETTER_TOPIC", default_value = schemas::topics::DEAD_LETTER)]
    pub dead_letter_topic: String,

    /// Names this incarnation of the enriched topic in the lake: the tables
    /// record, per partition, the last offset they hold of `{topic}` (or of
    /// `{topic}@{source id}` when set). When the topic is recreated under
    /// its old name, or the pipeline moves to another Kafka cluster, its
    /// offsets start again from 0: the sink stops rather than skip them,
    /// and a new value here (e.g. the new cluster's name) makes it add the
    /// new topic's records from its first offset, keeping what the tables
    /// hold. Never change it for the same topic: its records would be added
    /// again.
    ///
    /// Letters, digits, `.`, `_` and `-`, at most 64: it becomes part of
    /// transaction ids and file names.
    #[arg(long, env = "SINK_SOURCE_ID", default_value = "", value_parser = parse_source_id)]
    pub source_id: String,

    /// Consumer group id; instances sharing it split the topic's partitions.
    #[arg(long, env = "SINK_GROUP_ID", default_value = "mobaro-sink")]
    pub group_id: String,

    /// Address of `/healthz`, `/readyz` and `/metrics`.
    #[arg(long, env = "SINK_OPS_LISTEN", default_value = "0.0.0.0:8082")]
    pub ops_listen: SocketAddr,

    /// Key of the erasure ledger's hashes (hex, at least 16 bytes), from a
    /// secret. Without it the key lives in the lake under `_erasure/`
    /// (created by the first `sink forget`), where whoever reads the lake
    /// could confirm that a guessed User id was erased. The sinks, `sink
    /// forget` and `sink doctor` must share it.
    #[arg(long, env = "ERASURE_KEY", hide_env_values = true)]
    pub erasure_key: Option<lake::ErasureKey>,

    /// Create missing topics at start-up.
    #[arg(long, env = "CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub create_topics: bool,

    #[command(flatten)]
    /// Compaction and vacuum of Delta tables.
    pub upkeep: UpkeepArgs,

    #[command(flatten)]
    /// Broker address and client options.
    pub kafka: KafkaArgs,

    #[command(flatten)]
    /// How the instance joins its consumer group.
    pub membership: MembershipArgs,
}

/// Compaction and vacuum of Delta tables, by `sink compact` and `sink
/// vacuum`, or on a schedule inside the sink.
#[derive(Debug, Clone, clap::Args)]
pub struct UpkeepArgs {
    /// Compact closed days and vacuum the tables this often inside the sink;
    /// `0s` turns it off (schedule `sink compact` and `sink vacuum`
    /// instead). Without either, a table's file list, its checkpoints and
    /// the sink's memory grow every day. Several sinks may run it: a rewrite
    /// that loses a race to another commit is left for the next run.
    #[arg(long, env = "SINK_COMPACT_EVERY", default_value = "1h", value_parser = humantime::parse_duration)]
    pub compact_every: Duration,

    /// A day (`dt`) is closed, and compacted, once it ended at least this
    /// long ago: late events after that get a new small file until the next
    /// compaction.
    #[arg(long, env = "SINK_COMPACT_GRACE", default_value = "2d", value_parser = humantime::parse_duration)]
    pub compact_grace: Duration,

    /// An open day (today, or inside the grace) whose table holds more than
    /// this many small files (below half SINK_COMPACT_TARGET_SIZE) has them
    /// merged into one, checked every SINK_MERGE_EVERY: queries over today
    /// then read a bounded number of files however often the sink commits.
    #[arg(long, env = "SINK_OPEN_DAY_FILES", default_value_t = 32)]
    pub open_day_files: usize,

    /// How often open days are checked for small files to merge; `0s` turns
    /// the merging off.
    #[arg(long, env = "SINK_MERGE_EVERY", default_value = "30s", value_parser = humantime::parse_duration)]
    pub merge_every: Duration,

    /// Size of the files compaction writes.
    #[arg(long, env = "SINK_COMPACT_TARGET_SIZE", default_value = "128MiB", value_parser = parse_bytes)]
    pub compact_target_size: usize,

    /// Vacuum deletes data files out of a table for at least this long
    /// (time travel reaches back as far).
    #[arg(long, env = "SINK_VACUUM_RETENTION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub vacuum_retention: Duration,

    /// Commits older than this leave the log once a checkpoint covers them
    /// (time travel reaches back as far, and no further than the vacuum
    /// retention for files since removed).
    #[arg(long, env = "SINK_LOG_RETENTION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub log_retention: Duration,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Print the CREATE statements that expose the lake's tables, with the
    /// types the sink writes, to DuckDB, Athena, BigQuery or Snowflake.
    Ddl(DdlArgs),
    /// Compact the closed days of the Delta tables once: each day rewritten
    /// into files of SINK_COMPACT_TARGET_SIZE holding each event once.
    Compact,
    /// Vacuum the Delta tables once (delete files out of the tables for
    /// SINK_VACUUM_RETENTION), checkpoint them and clean their logs.
    Vacuum(VacuumArgs),
    /// Examine the Delta tables and print, per table: version and last
    /// commit, files and bytes, files per day, days due for compaction,
    /// transactions per partition, rows and duplicate rows of the recent
    /// days, the null share of each typed column while the record is
    /// present, and fields no typed column reads in a sample of recent
    /// records. Exits 1 when a check fails: no events table, duplicates in
    /// a compacted day, a typed column null above the threshold.
    Doctor(DoctorArgs),
    /// Turn a prefix of plain Parquet files (LAKE_FORMAT=parquet, the old
    /// default) into Delta tables in place: each file is added to its
    /// table's log as it is, with the statistics of its footer, and each
    /// source partition's transaction set to the last offset its files
    /// hold, so a Delta sink goes on where the Parquet sink stopped. Stop
    /// every sink writing the prefix first. Safe to run again: it adds only
    /// what an earlier run did not.
    ConvertToDelta,
    /// Forget a person (the GDPR's right to erasure) in every Delta table:
    /// their User records and the events about them deleted; their id,
    /// name, e-mail and username replaced by `[erased]` in every other
    /// record naming them (Results, Assignments, Notes: kept, so inspection
    /// counts, scores and compliance do not change); only the files naming
    /// them rewritten, the replaced files deleted at once, and the log
    /// before the erasure removed (time travel to before it ends). The
    /// person is kept in the erasure ledger as a keyed hash, so that no
    /// later write (a replay, a backfill, a late webhook) brings them back.
    /// Safe while sinks run (it waits `--settle` for them to read the
    /// ledger);
    /// run it again if it stops. An id the lake does not hold reports 0
    /// rows.
    Forget(ForgetArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct ForgetArgs {
    /// The person's Mobaro User id (`users/112899-C` or `112899-C`).
    pub user_id: String,

    /// Another value to hunt as a whole word in every text (a former name
    /// or e-mail), besides the name, e-mail and username their User
    /// records hold; repeatable.
    #[arg(long = "also")]
    pub also: Vec<String>,

    /// Report what would be rewritten (rows, files, bytes), changing
    /// nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,

    /// How long running sinks get to read the ledger and drop what they
    /// buffered before the last pass over each table (they read it every
    /// 10 s); `0s` when no sink writes the lake.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub settle: std::time::Duration,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DoctorArgs {
    /// Print the checkup as JSON.
    #[arg(long)]
    pub json: bool,

    /// Days examined for rows, duplicates and null shares, back from each
    /// table's newest day.
    #[arg(long, default_value_t = 7)]
    pub days: u32,

    /// A typed column null in more than this share of the rows with a
    /// record fails the checkup.
    #[arg(long, default_value_t = 0.99)]
    pub max_null_share: f64,

    /// Null shares over fewer rows with a record are reported, not judged.
    #[arg(long, default_value_t = 100)]
    pub min_rows: u64,

    /// Records of the newest files walked for fields no column reads.
    #[arg(long, default_value_t = 1000)]
    pub sample: usize,
}

#[derive(Debug, Clone, clap::Args)]
pub struct VacuumArgs {
    /// Allow a retention shorter than the tables' own
    /// `delta.deletedFileRetentionDuration` (7 days): files of commits still
    /// in flight, or read by running queries, may be deleted.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DdlArgs {
    /// duckdb, athena, bigquery or snowflake.
    #[arg(long)]
    pub dialect: lake::Dialect,

    /// Where the tables are: the lake's URL (`s3://bucket/prefix`, `gs://…`,
    /// a folder) or, for Snowflake, a stage (`@mobaro_lake`). Defaults to
    /// LAKE_URL.
    #[arg(long)]
    pub location: Option<String>,

    /// Prefix of the table names (e.g. `analytics.mobaro_`).
    #[arg(long, default_value = "mobaro_")]
    pub name_prefix: String,

    /// BigQuery reads Delta tables through a BigLake connection to the
    /// bucket: its name, `project.region.connection`.
    #[arg(long, default_value = "my-project.us.mobaro_lake")]
    pub bigquery_connection: String,
}

impl Config {
    /// The topic as the lake knows it: `{topic}`, or `{topic}@{source id}`.
    pub(crate) fn source(&self) -> String {
        if self.source_id.is_empty() {
            self.enriched_topic.clone()
        } else {
            format!("{}@{}", self.enriched_topic, self.source_id)
        }
    }

    /// How files are uploaded.
    pub(crate) fn upload(&self) -> lake::Upload {
        lake::Upload {
            multipart_threshold: self.multipart_threshold,
            part_size: self.multipart_part_size,
        }
    }
}

/// A source id as `SINK_SOURCE_ID` takes it (see [`Config::source_id`]).
fn parse_source_id(value: &str) -> Result<String, String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if value.len() <= 64 && value.chars().all(allowed) {
        Ok(value.to_string())
    } else {
        Err("use at most 64 letters, digits, '.', '_' or '-'".into())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_source_id;

    #[test]
    fn a_source_id_is_a_plain_name() {
        for good in ["", "cluster-b", "msk.eu_west_1"] {
            assert_eq!(parse_source_id(good).as_deref(), Ok(good));
        }
        for bad in ["cluster b", "a/b", "a@b", "a+b", "é", &"x".repeat(65)] {
            assert!(parse_source_id(bad).is_err(), "{bad:?}");
        }
    }
}
