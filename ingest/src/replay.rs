//! `ingest replay`: quarantined requests re-verified with the current
//! configuration and published to the raw topic when they now pass.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rdkafka::Message;
use schemas::{headers, WebhookEvent};

use crate::accounts::{verifiers_of, ByAccount};
use crate::config::{Config, ReplayArgs};
use crate::publisher::{Publisher, RawRecord};
use crate::quarantine::QuarantinedRequest;
use crate::signature::Verifier;
use crate::IngestError;

/// What a replay did, per outcome.
#[derive(Debug, Default)]
pub struct ReplayReport {
    /// Requests published to the raw topic.
    pub replayed: u64,
    /// Records per outcome.
    pub outcomes: BTreeMap<ReplayOutcome, u64>,
}

/// What became of one quarantined request (in the order printed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReplayOutcome {
    /// Its body was cut at the quarantine's limit: it cannot be verified.
    BodyTruncated,
    /// Published to the raw topic.
    Replayed,
    /// Its reason is not among those asked for.
    SkippedReason,
    /// Its signature still does not verify.
    StillBadSignature,
    /// It was posted to an account the configuration no longer has.
    UnknownAccount,
    /// Its body is still not a webhook event.
    StillUnparsable,
    /// The quarantine record itself cannot be read.
    UnreadableRecord,
    /// A dry run: it would be published.
    WouldReplay,
}

impl ReplayOutcome {
    /// The outcome's name, as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplayOutcome::BodyTruncated => "body_truncated",
            ReplayOutcome::Replayed => "replayed",
            ReplayOutcome::SkippedReason => "skipped_reason",
            ReplayOutcome::StillBadSignature => "still_bad_signature",
            ReplayOutcome::UnknownAccount => "unknown_account",
            ReplayOutcome::StillUnparsable => "still_unparsable",
            ReplayOutcome::UnreadableRecord => "unreadable_record",
            ReplayOutcome::WouldReplay => "would_replay",
        }
    }
}

impl std::fmt::Display for ReplayOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Replays the quarantine topic from its start to its end as of now.
pub async fn replay(config: &Config, args: &ReplayArgs) -> Result<ReplayReport, IngestError> {
    let verifiers = verifiers(config)?;
    let publisher = Publisher::new(
        &config.kafka,
        config.kafka.context().await?,
        &config.raw_topic,
        Duration::from_secs(30),
    )?;
    let context = config.kafka.context().await?;
    let kafka = config.kafka.clone();
    let topic = config.quarantine_topic.clone();
    let records =
        tokio::task::spawn_blocking(move || runtime::read_topic_to_end(&kafka, context, &topic))
            .await
            .expect("the reader does not panic")?;
    let mut report = ReplayReport::default();
    let mut tally = |outcome: ReplayOutcome| *report.outcomes.entry(outcome).or_default() += 1;
    let mut replayed = 0;
    for message in &records {
        let Ok(request) =
            serde_json::from_slice::<QuarantinedRequest>(message.payload().unwrap_or_default())
        else {
            tally(ReplayOutcome::UnreadableRecord);
            continue;
        };
        if !args.reason.is_empty() && !args.reason.contains(&request.reason) {
            tally(ReplayOutcome::SkippedReason);
            continue;
        }
        if request.body_truncated {
            tally(ReplayOutcome::BodyTruncated);
            continue;
        }
        let Ok(body) = request.body() else {
            tally(ReplayOutcome::UnreadableRecord);
            continue;
        };
        let Some(verifier) = verifiers.get(&request.account) else {
            tally(ReplayOutcome::UnknownAccount);
            continue;
        };
        let matched = if verifier.has_secrets() {
            match verifier.verify(&body, request.signature.as_deref()) {
                Ok(matched) => matched.label(),
                Err(_) => {
                    tally(ReplayOutcome::StillBadSignature);
                    continue;
                }
            }
        } else {
            "unsigned"
        };
        let event = match WebhookEvent::from_json(&body) {
            Ok(event) => event,
            Err(_) => {
                tally(ReplayOutcome::StillUnparsable);
                continue;
            }
        };
        if args.dry_run {
            tally(ReplayOutcome::WouldReplay);
            continue;
        }
        let account = request.account.as_str();
        let raw_headers = headers::RawHeaders {
            event_id: event.event_id_in(account).to_string(),
            account: (account != schemas::DEFAULT_ACCOUNT).then(|| account.to_string()),
            received_at: Some(request.received_at),
            signature_form: Some(matched.to_string()),
            replayed_at: Some(Utc::now()),
        }
        .encode();
        let record_headers: Vec<(&str, &str)> =
            raw_headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        publisher
            .publish(RawRecord {
                key: &schemas::object_key(account, &event.object_id),
                body: &body,
                headers: &record_headers,
            })
            .await?;
        replayed += 1;
        tally(ReplayOutcome::Replayed);
    }
    report.replayed = replayed;
    Ok(report)
}

/// The verifier of each account, as configured now: the accounts file's,
/// or the one default account of the secret variables.
fn verifiers(config: &Config) -> Result<ByAccount, IngestError> {
    if let Some(path) = &config.accounts_file {
        let accounts = runtime::accounts::load(path)?;
        return Ok(verifiers_of(&accounts, &config.signature_forms));
    }
    let secrets = config.secrets().map_err(IngestError::Secrets)?;
    // Without a secret every quarantined request would go out as if
    // unsigned, forged ones included: only when asked for, as the server.
    if secrets.is_empty() && !config.insecure_accept_unsigned {
        return Err(IngestError::NoSecret);
    }
    let verifier = Verifier::new(secrets, config.signature_forms.clone());
    Ok([(schemas::DEFAULT_ACCOUNT.to_string(), Arc::new(verifier))].into())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::Command;

    fn replay_args(config: &Config) -> &ReplayArgs {
        match &config.command {
            Some(Command::Replay(args)) => args,
            None => panic!("no replay command"),
        }
    }

    #[tokio::test]
    async fn replay_without_a_secret_refuses_unless_told() {
        // Port 1: nothing listens, so only the guard can answer in time.
        let config = Config::try_parse_from(["ingest", "--kafka-brokers", "127.0.0.1:1", "replay"])
            .expect("valid flags");
        let refused = replay(&config, replay_args(&config)).await;
        assert!(matches!(refused, Err(IngestError::NoSecret)), "{refused:?}");

        let insecure = Config::try_parse_from([
            "ingest",
            "--kafka-brokers",
            "127.0.0.1:1",
            "--insecure-accept-unsigned",
            "replay",
        ])
        .expect("valid flags");
        let passed_the_guard = tokio::time::timeout(
            Duration::from_millis(300),
            replay(&insecure, replay_args(&insecure)),
        )
        .await;
        assert!(
            !matches!(passed_the_guard, Ok(Err(IngestError::NoSecret))),
            "the explicit flag lets replay run"
        );
    }
}
