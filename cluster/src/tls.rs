//! TLS between nodes (rustls): the acceptor for the node server and the connector for the
//! dialer, from the cluster file's PEM files. Peers must present a certificate that chains to
//! the cluster's CA and names the cluster.

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
    /// The name every node's certificate carries (the cluster's name).
    pub server_name: ServerName<'static>,
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

/// Loads the TLS settings; errors name the file.
pub fn load(files: &TlsFiles, cluster_name: &str) -> Result<Tls, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| tls_err(format!("tls.cert {}", files.cert.display()), e))?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| tls_err(format!("tls.key {}", files.key.display()), e))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&files.ca)
        .map_err(|e| tls_err(format!("tls.ca {}", files.ca.display()), e))?
    {
        let ca_err =
            |e: &dyn std::fmt::Display| tls_err(format!("tls.ca {}", files.ca.display()), e);
        let ca = ca.map_err(|e| ca_err(&e))?;
        roots.add(ca).map_err(|e| ca_err(&e))?;
    }
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("tls protocol versions", e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls_err("tls.cert/tls.key", e))?;
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("tls protocol versions", e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server_name = ServerName::try_from(cluster_name.to_string())
        .map_err(|e| tls_err("cluster_name as a TLS name", e))?;
    Ok(Tls {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
        server_name,
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
        let Err(e) = load(&files, "agora") else {
            panic!("TLS loaded from files that do not exist");
        };
        assert_eq!(e.what, "tls.cert /nonexistent/node.pem", "{e}");
    }
}
