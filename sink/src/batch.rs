//! Records buffered for one topic partition, and how they split into files.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::NaiveDate;
use schemas::{table_for, EnrichedRecord, Table};

/// A contiguous offset range of one partition, waiting to be written.
#[derive(Debug)]
pub struct Batch {
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub records: Vec<EnrichedRecord>,
    pub opened_at: Instant,
    /// Replaying a range a crashed flush announced: the batch must end exactly
    /// here, whatever the size and age limits say.
    pub cut_at: Option<i64>,
}

/// One Parquet file of a batch.
pub struct FilePlan<'a> {
    pub table: Table,
    pub date: NaiveDate,
    pub records: Vec<&'a EnrichedRecord>,
}

impl Batch {
    pub fn new(partition: i32, offset: i64) -> Self {
        Batch {
            partition,
            first_offset: offset,
            last_offset: offset,
            records: Vec::new(),
            opened_at: Instant::now(),
            cut_at: None,
        }
    }

    /// Extends the range to `offset`; `record` is None for an offset whose
    /// message went to the dead-letter topic instead.
    pub fn push(&mut self, offset: i64, record: Option<EnrichedRecord>) {
        self.last_offset = offset;
        self.records.extend(record);
    }

    /// Every record lands in its resource's table and in `events`, partitioned
    /// by the UTC date of the event.
    pub fn files(&self) -> Vec<FilePlan<'_>> {
        let mut groups: BTreeMap<(Table, NaiveDate), Vec<&EnrichedRecord>> = BTreeMap::new();
        for record in &self.records {
            let date = record.event_timestamp.date_naive();
            for table in [table_for(record), Table::Events] {
                groups.entry((table, date)).or_default().push(record);
            }
        }
        groups
            .into_iter()
            .map(|((table, date), records)| FilePlan {
                table,
                date,
                records,
            })
            .collect()
    }

    /// The object name: derived only from the topic, partition and offset range,
    /// so a replay of the same range writes the same name.
    pub fn object_name(&self, topic: &str, plan: &FilePlan<'_>) -> String {
        format!(
            "{}/dt={}/{topic}+{}+{:020}+{:020}.parquet",
            plan.table.name(),
            plan.date.format("%Y-%m-%d"),
            self.partition,
            self.first_offset,
            self.last_offset,
        )
    }
}
