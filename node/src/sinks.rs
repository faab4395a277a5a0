//! Production adapters: the dev notification sink (JSON lines in a file) and the blocking
//! pool.

use agora_actors::gateway::ExternalError;
use agora_actors::inbox::Notification;
use agora_actors::notify::NotificationSink;
use agora_http_edge::BlockingPool;
use async_trait::async_trait;
use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Appends each notification as one JSON line to a file, once per key while running.
pub struct FileSink {
    path: PathBuf,
    sent: Arc<Mutex<HashSet<String>>>,
}

impl FileSink {
    /// A sink writing to `path`.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            sent: Arc::new(Mutex::new(HashSet::new())),
        }
    }
}

#[async_trait]
impl NotificationSink for FileSink {
    async fn send(&self, key: &str, user_id: &str, n: &Notification) -> Result<(), ExternalError> {
        let fresh = self
            .sent
            .lock()
            .map(|mut s| s.insert(key.to_string()))
            .unwrap_or(true);
        if !fresh {
            return Ok(());
        }
        let line = serde_json::json!({
            "key": key, "user_id": user_id, "channel": n.channel.name(), "kind": n.kind, "order_id": n.order_id, "at_ms": n.at_ms,
        })
        .to_string();
        let path = self.path.clone();
        let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            writeln!(f, "{line}")
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                if let Ok(mut s) = self.sent.lock() {
                    s.remove(key);
                }
                Err(ExternalError::Unavailable(e.to_string()))
            }
            Err(e) => Err(ExternalError::Unavailable(e.to_string())),
        }
    }
}

/// Tokio's blocking pool.
pub struct TokioBlocking;

impl BlockingPool for TokioBlocking {
    fn run(&self, job: Box<dyn FnOnce() + Send>) {
        tokio::task::spawn_blocking(job);
    }
}
