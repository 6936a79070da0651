//! Whether the broker's partition continues what the tables hold of it.
//!
//! The tables record, per partition, the last offset they hold. A topic
//! deleted and created again under its old name, or the same name on
//! another Kafka cluster, starts again from offset 0: its records would sit
//! at or below that offset, and the sink would take them for records the
//! tables hold already. So before a partition's first batch, the broker's
//! end of the partition must lie past every table's offset; otherwise the
//! sink stops and says how to carry on (`SINK_SOURCE_ID`).
//!
//! Offsets cannot tell a new topic that has already grown past the old
//! offsets: the broker's cluster id can. It is recorded in the lake by the
//! first sink that meets the source and compared before each partition's
//! first batch after every assignment (a sink meets another cluster only
//! through a restart, which always begins with an assignment). A topic
//! deleted and created again on the same cluster keeps the cluster's id:
//! there the offset check is what is left (Kafka's topic ids would tell,
//! but the client library does not expose them).

use std::time::Duration;

use lake::{Provenance, Standing};
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
        self.check_provenance(shutdown).await?;
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

    /// Stops with [`ConsumptionError::OtherCluster`] when the broker's
    /// cluster is not the one the tables' records of the topic came from;
    /// a broker that gives no cluster id is not checked.
    async fn check_provenance(&self, shutdown: &CancellationToken) -> Result<(), Halt> {
        let consumer = self.consumer.clone();
        let cluster = tokio::task::spawn_blocking(move || {
            consumer.client().fetch_cluster_id(WATERMARK_TIMEOUT)
        })
        .await
        .expect("reading the cluster id does not panic");
        let Some(cluster) = cluster else {
            tracing::debug!(
                "the broker gives no cluster id: the source is checked by its offsets only"
            );
            return Ok(());
        };
        let provenance = self
            .read_tables(
                "reading the source's identity",
                || "reading the source's identity".to_string(),
                || self.tables.provenance(&cluster),
                shutdown,
            )
            .await?;
        match provenance {
            Provenance::Same => Ok(()),
            Provenance::Recorded => {
                tracing::info!(topic = self.tables.source(), cluster = %cluster, "the source's cluster recorded in the lake");
                Ok(())
            }
            Provenance::Other { recorded } => Err(Halt::Failed(ConsumptionError::OtherCluster {
                topic: self.tables.source().to_string(),
                recorded,
                found: cluster,
            })),
        }
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
