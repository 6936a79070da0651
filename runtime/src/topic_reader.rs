//! Reading a whole topic once, as operator commands (replays) do.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::{KafkaArgs, KafkaError};

const POLL: Duration = Duration::from_secs(5);
const IDLE: Duration = Duration::from_secs(2);
const MAX_IDLE_POLLS: u32 = 3;

/// Every record of `topic` from its start to its end as of now, read without a
/// consumer group commit.
///
/// The high watermarks bound the read, but every partition is read and the read
/// ends only when the topic has been idle for a moment: some brokers (tansu
/// 0.6) report a watermark one short.
pub fn read_topic_to_end(kafka: &KafkaArgs, topic: &str) -> Result<Vec<OwnedMessage>, KafkaError> {
    let consumer: BaseConsumer = kafka
        .client_config(&[
            ("group.id", "mobaro-lake-topic-reader"),
            ("enable.auto.commit", "false"),
        ])?
        .create()?;
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
