//! Where a data file lives: `{table}/dt={YYYY-MM-DD}/{name}.parquet`. The
//! one place that writes and reads that shape.

use chrono::NaiveDate;
use schemas::Table;

/// The partition column of every table: the event's UTC date.
pub const PARTITION_COLUMN: &str = "dt";

const DATE_FORMAT: &str = "%Y-%m-%d";

/// A data file's place in the lake.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DataPath {
    /// Its table.
    pub table: Table,
    /// The event date of its rows (its `dt` partition).
    pub date: NaiveDate,
    /// Its file name without `.parquet`.
    pub stem: String,
}

impl DataPath {
    /// Its path under the table's folder: `dt=…/{stem}.parquet`, as a Delta
    /// log names it.
    pub fn in_table(&self) -> String {
        format!("{}/{}.parquet", partition_folder(self.date), self.stem)
    }

    /// Its path under the lake's prefix: `{table}/dt=…/{stem}.parquet`.
    pub fn in_lake(&self) -> String {
        format!("{}/{}", self.table.name(), self.in_table())
    }

    /// The path `dt=…/{stem}.parquet` of a file of `table`, as found in its
    /// log; None for any other shape.
    pub fn parse_in_table(table: Table, path: &str) -> Option<DataPath> {
        let (folder, name) = path.split_once('/')?;
        let date = parse_partition(folder)?;
        let stem = name.strip_suffix(".parquet")?;
        (!stem.contains('/')).then(|| DataPath {
            table,
            date,
            stem: stem.to_string(),
        })
    }
}

/// The stems the sink gives the files it writes to Delta tables: a batch's
/// files, after their partition and offset range with a random suffix, and
/// compaction's outputs; and the stems of plain Parquet files, after their
/// source range. Vacuum deletes unreferenced files only of the sink's
/// shapes (plain Parquet history only once converted and no longer named
/// by the log): a file of another writer is never taken for one of ours.
pub(crate) mod stems {
    /// Prefix of compaction's outputs.
    pub(crate) const COMPACTED_PREFIX: &str = "compacted-";
    /// Prefix of the files an open day's small files are merged into; the
    /// day is compacted again once closed.
    pub(crate) const MERGED_PREFIX: &str = "merged-";

    /// `{partition}-{first}-{last}-{8 hex}`.
    pub(crate) fn batch(partition: i32, first: i64, last: i64) -> String {
        format!("{partition}-{first}-{last}-{:08x}", rand::random::<u32>())
    }

    /// `compacted-{16 hex}`.
    pub(crate) fn compacted() -> String {
        format!("{COMPACTED_PREFIX}{:016x}", rand::random::<u64>())
    }

    /// `merged-{16 hex}`.
    pub(crate) fn merged() -> String {
        format!("{MERGED_PREFIX}{:016x}", rand::random::<u64>())
    }

    /// The topic, partition and last offset a plain Parquet file's stem
    /// (`{topic}+{partition}+{first:020}+{last:020}`) names.
    pub(crate) fn plain_range(stem: &str) -> Option<(&str, i32, i64)> {
        let mut parts = stem.rsplitn(4, '+');
        let last = parts.next()?.parse().ok()?;
        let _first: i64 = parts.next()?.parse().ok()?;
        let partition = parts.next()?.parse().ok()?;
        let topic = parts.next().filter(|topic| !topic.is_empty())?;
        Some((topic, partition, last))
    }

    /// Whether `stem` has a shape of [`batch`], [`compacted`] or [`merged`].
    pub(crate) fn written_by_sink(stem: &str) -> bool {
        let hex = |text: &str, len: usize| {
            text.len() == len && text.bytes().all(|b| b.is_ascii_hexdigit())
        };
        if let Some(suffix) = stem
            .strip_prefix(COMPACTED_PREFIX)
            .or_else(|| stem.strip_prefix(MERGED_PREFIX))
        {
            return hex(suffix, 16);
        }
        let parts: Vec<&str> = stem.split('-').collect();
        matches!(parts.as_slice(), [partition, first, last, suffix]
            if [partition, first, last].iter().all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                && hex(suffix, 8))
    }
}

/// `dt=YYYY-MM-DD`.
pub(crate) fn partition_folder(date: NaiveDate) -> String {
    format!("{PARTITION_COLUMN}={}", partition_value(date))
}

/// A date as the `dt` column's value.
pub(crate) fn partition_value(date: NaiveDate) -> String {
    date.format(DATE_FORMAT).to_string()
}

/// The date of a `dt=YYYY-MM-DD` folder.
fn parse_partition(folder: &str) -> Option<NaiveDate> {
    let day = folder.strip_prefix(PARTITION_COLUMN)?.strip_prefix('=')?;
    NaiveDate::parse_from_str(day, DATE_FORMAT).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sinks_own_files_are_told_from_others() {
        assert!(stems::written_by_sink(&stems::batch(2, 0, 9)));
        assert!(stems::written_by_sink(&stems::compacted()));
        assert!(stems::written_by_sink(&stems::merged()));
        assert!(!stems::written_by_sink(
            "mobaro.enriched+2+00000000000000000000+00000000000000000009"
        ));
        assert!(!stems::written_by_sink("part-00000-1b2c3d4e-c000.snappy"));
        assert!(!stems::written_by_sink("2-0-9-nothex!!"));
    }

    #[test]
    fn paths_read_back_as_written() {
        let path = DataPath {
            table: Table::Events,
            date: NaiveDate::from_ymd_opt(2025, 3, 1).expect("a date"),
            stem: "2-0-9-0a0b0c0d".into(),
        };
        assert_eq!(path.in_table(), "dt=2025-03-01/2-0-9-0a0b0c0d.parquet");
        assert_eq!(
            path.in_lake(),
            "events/dt=2025-03-01/2-0-9-0a0b0c0d.parquet"
        );
        assert_eq!(
            DataPath::parse_in_table(Table::Events, &path.in_table()),
            Some(path)
        );
        assert_eq!(
            DataPath::parse_in_table(Table::Events, "elsewhere/x.parquet"),
            None
        );
        assert_eq!(
            DataPath::parse_in_table(Table::Events, "dt=2025-03-01/x.json"),
            None
        );
    }

    #[test]
    fn a_plain_parquet_stem_names_its_topic_partition_and_last_offset() {
        assert_eq!(
            stems::plain_range("mobaro.enriched+2+00000000000000000100+00000000000000000249"),
            Some(("mobaro.enriched", 2, 249))
        );
        assert_eq!(
            stems::plain_range("a+b+1+0+5"),
            Some(("a+b", 1, 5)),
            "a topic may hold the separator"
        );
        assert_eq!(stems::plain_range("2-100-249-0a1b2c3d"), None);
        assert_eq!(stems::plain_range("+1+2+3"), None);
        assert_eq!(stems::plain_range("t+x+2+3"), None);
    }
}
