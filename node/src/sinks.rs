//! Production adapters: the notification channels (email over SMTP, SMS and WhatsApp as HTTP
//! webhooks, JSON lines in a file as the dev default) and the blocking pool.
//!
//! Exactly once, as far as it goes: the relay calls a sink until it answers Ok and only then
//! deletes the outbox row, so a crash between a send and that delete sends the message again
//! after the restart. Every call carries the notification's key, stable across redeliveries:
//! the file sink keeps the keys it wrote (reloaded from the file at start) and writes each
//! once; a webhook gets it as the `Idempotency-Key` header and in the body; an email gets a
//! `Message-ID` derived from it, so a receiver that deduplicates by Message-ID (as mail stores
//! and clients do) shows one message. SMTP itself has no idempotency: the transmission is at
//! least once, the effect once for a receiver that deduplicates.

use agora_actors::gateway::ExternalError;
use agora_actors::inbox::{Channel, Notification};
use agora_actors::notify::{NotificationSink, Outgoing};
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long one SMTP or webhook call may take before it is retried.
pub(crate) const SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// The `Message-ID` of the email for notification `key`: the same for every resend.
pub fn message_id(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("<{hex}@notifications.agora>")
}

/// Most lines appended under one fsync.
const MAX_FILE_BATCH: usize = 4096;

/// A notification's key and its line, for the file sink's writer thread.
type FileLine = (String, String);

/// Where the answer to a send goes: Ok once the line is durable.
type Written = tokio::sync::oneshot::Sender<Result<(), String>>;

/// Where a key stands in the file sink.
enum KeyState {
    /// Its line is on its way to disk: everyone who sent it waits for the same fsync.
    Writing(Vec<Written>),
    /// Its line is durable.
    Durable,
}

/// The file sink's keys, shared with its writer thread.
type Keys = Arc<Mutex<HashMap<String, KeyState>>>;

/// Appends each notification as one JSON line to a file, once per key (the keys already in
/// the file are loaded at start, so a redelivery after a crash is not written twice). Lines
/// are group-committed: a writer thread appends every line waiting and makes them durable
/// with one fsync, so a burst of notifications costs one disk flush, not one each. A copy
/// sent while its key's line is being written is answered with that line's fsync.
pub struct FileSink {
    keys: Keys,
    lines: std::sync::mpsc::Sender<FileLine>,
}

impl FileSink {
    /// A sink writing to `path`.
    pub fn new(path: PathBuf) -> Self {
        let mut sent = HashMap::new();
        if let Ok(f) = std::fs::File::open(&path) {
            for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
                // A line torn by a crash does not parse: its message is written again.
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if let Some(k) = v.get("key").and_then(|k| k.as_str()) {
                        sent.insert(k.to_string(), KeyState::Durable);
                    }
                }
            }
        }
        let keys: Keys = Arc::new(Mutex::new(sent));
        let (lines, rx) = std::sync::mpsc::channel::<FileLine>();
        // The thread ends when the sink (the only sender) is dropped. If it cannot start,
        // every send answers Unavailable and the relay retries.
        let thread_keys = keys.clone();
        let spawned = std::thread::Builder::new()
            .name("agora-file-sink".into())
            .spawn(move || append_lines(&path, &rx, &thread_keys));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the notification file writer");
        }
        Self { keys, lines }
    }
}

/// Settles `key` after its line's write: durable, or forgotten (so a retry writes it again);
/// everyone waiting for it gets `result`.
fn settle_key(keys: &Keys, key: &str, result: &Result<(), String>) {
    let mut keys = keys.lock().unwrap_or_else(|p| p.into_inner());
    let state = if result.is_ok() {
        keys.insert(key.to_string(), KeyState::Durable)
    } else {
        keys.remove(key)
    };
    if let Some(KeyState::Writing(waiters)) = state {
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}

/// The file sink's writer thread: appends every waiting line, fsyncs once, answers them all.
fn append_lines(path: &std::path::Path, rx: &std::sync::mpsc::Receiver<FileLine>, keys: &Keys) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter().take(MAX_FILE_BATCH - 1));
        let written = (|| -> std::io::Result<()> {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            let mut out = std::io::BufWriter::new(&f);
            for (_, line) in &batch {
                writeln!(out, "{line}")?;
            }
            out.flush()?;
            drop(out);
            f.sync_data()
        })()
        .map_err(|e| e.to_string());
        metrics::counter!("agora_notification_file_syncs_total").increment(1);
        for (key, _) in &batch {
            settle_key(keys, key, &written);
        }
    }
}

#[async_trait]
impl NotificationSink for FileSink {
    async fn send(
        &self,
        key: &str,
        user_id: &str,
        n: &Notification,
        m: &Outgoing,
    ) -> Result<(), ExternalError> {
        let (done, written) = tokio::sync::oneshot::channel();
        let first_copy;
        {
            let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
            match keys.get_mut(key) {
                Some(KeyState::Durable) => return Ok(()),
                // Another copy is being written: its fsync answers this one too.
                Some(KeyState::Writing(waiters)) => {
                    first_copy = false;
                    waiters.push(done)
                }
                None => {
                    first_copy = true;
                    let line = serde_json::json!({
                        "key": key, "user_id": user_id, "channel": n.channel.name(), "kind": n.kind,
                        "order_id": n.order_id, "at_ms": n.at_ms, "to": m.to, "subject": m.subject, "body": m.body,
                    })
                    .to_string();
                    if self.lines.send((key.to_string(), line)).is_err() {
                        return Err(ExternalError::Unavailable(
                            "the notification file writer is not running".into(),
                        ));
                    }
                    keys.insert(key.to_string(), KeyState::Writing(vec![done]));
                }
            }
        }
        written
            .await
            .unwrap_or_else(|_| Err("the notification file writer stopped".into()))
            .map(|()| {
                if first_copy {
                    sent(n.channel.name());
                }
            })
            .map_err(ExternalError::Unavailable)
    }
}

pub(crate) fn undeliverable(key: &str, channel: Channel) {
    tracing::warn!(
        key,
        channel = channel.name(),
        "no address for this channel; notification dropped"
    );
    metrics::counter!("agora_notifications_undeliverable_total", "channel" => channel.name())
        .increment(1);
}

pub(crate) fn sent(channel: &'static str) {
    metrics::counter!("agora_notifications_sent_total", "channel" => channel).increment(1);
}

/// How a webhook sink reaches its endpoint: one HTTP POST of a JSON body. Production posts
/// with reqwest; the simulator puts its webhook endpoints behind it.
#[async_trait]
pub trait WebhookTransport: Send + Sync + 'static {
    /// Posts `body` to `url` with the `Idempotency-Key` header `key`; the answer's HTTP
    /// status, or why no answer came.
    async fn post_json(
        &self,
        url: &str,
        key: &str,
        body: &serde_json::Value,
    ) -> Result<u16, String>;
}

/// Posts over HTTPS (or HTTP) with reqwest.
struct ReqwestWebhooks(reqwest::Client);

#[async_trait]
impl WebhookTransport for ReqwestWebhooks {
    async fn post_json(
        &self,
        url: &str,
        key: &str,
        body: &serde_json::Value,
    ) -> Result<u16, String> {
        let resp = self
            .0
            .post(url)
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        Ok(resp.status().as_u16())
    }
}

/// SMS or WhatsApp through an HTTP webhook: POST JSON, any 2xx is success, anything else is
/// retried; the `Idempotency-Key` header carries the notification's key.
pub struct WebhookSink {
    url: String,
    transport: Arc<dyn WebhookTransport>,
}

impl WebhookSink {
    /// A sink posting to `url`.
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let client = crate::outbound::client(SEND_TIMEOUT)?;
        Ok(Self::with_transport(url, Arc::new(ReqwestWebhooks(client))))
    }

    /// A sink posting to `url` through `transport`.
    pub fn with_transport(url: &str, transport: Arc<dyn WebhookTransport>) -> Self {
        Self {
            url: url.to_string(),
            transport,
        }
    }
}

#[async_trait]
impl NotificationSink for WebhookSink {
    async fn send(
        &self,
        key: &str,
        user_id: &str,
        n: &Notification,
        m: &Outgoing,
    ) -> Result<(), ExternalError> {
        let Some(to) = m.to.as_deref() else {
            undeliverable(key, n.channel);
            return Ok(());
        };
        let body = serde_json::json!({
            "idempotency_key": key, "channel": n.channel.name(), "to": to, "user_id": user_id,
            "event": n.kind, "order_id": n.order_id, "text": m.body,
        });
        let status = self
            .transport
            .post_json(&self.url, key, &body)
            .await
            .map_err(|e| {
                crate::outbound::failed(&self.url, &e);
                ExternalError::Unavailable(format!("webhook: {e}"))
            })?;
        if (200..300).contains(&status) {
            sent(n.channel.name());
            Ok(())
        } else {
            let why = format!("webhook answered {status}");
            crate::outbound::failed(&self.url, &why);
            Err(ExternalError::Unavailable(why))
        }
    }
}

/// Sends each notification through its channel's sink.
pub struct ChannelSinks {
    /// Email.
    pub email: Arc<dyn NotificationSink>,
    /// SMS.
    pub sms: Arc<dyn NotificationSink>,
    /// WhatsApp.
    pub whatsapp: Arc<dyn NotificationSink>,
}

impl ChannelSinks {
    /// The sinks `settings` configure; a channel without one writes to `file`.
    pub fn from_settings(
        settings: &agora_cluster_config::NotificationSettings,
        file: PathBuf,
    ) -> anyhow::Result<Self> {
        let file: Arc<dyn NotificationSink> = Arc::new(FileSink::new(file));
        let email: Arc<dyn NotificationSink> = match &settings.smtp_url {
            Some(url) => Arc::new(crate::smtp::SmtpSink::new(url, &settings.email_from)?),
            None => file.clone(),
        };
        let webhook = |url: &Option<String>| -> anyhow::Result<Arc<dyn NotificationSink>> {
            Ok(match url {
                Some(url) => Arc::new(WebhookSink::new(url)?),
                None => file.clone(),
            })
        };
        Ok(Self {
            email,
            sms: webhook(&settings.sms_webhook_url)?,
            whatsapp: webhook(&settings.whatsapp_webhook_url)?,
        })
    }
}

#[async_trait]
impl NotificationSink for ChannelSinks {
    async fn send(
        &self,
        key: &str,
        user_id: &str,
        n: &Notification,
        m: &Outgoing,
    ) -> Result<(), ExternalError> {
        let sink = match n.channel {
            Channel::Email => &self.email,
            Channel::Sms => &self.sms,
            Channel::WhatsApp => &self.whatsapp,
        };
        sink.send(key, user_id, n, m).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_stable_per_key_and_distinct_across_keys() {
        assert_eq!(
            message_id("u:o:ORDER_PLACED:email"),
            message_id("u:o:ORDER_PLACED:email")
        );
        assert_ne!(
            message_id("u:o:ORDER_PLACED:email"),
            message_id("u:o:ORDER_SHIPPED:email")
        );
        assert!(
            message_id("k").starts_with('<') && message_id("k").ends_with("@notifications.agora>")
        );
    }

    /// A notification on `channel` and its message to `to`.
    fn sample(channel: Channel, to: &str) -> (Notification, Outgoing) {
        let n = Notification {
            channel,
            kind: "ORDER_PLACED".into(),
            order_id: "o".into(),
            at_ms: 1,
        };
        let m = Outgoing {
            to: Some(to.into()),
            subject: "s".into(),
            body: "b".into(),
        };
        (n, m)
    }

    #[tokio::test]
    async fn the_file_sink_writes_a_key_once_even_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.jsonl");
        let (n, m) = sample(Channel::Email, "a@b.co");
        FileSink::new(path.clone())
            .send("k1", "u", &n, &m)
            .await
            .unwrap();
        let again = FileSink::new(path.clone());
        again.send("k1", "u", &n, &m).await.unwrap();
        again.send("k2", "u", &n, &m).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
    }

    /// Polls `f` once.
    async fn poll_once<F: std::future::Future + Unpin>(f: &mut F) -> std::task::Poll<F::Output> {
        std::future::poll_fn(|cx| std::task::Poll::Ready(std::pin::Pin::new(&mut *f).poll(cx)))
            .await
    }

    #[tokio::test]
    async fn a_copy_sent_while_the_first_is_written_waits_for_the_same_fsync() {
        use std::io::Read;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.jsonl");
        let sink = FileSink::new(path.clone());
        // A FIFO in place of the file: the writer thread blocks opening it until it is read,
        // and its fsync then fails (a pipe cannot be synced).
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        let (n, m) = sample(Channel::Email, "a@b.co");
        let mut first = Box::pin(sink.send("k1", "u", &n, &m));
        let mut copy = Box::pin(sink.send("k1", "u", &n, &m));
        assert!(poll_once(&mut first).await.is_pending());
        assert!(
            poll_once(&mut copy).await.is_pending(),
            "the copy must not be answered before the first line is durable"
        );
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            std::fs::File::open(&path)
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            text
        });
        assert!(first.await.is_err());
        assert!(copy.await.is_err(), "the copy shares the failed fsync");
        assert_eq!(reader.join().unwrap().lines().count(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_notifications_are_all_written_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.jsonl");
        let sink = Arc::new(FileSink::new(path.clone()));
        let (n, m) = sample(Channel::Sms, "+100");
        let mut sends = tokio::task::JoinSet::new();
        for i in 0..200 {
            let (sink, n, m) = (sink.clone(), n.clone(), m.clone());
            // Every key is sent twice, concurrently.
            sends.spawn(async move { sink.send(&format!("k{}", i % 100), "u", &n, &m).await });
        }
        while let Some(r) = sends.join_next().await {
            r.unwrap().unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let keys: std::collections::HashSet<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["key"].to_string())
            .collect();
        assert_eq!((text.lines().count(), keys.len()), (100, 100));
    }
}
