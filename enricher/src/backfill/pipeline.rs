//! A scan's pages on their way to the broker, and the position stored
//! behind them.

use std::future::Future;
use std::pin::Pin;

use futures::future::OptionFuture;
use futures::stream::{FuturesOrdered, StreamExt};
use serde_json::Value;

use super::checkpoint::Checkpoint;
use super::error::BackfillError;
use super::page::Item;
use super::scan::Scan;

type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, BackfillError>> + Send + 'a>>;

/// Pages on their way to the broker and the position behind them: records
/// are acknowledged page by page in order, and the position of the newest
/// page whose records (and all before) are acknowledged is stored, one save
/// at a time.
pub(super) struct Pipeline<'s, 'a> {
    scan: &'s Scan<'a>,
    /// How many pages may be produced beyond the stored position.
    depth: usize,
    /// Pages being produced, oldest first: each yields its number and the
    /// position after it once its records are acknowledged.
    unsaved: FuturesOrdered<Pending<'s, (u64, Checkpoint)>>,
    /// The newest position whose records are all acknowledged, not yet
    /// being stored, with its page's number.
    acked: Option<(u64, Checkpoint)>,
    /// The save running, with the number of the page it stores.
    saving: Option<(u64, Pending<'s, ()>)>,
    /// Pages handed to the pipeline in this run.
    pub(super) pushed: u64,
    /// The newest page whose position is stored.
    stored: u64,
}

impl<'s, 'a> Pipeline<'s, 'a> {
    pub(super) fn new(scan: &'s Scan<'a>) -> Pipeline<'s, 'a> {
        Pipeline {
            scan,
            depth: scan.args.pages_in_flight.max(1) as usize,
            unsaved: Default::default(),
            acked: None,
            saving: None,
            pushed: 0,
            stored: 0,
        }
    }

    /// Starts producing a page's items; `position` is stored once they and
    /// every page before are acknowledged.
    pub(super) fn push(&mut self, items: Vec<Item>, position: Checkpoint) {
        self.pushed += 1;
        let page = self.pushed;
        let scan = self.scan;
        self.unsaved.push_back(Box::pin(async move {
            scan.produce(items).await?;
            Ok((page, position))
        }));
    }

    /// The next page; when its list request failed, its error once what
    /// was listed before is stored, so that a rerun starts after it (should
    /// storing fail too, the list request's error is logged first).
    pub(super) async fn stored_before(
        &mut self,
        fetched: Result<Value, BackfillError>,
    ) -> Result<Value, BackfillError> {
        let error = match fetched {
            Ok(page) => return Ok(page),
            Err(error) => error,
        };
        if let Err(stored) = self.drain().await {
            tracing::error!(resource = %self.scan.resource, %error, "list request failed");
            return Err(stored);
        }
        Err(error)
    }

    /// Pages produced beyond the stored position, counting the one being
    /// stored.
    fn unstored(&self) -> usize {
        (self.pushed - self.stored) as usize
    }

    /// Runs `work` (the next list request) while the pages in flight are
    /// acknowledged and their positions stored; returns its output once it is
    /// done and there is room for one more page.
    pub(super) async fn drive_while<T>(
        &mut self,
        work: impl Future<Output = T>,
    ) -> Result<T, BackfillError> {
        let mut work = std::pin::pin!(work);
        let mut output = None;
        loop {
            self.start_save();
            if self.unstored() < self.depth {
                if let Some(output) = output.take() {
                    return Ok(output);
                }
            }
            if output.is_some() {
                self.step().await?;
            } else {
                tokio::select! {
                    done = &mut work => output = Some(done),
                    stepped = self.step() => stepped?,
                }
            }
        }
    }

    /// Waits until every page is acknowledged and the newest position
    /// stored.
    pub(super) async fn drain(&mut self) -> Result<(), BackfillError> {
        loop {
            self.start_save();
            if self.unstored() == 0 {
                return Ok(());
            }
            self.step().await?;
        }
    }

    /// Waits for the next page's acknowledgements or the running save to
    /// finish (for ever when neither is pending). Cancel-safe.
    async fn step(&mut self) -> Result<(), BackfillError> {
        tokio::select! {
            Some(acked) = self.unsaved.next(), if !self.unsaved.is_empty() => {
                self.acked = Some(acked?);
            }
            Some(saved) = OptionFuture::from(self.saving.as_mut().map(|(_, save)| save)), if self.saving.is_some() => {
                saved?;
                if let Some((page, _)) = self.saving.take() {
                    self.stored = page;
                }
            }
            else => std::future::pending().await,
        }
        Ok(())
    }

    /// Stores the newest acknowledged position unless a save is running.
    fn start_save(&mut self) {
        if self.saving.is_none() {
            if let Some((page, checkpoint)) = self.acked.take() {
                let scan = self.scan;
                self.saving = Some((page, Box::pin(async move { scan.save(&checkpoint).await })));
            }
        }
    }
}
