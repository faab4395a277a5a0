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

/// Loads the TLS settings; errors name the file.
pub fn load(files: &TlsFiles, cluster_name: &str) -> anyhow::Result<Tls> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| anyhow::anyhow!("tls.cert {}: {e}", files.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| anyhow::anyhow!("tls.key {}: {e}", files.key.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&files.ca)
        .map_err(|e| anyhow::anyhow!("tls.ca {}: {e}", files.ca.display()))?
    {
        let ca = ca.map_err(|e| anyhow::anyhow!("tls.ca {}: {e}", files.ca.display()))?;
        roots
            .add(ca)
            .map_err(|e| anyhow::anyhow!("tls.ca {}: {e}", files.ca.display()))?;
    }
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| anyhow::anyhow!("tls.cert/tls.key: {e}"))?;
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server_name = ServerName::try_from(cluster_name.to_string())
        .map_err(|e| anyhow::anyhow!("cluster_name as a TLS name: {e}"))?;
    Ok(Tls {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
        server_name,
    })
}
