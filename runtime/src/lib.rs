//! Runtime plumbing shared by `ingest`, `enricher` and `sink`, so that none of
//! them carries its own copy: Kafka client configuration and topic creation,
//! logging, the operations endpoints, shutdown on signals and the accounts
//! file.

pub mod accounts;
pub mod checks;
mod delivery;
mod kafka;
mod lag;
mod launch;
mod membership;
pub mod msk_iam;
mod offsets;
mod ops;
mod rate_limit;
mod rebalance;
mod retry;
mod shutdown;
mod size;
mod telemetry;
mod topic_reader;

pub use delivery::{
    is_permanent, is_refused_access, produce, produce_within, with_headers, Outgoing,
};
pub use kafka::{
    ensure_compacted_topic, ensure_topics, KafkaArgs, KafkaContext, KafkaError, Producer,
};
pub use lag::report_lag;
pub use launch::{launch, Hint};
pub use membership::MembershipArgs;
pub use offsets::{commit, CommitError};
pub use ops::{ops_router, serve, watch_broker, Readiness};
pub use rate_limit::TokenBucket;
pub use rebalance::{fatal_error, ConsumerFailed, RebalanceContext, Revoked};
pub use retry::{Failure, Retried, Retry, Stopped, Verdict};
pub use shutdown::shutdown_on_signal;
pub use size::parse_bytes;
pub use telemetry::{init_tracing, lag_metric, prometheus, ready_metric};
pub use topic_reader::read_topic_to_end;
