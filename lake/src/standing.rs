//! What the tables hold of one partition of the source topic, and so how
//! the partition's next batch is bounded: which records each table already
//! holds (Delta), or which announced ranges a batch must repeat exactly
//! (plain Parquet).

use std::collections::{BTreeMap, VecDeque};

use schemas::Table;

use crate::data_file::DataFile;
use crate::offsets::OffsetRange;

/// What the tables hold of one partition, read when its first batch opens
/// and moved by each commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub(crate) partition: i32,
    pub(crate) held: Held,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Held {
    /// Per Delta table, the last offset of the partition it holds.
    Versions(BTreeMap<Table, i64>),
    /// Plain Parquet: offset ranges whose flush was announced and may have
    /// written files, in offset order.
    Announced(VecDeque<OffsetRange>),
}

/// How a batch opening at an offset is bounded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bounds {
    /// The batch must end exactly here, whatever the size and age limits say
    /// (it replays an announced range, or stops short of one).
    pub cut_at: Option<i64>,
    /// The announced range the batch replays: its files take the range's
    /// name even when offsets at its edges are missing from the topic.
    pub replays: Option<OffsetRange>,
    /// Per table, the last offset the table holds already: records at or
    /// below it are left out of that table.
    pub held: BTreeMap<Table, i64>,
}

impl Bounds {
    /// Whether `table` holds the record at `offset` already.
    pub fn holds(&self, table: Table, offset: i64) -> bool {
        self.held.get(&table).is_some_and(|held| offset <= *held)
    }
}

impl Standing {
    /// The bounds of a batch opening at `offset`. Announced ranges already
    /// passed are dropped.
    pub fn bounds(&mut self, offset: i64) -> Bounds {
        match &mut self.held {
            Held::Versions(versions) => Bounds {
                held: versions.clone(),
                ..Bounds::default()
            },
            Held::Announced(announced) => {
                let (cut_at, replays) = cut_for(announced, offset)
                    .map_or((None, None), |cut| (Some(cut.at), cut.replays));
                Bounds {
                    cut_at,
                    replays,
                    held: BTreeMap::new(),
                }
            }
        }
    }

    /// Per table, the last offset of the partition it holds (Delta; none
    /// for plain Parquet).
    pub fn versions(&self) -> impl Iterator<Item = (Table, i64)> + '_ {
        let versions = match &self.held {
            Held::Versions(versions) => Some(versions),
            Held::Announced(_) => None,
        };
        versions
            .into_iter()
            .flat_map(|v| v.iter().map(|(table, version)| (*table, *version)))
    }

    /// The last offset `table` holds (Delta).
    pub(crate) fn version(&self, table: Table) -> Option<i64> {
        match &self.held {
            Held::Versions(versions) => versions.get(&table).copied(),
            Held::Announced(_) => None,
        }
    }

    /// Records that the tables hold the partition up to `last`, once
    /// `files` (of that range) are committed.
    pub fn committed(&mut self, files: &[DataFile], last: i64) {
        match &mut self.held {
            Held::Versions(versions) => {
                for file in files {
                    versions.insert(file.path.table, last);
                }
            }
            Held::Announced(announced) => announced.retain(|range| range.last > last),
        }
    }
}

/// Where a batch must end, and the announced range whose name it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cut {
    at: i64,
    replays: Option<OffsetRange>,
}

/// Where a batch starting at `offset` must end so that its range matches the
/// announced ranges, and the announced range it replays, if any: a batch
/// starting inside a range replays it (and ends at its end); one starting
/// before a range ends just before it. Ranges already passed are dropped.
fn cut_for(announced: &mut VecDeque<OffsetRange>, offset: i64) -> Option<Cut> {
    while announced.front().is_some_and(|range| range.last < offset) {
        announced.pop_front();
    }
    let range = *announced.front()?;
    Some(if range.first <= offset {
        Cut {
            at: range.last,
            replays: Some(range),
        }
    } else {
        Cut {
            at: range.first - 1,
            replays: None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replayed_batches_take_the_announced_names_and_ends() {
        let mut announced = VecDeque::from([OffsetRange::new(10, 19), OffsetRange::new(20, 34)]);
        let replay = |first, last| Cut {
            at: last,
            replays: Some(OffsetRange::new(first, last)),
        };
        assert_eq!(cut_for(&mut announced, 10), Some(replay(10, 19)));
        assert_eq!(cut_for(&mut announced, 20), Some(replay(20, 34)));
        // Offsets missing at a range's start: the batch still takes its name.
        let mut gapped = VecDeque::from([OffsetRange::new(10, 19)]);
        assert_eq!(cut_for(&mut gapped, 13), Some(replay(10, 19)));
        assert_eq!(cut_for(&mut announced, 35), None);
        assert!(announced.is_empty());
        // A batch starting before an announced range stops just short of it.
        let mut announced = VecDeque::from([OffsetRange::new(50, 60)]);
        assert_eq!(
            cut_for(&mut announced, 40),
            Some(Cut {
                at: 49,
                replays: None
            })
        );
    }

    #[test]
    fn commits_move_the_standing() {
        let users = Table::Records(schemas::Resource::Users);
        let mut delta = Standing {
            partition: 0,
            held: Held::Versions(BTreeMap::from([(Table::Events, 9)])),
        };
        assert!(delta.bounds(10).holds(Table::Events, 9));
        assert!(!delta.bounds(10).holds(users, 9));
        let file = |table| DataFile {
            path: crate::path::DataPath {
                table,
                date: chrono::NaiveDate::from_ymd_opt(2025, 3, 1).expect("a date"),
                stem: "x".into(),
            },
            size: 1,
            rows: 1,
            stats: None,
        };
        delta.committed(&[file(users)], 20);
        let bounds = delta.bounds(21);
        assert!(bounds.holds(users, 20) && bounds.cut_at.is_none());
        let mut parquet = Standing {
            partition: 0,
            held: Held::Announced(VecDeque::from([
                OffsetRange::new(10, 19),
                OffsetRange::new(20, 29),
            ])),
        };
        assert_eq!(parquet.bounds(10).cut_at, Some(19));
        parquet.committed(&[], 19);
        assert_eq!(parquet.bounds(20).replays, Some(OffsetRange::new(20, 29)));
    }
}
