//! Notification sinks (email, SMS, WhatsApp) and the messages' templates. The runtime calls a
//! sink from the outbox, so a notification is sent at least once; the key (stable across
//! redeliveries and crashes) lets a sink, or the service behind it, drop repeats.

use crate::gateway::ExternalError;
use crate::inbox::{Channel, Notification};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;

/// A rendered message and its recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outgoing {
    /// Email address or phone number; `None` when the inbox does not know it yet.
    pub to: Option<String>,
    /// Subject (email) or title.
    pub subject: String,
    /// Text.
    pub body: String,
}

/// The subject and text of the message telling `name` about `kind` for order `order_id`,
/// for `channel` (SMS and WhatsApp get one short line, email a few sentences).
pub fn render(kind: &str, order_id: &str, name: &str, channel: Channel) -> (String, String) {
    let (subject, line) = match kind {
        "ORDER_PLACED" => (
            "We received your order",
            "we received your order and are waiting for the payment to go through.",
        ),
        "ORDER_CONFIRMED" => (
            "Your order is confirmed",
            "your payment went through and your order is confirmed; we are packing it.",
        ),
        "PAYMENT_FAILED" => (
            "Your payment did not go through",
            "your payment did not go through, so the order was not placed. Nothing was charged.",
        ),
        "ORDER_SHIPPED" => (
            "Your order has shipped",
            "your order has shipped and is on its way.",
        ),
        "ORDER_DELIVERED" => (
            "Your order was delivered",
            "your order was delivered. Enjoy!",
        ),
        "ORDER_CANCELLED" => (
            "Your order was cancelled",
            "your order was cancelled; any reserved items were released.",
        ),
        "REFUND_ISSUED" => (
            "Your refund is on its way",
            "we issued a refund for your order; it reaches your payment method in a few days.",
        ),
        _ => (
            "An update on your order",
            "there is an update on your order.",
        ),
    };
    let subject = format!("{subject} ({order_id})");
    let body = match channel {
        Channel::Email => format!(
            "Hi {name},\n\n{} Order: {order_id}.\n\nThank you for shopping with Agora.\n",
            capitalise(line)
        ),
        Channel::Sms | Channel::WhatsApp => {
            format!("Agora: {} Order {order_id}.", capitalise(line))
        }
    };
    (subject, body)
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Somewhere notifications go.
#[async_trait]
pub trait NotificationSink: Send + Sync + 'static {
    /// Sends one notification; an error means "retry later with the same key".
    async fn send(
        &self,
        key: &str,
        user_id: &str,
        notification: &Notification,
        message: &Outgoing,
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
        _message: &Outgoing,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_has_its_own_template_and_sms_is_one_short_line() {
        let kinds = [
            "ORDER_PLACED",
            "ORDER_CONFIRMED",
            "PAYMENT_FAILED",
            "ORDER_SHIPPED",
            "ORDER_DELIVERED",
            "ORDER_CANCELLED",
            "REFUND_ISSUED",
        ];
        let mut subjects = std::collections::BTreeSet::new();
        for k in kinds {
            let (subject, email) = render(k, "o-1", "Asha", Channel::Email);
            assert!(email.starts_with("Hi Asha,") && email.contains("o-1"));
            subjects.insert(subject);
            let (_, sms) = render(
                k,
                "00000000-0000-0000-0000-000000000000",
                "Asha",
                Channel::Sms,
            );
            assert!(!sms.contains('\n') && sms.chars().count() <= 160, "{sms}");
        }
        assert_eq!(subjects.len(), kinds.len());
    }
}
