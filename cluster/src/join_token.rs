//! Who may join the cluster's Raft group. A node is admitted when it is in the cluster file
//! of the node that admits it, or when it presents a join token minted for its id: by an
//! operator through the admin endpoint (`POST /admin/cluster/join-tokens`, mutations
//! enabled), or offline from the cluster file (`agora join-token`, what a Kubernetes pod
//! does on scale-up). A process that merely connects with the secret does not join.
//!
//! A token names the node id, the cluster and an expiry, and is signed (HMAC-SHA256) with the
//! cluster secret, so every node checks it without shared state. It is useless to any other
//! node id, and to its own node once that node is a member. Whoever holds the cluster secret
//! can mint one: the token keeps out a node started by mistake (a copied file, a wrong id, a
//! removed id), not someone who holds the secret, who could connect as any node anyway.

use agora_actors::hex::{decode as unhex, encode as hex};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How long a minted token is accepted.
pub const JOIN_TOKEN_TTL_MS: u64 = 60 * 60 * 1000;
/// The first field of every token (its format).
const FORMAT: &str = "agj1";

/// Why a join is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefused {
    /// Neither in the cluster file nor holding a token.
    #[error(
        "node {0} is not in this node's cluster file and presented no join token: mint one with \
         POST /admin/cluster/join-tokens and start the node with --join-token"
    )]
    Unknown(u64),
    /// The token does not parse.
    #[error("the join token is malformed")]
    Malformed,
    /// The token was minted for another node.
    #[error("the join token was minted for node {minted_for}, not node {presented_by}")]
    WrongNode {
        /// The node it names.
        minted_for: u64,
        /// The node that presented it.
        presented_by: u64,
    },
    /// The token is past its expiry.
    #[error("the join token expired; mint a new one")]
    Expired,
    /// The token was not signed with this cluster's secret.
    #[error("the join token was not minted by this cluster")]
    BadSignature,
    /// The node id was removed from the cluster for good (its replicas were handed on).
    #[error(
        "node {0} was removed from the cluster for good: start the node under a new id, with a \
         join token minted for that id"
    )]
    Removed(u64),
}

/// Who may join, as the admitting node sees it.
#[derive(Clone)]
pub struct JoinPolicy {
    /// The node ids in this node's cluster file.
    pub members: Vec<u64>,
    /// The cluster's name.
    pub cluster_name: String,
    /// The cluster secret (signs tokens).
    pub secret: String,
}

fn signature(secret: &str, cluster: &str, node: u64, expires_at_ms: u64) -> Hmac<Sha256> {
    // Any key length is accepted by HMAC.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(b"agora-join-token\0");
    mac.update(cluster.as_bytes());
    mac.update(b"\0");
    mac.update(&node.to_be_bytes());
    mac.update(&expires_at_ms.to_be_bytes());
    mac
}

impl JoinPolicy {
    /// A token admitting node `node` until `expires_at_ms`.
    pub fn mint(&self, node: u64, expires_at_ms: u64) -> String {
        let mac = signature(&self.secret, &self.cluster_name, node, expires_at_ms);
        let sig = hex(&mac.finalize().into_bytes());
        format!("{FORMAT}.{node}.{expires_at_ms}.{sig}")
    }

    /// Whether node `node`, presenting `token`, may join at `now_ms`.
    pub fn admit(&self, node: u64, token: Option<&str>, now_ms: u64) -> Result<(), JoinRefused> {
        if self.members.contains(&node) {
            return Ok(());
        }
        let token = token.ok_or(JoinRefused::Unknown(node))?;
        let fields: Vec<&str> = token.split('.').collect();
        let [FORMAT, minted_for, expires, sig] = fields.as_slice() else {
            return Err(JoinRefused::Malformed);
        };
        let minted_for: u64 = minted_for.parse().map_err(|_| JoinRefused::Malformed)?;
        let expires: u64 = expires.parse().map_err(|_| JoinRefused::Malformed)?;
        let sig = unhex(sig).ok_or(JoinRefused::Malformed)?;
        signature(&self.secret, &self.cluster_name, minted_for, expires)
            .verify_slice(&sig)
            .map_err(|_| JoinRefused::BadSignature)?;
        if minted_for != node {
            return Err(JoinRefused::WrongNode {
                minted_for,
                presented_by: node,
            });
        }
        if now_ms > expires {
            return Err(JoinRefused::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(secret: &str) -> JoinPolicy {
        JoinPolicy {
            members: vec![1, 2, 3],
            cluster_name: "agora-test".into(),
            secret: secret.into(),
        }
    }

    #[test]
    fn a_node_outside_the_cluster_file_needs_a_token_for_its_own_id() {
        let p = policy("4d8a1f6c0e93b27d5a1c8e4f0b6d29a7");
        assert_eq!(p.admit(2, None, 5), Ok(()));
        assert_eq!(p.admit(4, None, 5), Err(JoinRefused::Unknown(4)));
        let token = p.mint(4, 1_000);
        assert_eq!(p.admit(4, Some(&token), 999), Ok(()));
        assert_eq!(p.admit(4, Some(&token), 1_001), Err(JoinRefused::Expired));
        assert_eq!(
            p.admit(5, Some(&token), 5),
            Err(JoinRefused::WrongNode {
                minted_for: 4,
                presented_by: 5
            })
        );
    }

    #[test]
    fn a_forged_or_foreign_token_is_refused() {
        let p = policy("4d8a1f6c0e93b27d5a1c8e4f0b6d29a7");
        let other = policy("another-clusters-secret-0123456789");
        assert_eq!(
            p.admit(4, Some(&other.mint(4, 1_000)), 5),
            Err(JoinRefused::BadSignature)
        );
        let token = p.mint(4, 1_000);
        let later = token.replacen(".1000.", ".99999999.", 1);
        assert_eq!(p.admit(4, Some(&later), 5), Err(JoinRefused::BadSignature));
        for garbage in [
            "",
            "agj1",
            "agj1.4.1000.zz",
            "agj2.4.1000.00",
            "agj1.x.1.00",
        ] {
            assert!(p.admit(4, Some(garbage), 5).is_err(), "{garbage:?}");
        }
    }
}
