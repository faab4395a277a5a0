//! TLS between nodes (rustls): the acceptor for the node server and the connector for the
//! dialer, from the cluster file's PEM files. Both sides present certificates (mutual TLS)
//! that chain to the cluster's CA, and each certificate names its node:
//! `node-{id}.{cluster_name}`. A dialer checks that name against the node it dials; an
//! acceptor checks it against the node id the peer claims when it authenticates
//! (`admission`), so a node certified as one id cannot pose as another.

use agora_cluster_config::cluster::TlsFiles;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::Arc;

/// What the transport needs for TLS.
#[derive(Clone)]
pub struct Tls {
    /// Accepts peers' connections.
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// Dials peers.
    pub connector: tokio_rustls::TlsConnector,
    /// The cluster's name (certificates name `node-{id}.{cluster_name}`).
    pub cluster_name: String,
}

impl Tls {
    /// The name node `id`'s certificate must carry.
    pub fn node_name(&self, id: u64) -> Result<ServerName<'static>, TlsError> {
        node_name(&self.cluster_name, id)
    }
}

/// The DNS name node `id` of cluster `cluster_name` is certified under.
pub fn node_name(cluster_name: &str, id: u64) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(format!("node-{id}.{cluster_name}"))
        .map_err(|e| tls_err("cluster_name as a TLS name", e))
}

/// Whether `cert` (already verified against the CA by the handshake) names node `id`.
pub fn names_node(cert: &CertificateDer<'_>, cluster_name: &str, id: u64) -> bool {
    let Ok(name) = node_name(cluster_name, id) else {
        return false;
    };
    rustls::server::ParsedCertificate::try_from(cert)
        .and_then(|parsed| rustls::client::verify_server_name(&parsed, &name))
        .is_ok()
}

/// Why the TLS settings could not be loaded: the file or setting, and what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {problem}")]
pub struct TlsError {
    /// The setting and its file, e.g. `tls.cert certs/node.pem`.
    pub what: String,
    /// What went wrong.
    pub problem: String,
}

/// A `TlsError`: `what` failed with `e`.
fn tls_err(what: impl Into<String>, e: impl std::fmt::Display) -> TlsError {
    TlsError {
        what: what.into(),
        problem: e.to_string(),
    }
}

/// Loads node `me`'s TLS settings; errors name the file, and a certificate that does not
/// name node `me` is refused with the name it needs.
pub fn load(files: &TlsFiles, cluster_name: &str, me: u64) -> Result<Tls, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let (cert_path, key_path) = files.for_node(me);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| tls_err(format!("tls.cert {}", cert_path.display()), e))?;
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| tls_err(format!("tls.key {}", key_path.display()), e))?;
    if !certs
        .first()
        .is_some_and(|c| names_node(c, cluster_name, me))
    {
        return Err(tls_err(
            format!("tls.cert {}", cert_path.display()),
            format!("the certificate does not name node {me}: give it the DNS name node-{me}.{cluster_name} (subjectAltName), or use `{{id}}` in the path to pick each node's own file"),
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&files.ca)
        .map_err(|e| tls_err(format!("tls.ca {}", files.ca.display()), e))?
    {
        let ca_err =
            |e: &dyn std::fmt::Display| tls_err(format!("tls.ca {}", files.ca.display()), e);
        let ca = ca.map_err(|e| ca_err(&e))?;
        roots.add(ca).map_err(|e| ca_err(&e))?;
    }
    let roots = Arc::new(roots);
    let peers = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()
    .map_err(|e| tls_err(format!("tls.ca {}", files.ca.display()), e))?;
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("tls protocol versions", e))?
        .with_client_cert_verifier(peers)
        .with_single_cert(certs.clone(), key.clone_key())
        .map_err(|e| tls_err("tls.cert/tls.key", e))?;
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("tls protocol versions", e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| tls_err("tls.cert/tls.key", e))?;
    node_name(cluster_name, me)?;
    Ok(Tls {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
        cluster_name: cluster_name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_named_in_the_error() {
        let files = TlsFiles {
            cert: "/nonexistent/node.pem".into(),
            key: "/nonexistent/node.key".into(),
            ca: "/nonexistent/ca.pem".into(),
        };
        let Err(e) = load(&files, "agora", 1) else {
            panic!("TLS loaded from files that do not exist");
        };
        assert_eq!(e.what, "tls.cert /nonexistent/node.pem", "{e}");
    }

    fn fixture(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/tls")
            .join(name)
    }

    fn fixtures() -> TlsFiles {
        TlsFiles {
            cert: fixture("node-{id}.pem"),
            key: fixture("node-{id}.key"),
            ca: fixture("ca.pem"),
        }
    }

    #[test]
    fn each_node_loads_its_own_certificate() {
        for me in 1..=3 {
            let tls = load(&fixtures(), "agora-test", me).expect("the fixtures load");
            assert_eq!(tls.cluster_name, "agora-test");
        }
    }

    #[test]
    fn a_certificate_for_another_node_is_refused_at_start() {
        let files = TlsFiles {
            cert: fixture("node-2.pem"),
            key: fixture("node-2.key"),
            ca: fixture("ca.pem"),
        };
        let Err(e) = load(&files, "agora-test", 3) else {
            panic!("node 3 started with node 2's certificate");
        };
        assert!(e.problem.contains("node-3.agora-test"), "{e}");
    }

    #[test]
    fn a_certificate_names_exactly_its_node() {
        let pem = std::fs::read(fixture("node-2.pem")).expect("fixture");
        let cert = CertificateDer::from_pem_slice(&pem).expect("a certificate");
        assert!(names_node(&cert, "agora-test", 2));
        assert!(!names_node(&cert, "agora-test", 3));
        assert!(!names_node(&cert, "other-cluster", 2));
    }
}
