//! Notification sinks (email, SMS, WhatsApp). The runtime calls a sink from the outbox, so a
//! notification is sent at least once; the key lets a sink drop repeats.

use crate::gateway::ExternalError;
use crate::inbox::Notification;
use async_trait::async_trait;
use std::sync::Mutex;

/// Somewhere notifications go.
#[async_trait]
pub trait NotificationSink: Send + Sync + 'static {
    /// Sends one notification.
    async fn send(
        &self,
        key: &str,
        user_id: &str,
        notification: &Notification,
    ) -> Result<(), ExternalError>;
}

/// A sink that keeps what it was sent in memory, once per key (for tests and the simulator).
#[derive(Default)]
pub struct MemorySink {
    sent: Mutex<Vec<(String, String, Notification)>>,
}

impl MemorySink {
    /// What was sent: key, user id, notification.
    pub fn sent(&self) -> Vec<(String, String, Notification)> {
        self.sent.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl NotificationSink for MemorySink {
    async fn send(
        &self,
        key: &str,
        user_id: &str,
        notification: &Notification,
    ) -> Result<(), ExternalError> {
        let mut sent = self
            .sent
            .lock()
            .map_err(|_| ExternalError::Unavailable("poisoned".into()))?;
        if !sent.iter().any(|(k, _, _)| k == key) {
            sent.push((key.to_string(), user_id.to_string(), notification.clone()));
        }
        Ok(())
    }
}
