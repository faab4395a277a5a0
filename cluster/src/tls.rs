//! TLS between nodes (rustls): the acceptor for the node server and the connector for the
//! dialer, from the cluster file's PEM files. Both sides present certificates (mutual TLS)
//! that chain to the cluster's CA, and each certificate names its node:
//! `node-{id}.{cluster_name}`. A dialer checks that name against the node it dials; an
//! acceptor checks it against the node id the peer claims when it authenticates
//! (`admission`), so a node certified as one id cannot pose as another.

use agora_cluster_config::cluster::TlsFiles;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// What the transport needs for TLS: the acceptor and connector built from the files as
/// they were last read, swapped when a check finds the files changed and valid.
#[derive(Clone)]
pub struct Tls {
    /// The configs in use, and the bytes they were built from.
    current: Arc<RwLock<Arc<Built>>>,
    /// Where the certificate, key and CA are read from.
    files: TlsFiles,
    /// This node's id (its certificate must name it).
    me: u64,
    /// The cluster's name (certificates name `node-{id}.{cluster_name}`).
    pub cluster_name: String,
}

/// An acceptor and a connector, and the file contents they were built from.
struct Built {
    acceptor: tokio_rustls::TlsAcceptor,
    connector: tokio_rustls::TlsConnector,
    source: Source,
}

/// How a check of the TLS files ended, when they had changed (the label of
/// `agora_tls_reloads_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// New connections use the renewed files.
    Reloaded,
    /// The renewed files could not be used; the setting in use stays.
    Refused,
}

impl ReloadOutcome {
    /// Every outcome.
    pub const ALL: [ReloadOutcome; 2] = [ReloadOutcome::Reloaded, ReloadOutcome::Refused];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            ReloadOutcome::Reloaded => "reloaded",
            ReloadOutcome::Refused => "refused",
        }
    }
}

/// The contents of the certificate, key and CA files.
#[derive(PartialEq, Eq)]
struct Source {
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Vec<u8>,
}

impl Tls {
    /// Accepts peers' connections with the certificate in use now.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        self.built().acceptor.clone()
    }

    /// Dials peers with the certificate in use now.
    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        self.built().connector.clone()
    }

    fn built(&self) -> Arc<Built> {
        match self.current.read() {
            Ok(b) => b.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the files again: when they changed and still make a valid setting for this
    /// node, new connections use them from now on (true); unchanged, false. A changed but
    /// invalid setting (a key that does not match, a certificate for another node) is an
    /// error and the setting in use stays.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let source = read_source(&self.files, self.me)?;
        if self.built().source == source {
            return Ok(false);
        }
        let built = build(source, &self.files, &self.cluster_name, self.me)?;
        match self.current.write() {
            Ok(mut b) => *b = Arc::new(built),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(built),
        }
        Ok(true)
    }

    /// Checks the files every `reload_check_ms` for as long as the node runs, logging and
    /// counting each reload (`agora_tls_reloads_total{outcome}`). Established sessions keep
    /// the certificate they were opened with; new ones use the renewed one.
    pub async fn keep_reloading(self) {
        let every = Duration::from_millis(self.files.reload_check_ms.max(1));
        loop {
            tokio::time::sleep(every).await;
            match self.reload_if_changed() {
                Ok(false) => {}
                Ok(true) => {
                    let outcome = ReloadOutcome::Reloaded.label();
                    metrics::counter!("agora_tls_reloads_total", "outcome" => outcome).increment(1);
                    tracing::info!(node = self.me, cert = %self.files.for_node(self.me).0.display(),
                        "TLS certificates changed on disk: new connections use them");
                }
                Err(e) => {
                    let outcome = ReloadOutcome::Refused.label();
                    metrics::counter!("agora_tls_reloads_total", "outcome" => outcome).increment(1);
                    tracing::warn!(node = self.me, error = %e,
                        "TLS files changed but cannot be used: the certificate in use stays");
                }
            }
        }
    }

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

/// Reads node `me`'s certificate, key and CA files.
fn read_source(files: &TlsFiles, me: u64) -> Result<Source, TlsError> {
    let (cert_path, key_path) = files.for_node(me);
    let read = |what: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| tls_err(format!("{what} {}", path.display()), e))
    };
    Ok(Source {
        cert: read("tls.cert", &cert_path)?,
        key: read("tls.key", &key_path)?,
        ca: read("tls.ca", &files.ca)?,
    })
}

/// Loads node `me`'s TLS settings; errors name the file, and a certificate that does not
/// name node `me` is refused with the name it needs.
pub fn load(files: &TlsFiles, cluster_name: &str, me: u64) -> Result<Tls, TlsError> {
    node_name(cluster_name, me)?;
    let built = build(read_source(files, me)?, files, cluster_name, me)?;
    Ok(Tls {
        current: Arc::new(RwLock::new(Arc::new(built))),
        files: files.clone(),
        me,
        cluster_name: cluster_name.to_string(),
    })
}

/// The acceptor and connector of `source` (read from `files`, named in errors).
fn build(source: Source, files: &TlsFiles, cluster_name: &str, me: u64) -> Result<Built, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let (cert_path, key_path) = files.for_node(me);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&source.cert)
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err(format!("tls.cert {}", cert_path.display()), e))?;
    let key = PrivateKeyDer::from_pem_slice(&source.key)
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
    let ca_err = |e: &dyn std::fmt::Display| tls_err(format!("tls.ca {}", files.ca.display()), e);
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&source.ca) {
        let ca = ca.map_err(|e| ca_err(&e))?;
        roots.add(ca).map_err(|e| ca_err(&e))?;
    }
    let roots = Arc::new(roots);
    let peers = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()
    .map_err(|e| ca_err(&e))?;
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
    Ok(Built {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
        source,
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
            reload_check_ms: 30_000,
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
            reload_check_ms: 30_000,
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
            reload_check_ms: 30_000,
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

    /// Node 1's files copied into a fresh directory (the test changes them).
    fn copied_files(dir: &std::path::Path) -> TlsFiles {
        for name in ["node-1.pem", "node-1.key", "ca.pem"] {
            std::fs::copy(fixture(name), dir.join(name)).expect("copy a fixture");
        }
        TlsFiles {
            cert: dir.join("node-1.pem"),
            key: dir.join("node-1.key"),
            ca: dir.join("ca.pem"),
            reload_check_ms: 30_000,
        }
    }

    #[test]
    fn unchanged_files_are_not_reloaded_and_a_renewed_ca_bundle_is() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let files = copied_files(dir.path());
        let tls = load(&files, "agora-test", 1).expect("the fixtures load");
        assert!(!tls.reload_if_changed().expect("unchanged files read"));
        // A CA rotation starts by trusting the old and the new authority at once.
        let mut bundle = std::fs::read(fixture("ca.pem")).expect("fixture");
        bundle.extend(std::fs::read(fixture("other-ca.pem")).expect("fixture"));
        std::fs::write(&files.ca, &bundle).expect("write the bundle");
        assert!(tls.reload_if_changed().expect("a valid bundle loads"));
        assert!(
            !tls.reload_if_changed().expect("read again"),
            "reloaded twice"
        );
    }

    #[test]
    fn a_renewal_that_cannot_be_used_keeps_the_certificate_in_use() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let files = copied_files(dir.path());
        let tls = load(&files, "agora-test", 1).expect("the fixtures load");
        let before = tls.built();
        // Another node's certificate under node 1's name: refused, naming what it needs.
        std::fs::copy(fixture("node-2.pem"), &files.cert).expect("copy");
        let Err(e) = tls.reload_if_changed() else {
            panic!("node 1 took node 2's certificate");
        };
        assert!(e.problem.contains("node-1.agora-test"), "{e}");
        assert!(
            Arc::ptr_eq(&before, &tls.built()),
            "the setting in use changed"
        );
        // A matching certificate with a key that is not its own: refused too.
        std::fs::copy(fixture("node-1.pem"), &files.cert).expect("copy");
        std::fs::copy(fixture("node-3.key"), &files.key).expect("copy");
        assert!(
            tls.reload_if_changed().is_err(),
            "a key of another certificate loaded"
        );
        assert!(
            Arc::ptr_eq(&before, &tls.built()),
            "the setting in use changed"
        );
    }
}
