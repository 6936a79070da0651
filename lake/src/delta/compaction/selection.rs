//! Pass 1 of a day's rewrite: which copy of each event the rewrite keeps.
//!
//! The rule, deterministic and the same wherever copies meet: a copy whose
//! fetch found the record over any other, then the latest fetch, then the
//! earliest receipt (the raw topic's order), then the first in the day's
//! file order. Only `event_id`, `status`, `fetched_at` and `received_at` are
//! decoded, one batch at a time, in whatever Arrow types the file's writer
//! chose (`Utf8View`, `LargeUtf8`, nanosecond timestamps are cast).
//!
//! Rows without an event id (written by another engine) are no copy of
//! anything: each is kept.
//!
//! Memory: per event of the day a 16-byte key and its kept copy, about 48
//! bytes and the map's slack, 8 bytes per row without an id; then one bit
//! per row read.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::reading::in_order;
use crate::store::Lake;

/// What ranks one copy of an event against another: greater is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Rank {
    found: bool,
    /// Later fetches rank higher; a copy never fetched lowest.
    fetched_at: i64,
    /// Earlier receipts rank higher (stored negated); unknown lowest.
    received_first: i64,
}

impl Rank {
    /// The rank of a copy with this status and these times (microseconds).
    pub(crate) fn of(
        status: Option<&str>,
        fetched_at: Option<i64>,
        received_at: Option<i64>,
    ) -> Rank {
        Rank {
            found: status == Some("found"),
            fetched_at: fetched_at.unwrap_or(i64::MIN),
            received_first: received_at.map_or(i64::MIN, |at| at.saturating_neg()),
        }
    }
}

/// A copy of an event: its rank and place.
#[derive(Debug, Clone, Copy)]
struct Copy {
    rank: Rank,
    file: u32,
    row: u32,
}

/// An event id as a 16-byte key: the id's own 128 bits when it is 32 hex
/// digits (as the pipeline's ids are), its SHA-256 prefix otherwise.
fn key(event_id: &str) -> u128 {
    if event_id.len() == 32 {
        if let Ok(value) = u128::from_str_radix(event_id, 16) {
            return value;
        }
    }
    let digest = Sha256::digest(event_id.as_bytes());
    u128::from_be_bytes(digest[..16].try_into().expect("16 bytes"))
}

/// The copies kept of a day's events, file by file.
pub(crate) struct Selection {
    /// Per input file, one bit per row: kept or not.
    pub(crate) kept: Vec<Vec<u64>>,
    pub(crate) rows_in: u64,
    pub(crate) rows_out: u64,
}

impl Selection {
    /// Whether row `row` of file `file` is kept.
    pub(crate) fn keeps(&self, file: usize, row: usize) -> bool {
        self.kept[file]
            .get(row / 64)
            .is_some_and(|word| word & (1 << (row % 64)) != 0)
    }
}

/// Why a file could not be read for the selection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SelectionError {
    #[error("reading {path}: {source}")]
    Parquet {
        path: String,
        source: parquet::errors::ParquetError,
    },
    #[error("{path} has no usable event_id column: {reason}")]
    Column { path: String, reason: String },
}

/// Reads the ranking columns of `files` (location, size) and selects one
/// copy per event.
pub(crate) async fn select(
    lake: &Lake,
    files: &[(object_store::path::Path, u64)],
) -> Result<Selection, SelectionError> {
    let mut best: HashMap<u128, Copy> = HashMap::new();
    // Rows without an event id (another engine's) are no copy of anything:
    // each is kept.
    let mut unkeyed: Vec<(u32, u32)> = Vec::new();
    let mut rows_per_file = Vec::with_capacity(files.len());
    let mut rows_in = 0u64;
    let opened = in_order(
        lake,
        files,
        Some(&["event_id", "status", "fetched_at", "received_at"]),
    );
    futures::pin_mut!(opened);
    let mut index = 0;
    while let Some(file) = opened.next().await {
        let path = files[index].0.to_string();
        let parquet = |source| SelectionError::Parquet {
            path: path.clone(),
            source,
        };
        let mut batches = file.map_err(parquet)?;
        let mut row = 0u32;
        while let Some(batch) = batches.next().await {
            let batch = batch.map_err(parquet)?;
            let columns = RankColumns::of(&batch).map_err(|reason| SelectionError::Column {
                path: path.clone(),
                reason,
            })?;
            for i in 0..batch.num_rows() {
                let Some(id) = columns.event_id(i) else {
                    unkeyed.push((index as u32, row));
                    row += 1;
                    continue;
                };
                let candidate = Copy {
                    rank: columns.rank(i),
                    file: index as u32,
                    row,
                };
                best.entry(key(id))
                    .and_modify(|kept| {
                        if candidate.rank > kept.rank {
                            *kept = candidate;
                        }
                    })
                    .or_insert(candidate);
                row += 1;
            }
        }
        index += 1;
        rows_per_file.push(row as usize);
        rows_in += u64::from(row);
    }
    let mut kept: Vec<Vec<u64>> = rows_per_file
        .iter()
        .map(|rows| vec![0u64; rows.div_ceil(64)])
        .collect();
    let kept_rows = best.values().map(|copy| (copy.file, copy.row));
    for (file, row) in kept_rows.chain(unkeyed.iter().copied()) {
        let (file, row) = (file as usize, row as usize);
        kept[file][row / 64] |= 1 << (row % 64);
    }
    Ok(Selection {
        kept,
        rows_in,
        rows_out: (best.len() + unkeyed.len()) as u64,
    })
}

/// The ranking columns of a batch in one set of types.
struct RankColumns {
    event_id: ArrayRef,
    status: Option<ArrayRef>,
    fetched_at: Option<ArrayRef>,
    received_at: Option<ArrayRef>,
}

impl RankColumns {
    fn of(batch: &RecordBatch) -> Result<RankColumns, String> {
        let cast = |name: &str, to: &DataType| -> Result<Option<ArrayRef>, String> {
            batch
                .column_by_name(name)
                .map(|column| arrow::compute::cast(column, to).map_err(|e| format!("{name}: {e}")))
                .transpose()
        };
        let micros = DataType::Timestamp(TimeUnit::Microsecond, None);
        Ok(RankColumns {
            event_id: cast("event_id", &DataType::Utf8)?.ok_or("no event_id column")?,
            status: cast("status", &DataType::Utf8)?,
            fetched_at: cast("fetched_at", &micros)?,
            received_at: cast("received_at", &micros)?,
        })
    }

    fn event_id(&self, row: usize) -> Option<&str> {
        let ids = self.event_id.as_string::<i32>();
        ids.is_valid(row).then(|| ids.value(row))
    }

    fn rank(&self, row: usize) -> Rank {
        let time = |column: &Option<ArrayRef>| {
            let times = column.as_ref()?.as_primitive::<TimestampMicrosecondType>();
            times.is_valid(row).then(|| times.value(row))
        };
        let status = self.status.as_ref().and_then(|column| {
            let statuses = column.as_string::<i32>();
            statuses.is_valid(row).then(|| statuses.value(row))
        });
        Rank::of(status, time(&self.fetched_at), time(&self.received_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_found_copy_then_the_latest_fetch_then_the_earliest_receipt_wins() {
        let found_late = Rank::of(Some("found"), Some(5), Some(9));
        let not_found = Rank::of(Some("not_found"), Some(7), Some(1));
        assert!(found_late > not_found);
        let fetched_later = Rank::of(Some("found"), Some(6), Some(9));
        assert!(fetched_later > found_late);
        let received_earlier = Rank::of(Some("found"), Some(6), Some(2));
        assert!(received_earlier > fetched_later);
        assert!(Rank::of(None, None, Some(1)) > Rank::of(None, None, None));
        assert_eq!(Rank::of(None, None, None), Rank::of(None, None, None));
    }

    #[test]
    fn pipeline_ids_are_their_own_keys_and_others_are_hashed() {
        assert_eq!(key("00000000000000000000000000000010"), 16);
        assert_ne!(key("an id of another shape"), key("another id"));
    }
}
