//! Why `ingest` quarantined a request: the `reason` of a quarantine record,
//! and the values `ingest replay --reason` accepts.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a request was rejected and kept in the quarantine topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum QuarantineReason {
    /// No `X-Webhook-Signature` header.
    MissingSignature,
    /// The signature matches no configured secret.
    BadSignature,
    /// More signatures, or a longer header, than ingest reads.
    OversizedSignature,
    /// The shared token header is missing or wrong.
    BadToken,
    /// The body is larger than the limit.
    TooLarge,
    /// The body could not be read.
    Unreadable,
    /// Signed, but not the documented JSON.
    Malformed,
    /// Signed and well-formed, but an unknown resource or event name.
    UnknownName,
    /// The broker refuses the event for good (over its size limit).
    RefusedByBroker,
}

impl QuarantineReason {
    /// The reason's name in records and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            QuarantineReason::MissingSignature => "missing_signature",
            QuarantineReason::BadSignature => "bad_signature",
            QuarantineReason::OversizedSignature => "oversized_signature",
            QuarantineReason::BadToken => "bad_token",
            QuarantineReason::TooLarge => "too_large",
            QuarantineReason::Unreadable => "unreadable",
            QuarantineReason::Malformed => "malformed",
            QuarantineReason::UnknownName => "unknown_name",
            QuarantineReason::RefusedByBroker => "refused_by_broker",
        }
    }
}

impl fmt::Display for QuarantineReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn serde_clap_and_display_agree_on_every_name() {
        for reason in QuarantineReason::value_variants() {
            let json = serde_json::to_string(reason).expect("serializes");
            assert_eq!(json, format!("\"{}\"", reason.as_str()));
            assert_eq!(
                QuarantineReason::from_str(reason.as_str(), false),
                Ok(*reason)
            );
        }
    }
}
