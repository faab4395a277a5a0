//! Typed configuration of an Agora node, with the defaults of the single-node embedded mode
//! (`agora dev`) and validation whose errors name the field and the fix. `cluster` holds the
//! TOML file that describes a cluster.

pub mod addr;
pub mod cluster;
pub mod secret_strength;

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
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
    /// Most entities active at once on this node (0: no cap); beyond it the least recently
    /// used are passivated early, so memory stays bounded whatever the rate of new entities.
    pub max_active_entities: u64,
    /// How long the id of a message that took effect is remembered (ms): a copy arriving
    /// later than this takes effect again. Outbox messages are redelivered within seconds;
    /// this bounds outside callbacks and `Idempotency-Key` retries of direct commands.
    pub message_retention_ms: u64,
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
    /// Refresh token lifetime (seconds).
    pub refresh_token_ttl_secs: u64,
    /// First lockout after repeated failed logins (ms); each further failure doubles it.
    pub lockout_base_ms: u64,
    /// Most password hashes (argon2, about 19 MiB each) computed at once.
    pub password_hashes_at_once: u32,
    /// How long a registration or login waits for a hashing turn before 503 (ms).
    pub password_hash_wait_ms: u64,
    /// Rate limits of the shop API.
    pub rate_limits: RateLimits,
    /// Where customer notifications go.
    pub notifications: NotificationSettings,
    /// Bounds on the shop API's connections.
    pub connections: ConnectionLimits,
    /// Origins (`https://shop.example`) whose browser pages may call the shop API (CORS);
    /// empty: none, no cross-origin call is allowed.
    pub cors_allowed_origins: Vec<String>,
}

/// Bounds on the shop API's connections, so slow or idle clients cannot exhaust the node's
/// file descriptors (the admin endpoint listens apart and stays reachable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionLimits {
    /// Most open connections at once; further clients wait in the listen backlog.
    pub max_total: usize,
    /// Most open connections from one address; more are closed at once.
    pub max_per_address: usize,
    /// A connection that sends nothing for this long is closed (ms): a request line or
    /// headers left half-sent, or an idle keep-alive.
    pub idle_timeout_ms: u64,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_total: 4096,
            max_per_address: 256,
            // Longer than clients' keep-alive pools usually wait before reuse would race.
            idle_timeout_ms: 60_000,
        }
    }
}

/// Rate limits of the shop API (token buckets: a sustained rate and a burst).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// Whether limits apply at all (off for benchmarks and tests that are not about them).
    pub enabled: bool,
    /// Requests per second per client address.
    pub per_ip_per_sec: u32,
    /// Burst per client address.
    pub per_ip_burst: u32,
    /// Requests per second per signed-in user.
    pub per_user_per_sec: u32,
    /// Burst per signed-in user.
    pub per_user_burst: u32,
    /// Login attempts per minute per client address.
    pub login_per_min: u32,
    /// Burst of login attempts per client address.
    pub login_burst: u32,
    /// Proxies whose `X-Forwarded-For` is believed (the peer address must be one of them).
    pub trusted_proxies: Vec<IpAddr>,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            enabled: true,
            per_ip_per_sec: 50,
            per_ip_burst: 100,
            per_user_per_sec: 20,
            per_user_burst: 40,
            login_per_min: 10,
            login_burst: 5,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Where customer notifications go; a channel without a destination is written to
/// `notifications.jsonl` in the data directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationSettings {
    /// SMTP server for email: `smtp://host:port` (STARTTLS when offered, `?tls=required`
    /// to insist, `?tls=none` for a local relay) or `smtps://host:port`.
    pub smtp_url: Option<String>,
    /// Sender of the emails.
    pub email_from: String,
    /// Webhook (HTTP POST, JSON) for SMS.
    pub sms_webhook_url: Option<String>,
    /// Webhook (HTTP POST, JSON) for WhatsApp.
    pub whatsapp_webhook_url: Option<String>,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        Self {
            smtp_url: None,
            email_from: "Agora <orders@agora.local>".into(),
            sms_webhook_url: None,
            whatsapp_webhook_url: None,
        }
    }
}

impl RateLimits {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, v) in [
            ("rate_limits.per_ip_per_sec", self.per_ip_per_sec),
            ("rate_limits.per_ip_burst", self.per_ip_burst),
            ("rate_limits.per_user_per_sec", self.per_user_per_sec),
            ("rate_limits.per_user_burst", self.per_user_burst),
            ("rate_limits.login_per_min", self.login_per_min),
            ("rate_limits.login_burst", self.login_burst),
        ] {
            if !(1..=1_000_000).contains(&v) {
                return Err(err(
                    field,
                    format!("{v} is out of range"),
                    "use 1 to 1000000, or set rate_limits.enabled = false",
                ));
            }
        }
        if self.trusted_proxies.len() > 64 {
            return Err(err(
                "rate_limits.trusted_proxies",
                "lists more than 64 addresses",
                "list only the proxies in front of the nodes",
            ));
        }
        Ok(())
    }
}

impl NotificationSettings {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(u) = &self.smtp_url {
            let rest = u
                .strip_prefix("smtp://")
                .or_else(|| u.strip_prefix("smtps://"))
                .unwrap_or("");
            if rest.is_empty() || rest.len() > 200 || rest.contains(char::is_whitespace) {
                return Err(err(
                    "notifications.smtp_url",
                    format!("{u:?} is not an smtp:// or smtps:// URL"),
                    "give smtp://host:port (STARTTLS when offered; add ?tls=required to insist) \
                     or smtps://host:port (TLS from the first byte)",
                ));
            }
        }
        let from = self.email_from.trim();
        if from.is_empty() || from.len() > 200 || !from.contains('@') {
            return Err(err(
                "notifications.email_from",
                "is not an email address",
                "give an address like \"Shop <orders@example.com>\"",
            ));
        }
        for (field, u) in [
            ("notifications.sms_webhook_url", &self.sms_webhook_url),
            (
                "notifications.whatsapp_webhook_url",
                &self.whatsapp_webhook_url,
            ),
        ] {
            if let Some(u) = u {
                let ok = (u.starts_with("http://") || u.starts_with("https://"))
                    && u.len() <= 500
                    && !u.contains(char::is_whitespace);
                if !ok {
                    return Err(err(
                        field,
                        format!("{u:?} is not an http(s) URL"),
                        "give the provider's webhook URL, http:// or https://",
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./agora-data"),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 9090)),
            shard_count: 64,
            passivate_after_ms: 60_000,
            max_active_entities: DEFAULT_MAX_ACTIVE_ENTITIES,
            message_retention_ms: 7 * 24 * 60 * 60 * 1000,
            reservation_ttl_ms: 15 * 60 * 1000,
            payment_timeout_ms: 5 * 60 * 1000,
            courier_leg_ms: 2_000,
            gateway_min_latency_ms: 20,
            gateway_max_latency_ms: 150,
            body_limit_bytes: 64 * 1024,
            token_ttl_secs: 900,
            seed_demo_catalog: true,
            refresh_token_ttl_secs: 30 * 86_400,
            lockout_base_ms: 60_000,
            password_hashes_at_once: 2,
            password_hash_wait_ms: 5_000,
            rate_limits: RateLimits::default(),
            notifications: NotificationSettings::default(),
            payment_gateway_url: None,
            connections: ConnectionLimits::default(),
            cors_allowed_origins: Vec::new(),
        }
    }
}

/// Most origins a node allows cross-origin calls from.
pub const MAX_CORS_ORIGINS: usize = 64;

/// Checks that `origins` are origins a browser sends: `http(s)://host[:port]`, no path, no
/// wildcard.
pub fn validate_cors_origins(origins: &[String]) -> Result<(), ConfigError> {
    if origins.len() > MAX_CORS_ORIGINS {
        return Err(err(
            "cors_allowed_origins",
            format!("lists {} origins", origins.len()),
            "list at most 64 origins of the storefronts that call the API",
        ));
    }
    for o in origins {
        let rest = o
            .strip_prefix("https://")
            .or_else(|| o.strip_prefix("http://"))
            .unwrap_or("");
        let ok = !rest.is_empty()
            && o.len() <= 200
            && !rest.contains(['/', '*', '?', '#'])
            && !rest.contains(char::is_whitespace);
        if !ok {
            return Err(err(
                "cors_allowed_origins",
                format!("{o:?} is not an origin"),
                "give each storefront's origin as scheme://host[:port], like https://shop.example (no path, no wildcard)",
            ));
        }
    }
    Ok(())
}

/// The default cap on active entities per node (about 1.5 GiB of entity state at ≈ 15 KiB
/// each).
pub const DEFAULT_MAX_ACTIVE_ENTITIES: u64 = 100_000;

/// The smallest cap accepted (below it, ordinary traffic would passivate busy entities).
pub const MIN_MAX_ACTIVE_ENTITIES: u64 = 1_000;

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
        let c = &self.connections;
        if c.max_total == 0 || c.max_per_address == 0 || c.idle_timeout_ms == 0 {
            return Err(err(
                "connections",
                "has a zero bound",
                "give max_total, max_per_address and idle_timeout_ms values of at least 1",
            ));
        }
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
        if self.max_active_entities != 0 && self.max_active_entities < MIN_MAX_ACTIVE_ENTITIES {
            return Err(err(
                "max_active_entities",
                format!("is {}", self.max_active_entities),
                "use 0 (no cap) or at least 1000 (default 100000)",
            ));
        }
        if self.message_retention_ms < 60 * 60 * 1000 {
            return Err(err(
                "message_retention_ms",
                format!("is {} ms", self.message_retention_ms),
                "use at least 3600000 (1 h; default 604800000, 7 days)",
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
        if !(1..=86_400).contains(&self.token_ttl_secs) {
            return Err(err(
                "token_ttl_secs",
                "is out of range",
                "use 1 to 86400 (default 900)",
            ));
        }
        if !(60..=365 * 86_400).contains(&self.refresh_token_ttl_secs) {
            return Err(err(
                "refresh_token_ttl_secs",
                "is out of range",
                "use 60 to 31536000 (default 2592000, 30 days)",
            ));
        }
        if !(100..=3_600_000).contains(&self.lockout_base_ms) {
            return Err(err(
                "lockout_base_ms",
                "is out of range",
                "use 100 to 3600000 (default 60000)",
            ));
        }
        if !(1..=64).contains(&self.password_hashes_at_once) {
            return Err(err(
                "password_hashes_at_once",
                "is out of range",
                "use 1 to 64 (default 2; each hash holds about 19 MiB)",
            ));
        }
        if !(0..=60_000).contains(&self.password_hash_wait_ms) {
            return Err(err(
                "password_hash_wait_ms",
                "is out of range",
                "use 0 to 60000 (default 5000)",
            ));
        }
        self.rate_limits.validate()?;
        self.notifications.validate()?;
        validate_cors_origins(&self.cors_allowed_origins)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_origins_are_origins_without_paths_or_wildcards() {
        let ok = ["https://shop.example", "http://localhost:5173"].map(String::from);
        assert!(validate_cors_origins(&ok).is_ok());
        for bad in [
            "*",
            "https://*.example",
            "https://shop.example/",
            "shop.example",
            "https://",
        ] {
            let e = validate_cors_origins(&[bad.to_string()]).unwrap_err();
            assert_eq!(e.field, "cors_allowed_origins", "{bad}");
        }
        let s = NodeSettings {
            cors_allowed_origins: vec!["https://a.example/x".into()],
            ..NodeSettings::default()
        };
        assert_eq!(s.validate().unwrap_err().field, "cors_allowed_origins");
    }

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
        let s = NodeSettings {
            message_retention_ms: 1_000,
            ..Default::default()
        };
        assert_eq!(s.validate().unwrap_err().field, "message_retention_ms");
        for (cap, ok) in [(0, true), (999, false), (1_000, true)] {
            let s = NodeSettings {
                max_active_entities: cap,
                ..Default::default()
            };
            assert_eq!(s.validate().is_ok(), ok, "cap {cap}");
        }
    }

    #[test]
    fn rate_limits_and_sinks_are_validated() {
        let mut s = NodeSettings::default();
        s.rate_limits.login_per_min = 0;
        assert_eq!(s.validate().unwrap_err().field, "rate_limits.login_per_min");
        let mut s = NodeSettings::default();
        s.notifications.smtp_url = Some("http://mail".into());
        assert_eq!(s.validate().unwrap_err().field, "notifications.smtp_url");
        let mut s = NodeSettings::default();
        s.notifications.sms_webhook_url = Some("ftp://x".into());
        assert_eq!(
            s.validate().unwrap_err().field,
            "notifications.sms_webhook_url"
        );
        let s: NodeSettings = toml::from_str(
            "[rate_limits]\nper_ip_per_sec = 5\ntrusted_proxies = [\"10.0.0.1\"]\n[notifications]\nsmtp_url = \"smtp://127.0.0.1:2525\"",
        )
        .unwrap();
        assert_eq!(s.rate_limits.per_ip_per_sec, 5);
        assert_eq!(s.rate_limits.trusted_proxies.len(), 1);
        assert_eq!(s.validate(), Ok(()));
        assert!(
            toml::from_str::<NodeSettings>("[rate_limits]\ntrusted_proxies = [\"nope\"]").is_err()
        );
    }

    #[test]
    fn parses_toml_and_refuses_unknown_fields() {
        let s: NodeSettings = toml::from_str("shard_count = 8\ndata_dir = \"/tmp/x\"").unwrap();
        assert_eq!(s.shard_count, 8);
        assert!(toml::from_str::<NodeSettings>("shards = 8").is_err());
    }
}
