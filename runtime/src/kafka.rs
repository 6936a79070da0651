//! Kafka client configuration with librdkafka property pass-through, and
//! creation of the topics a stage needs.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("invalid kafka option {0:?}: expected key=value")]
    InvalidOption(String),
    #[error("kafka client: {0}")]
    Client(#[from] RdKafkaError),
    #[error("creating topic {topic}: {code}")]
    CreateTopic {
        topic: String,
        code: RDKafkaErrorCode,
    },
}

/// Broker address and librdkafka properties, shared by every stage.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, comma separated.
    #[arg(
        long = "kafka-brokers",
        env = "KAFKA_BROKERS",
        default_value = "localhost:9092"
    )]
    pub brokers: String,

    /// Extra librdkafka property as key=value (repeatable; env: comma separated),
    /// e.g. `security.protocol=SASL_SSL` for MSK or Confluent Cloud.
    #[arg(long = "kafka-option", env = "KAFKA_OPTIONS", value_delimiter = ',')]
    pub options: Vec<String>,

    /// Partitions for topics this stage creates when they are missing.
    #[arg(long, env = "KAFKA_TOPIC_PARTITIONS", default_value_t = 3)]
    pub topic_partitions: i32,

    /// Replication factor for topics this stage creates when they are missing.
    #[arg(long, env = "KAFKA_TOPIC_REPLICATION", default_value_t = 1)]
    pub topic_replication: i32,
}

impl KafkaArgs {
    /// A client config with the brokers and every pass-through option set;
    /// options are applied last, so they override the stage's defaults.
    pub fn client_config(&self, defaults: &[(&str, &str)]) -> Result<ClientConfig, KafkaError> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for option in self.options.iter().filter(|o| !o.trim().is_empty()) {
            let (key, value) = option
                .split_once('=')
                .ok_or_else(|| KafkaError::InvalidOption(option.clone()))?;
            config.set(key.trim(), value.trim());
        }
        Ok(config)
    }
}

/// Creates the topics that do not exist yet; existing ones are left as they are.
pub async fn ensure_topics(args: &KafkaArgs, topics: &[&str]) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = args.client_config(&[])?.create()?;
    let new_topics: Vec<NewTopic> = topics
        .iter()
        .map(|t| {
            NewTopic::new(
                t,
                args.topic_partitions,
                TopicReplication::Fixed(args.topic_replication),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new_topics, &options).await? {
        match result {
            Ok(topic) => tracing::info!(%topic, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(KafkaError::CreateTopic { topic, code }),
        }
    }
    Ok(())
}
