//! Whether the broker's partition continues what the tables hold of it.
//!
//! The tables record, per partition, the last offset they hold. A topic
//! deleted and created again under its old name, or the same name on
//! another Kafka cluster, starts again from offset 0: its records would sit
//! at or below that offset, and the sink would take them for records the
//! tables hold already. So before a partition's first batch, the broker's
//! end of the partition must lie past every table's offset; otherwise the
//! sink stops and says how to carry on (`SINK_SOURCE_ID`).

use std::time::Duration;

use lake::Standing;
use rdkafka::consumer::Consumer;
use runtime::{Retried, Retry, Verdict};
use tokio_util::sync::CancellationToken;

use crate::consumption::{Consumption, ConsumptionError, Halt};

const WATERMARK_RETRY: Retry = Retry::forever(Duration::from_millis(500), Duration::from_secs(10));
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(10);

impl Consumption {
    /// Stops with [`ConsumptionError::TopicRestarted`] when a table holds
    /// `partition` up to an offset the broker's partition never reached.
    pub(crate) async fn check_continuity(
        &self,
        partition: i32,
        standing: &Standing,
        shutdown: &CancellationToken,
    ) -> Result<(), Halt> {
        let Some((table, held)) = standing.versions().max_by_key(|(_, version)| *version) else {
            return Ok(());
        };
        let end = WATERMARK_RETRY
            .run(
                shutdown,
                |_| self.end_of(partition),
                |error, attempt| {
                    tracing::warn!(%error, partition, attempt, "reading the partition's end failed; retrying");
                    Verdict::Retry
                },
            )
            .await
            .or_stopped()?
            .map_err(ConsumptionError::from)?;
        if held < end {
            return Ok(());
        }
        Err(Halt::Failed(ConsumptionError::TopicRestarted {
            table: table.name(),
            topic: self.tables.source().to_string(),
            partition,
            held,
            end,
        }))
    }

    /// The partition's high watermark: the offset its next record gets.
    async fn end_of(&self, partition: i32) -> Result<i64, rdkafka::error::KafkaError> {
        let consumer = self.consumer.clone();
        let topic = self.config.enriched_topic.clone();
        tokio::task::spawn_blocking(move || {
            consumer
                .fetch_watermarks(&topic, partition, WATERMARK_TIMEOUT)
                .map(|(_, high)| high)
        })
        .await
        .expect("reading watermarks does not panic")
    }
}
