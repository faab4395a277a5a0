//! A node's cluster address: `IP:port`, or `host:port` with a DNS host name that peers
//! resolve each time they dial (so a node whose IP changed, like a rescheduled pod, is found
//! again).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Where peers reach a node: an IP literal, or a DNS host name resolved when dialled.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ClusterAddr {
    /// An IP address and port (`10.0.0.5:7100`, `[fd00::5]:7100`).
    Ip(SocketAddr),
    /// A DNS host name and port (`agora-0.agora-headless.shop.svc.cluster.local:7100`).
    Host {
        /// The host name, as written (lower-cased).
        name: String,
        /// The port.
        port: u16,
    },
}

/// Why a cluster address was refused (the field is named by the caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}")]
pub struct AddrProblem {
    /// What is wrong with the text.
    pub problem: String,
}

/// How to write a cluster address (the fix every `AddrProblem` shares).
pub const ADDR_FIX: &str =
    "write IP:port or host:port, e.g. \"10.0.0.5:7100\", \"[fd00::5]:7100\" or \"agora-0.agora-headless:7100\"";

fn problem(text: &str, what: impl fmt::Display) -> AddrProblem {
    AddrProblem {
        problem: format!("{text:?} {what}"),
    }
}

impl ClusterAddr {
    /// Parses `IP:port` or `host:port` (a DNS name: letters, digits, `-` and `.`).
    pub fn parse(text: &str) -> Result<Self, AddrProblem> {
        if let Ok(ip) = text.parse::<SocketAddr>() {
            return Ok(Self::Ip(ip));
        }
        let Some((host, port)) = text.rsplit_once(':') else {
            return Err(problem(text, "has no port"));
        };
        if host.contains(':') || host.starts_with('[') {
            return Err(problem(
                text,
                "is not a valid IPv6 address and port (IPv6 needs brackets: [fd00::5]:7100)",
            ));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| problem(text, format!("has port {port:?}, not a number up to 65535")))?;
        check_host_name(host).map_err(|what| problem(text, what))?;
        Ok(Self::Host {
            name: host.to_ascii_lowercase(),
            port,
        })
    }

    /// The port.
    pub fn port(&self) -> u16 {
        match self {
            Self::Ip(a) => a.port(),
            Self::Host { port, .. } => *port,
        }
    }

    /// What a node listening at this address binds: the IP literal, or for a host name
    /// the port on every IPv4 interface (`0.0.0.0`).
    pub fn listen_addr(&self) -> SocketAddr {
        match self {
            Self::Ip(a) => *a,
            Self::Host { port, .. } => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), *port),
        }
    }
}

/// Why `host` is not a DNS host name (RFC 1123 labels), if it is not.
fn check_host_name(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("has no host before the port".into());
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.len() > 253 {
        return Err("has a host name longer than 253 characters".into());
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!(
                "has a host name label {label:?} that is empty or longer than 63 characters"
            ));
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(format!(
                "has a host name label {label:?} with a character other than letters, digits and -"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "has a host name label {label:?} that starts or ends with -"
            ));
        }
    }
    if name
        .rsplit('.')
        .next()
        .is_some_and(|top| top.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(
            "is neither an IP address nor a host name (its last label is all digits)".into(),
        );
    }
    Ok(())
}

impl fmt::Display for ClusterAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(a) => a.fmt(f),
            Self::Host { name, port } => write!(f, "{name}:{port}"),
        }
    }
}

impl From<SocketAddr> for ClusterAddr {
    fn from(a: SocketAddr) -> Self {
        Self::Ip(a)
    }
}

impl TryFrom<String> for ClusterAddr {
    type Error = AddrProblem;
    fn try_from(text: String) -> Result<Self, AddrProblem> {
        Self::parse(&text)
    }
}

impl From<ClusterAddr> for String {
    fn from(a: ClusterAddr) -> String {
        a.to_string()
    }
}
