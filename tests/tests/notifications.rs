//! Notifications over real channels: email to an SMTP server and SMS/WhatsApp to a webhook,
//! both started by the test on free ports; and an email sent once (per Message-ID) after the
//! node is killed between the SMTP server taking the message and the node's acknowledgement.

use agora_tests::{
    card, poll_until, wait_for_order, AgoraProcess, Client, ServerOptions, POLL_TIMEOUT,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// One email as the SMTP server took it.
#[derive(Debug, Clone)]
struct Mail {
    to: String,
    message_id: String,
    subject: String,
    /// Whether it came over TLS (after STARTTLS).
    over_tls: bool,
}

/// A minimal SMTP server. With `hold_first`, the reply to the first message's final dot is
/// withheld until `release` is notified (the message has arrived; the sender does not know).
/// With `starttls`, it offers STARTTLS and takes no mail before the upgrade, as a provider
/// does.
#[derive(Clone, Default)]
struct SmtpServer {
    mails: Arc<Mutex<Vec<Mail>>>,
    held: Arc<Notify>,
    release: Arc<Notify>,
    hold_first: bool,
    starttls: Option<tokio_rustls::TlsAcceptor>,
}

fn header(data: &str, name: &str) -> String {
    data.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
        .unwrap_or_default()
}

/// How a session over one stream ended.
enum SessionEnd<S> {
    /// The client quit or went away.
    Closed,
    /// The client asked for STARTTLS and was told to go ahead: the stream, to upgrade.
    Upgrade(S),
}

impl SmtpServer {
    async fn start(hold_first: bool) -> (Self, u16) {
        Self::start_with(hold_first, None).await
    }

    async fn start_with(
        hold_first: bool,
        starttls: Option<tokio_rustls::TlsAcceptor>,
    ) -> (Self, u16) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind smtp");
        let port = listener.local_addr().expect("addr").port();
        let server = SmtpServer {
            hold_first,
            starttls,
            ..Default::default()
        };
        let s = server.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(s.clone().session(conn));
            }
        });
        (server, port)
    }

    async fn session(self, conn: tokio::net::TcpStream) {
        let mut conn = BufReader::new(conn);
        let _ = conn.write_all(b"220 test-smtp ready\r\n").await;
        let SessionEnd::Upgrade(conn) = self.serve(conn, false).await else {
            return;
        };
        let Some(acceptor) = self.starttls.clone() else {
            return;
        };
        if let Ok(tls) = acceptor.accept(conn.into_inner()).await {
            self.serve(BufReader::new(tls), true).await;
        }
    }

    /// Answers commands on `conn` (`over_tls`: after STARTTLS).
    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut conn: BufReader<S>,
        over_tls: bool,
    ) -> SessionEnd<BufReader<S>> {
        let must_upgrade = self.starttls.is_some() && !over_tls;
        let mut line = String::new();
        loop {
            line.clear();
            if conn.read_line(&mut line).await.unwrap_or(0) == 0 {
                return SessionEnd::Closed;
            }
            let cmd = line.trim_end().to_ascii_uppercase();
            let answer: &[u8] = if cmd.starts_with("EHLO") && must_upgrade {
                b"250-test-smtp\r\n250-STARTTLS\r\n250 8BITMIME\r\n"
            } else if cmd.starts_with("EHLO") {
                b"250-test-smtp\r\n250 8BITMIME\r\n"
            } else if cmd.starts_with("STARTTLS") && must_upgrade {
                if conn.write_all(b"220 go ahead\r\n").await.is_err() {
                    return SessionEnd::Closed;
                }
                return SessionEnd::Upgrade(conn);
            } else if must_upgrade && (cmd.starts_with("MAIL") || cmd.starts_with("DATA")) {
                b"530 5.7.0 must issue a STARTTLS command first\r\n"
            } else if cmd.starts_with("HELO")
                || cmd.starts_with("MAIL")
                || cmd.starts_with("RCPT")
                || cmd.starts_with("RSET")
                || cmd.starts_with("NOOP")
            {
                b"250 ok\r\n"
            } else if cmd.starts_with("DATA") {
                let _ = conn.write_all(b"354 go ahead\r\n").await;
                let Some(data) = read_data(&mut conn).await else {
                    return SessionEnd::Closed;
                };
                if self.took(&data, over_tls) && self.hold_first {
                    self.held.notify_one();
                    self.release.notified().await;
                    return SessionEnd::Closed;
                }
                b"250 queued\r\n"
            } else if cmd.starts_with("QUIT") {
                let _ = conn.write_all(b"221 bye\r\n").await;
                return SessionEnd::Closed;
            } else {
                b"502 not implemented\r\n"
            };
            if conn.write_all(answer).await.is_err() {
                return SessionEnd::Closed;
            }
        }
    }

    /// Records a message's headers; whether it is the first one.
    fn took(&self, data: &str, over_tls: bool) -> bool {
        let mail = Mail {
            to: header(data, "To"),
            message_id: header(data, "Message-ID"),
            subject: header(data, "Subject"),
            over_tls,
        };
        let mut mails = self.mails.lock().expect("mails");
        mails.push(mail);
        mails.len() == 1
    }

    fn mails(&self) -> Vec<Mail> {
        self.mails.lock().expect("mails").clone()
    }
}

/// Reads a message up to its final dot (`None`: the client went away).
async fn read_data<S: AsyncRead + AsyncWrite + Unpin>(conn: &mut BufReader<S>) -> Option<String> {
    let mut data = String::new();
    loop {
        let mut l = String::new();
        if conn.read_line(&mut l).await.unwrap_or(0) == 0 {
            return None;
        }
        if l == ".\r\n" {
            return Some(data);
        }
        data.push_str(&l);
    }
}

/// A minimal HTTP server that records each POST's path, `Idempotency-Key` and JSON body.
#[derive(Clone, Default)]
struct Webhooks {
    calls: Arc<Mutex<Vec<(String, String, Value)>>>,
}

impl Webhooks {
    async fn start() -> (Self, u16) {
        Self::start_with(None).await
    }

    /// Like `start`, over TLS with `tls` when given.
    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> (Self, u16) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind webhook");
        let port = listener.local_addr().expect("addr").port();
        let hooks = Webhooks::default();
        let h = hooks.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (h, tls) = (h.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        None => h.serve(conn).await,
                        Some(acceptor) => {
                            if let Ok(conn) = acceptor.accept(conn).await {
                                h.serve(conn).await;
                            }
                        }
                    }
                });
            }
        });
        (hooks, port)
    }

    /// Records each request of one connection and answers 200.
    async fn serve(&self, conn: impl AsyncRead + AsyncWrite + Unpin) {
        let (r, mut w) = tokio::io::split(conn);
        let mut r = BufReader::new(r);
        loop {
            let mut request_line = String::new();
            if r.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                return;
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_string();
            let (mut len, mut key) = (0usize, String::new());
            loop {
                let mut l = String::new();
                if r.read_line(&mut l).await.unwrap_or(0) == 0 {
                    return;
                }
                if l == "\r\n" {
                    break;
                }
                if let Some((k, v)) = l.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap_or(0);
                    } else if k.eq_ignore_ascii_case("idempotency-key") {
                        key = v.trim().to_string();
                    }
                }
            }
            let mut body = vec![0u8; len.min(1 << 20)];
            if r.read_exact(&mut body).await.is_err() {
                return;
            }
            let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
            self.calls.lock().expect("calls").push((path, key, json));
            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
            if w.write_all(ok).await.is_err() || w.flush().await.is_err() {
                return;
            }
        }
    }

    fn calls(&self) -> Vec<(String, String, Value)> {
        self.calls.lock().expect("calls").clone()
    }
}

async fn patch_me(c: &Client, body: Value) {
    c.send(c.req(reqwest::Method::PATCH, "/api/v1/me").json(&body))
        .await
        .expect_status(200, "patch me");
}

const LIFECYCLE: [&str; 4] = [
    "ORDER_PLACED",
    "ORDER_CONFIRMED",
    "ORDER_SHIPPED",
    "ORDER_DELIVERED",
];

#[tokio::test]
async fn each_event_reaches_the_shopper_on_each_chosen_channel() {
    let (smtp, smtp_port) = SmtpServer::start(false).await;
    let (hooks, hook_port) = Webhooks::start().await;
    let server = AgoraProcess::start(ServerOptions::fast().args([
        "--smtp-url".to_string(),
        format!("smtp://127.0.0.1:{smtp_port}"),
        "--sms-webhook-url".to_string(),
        format!("http://127.0.0.1:{hook_port}/sms"),
        "--whatsapp-webhook-url".to_string(),
        format!("http://127.0.0.1:{hook_port}/whatsapp"),
    ]));
    let admin = server.admin().await;
    let sku = admin.stocked_product(12_000, 10).await;
    // One shopper on all three channels, one on email only.
    let (all, all_email) = server.client().new_user().await;
    patch_me(
        &all,
        json!({"phone": "+919876543210", "notification_channels": ["email", "sms", "whatsapp"]}),
    )
    .await;
    let (mail_only, mail_only_email) = server.client().new_user().await;
    for c in [&all, &mail_only] {
        c.add_to_cart(&sku, 1).await;
        let order = c.place_order(card("4242424242424242")).await;
        wait_for_order(c, &order, &["DELIVERED"]).await;
    }
    let expected = 2 * LIFECYCLE.len();
    let mails = poll_until("every email arrives", POLL_TIMEOUT, || async {
        let m = smtp.mails();
        if m.len() >= expected {
            Ok(m)
        } else {
            Err(format!("{} emails", m.len()))
        }
    })
    .await;
    let calls = poll_until("every webhook call arrives", POLL_TIMEOUT, || async {
        let c = hooks.calls();
        if c.len() >= 2 * LIFECYCLE.len() {
            Ok(c)
        } else {
            Err(format!("{} calls", c.len()))
        }
    })
    .await;
    for (who, email) in [("all", &all_email), ("mail only", &mail_only_email)] {
        let subjects: Vec<&str> = mails
            .iter()
            .filter(|m| &m.to == email)
            .map(|m| m.subject.as_str())
            .collect();
        assert_eq!(subjects.len(), LIFECYCLE.len(), "{who}: {mails:?}");
        for s in ["received", "confirmed", "shipped", "delivered"] {
            assert!(
                subjects.iter().any(|x| x.contains(s)),
                "{who}: no '{s}' email in {subjects:?}"
            );
        }
    }
    let ids: BTreeSet<&str> = mails.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(ids.len(), mails.len(), "one Message-ID per notification");
    for (path, channel) in [("/sms", "sms"), ("/whatsapp", "whatsapp")] {
        let got: Vec<&(String, String, Value)> =
            calls.iter().filter(|(p, _, _)| p == path).collect();
        let events: BTreeSet<&str> = got
            .iter()
            .filter_map(|(_, _, b)| b["event"].as_str())
            .collect();
        assert_eq!(
            events,
            LIFECYCLE.into_iter().collect(),
            "{channel}: {got:?}"
        );
        for (_, key, body) in got {
            assert_eq!(body["to"], "+919876543210");
            assert_eq!(body["channel"], channel);
            assert_eq!(body["idempotency_key"].as_str(), Some(key.as_str()));
            assert!(key.ends_with(channel), "{key}");
            assert!(body["text"].as_str().unwrap_or("").starts_with("Agora: "));
        }
    }
    // The in-app inbox lists the same notifications per channel.
    let inbox = all.notifications().await;
    assert_eq!(inbox.len(), 3 * LIFECYCLE.len(), "{inbox:?}");
    // Nothing went to the email-only shopper's phone (they have none).
    assert_eq!(calls.len(), 2 * LIFECYCLE.len());
}

#[tokio::test]
async fn an_email_is_accepted_once_after_a_crash_between_send_and_acknowledgement() {
    let (smtp, smtp_port) = SmtpServer::start(true).await;
    let mut server = AgoraProcess::start(ServerOptions::fast().args([
        "--smtp-url".to_string(),
        format!("smtp://127.0.0.1:{smtp_port}"),
    ]));
    let admin = server.admin().await;
    let sku = admin.stocked_product(12_000, 10).await;
    let (shopper, _) = server.client().new_user().await;
    shopper.add_to_cart(&sku, 1).await;
    let order = shopper.place_order(card("4242424242424242")).await;
    // The server has the first email; the node waits for the server's answer.
    tokio::time::timeout(Duration::from_secs(30), smtp.held.notified())
        .await
        .expect("an email reached the SMTP server");
    server.kill9();
    smtp.release.notify_one();
    server.restart();
    let shopper = shopper.rebased(&server.shop_url);
    wait_for_order(&shopper, &order, &["DELIVERED"]).await;
    let mails = poll_until(
        "the held email is sent again and the rest arrive",
        POLL_TIMEOUT,
        || async {
            let m = smtp.mails();
            let distinct: BTreeSet<String> = m.iter().map(|x| x.message_id.clone()).collect();
            if distinct.len() >= LIFECYCLE.len() && m.len() > distinct.len() {
                Ok(m)
            } else {
                Err(format!("{} emails, {} distinct", m.len(), distinct.len()))
            }
        },
    )
    .await;
    // What a receiver that deduplicates by Message-ID keeps: one message per notification.
    let mut by_id: BTreeMap<&str, Vec<&Mail>> = BTreeMap::new();
    for m in &mails {
        by_id.entry(m.message_id.as_str()).or_default().push(m);
    }
    assert_eq!(by_id.len(), LIFECYCLE.len(), "{mails:#?}");
    let mut subjects = BTreeSet::new();
    for (id, copies) in &by_id {
        assert!(id.starts_with('<') && id.ends_with('>'), "{id}");
        assert!(
            copies
                .iter()
                .all(|c| c.subject == copies[0].subject && c.to == copies[0].to),
            "{copies:?}"
        );
        assert!(
            subjects.insert(copies[0].subject.clone()),
            "two Message-IDs for {}",
            copies[0].subject
        );
    }
    // The message in flight at the crash was transmitted again, under the same Message-ID.
    let first = &mails[0].message_id;
    assert!(by_id[first.as_str()].len() >= 2, "{mails:#?}");
}

/// A TLS acceptor presenting the test certificate for localhost (signed by the test CA in
/// `fixtures/tls`, which no system trusts).
fn localhost_tls() -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/tls");
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(format!("{dir}/localhost.pem"))
            .expect("localhost.pem")
            .collect::<Result<_, _>>()
            .expect("localhost certificate");
    let key = PrivateKeyDer::from_pem_file(format!("{dir}/localhost.key")).expect("localhost.key");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("TLS server config");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// A new shopper who wants SMS only places an order on `server`: the shopper and the order.
async fn sms_shopper_orders(server: &AgoraProcess) -> (Client, String) {
    let admin = server.admin().await;
    let sku = admin.stocked_product(12_000, 10).await;
    let (shopper, _) = server.client().new_user().await;
    patch_me(
        &shopper,
        json!({"phone": "+919876543210", "notification_channels": ["sms"]}),
    )
    .await;
    shopper.add_to_cart(&sku, 1).await;
    let order = shopper.place_order(card("4242424242424242")).await;
    (shopper, order)
}

#[tokio::test]
async fn an_https_webhook_with_a_private_ca_is_called_once_its_ca_is_trusted() {
    let (hooks, port) = Webhooks::start_with(Some(localhost_tls())).await;
    let mut options = ServerOptions::fast().args([
        "--sms-webhook-url".to_string(),
        format!("https://localhost:{port}/sms"),
    ]);
    let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/tls/ca.pem");
    options
        .env
        .push(("AGORA_EXTRA_CA_FILE".to_string(), ca.to_string()));
    let server = AgoraProcess::start(options);
    let (shopper, order) = sms_shopper_orders(&server).await;
    wait_for_order(&shopper, &order, &["DELIVERED"]).await;
    let calls = poll_until(
        "every SMS reaches the HTTPS webhook",
        POLL_TIMEOUT,
        || async {
            let c = hooks.calls();
            if c.len() >= LIFECYCLE.len() {
                Ok(c)
            } else {
                Err(format!("{} calls", c.len()))
            }
        },
    )
    .await;
    let events: BTreeSet<&str> = calls
        .iter()
        .filter_map(|(_, _, b)| b["event"].as_str())
        .collect();
    assert_eq!(events, LIFECYCLE.into_iter().collect(), "{calls:?}");
}

#[tokio::test]
async fn an_https_webhook_whose_ca_is_not_trusted_is_refused_and_counted() {
    let (hooks, port) = Webhooks::start_with(Some(localhost_tls())).await;
    let server = AgoraProcess::start(ServerOptions::fast().args([
        "--sms-webhook-url".to_string(),
        format!("https://localhost:{port}/sms"),
    ]));
    sms_shopper_orders(&server).await;
    failure_counted_and_logged(&server, &format!("https://localhost:{port}")).await;
    assert!(
        hooks.calls().is_empty(),
        "a call got through: {:?}",
        hooks.calls()
    );
}

/// Waits until `server` counts a failed outbound call, and checks it logged `destination`.
async fn failure_counted_and_logged(server: &AgoraProcess, destination: &str) {
    let ops = server.admin_port_client();
    poll_until(
        "the failed outbound call is counted",
        POLL_TIMEOUT,
        || async {
            let failed = agora_tests::counter(&ops, "agora_outbound_failures_total").await;
            if failed >= 1.0 {
                Ok(())
            } else {
                Err(format!("{failed} failures counted"))
            }
        },
    )
    .await;
    let log = server.stderr_tail(50_000);
    assert!(
        log.contains("outbound call failed") && log.contains(destination),
        "the failure is logged with its destination {destination}: {log}"
    );
}

/// A shopper on email only orders on `server` and waits for delivery.
async fn email_shopper_orders(server: &AgoraProcess) {
    let admin = server.admin().await;
    let sku = admin.stocked_product(12_000, 10).await;
    let (shopper, _) = server.client().new_user().await;
    patch_me(&shopper, json!({"notification_channels": ["email"]})).await;
    shopper.add_to_cart(&sku, 1).await;
    let order = shopper.place_order(card("4242424242424242")).await;
    wait_for_order(&shopper, &order, &["DELIVERED"]).await;
}

#[tokio::test]
async fn email_goes_over_starttls_to_a_server_with_a_private_ca_once_its_ca_is_trusted() {
    let (smtp, port) = SmtpServer::start_with(false, Some(localhost_tls())).await;
    let mut options = ServerOptions::fast().args([
        "--smtp-url".to_string(),
        format!("smtp://localhost:{port}?tls=required"),
    ]);
    let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/tls/ca.pem");
    options
        .env
        .push(("AGORA_EXTRA_CA_FILE".to_string(), ca.to_string()));
    let server = AgoraProcess::start(options);
    email_shopper_orders(&server).await;
    let mails = poll_until("every email arrives", POLL_TIMEOUT, || async {
        let m = smtp.mails();
        if m.len() >= LIFECYCLE.len() {
            Ok(m)
        } else {
            Err(format!("{} emails", m.len()))
        }
    })
    .await;
    // The server takes no mail before STARTTLS: every one came over TLS.
    assert!(mails.iter().all(|m| m.over_tls), "{mails:#?}");
}

#[tokio::test]
async fn email_to_a_server_whose_ca_is_not_trusted_is_refused_and_counted() {
    let (smtp, port) = SmtpServer::start_with(false, Some(localhost_tls())).await;
    let server = AgoraProcess::start(ServerOptions::fast().args([
        "--smtp-url".to_string(),
        format!("smtp://localhost:{port}?tls=required"),
    ]));
    email_shopper_orders(&server).await;
    failure_counted_and_logged(&server, &format!("smtp://localhost:{port}")).await;
    assert!(
        smtp.mails().is_empty(),
        "a mail got through: {:?}",
        smtp.mails()
    );
}
