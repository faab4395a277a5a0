//! Who is at the other end of each cluster session: the node id a peer proved when its
//! session authenticated (its claimed name checked against its TLS certificate when the
//! cluster uses TLS), keyed by ractor_cluster's session id. The directory trusts a peer's
//! gateway for node `id` only if it lives on a session proven to be node `id`, so a peer
//! cannot answer for another node by joining that node's process group.

use rustls::pki_types::CertificateDer;
use std::collections::HashMap;
use std::sync::Mutex;

/// Why a session's claimed node id was not proven.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityRefused {
    /// The name it gave is not a node name of this cluster.
    #[error("its name {0:?} names no node of this cluster")]
    NoNode(String),
    /// The cluster uses TLS and the peer presented no certificate.
    #[error("it claims node {0} without a certificate")]
    NoCertificate(u64),
    /// Its certificate names another node (or none).
    #[error("it claims node {0}, and its certificate does not name node {0}")]
    CertificateNamesOther(u64),
}

/// The node a session named `claimed_name` is, given the certificate it presented when the
/// cluster uses TLS (`tls`): the id in the name, if the certificate names that node too.
pub fn prove(
    cluster_name: &str,
    claimed_name: &str,
    tls: bool,
    cert: Option<&CertificateDer<'_>>,
) -> Result<u64, IdentityRefused> {
    let id = node_in_session_name(cluster_name, claimed_name)
        .ok_or_else(|| IdentityRefused::NoNode(claimed_name.to_string()))?;
    if tls {
        let cert = cert.ok_or(IdentityRefused::NoCertificate(id))?;
        if !crate::tls::names_node(cert, cluster_name, id) {
            return Err(IdentityRefused::CertificateNamesOther(id));
        }
    }
    Ok(id)
}

/// The node name a node presents to ractor_cluster: `{cluster_name}-node-{id}`.
pub fn node_session_name(cluster_name: &str, id: u64) -> String {
    format!("{cluster_name}-node-{id}")
}

/// The node id in a session name of cluster `cluster_name` (as ractor_cluster sends it:
/// `{cluster_name}-node-{id}@{host}`), if it is one.
pub fn node_in_session_name(cluster_name: &str, name: &str) -> Option<u64> {
    let node_name = name.split_once('@').map_or(name, |(node, _host)| node);
    node_name
        .strip_prefix(cluster_name)?
        .strip_prefix("-node-")?
        .parse()
        .ok()
}

/// The proven node id of each authenticated session.
#[derive(Debug, Default)]
pub struct Identities {
    by_session: Mutex<HashMap<u64, u64>>,
}

impl Identities {
    /// Session `session` (ractor_cluster's node id) is node `node`.
    pub fn prove(&self, session: u64, node: u64) {
        if let Ok(mut m) = self.by_session.lock() {
            m.insert(session, node);
        }
    }

    /// Session `session` ended.
    pub fn forget(&self, session: u64) {
        if let Ok(mut m) = self.by_session.lock() {
            m.remove(&session);
        }
    }

    /// Whether session `session` was proven to be node `node`.
    pub fn is(&self, session: u64, node: u64) -> bool {
        self.by_session
            .lock()
            .is_ok_and(|m| m.get(&session) == Some(&node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_round_trip_and_other_clusters_do_not_parse() {
        let name = node_session_name("agora-test", 7);
        assert_eq!(node_in_session_name("agora-test", &name), Some(7));
        let sent = format!("{name}@10.0.0.7");
        assert_eq!(node_in_session_name("agora-test", &sent), Some(7));
        assert_eq!(node_in_session_name("agora", &name), None);
        assert_eq!(
            node_in_session_name("agora-test", "agora-test-node-x"),
            None
        );
    }

    fn certificate(node: u64) -> CertificateDer<'static> {
        use rustls::pki_types::pem::PemObject;
        let path = format!(
            "{}/../tests/fixtures/tls/node-{node}.pem",
            env!("CARGO_MANIFEST_DIR")
        );
        CertificateDer::from_pem_file(path).expect("fixture certificate")
    }

    #[test]
    fn a_claim_is_proven_only_by_a_certificate_naming_that_node() {
        let name = format!("{}@127.0.0.1", node_session_name("agora-test", 4));
        let own = certificate(4);
        let other = certificate(2);
        assert_eq!(prove("agora-test", &name, true, Some(&own)), Ok(4));
        assert_eq!(
            prove("agora-test", &name, true, Some(&other)),
            Err(IdentityRefused::CertificateNamesOther(4))
        );
        assert_eq!(
            prove("agora-test", &name, true, None),
            Err(IdentityRefused::NoCertificate(4))
        );
        // Without TLS the secret authenticates the cluster, and the name is the claim.
        assert_eq!(prove("agora-test", &name, false, None), Ok(4));
        assert!(matches!(
            prove("agora-test", "intruder", false, None),
            Err(IdentityRefused::NoNode(_))
        ));
    }

    #[test]
    fn a_session_is_only_the_node_it_proved() {
        let ids = Identities::default();
        ids.prove(11, 2);
        assert!(ids.is(11, 2));
        assert!(!ids.is(11, 3));
        assert!(!ids.is(12, 2));
        ids.forget(11);
        assert!(!ids.is(11, 2));
    }
}
