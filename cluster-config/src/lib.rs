//! Typed configuration of an Agora node, with the defaults of the single-node embedded mode
//! (`agora dev`) and validation whose errors name the field and the fix. `cluster` holds the
//! TOML file that describes a cluster.

pub mod cluster;

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// A configuration error: which field, what is wrong, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{field}`: {problem}; {fix}")]
pub struct ConfigError {
    /// The field's name (with its position, like `nodes[1].http_addr`).
    pub field: String,
    /// What is wrong.
    pub problem: String,
    /// How to fix it.
    pub fix: &'static str,
}

/// Settings of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSettings {
    /// Where the node keeps its data (created if missing).
    pub data_dir: PathBuf,
    /// Where the shop API listens.
    pub http_addr: SocketAddr,
    /// Where the admin endpoint listens.
    pub admin_addr: SocketAddr,
    /// Number of shards; fixed when the data directory is created.
    pub shard_count: u32,
    /// Idle time after which an entity is passivated (ms).
    pub passivate_after_ms: u64,
    /// How long a stock reservation holds (ms).
    pub reservation_ttl_ms: u64,
    /// How long an order waits for the payment gateway (ms).
    pub payment_timeout_ms: u64,
    /// Duration of each courier leg in the simulated courier (ms).
    pub courier_leg_ms: u64,
    /// Shortest simulated gateway latency (ms).
    pub gateway_min_latency_ms: u64,
    /// Longest simulated gateway latency (ms).
    pub gateway_max_latency_ms: u64,
    /// Largest request body (bytes).
    pub body_limit_bytes: usize,
    /// Access token lifetime (seconds).
    pub token_ttl_secs: u64,
    /// Seed the demo catalog on first start.
    pub seed_demo_catalog: bool,
    /// Base URL of an HTTP payment gateway (`agora payment-gateway-sim`); the simulated
    /// in-process gateway when `None`. Needs the webhook secret (`AGORA_WEBHOOK_SECRET`).
    pub payment_gateway_url: Option<String>,
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./agora-data"),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 9090)),
            shard_count: 64,
            passivate_after_ms: 60_000,
            reservation_ttl_ms: 15 * 60 * 1000,
            payment_timeout_ms: 5 * 60 * 1000,
            courier_leg_ms: 2_000,
            gateway_min_latency_ms: 20,
            gateway_max_latency_ms: 150,
            body_limit_bytes: 64 * 1024,
            token_ttl_secs: 3600,
            seed_demo_catalog: true,
            payment_gateway_url: None,
        }
    }
}

fn err(field: impl Into<String>, problem: impl Into<String>, fix: &'static str) -> ConfigError {
    ConfigError {
        field: field.into(),
        problem: problem.into(),
        fix,
    }
}

impl NodeSettings {
    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(err(
                "data_dir",
                "is empty",
                "give a directory path, e.g. ./agora-data",
            ));
        }
        if !(1..=4096).contains(&self.shard_count) {
            return Err(err(
                "shard_count",
                format!("{} is out of range", self.shard_count),
                "use 1 to 4096 (64 is a good default)",
            ));
        }
        if self.http_addr == self.admin_addr && self.http_addr.port() != 0 {
            return Err(err(
                "admin_addr",
                "is the same as http_addr",
                "give the admin endpoint its own port",
            ));
        }
        if self.passivate_after_ms < 100 {
            return Err(err(
                "passivate_after_ms",
                "is below 100 ms",
                "use at least 100 (default 60000)",
            ));
        }
        if self.reservation_ttl_ms < 100 {
            return Err(err(
                "reservation_ttl_ms",
                "is below 100 ms",
                "use at least 100 (default 900000)",
            ));
        }
        if self.payment_timeout_ms < 100 {
            return Err(err(
                "payment_timeout_ms",
                "is below 100 ms",
                "use at least 100 (default 300000)",
            ));
        }
        if self.gateway_min_latency_ms > self.gateway_max_latency_ms {
            return Err(err(
                "gateway_min_latency_ms",
                "is above gateway_max_latency_ms",
                "make min <= max",
            ));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.body_limit_bytes) {
            return Err(err(
                "body_limit_bytes",
                "is out of range",
                "use 1024 to 16777216 (default 65536)",
            ));
        }
        if !(60..=86_400).contains(&self.token_ttl_secs) {
            return Err(err(
                "token_ttl_secs",
                "is out of range",
                "use 60 to 86400 (default 3600)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(NodeSettings::default().validate(), Ok(()));
    }

    #[test]
    fn errors_name_the_field() {
        let s = NodeSettings {
            shard_count: 0,
            ..Default::default()
        };
        let e = s.validate().unwrap_err();
        assert_eq!(e.field, "shard_count");
        assert!(e.to_string().contains("shard_count"));
        let s = NodeSettings {
            gateway_min_latency_ms: 10,
            gateway_max_latency_ms: 5,
            ..Default::default()
        };
        assert_eq!(s.validate().unwrap_err().field, "gateway_min_latency_ms");
    }

    #[test]
    fn parses_toml_and_refuses_unknown_fields() {
        let s: NodeSettings = toml::from_str("shard_count = 8\ndata_dir = \"/tmp/x\"").unwrap();
        assert_eq!(s.shard_count, 8);
        assert!(toml::from_str::<NodeSettings>("shards = 8").is_err());
    }
}
