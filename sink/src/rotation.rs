//! When a batch's files are closed: the first of max rows, max encoded bytes
//! (as the Parquet writer measures them) and max age, or earlier when the
//! memory budget is full.

use std::time::Duration;

/// Why files were closed; a label of `sink_files_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlushReason {
    Rows,
    Bytes,
    Age,
    /// The sink had read what the topic holds and the commit interval had
    /// passed since the oldest batch opened.
    Idle,
    /// The memory budget was full and this was the largest batch.
    Memory,
    Shutdown,
    /// The batch reached the end of a range announced by an earlier flush.
    Replay,
}

impl FlushReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FlushReason::Rows => "rows",
            FlushReason::Bytes => "bytes",
            FlushReason::Age => "age",
            FlushReason::Idle => "idle",
            FlushReason::Memory => "memory",
            FlushReason::Shutdown => "shutdown",
            FlushReason::Replay => "replay",
        }
    }
}

/// The limits of one file, and the memory all buffered files share.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rotation {
    pub max_rows: usize,
    pub max_bytes: usize,
    pub max_age: Duration,
    pub memory_budget: usize,
}

impl Rotation {
    /// Why a batch whose largest file has `rows` rows and `bytes` encoded bytes,
    /// open for `age`, must close now, if it must.
    pub(crate) fn due(&self, rows: usize, bytes: usize, age: Duration) -> Option<FlushReason> {
        if rows >= self.max_rows {
            Some(FlushReason::Rows)
        } else if bytes >= self.max_bytes {
            Some(FlushReason::Bytes)
        } else if age >= self.max_age {
            Some(FlushReason::Age)
        } else {
            None
        }
    }

    /// Buffered bytes at which the largest batch is written early. Closing a
    /// batch's files briefly holds them twice (the writer's pages and the
    /// finished file), so buffers may fill half the budget.
    pub(crate) fn buffer_limit(&self) -> usize {
        self.memory_budget / 2
    }

    /// Input bytes per hand-over from the Arrow builder to the Parquet writer:
    /// small enough that the writer's measure of a file trails its true size
    /// by a sixteenth of the limit at most, and that the builders of many open
    /// files (which grow by doubling) stay a small part of the memory budget;
    /// large enough to encode in bulk.
    pub(crate) fn chunk_bytes(&self) -> usize {
        (self.max_bytes / 16)
            .min(self.memory_budget / 64)
            .clamp(16 * 1024, 8 * 1024 * 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_batch_closes_exactly_when_a_limit_is_reached(
            max_rows in 1usize..1000, max_bytes in 1usize..1_000_000, max_age in 1u64..600,
            memory_budget in 1usize..1_000_000_000,
            rows in 0usize..2000, bytes in 0usize..2_000_000, age in 0u64..1200,
        ) {
            let rotation = Rotation { max_rows, max_bytes, max_age: Duration::from_secs(max_age), memory_budget };
            let due = rotation.due(rows, bytes, Duration::from_secs(age));
            let reached = rows >= max_rows || bytes >= max_bytes || age >= max_age;
            prop_assert_eq!(due.is_some(), reached);
            if rows >= max_rows {
                prop_assert_eq!(due, Some(FlushReason::Rows));
            }
            prop_assert!(rotation.chunk_bytes() >= 16 * 1024);
            prop_assert!(rotation.chunk_bytes() <= 8 * 1024 * 1024);
        }
    }
}
