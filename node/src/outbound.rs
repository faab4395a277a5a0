//! HTTP clients for the outside world (notification webhooks, the payment gateway and the
//! gateway simulator's webhooks; SMTP shares the extra CAs): HTTPS through rustls (the aws-lc-rs backend the cluster
//! uses) trusting the system's roots, plus the CAs of `AGORA_EXTRA_CA_FILE` (PEM) for a
//! provider with a private CA. A failed call is logged at WARN with its destination and
//! counted, so an operator sees a provider that cannot be reached.

use std::time::Duration;

/// The environment variable naming a PEM file of extra CAs to trust for outbound HTTPS.
pub const EXTRA_CA_ENV: &str = "AGORA_EXTRA_CA_FILE";

/// A client for outbound calls, each given `timeout`, trusting the system's roots and the
/// CAs of `AGORA_EXTRA_CA_FILE` (if set).
pub fn client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().timeout(timeout);
    if let Some((path, pem)) = extra_ca_pem()? {
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| anyhow::anyhow!("{EXTRA_CA_ENV}: {path} holds no PEM certificate: {e}"))?;
        anyhow::ensure!(
            !certs.is_empty(),
            "{EXTRA_CA_ENV}: {path} holds no PEM certificate"
        );
        builder = builder.tls_certs_merge(certs);
    }
    Ok(builder.build()?)
}

/// The file `AGORA_EXTRA_CA_FILE` names and its PEM bytes (`None`: not set).
pub fn extra_ca_pem() -> anyhow::Result<Option<(String, Vec<u8>)>> {
    let Some(path) = std::env::var_os(EXTRA_CA_ENV).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let path = path.to_string_lossy().into_owned();
    let pem = std::fs::read(&path)
        .map_err(|e| anyhow::anyhow!("{EXTRA_CA_ENV}: cannot read {path}: {e}"))?;
    Ok(Some((path, pem)))
}

/// Records a failed outbound call to `destination` (scheme, host and port only: a URL's
/// path and query may carry credentials).
pub fn failed(url: &str, error: &dyn std::fmt::Display) {
    let destination = destination(url);
    metrics::counter!("agora_outbound_failures_total", "destination" => destination.clone())
        .increment(1);
    tracing::warn!(destination, error = %error, "outbound call failed");
}

/// `scheme://host[:port]` of `url` (all of it when it does not parse).
fn destination(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{}://{h}:{p}", u.scheme()),
            (Some(h), None) => format!("{}://{h}", u.scheme()),
            _ => u.scheme().to_string(),
        },
        Err(_) => "unparsable-url".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_destination_leaves_out_paths_and_queries() {
        assert_eq!(
            destination("https://sms.example:8443/v1/send?token=secret"),
            "https://sms.example:8443"
        );
        assert_eq!(
            destination("https://hooks.example/x"),
            "https://hooks.example"
        );
        assert_eq!(destination("not a url"), "unparsable-url");
    }
}
