use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use runtime::KafkaArgs;
use schemas::QuarantineReason;

use crate::signature::{Secret, SignatureForm};

/// Receives Mobaro webhooks, verifies their signature and produces them to Kafka.
/// A webhook is answered 202 only after the broker acknowledged it.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "ingest", version)]
pub struct Config {
    #[command(subcommand)]
    /// A one-off command instead of the server.
    pub command: Option<Command>,

    /// Address to listen on for webhooks and the operations endpoints.
    #[arg(long, env = "INGEST_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Webhook secrets, comma separated: one per Mobaro webhook, or old and new
    /// during a rotation. Never logged.
    #[arg(
        long = "webhook-secret",
        env = "MOBARO_WEBHOOK_SECRETS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub webhook_secrets: Vec<String>,

    /// File with one webhook secret per line (blank lines and `#` comments skipped).
    #[arg(long, env = "MOBARO_WEBHOOK_SECRETS_FILE")]
    pub webhook_secrets_file: Option<PathBuf>,

    /// TOML file listing the Mobaro accounts served, each with its webhook
    /// secrets (README, "Several Mobaro accounts"); read again on SIGHUP and
    /// when it changes. Without it, the secrets above are those of the one
    /// account `default`.
    #[arg(long, env = "MOBARO_ACCOUNTS_FILE")]
    pub accounts_file: Option<PathBuf>,

    /// Accept webhooks without verifying signatures. Only for trials: anybody who
    /// can reach the endpoint can then write into the lake.
    #[arg(long, env = "INGEST_INSECURE_ACCEPT_UNSIGNED")]
    pub insecure_accept_unsigned: bool,

    /// Signature encodings to accept (hex, HEX, base64); default all. Pin it once
    /// the `ingest_signature_matches_total` metric shows what Mobaro sends.
    #[arg(
        long = "signature-form",
        env = "INGEST_SIGNATURE_FORMS",
        value_delimiter = ','
    )]
    pub signature_forms: Vec<SignatureForm>,

    /// Topic receiving verified webhooks.
    #[arg(long, env = "RAW_TOPIC", default_value = schemas::topics::RAW)]
    pub raw_topic: String,

    /// Longest wait for the broker's acknowledgement before answering 503
    /// (Mobaro expects an answer within 5 s).
    #[arg(long, env = "INGEST_ACK_TIMEOUT", default_value = "4s", value_parser = humantime::parse_duration)]
    pub ack_timeout: Duration,

    /// Largest accepted body in bytes; larger requests get 413.
    #[arg(long, env = "INGEST_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,

    /// Header that every genuine request carries with the value of
    /// `--shared-token` (Mobaro's "Additional headers"), e.g. `X-Mobaro-Token`.
    #[arg(long, env = "INGEST_SHARED_TOKEN_HEADER", requires = "shared_token")]
    pub shared_token_header: Option<String>,

    /// The shared token's value; compared in constant time, never logged.
    #[arg(
        long,
        env = "INGEST_SHARED_TOKEN",
        hide_env_values = true,
        requires = "shared_token_header"
    )]
    pub shared_token: Option<String>,

    /// Request headers copied into the Kafka record as `http.<name>`
    /// (comma separated).
    #[arg(
        long = "forward-header",
        env = "INGEST_FORWARD_HEADERS",
        value_delimiter = ','
    )]
    pub forward_headers: Vec<String>,

    /// Topic keeping rejected requests for inspection and `ingest replay`.
    #[arg(long, env = "QUARANTINE_TOPIC", default_value = schemas::topics::QUARANTINE)]
    pub quarantine_topic: String,

    /// Quarantine writes per second, so that a flood cannot fill the broker.
    #[arg(long, env = "INGEST_QUARANTINE_RATE", default_value_t = 20.0)]
    pub quarantine_rate: f64,

    /// Quarantine writes allowed at once above the rate.
    #[arg(long, env = "INGEST_QUARANTINE_BURST", default_value_t = 200)]
    pub quarantine_burst: u32,

    /// Bytes of a rejected body kept in quarantine.
    #[arg(long, env = "INGEST_QUARANTINE_BODY_BYTES", default_value_t = 16 * 1024)]
    pub quarantine_body_bytes: usize,

    /// Longest time for one request, body upload included.
    #[arg(long, env = "INGEST_REQUEST_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// Requests handled at once; more are answered 503 at once.
    #[arg(long, env = "INGEST_MAX_CONCURRENT_REQUESTS", default_value_t = 1024)]
    pub max_concurrent_requests: usize,

    /// PEM certificate chain; with `--tls-key`, serve HTTPS (Mobaro asks for it).
    #[arg(long, env = "INGEST_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for `--tls-cert`.
    #[arg(long, env = "INGEST_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Create missing topics at start-up.
    #[arg(long, env = "CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub create_topics: bool,

    #[command(flatten)]
    /// Broker address and client options.
    pub kafka: KafkaArgs,
}

#[derive(Debug, Clone, clap::Subcommand)]
/// Ingest's subcommands; without one it serves webhooks.
pub enum Command {
    /// Re-verify quarantined requests with the current secrets and publish those
    /// that now pass to the raw topic; prints what was replayed and what not.
    Replay(ReplayArgs),
}

#[derive(Debug, Clone, clap::Args)]
/// What `replay` replays.
pub struct ReplayArgs {
    /// Only replay requests quarantined for these reasons (comma separated),
    /// e.g. `bad_signature,missing_signature`.
    #[arg(long, value_delimiter = ',')]
    pub reason: Vec<QuarantineReason>,

    /// Report what would be replayed without publishing.
    #[arg(long)]
    pub dry_run: bool,
}

impl Config {
    /// Secrets from the flag or env and from the file, in that order.
    pub fn secrets(&self) -> std::io::Result<Vec<Secret>> {
        let mut secrets: Vec<Secret> = self
            .webhook_secrets
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(Secret::new)
            .collect();
        if let Some(path) = &self.webhook_secrets_file {
            let text = std::fs::read_to_string(path)?;
            secrets.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(Secret::new),
            );
        }
        Ok(secrets)
    }
}
