//! Kafka client configuration with librdkafka property pass-through, and
//! creation of the topics a stage needs.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::OAuthToken;
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::producer::{FutureProducer, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext};
use tokio::sync::OnceCell;

use crate::msk_iam::MskSigner;

#[derive(Debug, thiserror::Error)]
/// Why Kafka configuration or a Kafka call failed.
pub enum KafkaError {
    /// The option itself is not repeated: it may hold a secret, or the part
    /// of one that a comma split off.
    #[error("kafka option number {number} ({length} characters) is not key=value; a value containing a comma goes in KAFKA_OPTIONS_FILE")]
    InvalidOption {
        /// Its position among the options, from 1.
        number: usize,
        /// Its length in characters.
        length: usize,
    },
    #[error("reading kafka options from {path}: {source}")]
    /// The options file could not be read.
    OptionsFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    #[error("kafka client: {0}")]
    /// The Kafka client failed.
    Client(#[from] RdKafkaError),
    #[error(
        "reading topic {topic}: partition {partition} stopped at offset {at}, before its end {end}"
    )]
    /// A topic read to its end stopped short of it: the broker stopped
    /// answering, or answered nothing further.
    ShortRead {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The position reached.
        at: i64,
        /// The end the broker reported.
        end: i64,
    },
    #[error("reading AWS credentials for MSK IAM authentication: {0}; set them as for any AWS client (environment, web identity, container or instance role)")]
    /// The AWS credentials chain gave no credentials.
    AwsCredentials(#[from] object_store::Error),
    #[error("topics {topics:?} do not exist; with MSK IAM authentication the stages cannot create topics (the Kafka client's admin API does not sign in with OAUTHBEARER): create them with {partitions} partitions each, e.g. with the AWS console or kafka-topics.sh")]
    /// Topics are missing and cannot be created with the configured
    /// authentication.
    TopicsMissing {
        /// The missing topics.
        topics: Vec<String>,
        /// The partitions each would have.
        partitions: i32,
    },
    #[error("creating topic {topic}: {code}")]
    /// A topic could not be created.
    CreateTopic {
        /// The topic.
        topic: String,
        /// The broker's error code.
        code: RDKafkaErrorCode,
    },
}

/// Broker address and librdkafka properties, shared by every stage. `Debug`
/// shows the options' keys, not their values (passwords).
#[derive(Clone, clap::Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, comma separated.
    #[arg(
        long = "kafka-brokers",
        env = "KAFKA_BROKERS",
        default_value = "localhost:9092"
    )]
    pub brokers: String,

    /// Extra librdkafka property as key=value (repeatable; env: comma separated),
    /// e.g. `security.protocol=SASL_SSL` for MSK or Confluent Cloud. Values
    /// with commas go in KAFKA_OPTIONS_FILE.
    #[arg(
        long = "kafka-option",
        env = "KAFKA_OPTIONS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub options: Vec<String>,

    /// A file of librdkafka properties, one key=value per line (`#` starts a
    /// comment; values are taken whole, commas and `=` included), e.g. for
    /// `sasl.password`. Applied after KAFKA_OPTIONS.
    #[arg(long = "kafka-options-file", env = "KAFKA_OPTIONS_FILE")]
    pub options_file: Option<std::path::PathBuf>,

    /// Partitions for topics this stage creates when they are missing.
    #[arg(long, env = "KAFKA_TOPIC_PARTITIONS", default_value_t = 3)]
    pub topic_partitions: i32,

    /// Replication factor for topics this stage creates when they are missing.
    #[arg(long, env = "KAFKA_TOPIC_REPLICATION", default_value_t = 1)]
    pub topic_replication: i32,

    /// AWS region of an MSK cluster to sign in to with IAM: SASL OAUTHBEARER
    /// over TLS, with a token signed from the AWS credentials chain
    /// (environment, web identity as with EKS service accounts, container or
    /// instance role) and renewed before it expires. Unset: no IAM.
    #[arg(long, env = "KAFKA_MSK_IAM_REGION")]
    pub msk_iam_region: Option<String>,
}

/// The context of every Kafka client of the stages: it signs MSK IAM tokens
/// when librdkafka asks for one (only with `KAFKA_MSK_IAM_REGION`).
#[derive(Debug, Clone, Default)]
pub struct KafkaContext {
    signer: Option<Arc<MskSigner>>,
}

/// The stages' producer.
pub type Producer = FutureProducer<KafkaContext>;

impl KafkaContext {
    /// A context signing tokens with `signer`.
    pub fn signing(signer: Arc<MskSigner>) -> Self {
        Self {
            signer: Some(signer),
        }
    }

    /// Whether clients of this context sign in with MSK IAM.
    pub fn signs(&self) -> bool {
        self.signer.is_some()
    }
}

impl ClientContext for KafkaContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        _config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        let signer = self.signer.as_ref().ok_or(
            "sasl.mechanism=OAUTHBEARER is set without KAFKA_MSK_IAM_REGION: \
             no token source is configured",
        )?;
        let (token, expires) = signer.token();
        Ok(OAuthToken {
            token,
            // MSK takes the principal from the signature, not from here.
            principal_name: String::new(),
            lifetime_ms: expires
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as i64,
        })
    }
}

impl rdkafka::consumer::ConsumerContext for KafkaContext {}

/// The process's signer: one per process, whatever the clients.
static SIGNER: OnceCell<Arc<MskSigner>> = OnceCell::const_new();

impl KafkaArgs {
    /// A client config with the brokers and every pass-through option set;
    /// options are applied last, so they override the stage's defaults.
    /// With MSK IAM, TLS and OAUTHBEARER come before the defaults.
    pub fn client_config(&self, defaults: &[(&str, &str)]) -> Result<ClientConfig, KafkaError> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        if self.msk_iam_region.is_some() {
            config.set("security.protocol", "SASL_SSL");
            config.set("sasl.mechanism", "OAUTHBEARER");
        }
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        let file = match &self.options_file {
            Some(path) => {
                std::fs::read_to_string(path).map_err(|source| KafkaError::OptionsFile {
                    path: path.clone(),
                    source,
                })?
            }
            None => String::new(),
        };
        let from_file = file
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'));
        let options = self.options.iter().map(String::as_str).chain(from_file);
        for (number, option) in options.filter(|o| !o.trim().is_empty()).enumerate() {
            let (key, value) = option.split_once('=').ok_or(KafkaError::InvalidOption {
                number: number + 1,
                length: option.chars().count(),
            })?;
            config.set(key.trim(), value.trim());
        }
        Ok(config)
    }

    /// The context of this process's clients: signing MSK IAM tokens when
    /// `KAFKA_MSK_IAM_REGION` is set (the first call reads the credentials).
    pub async fn context(&self) -> Result<KafkaContext, KafkaError> {
        let Some(region) = &self.msk_iam_region else {
            return Ok(KafkaContext::default());
        };
        let signer = SIGNER
            .get_or_try_init(|| MskSigner::start(region))
            .await?
            .clone();
        Ok(KafkaContext::signing(signer))
    }

    /// A producer with `defaults` and this process's context.
    pub async fn producer(&self, defaults: &[(&str, &str)]) -> Result<Producer, KafkaError> {
        let context = self.context().await?;
        Ok(self.client_config(defaults)?.create_with_context(context)?)
    }
}

impl std::fmt::Debug for KafkaArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self
            .options
            .iter()
            .map(|o| o.split_once('=').map_or("<invalid>", |(key, _)| key.trim()))
            .collect();
        f.debug_struct("KafkaArgs")
            .field("brokers", &self.brokers)
            .field("option_keys", &keys)
            .field("options_file", &self.options_file)
            .field("topic_partitions", &self.topic_partitions)
            .field("topic_replication", &self.topic_replication)
            .field("msk_iam_region", &self.msk_iam_region)
            .finish()
    }
}

/// Creates the topics that do not exist yet; existing ones are left as they are.
pub async fn ensure_topics(args: &KafkaArgs, topics: &[&str]) -> Result<(), KafkaError> {
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
    create_missing(args, &new_topics).await
}

/// Creates a compacted topic of one partition if it does not exist yet: a
/// store of the latest value per key (checkpoints).
pub async fn ensure_compacted_topic(args: &KafkaArgs, topic: &str) -> Result<(), KafkaError> {
    let new_topic = NewTopic::new(topic, 1, TopicReplication::Fixed(args.topic_replication))
        .set("cleanup.policy", "compact");
    create_missing(args, &[new_topic]).await
}

async fn create_missing(args: &KafkaArgs, new_topics: &[NewTopic<'_>]) -> Result<(), KafkaError> {
    let context = args.context().await?;
    if context.signs() {
        return expect_existing(args, new_topics).await;
    }
    let admin: AdminClient<KafkaContext> = args.client_config(&[])?.create_with_context(context)?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(new_topics, &options).await? {
        match result {
            Ok(topic) => tracing::info!(%topic, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(KafkaError::CreateTopic { topic, code }),
        }
    }
    Ok(())
}

/// Checks that `topics` exist, with a producer (whose own thread answers
/// librdkafka's token requests, which rdkafka's admin client does not).
async fn expect_existing(args: &KafkaArgs, topics: &[NewTopic<'_>]) -> Result<(), KafkaError> {
    let producer = args.producer(&[]).await?;
    let metadata = tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(None, Duration::from_secs(30))
    })
    .await
    .map_err(|_| RdKafkaError::Canceled)??;
    let existing: Vec<&str> = metadata.topics().iter().map(|t| t.name()).collect();
    let topics: Vec<String> = topics
        .iter()
        .map(|t| t.name.to_string())
        .filter(|name| !existing.contains(&name.as_str()))
        .collect();
    if topics.is_empty() {
        return Ok(());
    }
    Err(KafkaError::TopicsMissing {
        topics,
        partitions: args.topic_partitions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(options: &[&str], file: Option<std::path::PathBuf>) -> KafkaArgs {
        KafkaArgs {
            brokers: "b:9092".into(),
            options: options.iter().map(|o| o.to_string()).collect(),
            options_file: file,
            topic_partitions: 3,
            topic_replication: 1,
            msk_iam_region: None,
        }
    }

    #[test]
    fn secrets_stay_out_of_errors_and_debug_and_files_keep_commas() {
        let broken = args(&["sasl.username=u", "sasl.password=p4ss", "w0rd"], None);
        let error = broken.client_config(&[]).expect_err("invalid").to_string();
        assert!(
            !error.contains("w0rd") && !error.contains("p4ss"),
            "{error}"
        );
        assert!(!format!("{broken:?}").contains("p4ss"));
        let dir = std::env::temp_dir().join(format!("kafka-options-{}", std::process::id()));
        std::fs::write(&dir, "# credentials\nsasl.password = p4ss,w0rd=x\n\n").expect("writes");
        let config = args(&["security.protocol=SASL_SSL"], Some(dir.clone()))
            .client_config(&[("security.protocol", "PLAINTEXT")])
            .expect("valid");
        let _ = std::fs::remove_file(&dir);
        assert_eq!(config.get("sasl.password"), Some("p4ss,w0rd=x"));
        assert_eq!(config.get("security.protocol"), Some("SASL_SSL"));
    }

    /// librdkafka asks the producer's context for a token as soon as the
    /// client exists, before any broker answers; the token is the signer's.
    #[tokio::test]
    async fn an_oauthbearer_client_asks_the_signer_for_its_token() {
        let signer = Arc::new(MskSigner::with_credentials(
            "eu-west-1",
            crate::msk_iam::Credentials {
                key_id: "AKIAIOSFODNN7EXAMPLE".into(),
                secret: "secret".into(),
                token: None,
            },
        ));
        let mut kafka = args(&["security.protocol=SASL_PLAINTEXT"], None);
        kafka.brokers = "127.0.0.1:9".into();
        kafka.msk_iam_region = Some("eu-west-1".into());
        let config = kafka.client_config(&[]).expect("config");
        assert_eq!(config.get("sasl.mechanism"), Some("OAUTHBEARER"));
        let _producer: Producer = config
            .create_with_context(KafkaContext::signing(signer.clone()))
            .expect("producer");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while signer.signed() == 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(signer.signed() >= 1, "no token was asked for");
        // Without a region nothing can sign: librdkafka gets an error, not
        // a token.
        assert!(KafkaContext::default().generate_oauth_token(None).is_err());
    }
}
