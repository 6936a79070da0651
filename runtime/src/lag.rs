//! Consumer lag as a Prometheus gauge, per partition.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::Offset;
use tokio_util::sync::CancellationToken;

const EVERY: Duration = Duration::from_secs(15);
const TIMEOUT: Duration = Duration::from_secs(3);

/// Sets `{stage}_consumer_lag{topic,partition}` (high watermark minus position)
/// every 15 s until `shutdown`. A broker that reports watermarks short (tansu
/// 0.6) shows a lag one too small.
pub fn report_lag<C, X>(consumer: Arc<C>, stage: &'static str, shutdown: CancellationToken)
where
    C: Consumer<X> + Send + Sync + 'static,
    X: ConsumerContext + 'static,
{
    let name = crate::telemetry::lag_metric(stage);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(EVERY) => {}
            }
            let consumer = consumer.clone();
            let lags = tokio::task::spawn_blocking(move || {
                let Ok(positions) = consumer.position() else {
                    return vec![];
                };
                positions
                    .elements()
                    .iter()
                    .filter_map(|e| {
                        let Offset::Offset(position) = e.offset() else {
                            return None;
                        };
                        let (_, high) = consumer
                            .fetch_watermarks(e.topic(), e.partition(), TIMEOUT)
                            .ok()?;
                        Some((
                            e.topic().to_string(),
                            e.partition(),
                            (high - position).max(0),
                        ))
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            for (topic, partition, lag) in lags {
                metrics::gauge!(name.clone(), "topic" => topic, "partition" => partition.to_string()).set(lag as f64);
            }
        }
    });
}
