//! Reading a whole topic once, as operator commands (replays) do.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::{KafkaArgs, KafkaContext, KafkaError};

const POLL: Duration = Duration::from_secs(5);
const IDLE: Duration = Duration::from_secs(2);
const MAX_IDLE_POLLS: u32 = 3;

/// Every record of `topic` from its start to its end as of now, read without a
/// consumer group commit.
///
/// The high watermarks bound the read, but every partition is read and the read
/// ends only when the topic has been idle for a moment: some brokers (tansu
/// 0.6) report a watermark one short. A partition whose position is still
/// short of its watermark then (the broker stopped answering) fails the
/// read: a caller must not take part of a topic for all of it.
///
/// Blocking: run it where blocking is allowed. `context` signs in as the
/// stage's other clients do ([`KafkaArgs::context`]).
pub fn read_topic_to_end(
    kafka: &KafkaArgs,
    context: KafkaContext,
    topic: &str,
) -> Result<Vec<OwnedMessage>, KafkaError> {
    let consumer: BaseConsumer<KafkaContext> = kafka
        .client_config(&[
            ("group.id", "mobaro-lake-topic-reader"),
            ("enable.auto.commit", "false"),
        ])?
        .create_with_context(context)?;
    // Serves librdkafka's first request for a token (MSK IAM), which it
    // makes when the client is created, before anything waits on a broker.
    let _ = consumer.poll(Duration::ZERO);
    let metadata = consumer.fetch_metadata(Some(topic), POLL)?;
    let mut ends = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
    {
        let (low, high) = consumer.fetch_watermarks(topic, partition, POLL)?;
        assignment.add_partition_offset(topic, partition, Offset::Offset(low))?;
        if high > low {
            ends.insert(partition, high);
        }
    }
    consumer.assign(&assignment)?;
    let mut records = vec![];
    let mut idle_polls = 0;
    loop {
        let wait = if ends.is_empty() { IDLE } else { POLL };
        let Some(message) = consumer.poll(wait) else {
            idle_polls += 1;
            if idle_polls >= MAX_IDLE_POLLS {
                // Offsets with no record to deliver (a compacted topic,
                // transaction markers) move the position, not the records.
                let positions = consumer.position()?;
                ends.retain(|partition, end| {
                    position_of(&positions, topic, *partition).is_none_or(|at| at < *end)
                });
                if let Some((&partition, &end)) = ends.iter().next() {
                    return Err(KafkaError::ShortRead {
                        topic: topic.to_string(),
                        partition,
                        at: position_of(&positions, topic, partition).unwrap_or(-1),
                        end,
                    });
                }
            }
            if ends.is_empty() || idle_polls >= MAX_IDLE_POLLS {
                break;
            }
            continue;
        };
        idle_polls = 0;
        let message = message?;
        if message.offset() + 1 >= ends.get(&message.partition()).copied().unwrap_or(0) {
            ends.remove(&message.partition());
        }
        records.push(message.detach());
    }
    Ok(records)
}

/// The offset `positions` hold for the partition, if a real one.
fn position_of(positions: &TopicPartitionList, topic: &str, partition: i32) -> Option<i64> {
    match positions.find_partition(topic, partition)?.offset() {
        Offset::Offset(at) => Some(at),
        _ => None,
    }
}
