//! The erasure ledger as a writer consults it: read at start, read again
//! every [`REFRESH`], and applied to every record before it is written (a
//! forgotten person's own User record is left out, their values erased in
//! any other). The generation tells a writer that the ledger changed (the
//! sink then drops what it buffered and reads it again).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::ledger::{ErasureKey, Ledger, LedgerError};
use crate::store::Lake;

/// How often the ledger is read again.
const REFRESH: Duration = Duration::from_secs(10);

/// Attempts at the first read while the store fails, two seconds apart.
const FIRST_READ_ATTEMPTS: usize = 30;

/// The ledger last read, and how many times it changed.
pub struct Erasures {
    current: RwLock<(Arc<Ledger>, u64)>,
}

impl Erasures {
    /// The ledger of `lake`, read while the store fails for a minute; a
    /// ledger that cannot be used (no key) is an error.
    pub async fn load(lake: &Lake, key: Option<&ErasureKey>) -> Result<Arc<Erasures>, LedgerError> {
        let mut attempt = 0;
        let ledger = loop {
            attempt += 1;
            match Ledger::open(lake, key).await {
                Ok(ledger) => break ledger,
                Err(LedgerError::Store(error)) if attempt < FIRST_READ_ATTEMPTS => {
                    tracing::warn!(%error, "reading the erasure ledger failed; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Err(error) => return Err(error),
            }
        };
        if !ledger.is_empty() {
            tracing::info!(forgotten = ledger.len(), "erasure ledger read");
        }
        Ok(Arc::new(Erasures {
            current: RwLock::new((Arc::new(ledger), 0)),
        }))
    }

    /// The ledger, and its generation (how many times it changed).
    pub fn current(&self) -> (Arc<Ledger>, u64) {
        let current = self.current.read().expect("not poisoned");
        (current.0.clone(), current.1)
    }

    /// Reads the ledger again every [`REFRESH`], for as long as the
    /// process runs.
    pub fn keep_fresh(self: Arc<Self>, lake: Lake, key: Option<ErasureKey>) {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REFRESH).await;
                let previous = self.current().0;
                match Ledger::read(&lake, key.as_ref(), Some(&previous)).await {
                    Ok(ledger) => {
                        let mut current = self.current.write().expect("not poisoned");
                        if ledger.entries() != current.0.entries() {
                            tracing::info!(forgotten = ledger.len(), "erasure ledger changed");
                            *current = (Arc::new(ledger), current.1 + 1);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "reading the erasure ledger again failed; the last one read stays")
                    }
                }
            }
        });
    }
}
