//! The webhook event exactly as Mobaro documents it:
//! `{"resource":"Users","event":"Updated","objectId":"...","timestamp":"2025-01-27T10:12:44Z"}`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
/// Why a body is not a webhook event.
pub enum EventParseError {
    #[error("body is not the documented webhook JSON: {0}")]
    /// Not the documented JSON.
    Json(String),
    #[error("unknown resource {0:?} (expected Users, Locations, Results, Assignments, Notes or Downtimes)")]
    /// A resource name Mobaro does not document.
    UnknownResource(String),
    #[error("unknown event {0:?} (expected Created, Updated or Deleted)")]
    /// An event name Mobaro does not document.
    UnknownEvent(String),
    #[error("objectId is empty")]
    /// An empty `objectId`.
    EmptyObjectId,
}

macro_rules! name_enum {
    ($(#[$meta:meta])* $name:ident, $error:ident, { $($variant:ident => $canonical:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $(#[doc = concat!("`", $canonical, "`")] $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name as Mobaro documents it.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $canonical),+ }
            }
        }

        impl FromStr for $name {
            type Err = EventParseError;
            /// Case-insensitive: Mobaro's casing is not guaranteed.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $(if s.trim().eq_ignore_ascii_case($canonical) { return Ok($name::$variant); })+
                Err(EventParseError::$error(s.to_string()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> { s.serialize_str(self.as_str()) }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Name;
                impl serde::de::Visitor<'_> for Name {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str(concat!("a ", stringify!($name), " name"))
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        v.parse().map_err(E::custom)
                    }
                }
                d.deserialize_str(Name)
            }
        }
    };
}

name_enum!(
    /// The kind of Mobaro record a webhook is about.
    Resource, UnknownResource, {
        Users => "Users",
        Locations => "Locations",
        Results => "Results",
        Assignments => "Assignments",
        Notes => "Notes",
        Downtimes => "Downtimes",
    }
);

name_enum!(
    /// What happened to the record.
    EventKind, UnknownEvent, {
        Created => "Created",
        Updated => "Updated",
        Deleted => "Deleted",
        // Not a webhook: the state of a record as a backfill listed it.
        Snapshot => "Snapshot",
    }
);

impl Resource {
    /// Lower-case plural, as in Mobaro's API paths and ids (`users/112899-C`) and
    /// in our table names.
    pub fn collection(self) -> &'static str {
        match self {
            Resource::Users => "users",
            Resource::Locations => "locations",
            Resource::Results => "results",
            Resource::Assignments => "assignments",
            Resource::Notes => "notes",
            Resource::Downtimes => "downtimes",
        }
    }
}

/// A deterministic id of a webhook event, derived from its content.
///
/// Mobaro sends no delivery id, and retries deliver the same body again, so the id
/// is a hash of (resource, event, objectId, timestamp) in canonical form: every
/// duplicate delivery carries the same id, whatever the casing it arrived in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(String);

impl EventId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A parsed webhook event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// The resource that changed.
    pub resource: Resource,
    /// What happened to it.
    pub event: EventKind,
    /// Opaque: a UUID in Mobaro's article, `users/112899-C` in its API.
    #[serde(rename = "objectId")]
    pub object_id: String,
    /// When Mobaro says it happened.
    pub timestamp: DateTime<Utc>,
}

impl WebhookEvent {
    /// Parses the documented body. Unknown extra fields are ignored so that Mobaro
    /// can add fields without breaking ingestion.
    pub fn from_json(body: &[u8]) -> Result<Self, EventParseError> {
        #[derive(Deserialize)]
        struct Wire {
            resource: String,
            event: String,
            #[serde(rename = "objectId")]
            object_id: String,
            timestamp: DateTime<Utc>,
        }
        let wire: Wire =
            serde_json::from_slice(body).map_err(|e| EventParseError::Json(e.to_string()))?;
        if wire.object_id.trim().is_empty() {
            return Err(EventParseError::EmptyObjectId);
        }
        Ok(WebhookEvent {
            resource: wire.resource.parse()?,
            event: wire.event.parse()?,
            object_id: wire.object_id,
            timestamp: wire.timestamp,
        })
    }

    /// The event's deterministic id in the default account.
    pub fn event_id(&self) -> EventId {
        self.event_id_in(crate::DEFAULT_ACCOUNT)
    }

    /// The event's deterministic id in `account`: the same event posted to
    /// two accounts is two events. The default account's ids are those of
    /// events before accounts existed, so a lake written then deduplicates
    /// against later deliveries.
    pub fn event_id_in(&self, account: &str) -> EventId {
        let mut hasher = Sha256::new();
        if account != crate::DEFAULT_ACCOUNT {
            hasher.update(b"account\0");
            hasher.update(account.as_bytes());
            hasher.update([0u8]);
        }
        for part in [
            self.resource.as_str(),
            self.event.as_str(),
            &self.object_id,
            &self.timestamp.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        ] {
            hasher.update(part.as_bytes());
            hasher.update([0u8]);
        }
        let digest = hasher.finalize();
        EventId(hex::encode(&digest[..16]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DOCUMENTED: &str = r#"{"resource":"Users","event":"Updated","objectId":"17b5a981-c3df-4973-a82b-5a2d43d812c2","timestamp":"2025-01-27T10:12:44Z"}"#;

    #[test]
    fn parses_the_documented_body() {
        let event = WebhookEvent::from_json(DOCUMENTED.as_bytes()).expect("parses");
        assert_eq!(event.resource, Resource::Users);
        assert_eq!(event.event, EventKind::Updated);
        assert_eq!(event.object_id, "17b5a981-c3df-4973-a82b-5a2d43d812c2");
        assert_eq!(event.timestamp.to_rfc3339(), "2025-01-27T10:12:44+00:00");
    }

    #[test]
    fn names_match_case_insensitively_and_ids_ignore_casing() {
        let shouted = DOCUMENTED
            .replace("Users", "USERS")
            .replace("Updated", "updated");
        let event = WebhookEvent::from_json(shouted.as_bytes()).expect("parses");
        assert_eq!(event.resource, Resource::Users);
        let original = WebhookEvent::from_json(DOCUMENTED.as_bytes()).expect("parses");
        assert_eq!(event.event_id(), original.event_id());
    }

    #[test]
    fn equal_instants_in_other_offsets_share_an_id() {
        let shifted = DOCUMENTED.replace("10:12:44Z", "12:12:44+02:00");
        let a = WebhookEvent::from_json(shifted.as_bytes()).expect("parses");
        let b = WebhookEvent::from_json(DOCUMENTED.as_bytes()).expect("parses");
        assert_eq!(a.event_id(), b.event_id());
    }

    #[test]
    fn rejects_unknown_names_and_empty_ids() {
        let unknown = DOCUMENTED.replace("Users", "Widgets");
        assert_eq!(
            WebhookEvent::from_json(unknown.as_bytes()),
            Err(EventParseError::UnknownResource("Widgets".into()))
        );
        let empty = DOCUMENTED.replace("17b5a981-c3df-4973-a82b-5a2d43d812c2", " ");
        assert_eq!(
            WebhookEvent::from_json(empty.as_bytes()),
            Err(EventParseError::EmptyObjectId)
        );
        assert!(matches!(
            WebhookEvent::from_json(b"not json"),
            Err(EventParseError::Json(_))
        ));
    }

    proptest! {
        #[test]
        fn event_ids_differ_when_any_part_differs(a in "[a-z0-9/-]{1,20}", b in "[a-z0-9/-]{1,20}") {
            prop_assume!(a != b);
            let mut first = WebhookEvent::from_json(DOCUMENTED.as_bytes()).expect("parses");
            let mut second = first.clone();
            first.object_id = a;
            second.object_id = b;
            prop_assert_ne!(first.event_id(), second.event_id());
        }
    }
}
