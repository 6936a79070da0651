//! Static group membership: each consumer instance joins its group under a
//! stable `group.instance.id`, so that an instance restarted after a crash
//! takes its partitions back at once instead of waiting for the broker to
//! notice that the old member is gone.

use std::net::SocketAddr;

use rdkafka::ClientConfig;

use crate::{KafkaArgs, KafkaError};

/// The instance name of a consuming stage.
#[derive(Debug, Clone, clap::Args)]
pub struct MembershipArgs {
    /// Stable name of this instance in its consumer group (Kafka's
    /// `group.instance.id`): a restarted instance with the same name gets its
    /// partitions back immediately. It must be unique among the instances of
    /// a group; two live instances with one name fence each other, and the
    /// older one stops with an error. Defaults to `{host name}-{ops port}`:
    /// stable across restarts of a container, a pod or a process on one
    /// host, and distinct for instances side by side (they cannot share an
    /// ops port). `none` joins dynamically, without a name.
    #[arg(long, env = "INSTANCE_NAME")]
    pub instance_name: Option<String>,
}

impl MembershipArgs {
    /// The config of `stage`'s consumer: `defaults` and, unless membership
    /// is dynamic, its `group.instance.id`; then the pass-through options.
    /// Also returns the instance id, for the logs.
    pub fn consumer_config(
        &self,
        kafka: &KafkaArgs,
        stage: &str,
        ops_listen: SocketAddr,
        defaults: &[(&str, &str)],
    ) -> Result<(ClientConfig, Option<String>), KafkaError> {
        let id = self.instance_id(stage, ops_listen);
        let mut all = defaults.to_vec();
        if let Some(id) = &id {
            all.push(("group.instance.id", id.as_str()));
        }
        Ok((kafka.client_config(&all)?, id))
    }

    /// The `group.instance.id` of `stage`'s consumer, `None` for dynamic
    /// membership.
    pub fn instance_id(&self, stage: &str, ops_listen: SocketAddr) -> Option<String> {
        let name = match self.instance_name.as_deref().map(str::trim) {
            Some("none") => return None,
            Some(name) if !name.is_empty() => name.to_string(),
            _ => format!("{}-{}", host_name(), ops_listen.port()),
        };
        Some(format!("{stage}-{name}"))
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_are_stable_per_slot_and_distinct_across_slots() {
        let default = MembershipArgs {
            instance_name: None,
        };
        let ops: SocketAddr = "0.0.0.0:8081".parse().expect("address");
        let other: SocketAddr = "0.0.0.0:9081".parse().expect("address");
        let id = default.instance_id("enricher", ops).expect("static");
        assert_eq!(Some(id.clone()), default.instance_id("enricher", ops));
        assert_ne!(Some(id.clone()), default.instance_id("enricher", other));
        assert!(id.starts_with("enricher-") && id.ends_with("-8081"), "{id}");
        let named = MembershipArgs {
            instance_name: Some("slot-2".into()),
        };
        assert_eq!(
            named.instance_id("sink", ops).as_deref(),
            Some("sink-slot-2")
        );
        let dynamic = MembershipArgs {
            instance_name: Some("none".into()),
        };
        assert_eq!(dynamic.instance_id("sink", ops), None);
    }
}
