//! Email over SMTP, as a mail provider expects it: `smtp://host[:port]` upgrades with
//! STARTTLS when the server offers it (`?tls=required`: it must, else nothing is sent;
//! `?tls=none`: plain, for a relay on the same host), `smtps://host[:port]` speaks TLS from
//! the first byte. Certificates are checked against the system's roots plus the CAs of
//! `AGORA_EXTRA_CA_FILE`. `AGORA_SMTP_USERNAME` and `AGORA_SMTP_PASSWORD` log in, only
//! over TLS.

use crate::sinks::{message_id, sent, undeliverable, SEND_TIMEOUT};
use agora_actors::gateway::ExternalError;
use agora_actors::inbox::Notification;
use agora_actors::notify::{NotificationSink, Outgoing};
use async_trait::async_trait;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};

/// The environment variable holding the SMTP login's user name.
pub const USERNAME_ENV: &str = "AGORA_SMTP_USERNAME";
/// The environment variable holding the SMTP login's password.
pub const PASSWORD_ENV: &str = "AGORA_SMTP_PASSWORD";

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text (`?tls=none`): a relay on the same host.
    None,
    /// STARTTLS if the server offers it (`smtp://`).
    StartTlsWhenOffered,
    /// STARTTLS or nothing (`?tls=required`).
    StartTlsRequired,
    /// TLS from the first byte (`smtps://`).
    Implicit,
}

/// Where and how to reach the SMTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpEndpoint {
    /// The server's host name (also the name its certificate must carry).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// How the connection is protected.
    pub tls: SmtpTls,
}

/// Reads an SMTP URL (see the module's doc).
pub fn endpoint(url: &str) -> anyhow::Result<SmtpEndpoint> {
    let parsed = reqwest::Url::parse(url).map_err(|e| anyhow::anyhow!("SMTP URL {url:?}: {e}"))?;
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| anyhow::anyhow!("SMTP URL {url:?} names no host"))?
        .to_string();
    let asked = parsed
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    let (tls, default_port) = match (parsed.scheme(), asked.as_deref()) {
        ("smtps", None) => (SmtpTls::Implicit, 465),
        ("smtp", None | Some("opportunistic")) => (SmtpTls::StartTlsWhenOffered, 25),
        ("smtp", Some("required")) => (SmtpTls::StartTlsRequired, 587),
        ("smtp", Some("none")) => (SmtpTls::None, 25),
        ("smtp", Some(other)) => {
            anyhow::bail!(
                "SMTP URL {url:?}: tls={other} is not one of required, opportunistic, none"
            )
        }
        (scheme, _) => anyhow::bail!("SMTP URL {url:?}: {scheme}:// is not smtp:// or smtps://"),
    };
    Ok(SmtpEndpoint {
        host,
        port: parsed.port().unwrap_or(default_port),
        tls,
    })
}

/// TLS towards `host`: the system's roots plus the CAs of `AGORA_EXTRA_CA_FILE`.
fn tls_parameters(host: &str) -> anyhow::Result<TlsParameters> {
    let mut builder = TlsParameters::builder(host.to_string());
    if let Some((path, pem)) = crate::outbound::extra_ca_pem()? {
        let certs = Certificate::from_pem(&pem)
            .map_err(|e| anyhow::anyhow!("{}: {path}: {e}", crate::outbound::EXTRA_CA_ENV))?;
        builder = builder.add_root_certificate(certs);
    }
    Ok(builder.build_rustls()?)
}

/// The login from `AGORA_SMTP_USERNAME` and `AGORA_SMTP_PASSWORD` (`None`: not set).
fn credentials() -> anyhow::Result<Option<lettre::transport::smtp::authentication::Credentials>> {
    let read = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match (read(USERNAME_ENV), read(PASSWORD_ENV)) {
        (Some(user), Some(password)) => Ok(Some(
            lettre::transport::smtp::authentication::Credentials::new(user, password),
        )),
        (None, None) => Ok(None),
        _ => anyhow::bail!("an SMTP login needs both {USERNAME_ENV} and {PASSWORD_ENV}"),
    }
}

/// How an SMTP sink hands a built email over: production speaks SMTP with lettre; the
/// simulator puts its mail server behind it.
#[async_trait]
pub trait MailTransport: Send + Sync + 'static {
    /// Submits `email`; why it was not accepted otherwise.
    async fn submit(&self, email: lettre::Message) -> Result<(), String>;
}

#[async_trait]
impl MailTransport for lettre::AsyncSmtpTransport<lettre::Tokio1Executor> {
    async fn submit(&self, email: lettre::Message) -> Result<(), String> {
        use lettre::AsyncTransport;
        self.send(email).await.map(drop).map_err(|e| e.to_string())
    }
}

/// Email through an SMTP server.
pub struct SmtpSink {
    transport: std::sync::Arc<dyn MailTransport>,
    from: lettre::message::Mailbox,
    /// `smtp://host:port`, for the log and the failure metric.
    destination: String,
}

impl SmtpSink {
    /// A sink sending through the SMTP server at `url` as `from`.
    pub fn new(url: &str, from: &str) -> anyhow::Result<Self> {
        let at = endpoint(url)?;
        let tls = match at.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::StartTlsWhenOffered => Tls::Opportunistic(tls_parameters(&at.host)?),
            SmtpTls::StartTlsRequired => Tls::Required(tls_parameters(&at.host)?),
            SmtpTls::Implicit => Tls::Wrapper(tls_parameters(&at.host)?),
        };
        let mut builder =
            lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(&at.host)
                .port(at.port)
                .tls(tls)
                .timeout(Some(SEND_TIMEOUT));
        if let Some(login) = credentials()? {
            // A password is never sent where an eavesdropper could read it.
            anyhow::ensure!(
                matches!(at.tls, SmtpTls::StartTlsRequired | SmtpTls::Implicit),
                "an SMTP login needs TLS: use smtp://{}:{}?tls=required or smtps://",
                at.host,
                at.port
            );
            builder = builder.credentials(login);
        }
        let destination = format!("smtp://{}:{}", at.host, at.port);
        Self::with_transport(from, &destination, std::sync::Arc::new(builder.build()))
    }

    /// A sink sending as `from` through `transport`, named `destination` in the log.
    pub fn with_transport(
        from: &str,
        destination: &str,
        transport: std::sync::Arc<dyn MailTransport>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            transport,
            from: from.parse()?,
            destination: destination.to_string(),
        })
    }
}

#[async_trait]
impl NotificationSink for SmtpSink {
    async fn send(
        &self,
        key: &str,
        _user_id: &str,
        n: &Notification,
        m: &Outgoing,
    ) -> Result<(), ExternalError> {
        let to =
            m.to.as_deref()
                .and_then(|t| t.parse::<lettre::message::Mailbox>().ok());
        let Some(to) = to else {
            undeliverable(key, n.channel);
            return Ok(());
        };
        let email = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(m.subject.clone())
            .message_id(Some(message_id(key)))
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            .body(m.body.clone())
            .map_err(|e| ExternalError::Unavailable(format!("cannot build the email: {e}")))?;
        self.transport
            .submit(email)
            .await
            .map(|()| sent("email"))
            .map_err(|e| {
                crate::outbound::failed(&self.destination, &e);
                ExternalError::Unavailable(format!("smtp: {e}"))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_say_how_the_connection_is_protected() {
        let at = |u: &str| endpoint(u).expect(u);
        assert_eq!(
            at("smtp://mail.example"),
            SmtpEndpoint {
                host: "mail.example".into(),
                port: 25,
                tls: SmtpTls::StartTlsWhenOffered
            }
        );
        assert_eq!(at("smtp://mail.example?tls=required").port, 587);
        assert_eq!(
            at("smtp://mail.example:2525?tls=required").tls,
            SmtpTls::StartTlsRequired
        );
        assert_eq!(at("smtp://127.0.0.1:2525?tls=none").tls, SmtpTls::None);
        assert_eq!(at("smtps://mail.example").tls, SmtpTls::Implicit);
        assert_eq!(at("smtps://mail.example").port, 465);
        for bad in [
            "http://mail.example",
            "smtp://",
            "smtp://h?tls=maybe",
            "mail.example",
        ] {
            assert!(endpoint(bad).is_err(), "{bad} accepted");
        }
    }
}
