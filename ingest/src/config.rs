use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use runtime::KafkaArgs;

use crate::signature::{Secret, SignatureForm};

/// Receives Mobaro webhooks, verifies their signature and produces them to Kafka.
/// A webhook is answered 202 only after the broker acknowledged it.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "ingest", version)]
pub struct Config {
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

    /// Create missing topics at start-up.
    #[arg(long, env = "CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub create_topics: bool,

    #[command(flatten)]
    pub kafka: KafkaArgs,
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
