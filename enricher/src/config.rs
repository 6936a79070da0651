use std::net::SocketAddr;
use std::time::Duration;

use runtime::{KafkaArgs, MembershipArgs};
use schemas::{DeadLetterClass, Resource};
use url::Url;

pub use crate::api_key::ApiKey;

// Parsed once at start: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, clap::Subcommand)]
/// The enricher's subcommands; without one it runs the pipeline stage.
pub enum Command {
    /// Put the events the enricher dead-lettered back on the raw topic, to be
    /// enriched again (after an API outage, or a fixed path template); prints a
    /// count per outcome. Events replayed twice deduplicate on `event_id`.
    ReplayDeadLetters(ReplayArgs),
    /// Load Mobaro's records (history from before the pipeline, or what
    /// webhooks missed) by paging through the list endpoints; produces one
    /// enriched `Snapshot` record per object, resumable after a crash.
    Backfill(crate::backfill::BackfillArgs),
}

#[derive(Debug, Clone, clap::Args)]
/// What `replay-dead-letters` replays.
pub struct ReplayArgs {
    /// Only replay these error classes (comma separated), e.g.
    /// `exhausted,unauthorized` after an API outage or a fixed key.
    #[arg(long, value_delimiter = ',')]
    pub class: Vec<DeadLetterClass>,

    /// Report what would be replayed without publishing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Consumes raw webhooks, fetches the full record of the resources configured for
/// enrichment from Mobaro's API, and produces one enriched record per event.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "enricher", version)]
pub struct Config {
    #[command(subcommand)]
    /// A one-off command instead of the stage.
    pub command: Option<Command>,

    /// TOML file listing the Mobaro accounts served, each with its API key
    /// and, optionally, base URL, rate and resources (README, "Several
    /// Mobaro accounts"); read again on SIGHUP and when it changes. Without
    /// it, the API settings below are those of the one account `default`;
    /// with it, they are the defaults of what an account leaves out.
    #[arg(long, env = "MOBARO_ACCOUNTS_FILE")]
    pub accounts_file: Option<std::path::PathBuf>,

    /// Base URL of Mobaro's customer API.
    #[arg(
        long,
        env = "MOBARO_API_URL",
        default_value = "https://app.mobaro.com/api/customers/"
    )]
    pub api_url: Url,

    /// Mobaro API key, sent as `x-api-key`.
    #[arg(
        long,
        env = "MOBARO_API_KEY",
        hide_env_values = true,
        default_value = ""
    )]
    pub api_key: ApiKey,

    /// Path of a record under the base URL. `{collection}` is the resource's
    /// lower-case plural (`results`), `{id}` the URL-encoded objectId, `{id_tail}`
    /// the URL-encoded part after the last `/` (`123-A` of `results/123-A`).
    #[arg(
        long,
        env = "MOBARO_API_PATH_TEMPLATE",
        default_value = "{collection}/{id}"
    )]
    pub path_template: String,

    /// Resources whose full record is fetched; the others pass through as
    /// events. The marts need Locations (time zone, opening hours),
    /// Downtimes (category, times) and Assignments (due, resolved).
    #[arg(
        long = "enrich",
        env = "ENRICH_RESOURCES",
        value_delimiter = ',',
        default_value = "Results,Users,Locations,Downtimes,Assignments"
    )]
    pub enrich: Vec<Resource>,

    /// Timeout of one API request.
    #[arg(long, env = "MOBARO_API_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub api_timeout: Duration,

    /// Allow plain http to an API on another machine (the key then crosses
    /// the network unencrypted). Plain http to this machine is always allowed.
    #[arg(long, env = "MOBARO_API_ALLOW_INSECURE_HTTP", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_insecure_http: bool,

    /// The largest response body read (a record or a list page); a larger
    /// one fails for good: the event goes to the dead-letter topic as
    /// `permanent`, a backfill stops.
    #[arg(long, env = "MOBARO_API_MAX_BODY", default_value = "32MiB", value_parser = runtime::parse_bytes)]
    pub api_max_body: usize,

    /// The longest `Retry-After` honoured as asked (a longer one is cut to
    /// it). Waits the API asks for do not count as failed attempts until
    /// they add up to this.
    #[arg(long, env = "MOBARO_API_MAX_RETRY_AFTER", default_value = "5m", value_parser = humantime::parse_duration)]
    pub api_max_retry_after: Duration,

    /// Attempts per record before it goes to the dead-letter topic.
    #[arg(long, env = "MOBARO_API_MAX_ATTEMPTS", default_value_t = 5)]
    pub max_attempts: u32,

    /// First retry delay; doubles per attempt, with jitter.
    #[arg(long, env = "MOBARO_API_BACKOFF", default_value = "1s", value_parser = humantime::parse_duration)]
    pub backoff: Duration,

    /// Records fetched and produced at once. Events of one object are always
    /// handled one after another, in order.
    #[arg(long, env = "ENRICHER_CONCURRENCY", default_value_t = 16)]
    pub concurrency: usize,

    /// Raw events taken from Kafka but not yet produced; above it, consumption
    /// pauses. Bounds memory.
    #[arg(long, env = "ENRICHER_MAX_IN_FLIGHT", default_value_t = 10_000)]
    pub max_in_flight: usize,

    /// API requests per second for this process, retries included; 0 means no
    /// limit. Mobaro's limit is shared by every key of the account: give each
    /// enricher instance its share (account budget / instances).
    #[arg(long, env = "MOBARO_API_RATE_LIMIT", default_value_t = 0.0)]
    pub api_rate_limit: f64,

    /// Requests allowed at once above the rate.
    #[arg(long, env = "MOBARO_API_RATE_BURST", default_value_t = 5)]
    pub api_rate_burst: u32,

    /// Reuse a fetched User for this long (0s: always fetch). Users change
    /// rarely and are referenced often.
    #[arg(long, env = "ENRICHER_USER_CACHE_TTL", default_value = "0s", value_parser = humantime::parse_duration)]
    pub user_cache_ttl: Duration,

    /// At shutdown, how long events in flight may take to finish before the
    /// rest is left uncommitted (and enriched again after restart).
    #[arg(long, env = "ENRICHER_DRAIN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,

    /// Topic of raw webhooks to consume.
    #[arg(long, env = "RAW_TOPIC", default_value = schemas::topics::RAW)]
    pub raw_topic: String,

    /// Topic receiving enriched records.
    #[arg(long, env = "ENRICHED_TOPIC", default_value = schemas::topics::ENRICHED)]
    pub enriched_topic: String,

    /// Topic receiving events that could not be enriched, with the reason.
    #[arg(long, env = "DEAD_LETTER_TOPIC", default_value = schemas::topics::DEAD_LETTER)]
    pub dead_letter_topic: String,

    /// Consumer group id; instances sharing it split the raw topic's partitions.
    #[arg(long, env = "ENRICHER_GROUP_ID", default_value = "mobaro-enricher")]
    pub group_id: String,

    /// Address of `/healthz`, `/readyz` and `/metrics`.
    #[arg(long, env = "ENRICHER_OPS_LISTEN", default_value = "0.0.0.0:8081")]
    pub ops_listen: SocketAddr,

    /// The lake whose erasure ledger to consult (the sink's LAKE_URL, with
    /// read access to its `_erasure/` prefix): the enricher and the backfill
    /// then leave out a forgotten person's User records and erase them in
    /// every other record before producing it, so the enriched topic does
    /// not carry them again (see README, Personal data and erasure). Unset,
    /// only the sink screens, before writing.
    #[arg(long, env = "ERASURE_LEDGER")]
    pub erasure_ledger: Option<String>,

    /// Key of the erasure ledger's hashes (hex), as the sink's.
    #[arg(long, env = "ERASURE_KEY", hide_env_values = true)]
    pub erasure_key: Option<lake::ErasureKey>,

    /// Create missing topics at start-up.
    #[arg(long, env = "CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub create_topics: bool,

    #[command(flatten)]
    /// Broker address and client options.
    pub kafka: KafkaArgs,

    #[command(flatten)]
    /// How the instance joins its consumer group.
    pub membership: MembershipArgs,
}
