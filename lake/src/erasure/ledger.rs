//! The erasure ledger: who was forgotten, as a keyed hash of their User id
//! (never the id), with an audit of what each erasure did. Every writer
//! consults it, so that a replay of the topics, a backfill or a late
//! webhook about a forgotten person is erased the same way before it is
//! written.
//!
//! Layout under the lake's prefix:
//! - `_erasure/key`: the hashing key, 32 random bytes in hex, created by
//!   the first erasure (unless the key is given from a secret instead:
//!   then nothing in the lake can confirm a guessed id);
//! - `_erasure/ledger/<hash>/<millis>.json`: one audit entry per erasure
//!   run (a JSON table: `read_json('…/_erasure/ledger/*/*.json')`).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use hmac::{Hmac, Mac};
use object_store::ObjectStoreExt;
use schemas::Resource;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;

use super::redaction::{bare_id, erase_in};
use crate::store::{Lake, LakeError, Put};

const KEY: &str = "_erasure/key";
const ENTRIES: &str = "_erasure/ledger";

/// Why the ledger cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("reading or writing the erasure ledger: {0}")]
    /// The store failed.
    Store(#[from] LakeError),
    #[error("the erasure ledger lists {0} forgotten people but no hashing key is known: the lake has no `_erasure/key` and ERASURE_KEY is not set; set ERASURE_KEY to the key the erasures used")]
    /// Entries without a key to compare ids with.
    NoKey(usize),
    #[error("the erasure key is not usable: {0}")]
    /// The key is not hex, or empty.
    BadKey(String),
    #[error("an erasure ledger entry does not parse: {0}")]
    /// An entry is not ours.
    Entry(String),
}

/// What one erasure did to one table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableErased {
    /// The table.
    pub table: String,
    /// Data files read to find the person.
    pub files_read: usize,
    /// Files that held the person, replaced by rewritten ones.
    pub files_rewritten: usize,
    /// Bytes of the files rewritten.
    pub bytes_rewritten: u64,
    /// The person's own rows, deleted.
    pub rows_deleted: usize,
    /// Rows kept with the person's values erased.
    pub rows_redacted: usize,
    /// Files out of the table (removed earlier, or never committed) that
    /// held the person, deleted.
    pub stale_files_deleted: usize,
    /// Files whose statistics held bounds of personal columns, re-added
    /// without them.
    pub statistics_cleared: usize,
    /// Log entries and checkpoints before the erasure, removed.
    pub log_objects_removed: usize,
}

/// One erasure, as the ledger keeps it: no personal value in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Erasure {
    /// The keyed hash of the person's User id.
    pub person: String,
    /// Keyed hashes of the values hunted (name, e-mail, username), lower
    /// case: writers erase them as whole words in any text.
    #[serde(default)]
    pub values: Vec<String>,
    /// When the erasure started.
    pub started_at: DateTime<Utc>,
    /// When it finished; None while it runs (or if it was cut short: run
    /// it again).
    pub finished_at: Option<DateTime<Utc>>,
    /// What it did, per table.
    pub tables: Vec<TableErased>,
}

/// What happens to a record about to be written, by the ledger.
#[derive(Debug, PartialEq, Eq)]
pub enum Screened {
    /// It names no forgotten person.
    Clean,
    /// It is a forgotten person's own User record: not written.
    Dropped,
    /// The enriched record with the forgotten people's values erased.
    Erased(Vec<u8>),
}

/// The longest value, in words, looked for in a text (`Ava Hansen` is
/// two).
const MOST_WORDS: usize = 4;

/// The forgotten people, as keyed hashes, and the key.
#[derive(Clone, Default)]
pub struct Ledger {
    key: Option<Vec<u8>>,
    /// Entries read, by location: the person's hash, their values' hashes.
    entries: BTreeMap<String, (String, Vec<String>)>,
    forgotten: BTreeSet<String>,
    values: BTreeSet<String>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("forgotten", &self.forgotten.len())
            .finish()
    }
}

/// The ledger's hashing key from a secret (hex, at least 16 bytes); never
/// shown.
#[derive(Clone)]
pub struct ErasureKey(Vec<u8>);

impl std::fmt::Debug for ErasureKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ErasureKey(<redacted>)")
    }
}

impl std::str::FromStr for ErasureKey {
    type Err = LedgerError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_key(text).map(ErasureKey)
    }
}

fn parse_key(text: &str) -> Result<Vec<u8>, LedgerError> {
    let key = hex::decode(text.trim()).map_err(|e| LedgerError::BadKey(e.to_string()))?;
    if key.len() < 16 {
        return Err(LedgerError::BadKey("shorter than 16 bytes".into()));
    }
    Ok(key)
}

impl Ledger {
    /// The ledger of `lake`, with `key` (hex) when given, else the lake's.
    pub async fn open(lake: &Lake, key: Option<&ErasureKey>) -> Result<Ledger, LedgerError> {
        Ledger::read(lake, key, None).await
    }

    /// The ledger of `lake` again: entries `previous` read are not read
    /// again (an entry's hashes never change).
    pub async fn read(
        lake: &Lake,
        key: Option<&ErasureKey>,
        previous: Option<&Ledger>,
    ) -> Result<Ledger, LedgerError> {
        let listed = entries(lake).await?;
        let mut entries = BTreeMap::new();
        for object in listed {
            let location = object.location.to_string();
            if let Some(known) = previous.and_then(|p| p.entries.get(&location)) {
                entries.insert(location, known.clone());
                continue;
            }
            let Some(bytes) = lake.read_if_exists(&object.location).await? else {
                continue;
            };
            let erasure: Erasure = serde_json::from_slice(&bytes)
                .map_err(|e| LedgerError::Entry(format!("{location}: {e}")))?;
            entries.insert(location, (erasure.person, erasure.values));
        }
        let forgotten: BTreeSet<String> = entries.values().map(|(p, _)| p.clone()).collect();
        let values = entries.values().flat_map(|(_, v)| v.clone()).collect();
        let key = match key {
            Some(key) => Some(key.0.clone()),
            None => match lake.read_if_exists(&lake.path(KEY)).await? {
                Some(bytes) => Some(parse_key(&String::from_utf8_lossy(&bytes))?),
                None => None,
            },
        };
        if key.is_none() && !forgotten.is_empty() {
            return Err(LedgerError::NoKey(forgotten.len()));
        }
        Ok(Ledger {
            key,
            entries,
            forgotten,
            values,
        })
    }

    /// How many entries were read: it grows with each erasure run.
    pub fn entries(&self) -> usize {
        self.entries.len()
    }

    /// The ledger of `lake` with a key for a new erasure: `key` when given,
    /// else the lake's, created when there is none.
    pub(crate) async fn open_for_erasure(
        lake: &Lake,
        key: Option<&ErasureKey>,
    ) -> Result<Ledger, LedgerError> {
        if key.is_none() {
            let fresh = hex::encode(rand::random::<[u8; 32]>());
            // Create-only: two first erasures at once agree on one key.
            let put = lake.create(&lake.path(KEY), fresh.into()).await?;
            if put == Put::Created {
                tracing::info!("erasure key created under _erasure/ in the lake");
            }
        }
        Ledger::open(lake, key).await
    }

    /// Whether no one was forgotten.
    pub fn is_empty(&self) -> bool {
        self.forgotten.is_empty()
    }

    /// How many people were forgotten.
    pub fn len(&self) -> usize {
        self.forgotten.len()
    }

    /// The keyed hash of the User id `id`.
    pub fn hash(&self, id: &str) -> Option<String> {
        let key = self.key.as_ref()?;
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
        mac.update(bare_id(id.trim()).as_bytes());
        Some(hex::encode(mac.finalize().into_bytes()))
    }

    /// The keyed hash of `value` (a name, an e-mail, a username), as
    /// compared in texts: lower case, words joined by one space.
    pub fn hash_value(&self, value: &str) -> Option<String> {
        let words: Vec<&str> = words(value)
            .into_iter()
            .map(|(s, e)| &value[s..e])
            .collect();
        let joined = words.join(" ").to_ascii_lowercase();
        let key = self.key.as_ref()?;
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
        mac.update(b"value:");
        mac.update(joined.as_bytes());
        Some(hex::encode(mac.finalize().into_bytes()))
    }

    /// `text` with every forgotten value found as whole words replaced, or
    /// [`schemas::ERASED`] when it is a forgotten id; None when it holds
    /// none.
    fn erase_text(&self, text: &str) -> Option<String> {
        if self.forgets(text) {
            return Some(schemas::ERASED.to_string());
        }
        if self.values.is_empty() {
            return None;
        }
        let spans = words(text);
        let mut out = String::new();
        let (mut copied, mut at) = (0, 0);
        while at < spans.len() {
            let found = (1..=MOST_WORDS.min(spans.len() - at)).rev().find(|n| {
                let joined: Vec<&str> = spans[at..at + n]
                    .iter()
                    .map(|(s, e)| &text[*s..*e])
                    .collect();
                self.hash_value(&joined.join(" "))
                    .is_some_and(|h| self.values.contains(&h))
            });
            match found {
                Some(n) => {
                    out.push_str(&text[copied..spans[at].0]);
                    out.push_str(schemas::ERASED);
                    copied = spans[at + n - 1].1;
                    at += n;
                }
                None => at += 1,
            }
        }
        (copied > 0).then(|| {
            out.push_str(&text[copied..]);
            out
        })
    }

    /// Whether the User id `id` belongs to a forgotten person.
    pub fn forgets(&self, id: &str) -> bool {
        !self.forgotten.is_empty() && self.hash(id).is_some_and(|h| self.forgotten.contains(&h))
    }

    /// The enriched record `payload` (JSON) screened: a forgotten person's
    /// own User record is dropped; in any other, each object whose `id` is
    /// a forgotten person's has every text erased (`{"id", "name"}` of a
    /// Result's user).
    pub fn screen(&self, payload: &[u8]) -> Screened {
        if self.forgotten.is_empty() {
            return Screened::Clean;
        }
        let Ok(mut enriched) = serde_json::from_slice::<Value>(payload) else {
            return Screened::Clean;
        };
        let about_user =
            enriched.get("resource").and_then(Value::as_str) == Some(Resource::Users.as_str());
        let object = enriched.get("object_id").and_then(Value::as_str);
        if about_user && object.is_some_and(|id| self.forgets(id)) {
            return Screened::Dropped;
        }
        let erased = match enriched.get_mut("record") {
            Some(record) => erase_in(record, &|id| self.forgets(id), &|s| self.erase_text(s)),
            None => false,
        };
        if erased {
            Screened::Erased(enriched.to_string().into_bytes())
        } else {
            Screened::Clean
        }
    }

    /// Writes (or rewrites) `erasure`'s audit entry.
    pub(crate) async fn record(lake: &Lake, erasure: &Erasure) -> Result<(), LedgerError> {
        let path = lake.path(&format!(
            "{ENTRIES}/{}/{}.json",
            erasure.person,
            erasure.started_at.timestamp_millis()
        ));
        let text = serde_json::to_vec(erasure).expect("serialises");
        lake.store()
            .put(&path, text.into())
            .await
            .map_err(LakeError::from)?;
        Ok(())
    }

    /// Every erasure's audit entry, oldest first.
    pub async fn erasures(lake: &Lake) -> Result<Vec<Erasure>, LedgerError> {
        let listed = entries(lake).await?;
        let mut found = Vec::new();
        for object in listed {
            let Some(bytes) = lake.read_if_exists(&object.location).await? else {
                continue;
            };
            let erasure: Erasure = serde_json::from_slice(&bytes)
                .map_err(|e| LedgerError::Entry(format!("{}: {e}", object.location)))?;
            found.push(erasure);
        }
        found.sort_by_key(|e| e.started_at);
        Ok(found)
    }
}

/// The ledger's entries as listed.
async fn entries(lake: &Lake) -> Result<Vec<object_store::ObjectMeta>, LedgerError> {
    Ok(lake
        .store()
        .list(Some(&lake.path(ENTRIES)))
        .try_collect()
        .await
        .map_err(LakeError::from)?)
}

/// The byte spans of `text`'s words: runs without white space, without
/// the punctuation around them (`Hansen.` is `Hansen`).
fn words(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut offset = 0;
    for run in text.split_whitespace() {
        let start = offset + text[offset..].find(run).expect("a run of the text");
        offset = start + run.len();
        let trimmed = run.trim_matches(|c: char| !c.is_alphanumeric());
        if trimmed.is_empty() {
            continue;
        }
        let from = start + run.find(trimmed).expect("inside the run");
        spans.push((from, from + trimmed.len()));
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> Ledger {
        let mut ledger = Ledger {
            key: Some(vec![7; 32]),
            ..Ledger::default()
        };
        let hash = ledger.hash("users/5-A").expect("a key");
        assert_eq!(ledger.hash("5-A").as_deref(), Some(hash.as_str()));
        ledger.forgotten.insert(hash);
        let name = ledger.hash_value("Ava  Hansen").expect("a key");
        assert_eq!(ledger.hash_value("ava hansen"), Some(name.clone()));
        ledger.values.insert(name);
        ledger
    }

    #[test]
    fn forgotten_values_are_erased_as_whole_words_in_any_text() {
        let ledger = ledger();
        assert_eq!(
            ledger
                .erase_text("Reported by AVA Hansen. Thanks, Ava Hansenova")
                .as_deref(),
            Some("Reported by [erased]. Thanks, Ava Hansenova")
        );
        assert_eq!(
            ledger.erase_text("users/5-A").as_deref(),
            Some(schemas::ERASED)
        );
        assert_eq!(ledger.erase_text("Noah Smith"), None);
    }

    #[test]
    fn a_forgotten_persons_user_is_dropped_and_their_name_erased_elsewhere() {
        let ledger = ledger();
        let user = br#"{"resource":"Users","object_id":"users/5-A","record":{"id":"users/5-A","name":"Ava"}}"#;
        assert_eq!(ledger.screen(user), Screened::Dropped);
        let other = br#"{"resource":"Users","object_id":"users/6-A","record":{"id":"users/6-A"}}"#;
        assert_eq!(ledger.screen(other), Screened::Clean);
        let result = br#"{"resource":"Results","object_id":"results/1-A","record":{"id":"results/1-A","user":{"id":"users/5-A","name":"Ava Hansen"}}}"#;
        let Screened::Erased(erased) = ledger.screen(result) else {
            panic!("the user is erased");
        };
        let erased: Value = serde_json::from_slice(&erased).expect("JSON");
        assert_eq!(erased["record"]["user"]["name"], schemas::ERASED);
        assert_eq!(erased["record"]["id"], "results/1-A");
        assert!(
            !format!("{ledger:?}").contains("7, 7"),
            "the key is not shown"
        );
    }

    #[tokio::test]
    async fn entries_name_the_forgotten_and_a_key_is_needed_to_read_them() {
        let lake = Lake::open("memory:///lake").expect("opens");
        assert!(Ledger::open(&lake, None).await.expect("opens").is_empty());
        let ledger = Ledger::open_for_erasure(&lake, None).await.expect("opens");
        let person = ledger.hash("users/5-A").expect("a key");
        let erasure = Erasure {
            person: person.clone(),
            values: Vec::new(),
            started_at: Utc::now(),
            finished_at: None,
            tables: Vec::new(),
        };
        Ledger::record(&lake, &erasure).await.expect("records");
        let again = Ledger::open(&lake, None).await.expect("opens");
        assert!(again.forgets("users/5-A") && !again.forgets("users/6-A"));
        let other_key: ErasureKey = hex::encode([1u8; 32]).parse().expect("a key");
        assert_eq!(format!("{other_key:?}"), "ErasureKey(<redacted>)");
        let keyed = Ledger::open(&lake, Some(&other_key)).await.expect("opens");
        assert!(!keyed.forgets("users/5-A"), "another key, another hash");
        assert_eq!(Ledger::erasures(&lake).await.expect("lists"), vec![erasure]);
    }
}
