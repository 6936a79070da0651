//! `ingest replay`: quarantined requests re-verified with the current
//! configuration and published to the raw topic when they now pass.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use rdkafka::Message;
use schemas::{headers, WebhookEvent};

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
    /// Records per outcome (`replayed`, `skipped_reason`, ...).
    pub outcomes: BTreeMap<String, u64>,
}

/// Replays the quarantine topic from its start to its end as of now.
pub async fn replay(config: &Config, args: &ReplayArgs) -> Result<ReplayReport, IngestError> {
    let secrets = config.secrets().map_err(IngestError::Secrets)?;
    // Without a secret every quarantined request would go out as if
    // unsigned, forged ones included: only when asked for, as the server.
    if secrets.is_empty() && !config.insecure_accept_unsigned {
        return Err(IngestError::NoSecret);
    }
    let verifier = Verifier::new(secrets, config.signature_forms.clone());
    let publisher = Publisher::new(&config.kafka, &config.raw_topic, Duration::from_secs(30))?;
    let kafka = config.kafka.clone();
    let topic = config.quarantine_topic.clone();
    let records = tokio::task::spawn_blocking(move || runtime::read_topic_to_end(&kafka, &topic))
        .await
        .expect("the reader does not panic")?;
    let mut report = ReplayReport::default();
    let mut tally = |outcome: &str| *report.outcomes.entry(outcome.to_string()).or_default() += 1;
    let mut replayed = 0;
    for message in &records {
        let Ok(request) =
            serde_json::from_slice::<QuarantinedRequest>(message.payload().unwrap_or_default())
        else {
            tally("unreadable_record");
            continue;
        };
        if !args.reason.is_empty() && !args.reason.contains(&request.reason) {
            tally("skipped_reason");
            continue;
        }
        if request.body_truncated {
            tally("body_truncated");
            continue;
        }
        let Ok(body) = request.body() else {
            tally("unreadable_record");
            continue;
        };
        let matched = if verifier.has_secrets() {
            match verifier.verify(&body, request.signature.as_deref()) {
                Ok(matched) => matched.label(),
                Err(_) => {
                    tally("still_bad_signature");
                    continue;
                }
            }
        } else {
            "unsigned"
        };
        let event = match WebhookEvent::from_json(&body) {
            Ok(event) => event,
            Err(_) => {
                tally("still_unparsable");
                continue;
            }
        };
        if args.dry_run {
            tally("would_replay");
            continue;
        }
        let event_id = event.event_id();
        let received_at = request
            .received_at
            .to_rfc3339_opts(SecondsFormat::Micros, true);
        let replayed_at = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
        publisher
            .publish(RawRecord {
                key: &event.object_id,
                body: &body,
                headers: &[
                    (headers::EVENT_ID, event_id.as_str()),
                    (headers::RECEIVED_AT, &received_at),
                    (headers::SIGNATURE_FORM, matched),
                    ("replayed_at", &replayed_at),
                ],
            })
            .await?;
        replayed += 1;
        tally("replayed");
    }
    report.replayed = replayed;
    Ok(report)
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
