use std::net::SocketAddr;
use std::time::Duration;

use runtime::KafkaArgs;

use crate::encoding::Compression;

/// Consumes enriched records and writes them as Hive-partitioned Parquet files
/// (`{table}/dt=YYYY-MM-DD/`) to a local folder or an object store.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "sink", version)]
pub struct Config {
    /// Where the lake lives: a folder (`./lake`, `file:///data/lake`), or
    /// `s3://bucket/prefix` with the endpoint and credentials from the usual AWS
    /// variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    /// AWS_REGION), or `memory://` for trials.
    #[arg(long, env = "LAKE_URL", default_value = "./lake")]
    pub lake_url: String,

    /// Close a file after this many rows.
    #[arg(long, env = "SINK_MAX_FILE_ROWS", default_value_t = 500_000)]
    pub max_file_rows: usize,

    /// Close a file once its oldest record has waited this long.
    #[arg(long, env = "SINK_MAX_FILE_AGE", default_value = "5m", value_parser = humantime::parse_duration)]
    pub max_file_age: Duration,

    /// Parquet compression: zstd, snappy or none.
    #[arg(long, env = "SINK_COMPRESSION", default_value = "zstd")]
    pub compression: Compression,

    /// Topic of enriched records to consume.
    #[arg(long, env = "ENRICHED_TOPIC", default_value = schemas::topics::ENRICHED)]
    pub enriched_topic: String,

    /// Topic receiving records that cannot be written, with the reason.
    #[arg(long, env = "DEAD_LETTER_TOPIC", default_value = schemas::topics::DEAD_LETTER)]
    pub dead_letter_topic: String,

    /// Consumer group id; instances sharing it split the topic's partitions.
    #[arg(long, env = "SINK_GROUP_ID", default_value = "mobaro-sink")]
    pub group_id: String,

    /// Address of `/healthz`, `/readyz` and `/metrics`.
    #[arg(long, env = "SINK_OPS_LISTEN", default_value = "0.0.0.0:8082")]
    pub ops_listen: SocketAddr,

    /// Create missing topics at start-up.
    #[arg(long, env = "CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub create_topics: bool,

    #[command(flatten)]
    pub kafka: KafkaArgs,
}
