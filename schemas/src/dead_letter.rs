//! The dead-letter vocabulary: which stage gave up on a record, why, and
//! where the record came from, carried in the dead-letter record's headers.
//! Both stages write it and `enricher replay-dead-letters` reads it, through
//! [`DeadLetter::headers`] and [`DeadLetter::from_headers`].

use std::fmt;
use std::str::FromStr;

use crate::headers::{
    DLQ_ATTEMPTS, DLQ_ERROR, DLQ_ERROR_CLASS, DLQ_HTTP_STATUS, DLQ_ORIGINAL_OFFSET,
    DLQ_ORIGINAL_PARTITION, DLQ_ORIGINAL_TOPIC, DLQ_STAGE,
};

/// The stage that gave up on a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The enricher: the record could not be fetched or produced.
    Enricher,
    /// The sink: the enriched record could not be decoded.
    Sink,
}

impl Stage {
    /// The name in the `dlq_stage` header.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Enricher => "enricher",
            Stage::Sink => "sink",
        }
    }
}

/// Why a record was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum DeadLetterClass {
    /// The raw event is not a webhook the enricher can read.
    Unparsable,
    /// The API refused the key (401, or 403 for every record).
    Unauthorized,
    /// The API refused this one record (403) while the key reads others.
    Forbidden,
    /// The API answered another 4xx, or a body that is not JSON.
    Permanent,
    /// Every attempt failed transiently (429, 5xx, timeouts).
    Exhausted,
    /// The record's URL could not be built from the path template.
    InvalidUrl,
    /// The broker refuses the enriched record for good (too large).
    RefusedByBroker,
    /// The sink could not decode the enriched record.
    Undecodable,
}

impl DeadLetterClass {
    /// Every class, in declaration order.
    pub const ALL: [DeadLetterClass; 8] = [
        DeadLetterClass::Unparsable,
        DeadLetterClass::Unauthorized,
        DeadLetterClass::Forbidden,
        DeadLetterClass::Permanent,
        DeadLetterClass::Exhausted,
        DeadLetterClass::InvalidUrl,
        DeadLetterClass::RefusedByBroker,
        DeadLetterClass::Undecodable,
    ];

    /// The name in the `dlq_error_class` header and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterClass::Unparsable => "unparsable",
            DeadLetterClass::Unauthorized => "unauthorized",
            DeadLetterClass::Forbidden => "forbidden",
            DeadLetterClass::Permanent => "permanent",
            DeadLetterClass::Exhausted => "exhausted",
            DeadLetterClass::InvalidUrl => "invalid_url",
            DeadLetterClass::RefusedByBroker => "refused_by_broker",
            DeadLetterClass::Undecodable => "undecodable",
        }
    }
}

impl fmt::Display for DeadLetterClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeadLetterClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeadLetterClass::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown dead-letter class {s:?}"))
    }
}

/// Where a record was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Its topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
}

/// Why a stage gave up on a record, as its dead-letter headers say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The stage that gave up.
    pub stage: Stage,
    /// Why.
    pub class: DeadLetterClass,
    /// The error, for people.
    pub error: String,
    /// The API's HTTP status, when one answered.
    pub http_status: Option<u16>,
    /// Attempts made before giving up.
    pub attempts: u32,
    /// Where the record was read from.
    pub original: Position,
}

/// Dead-letter headers that are missing or unreadable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeadLetterHeaderError {
    /// A required header is absent.
    #[error("dead-letter header {0} is missing")]
    Missing(&'static str),
    /// A header's value is not what it should be.
    #[error("dead-letter header {name} has an unreadable value {value:?}")]
    Invalid {
        /// The header's name.
        name: &'static str,
        /// Its value.
        value: String,
    },
}

impl DeadLetter {
    /// The headers that carry it, to add to the record's own.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            (DLQ_STAGE, self.stage.as_str().to_string()),
            (DLQ_ERROR_CLASS, self.class.as_str().to_string()),
            (DLQ_ERROR, self.error.clone()),
            (
                DLQ_HTTP_STATUS,
                self.http_status.map(|s| s.to_string()).unwrap_or_default(),
            ),
            (DLQ_ATTEMPTS, self.attempts.to_string()),
            (DLQ_ORIGINAL_TOPIC, self.original.topic.clone()),
            (DLQ_ORIGINAL_PARTITION, self.original.partition.to_string()),
            (DLQ_ORIGINAL_OFFSET, self.original.offset.to_string()),
        ]
    }

    /// Reads it back from a record's headers; `header` looks one up by name.
    pub fn from_headers<'a>(
        header: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<DeadLetter, DeadLetterHeaderError> {
        let required =
            |name: &'static str| header(name).ok_or(DeadLetterHeaderError::Missing(name));
        fn parse<T: FromStr>(name: &'static str, value: &str) -> Result<T, DeadLetterHeaderError> {
            value.parse().map_err(|_| DeadLetterHeaderError::Invalid {
                name,
                value: value.to_string(),
            })
        }
        let stage = match required(DLQ_STAGE)? {
            "enricher" => Stage::Enricher,
            "sink" => Stage::Sink,
            other => {
                return Err(DeadLetterHeaderError::Invalid {
                    name: DLQ_STAGE,
                    value: other.to_string(),
                })
            }
        };
        Ok(DeadLetter {
            stage,
            class: parse(DLQ_ERROR_CLASS, required(DLQ_ERROR_CLASS)?)?,
            error: header(DLQ_ERROR).unwrap_or_default().to_string(),
            http_status: match header(DLQ_HTTP_STATUS) {
                None | Some("") => None,
                Some(status) => Some(parse(DLQ_HTTP_STATUS, status)?),
            },
            attempts: match header(DLQ_ATTEMPTS) {
                None | Some("") => 0,
                Some(attempts) => parse(DLQ_ATTEMPTS, attempts)?,
            },
            original: Position {
                topic: required(DLQ_ORIGINAL_TOPIC)?.to_string(),
                partition: parse(DLQ_ORIGINAL_PARTITION, required(DLQ_ORIGINAL_PARTITION)?)?,
                offset: parse(DLQ_ORIGINAL_OFFSET, required(DLQ_ORIGINAL_OFFSET)?)?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_read_back_to_the_same_dead_letter() {
        for class in DeadLetterClass::ALL {
            let letter = DeadLetter {
                stage: Stage::Enricher,
                class,
                error: "mobaro api answered http 400: no".into(),
                http_status: Some(400),
                attempts: 3,
                original: Position {
                    topic: "mobaro.webhooks.raw".into(),
                    partition: 2,
                    offset: 41,
                },
            };
            let headers = letter.headers();
            let read = DeadLetter::from_headers(|name| {
                headers
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.as_str())
            });
            assert_eq!(read, Ok(letter));
        }
    }

    #[test]
    fn a_class_name_that_does_not_exist_is_refused() {
        assert!("exhausted".parse::<DeadLetterClass>().is_ok());
        assert!("exhuasted".parse::<DeadLetterClass>().is_err());
        let missing = DeadLetter::from_headers(|_| None);
        assert_eq!(missing, Err(DeadLetterHeaderError::Missing(DLQ_STAGE)));
    }
}
