//! The acknowledgement limit: a bare producer keeping as many single messages
//! outstanding as the HTTP load has connections, each sent as soon as the
//! previous one was acknowledged. No server can answer signed webhooks faster
//! than this on the same broker with the same durability.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

/// Messages per second and acknowledgement latency.
#[derive(Debug)]
pub(crate) struct AckLimit {
    pub messages: usize,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
}

impl AckLimit {
    pub(crate) fn per_second(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }

    pub(crate) fn percentile(&self, p: f64) -> Duration {
        crate::latency::percentile(&self.latencies, p)
    }
}

/// Sends `(key, body)` pairs round-robin with `outstanding` messages in flight,
/// `acks=all` and idempotence, after a warm-up of a fifth of `duration`.
pub(crate) async fn measure(
    brokers: &str,
    topic: &str,
    linger_ms: &str,
    messages: &[(String, String)],
    outstanding: usize,
    duration: Duration,
) -> anyhow::Result<AckLimit> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", linger_ms)
        .create()?;
    let messages = Arc::new(messages.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let warm_until = Instant::now() + duration / 5;
    let stop_at = warm_until + duration;
    let mut tasks = vec![];
    for _ in 0..outstanding {
        let (producer, messages, next, topic) = (
            producer.clone(),
            messages.clone(),
            next.clone(),
            topic.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = vec![];
            loop {
                let started = Instant::now();
                if started >= stop_at {
                    break;
                }
                let (key, body) = &messages[next.fetch_add(1, Ordering::Relaxed) % messages.len()];
                let sent = producer
                    .send(
                        FutureRecord::to(&topic).key(key).payload(body),
                        Duration::from_secs(10),
                    )
                    .await;
                anyhow::ensure!(sent.is_ok(), "the broker refused a message: {sent:?}");
                if started >= warm_until {
                    latencies.push(started.elapsed());
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = vec![];
    for task in tasks {
        latencies.extend(task.await??);
    }
    latencies.sort();
    Ok(AckLimit {
        messages: latencies.len(),
        elapsed: duration,
        latencies,
    })
}
