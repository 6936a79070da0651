//! The erasure ledger as the sink consults it: read at start, read again
//! every [`REFRESH`], and applied to every record before it is encoded (a
//! forgotten person's own User record is left out, their values erased in
//! any other). When a person is added, the unwritten batches are dropped
//! and their partitions rewound, so that what was buffered before is
//! screened too.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use lake::{ErasureKey, Lake, Ledger, LedgerError};
use tokio_util::sync::CancellationToken;

/// How often the ledger is read again.
pub(crate) const REFRESH: Duration = Duration::from_secs(10);

/// The ledger last read, and how many times it changed.
pub(crate) struct Erasures {
    current: RwLock<(Arc<Ledger>, u64)>,
}

impl Erasures {
    /// The ledger of `lake`, read until the store answers (or `shutdown`);
    /// a ledger that cannot be used (no key) stops the sink.
    pub(crate) async fn load(
        lake: &Lake,
        key: Option<&ErasureKey>,
        shutdown: &CancellationToken,
    ) -> Result<Arc<Erasures>, LedgerError> {
        let ledger = loop {
            match Ledger::open(lake, key).await {
                Ok(ledger) => break ledger,
                Err(LedgerError::Store(error)) if !shutdown.is_cancelled() => {
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
    pub(crate) fn current(&self) -> (Arc<Ledger>, u64) {
        let current = self.current.read().expect("not poisoned");
        (current.0.clone(), current.1)
    }

    /// Reads the ledger again every [`REFRESH`] until `shutdown`.
    pub(crate) fn keep_fresh(
        self: Arc<Self>,
        lake: Lake,
        key: Option<ErasureKey>,
        shutdown: CancellationToken,
    ) {
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(REFRESH) => {}
                }
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
