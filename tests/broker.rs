//! Broker conformance: the suite's crash and rebalance tests are only worth
//! something if the broker serves what Kafka serves. A consumer resuming from
//! a committed offset inside a record batch must get every record from that
//! offset on; a broker that skips the rest of the batch loses records behind
//! the stages' backs. `scripts/test` runs this first and stops if it fails.

use std::time::Duration;

use anyhow::{ensure, Context};
use end_to_end::{unique, Services};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

/// Produces `count` records at once, so that they travel as one batch.
async fn produce_batch(producer: &FutureProducer, topic: &str, from: usize, count: usize) {
    let sends: Vec<_> = (from..from + count)
        .map(|n| {
            let payload = format!("record {n}");
            let record = FutureRecord::<(), _>::to(topic).payload(&payload);
            producer.send_result(record).map_err(|(e, _)| e)
        })
        .collect();
    for send in sends {
        let delivery = send.expect("queued");
        delivery.await.expect("delivered").expect("acknowledged");
    }
}

/// The offsets a fresh consumer reads from `start` within a few seconds.
fn fetch_from(brokers: &str, topic: &str, start: i64) -> anyhow::Result<Vec<i64>> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("conformance"))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Offset(start))?;
    consumer.assign(&assignment)?;
    let mut offsets = vec![];
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline && offsets.last() != Some(&19) {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            offsets.push(message?.offset());
        }
    }
    Ok(offsets)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fetch_from_inside_a_batch_returns_the_rest_of_the_batch() -> anyhow::Result<()> {
    let services = Services::from_env();
    let topic = unique("conformance");
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &services.brokers)
        .create()?;
    let created = admin
        .create_topics(
            &[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await?;
    for result in created {
        result.map_err(|(topic, code)| anyhow::anyhow!("creating {topic}: {code}"))?;
    }
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &services.brokers)
        .set("linger.ms", "200")
        .create()?;
    produce_batch(&producer, &topic, 0, 10).await;
    produce_batch(&producer, &topic, 10, 10).await;
    for start in [0, 1, 5, 9, 15] {
        let offsets = fetch_from(&services.brokers, &topic, start)
            .with_context(|| format!("fetching from {start}"))?;
        let expected: Vec<i64> = (start..20).collect();
        ensure!(
            offsets == expected,
            "the broker at {} is not fit for these tests: a fetch from offset {start}, inside a \
             record batch, returned {offsets:?} instead of {start}..=19. A consumer resuming from a \
             committed offset would silently lose records (tansu's memory:// storage does this; \
             scripts/test runs tansu on sqlite:// storage, which does not)",
            services.brokers
        );
    }
    Ok(())
}
