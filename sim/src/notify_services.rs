//! The notification services behind every simulated node: one mail server, one SMS webhook
//! and one WhatsApp webhook, kept by the harness across restarts and reached through the
//! node's real sinks (`SmtpSink`, `WebhookSink`) over their transport seams. Like real
//! services they take time, refuse now and then, and sometimes deliver but lose the answer
//! (the sink then sends again under the same key). They are as strict as real ones: a webhook
//! call whose header and body keys differ, that names another channel or has no recipient
//! gets 400; an email without a Message-ID or a recipient is refused.
//!
//! What they received is the notification half of the effect ledger. Its checkers:
//! - every delivered notification is one the disks hold: an outside effect comes only from
//!   a durable change (`notification-of-a-durable-change`);
//! - one event on one channel arrives under one key (one Message-ID), however often it is
//!   resent (`one-key-per-notification`);
//! - nothing malformed was sent (`notification-well-formed`).

use crate::check::{Violation, World};
use crate::seed::Stream;
use agora_node::sinks::{message_id, ChannelSinks, WebhookSink, WebhookTransport};
use agora_node::smtp::{MailTransport, SmtpSink};
use async_trait::async_trait;
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One delivery a service accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// `email`, `sms` or `whatsapp`.
    pub channel: &'static str,
    /// The idempotency key (webhooks) or the Message-ID (email).
    pub key: String,
    /// What it is about: a webhook's user, order and event; an email's recipient and subject.
    pub about: String,
}

/// What the services received.
#[derive(Debug, Default)]
struct Books {
    deliveries: Vec<Delivery>,
    malformed: Vec<String>,
}

/// How a call to a service ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Refused before delivering (busy, or a transient error).
    Refused,
    /// Delivered and answered.
    Delivered,
    /// Delivered, but the answer never reached the caller.
    AnswerLost,
}

/// A call's shortest and longest time, in ms.
const LATENCY_MS: (u64, u64) = (5, 80);
/// Calls in a thousand refused before delivery.
const REFUSED_PER_MILLE: u32 = 50;
/// Calls in a thousand delivered whose answer is lost.
const ANSWER_LOST_PER_MILLE: u32 = 30;

/// The services and their books, shared by every node of a run.
#[derive(Clone)]
pub struct NotificationServices {
    books: Arc<Mutex<Books>>,
    rng: Arc<Mutex<Stream>>,
}

impl NotificationServices {
    /// The services of run `seed` (their own random stream: other draws stay as they were).
    pub fn new(seed: u64) -> Self {
        Self {
            books: Arc::default(),
            rng: Arc::new(Mutex::new(Stream::new(seed, "notification-services"))),
        }
    }

    /// The sinks a node sends through: the real ones, over transports reaching these
    /// services.
    pub fn sinks(&self) -> ChannelSinks {
        let webhook = |channel: &'static str| {
            let transport = Arc::new(SimWebhook {
                services: self.clone(),
                channel,
            });
            Arc::new(WebhookSink::with_transport(
                &format!("https://{channel}.sim/send"),
                transport,
            ))
        };
        let mail = Arc::new(SimMailServer(self.clone()));
        let email = SmtpSink::with_transport("Agora <orders@agora.sim>", "smtp://mail.sim", mail)
            .map(Arc::new);
        ChannelSinks {
            email: match email {
                Ok(sink) => sink,
                // The sender address above is a constant that parses.
                Err(e) => unreachable!("the simulated sender address: {e}"),
            },
            sms: webhook("sms"),
            whatsapp: webhook("whatsapp"),
        }
    }

    /// Everything delivered so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.lock().deliveries.clone()
    }

    /// Deliveries by channel (for the run's report).
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for d in &self.lock().deliveries {
            *out.entry(format!("notify:{}", d.channel)).or_insert(0) += 1;
        }
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits the call's latency and draws how it ends.
    async fn call(&self) -> Fate {
        let (latency_ms, roll) = {
            let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
            (
                rng.random_range(LATENCY_MS.0..=LATENCY_MS.1),
                rng.random_range(0..1000u32),
            )
        };
        tokio::time::sleep(Duration::from_millis(latency_ms)).await;
        if roll < REFUSED_PER_MILLE {
            Fate::Refused
        } else if roll < REFUSED_PER_MILLE + ANSWER_LOST_PER_MILLE {
            Fate::AnswerLost
        } else {
            Fate::Delivered
        }
    }

    /// Books `delivery` if the call delivers; the answer the caller gets.
    fn settle(&self, fate: Fate, delivery: Delivery) -> Result<(), String> {
        if fate != Fate::Refused {
            self.lock().deliveries.push(delivery);
        }
        match fate {
            Fate::Refused => Err("421 service busy, try again".into()),
            Fate::Delivered => Ok(()),
            Fate::AnswerLost => Err("connection reset after the request was sent".into()),
        }
    }

    fn malformed(&self, what: String) {
        self.lock().malformed.push(what);
    }
}

/// The SMS or WhatsApp provider's webhook.
struct SimWebhook {
    services: NotificationServices,
    channel: &'static str,
}

#[async_trait]
impl WebhookTransport for SimWebhook {
    async fn post_json(
        &self,
        _url: &str,
        key: &str,
        body: &serde_json::Value,
    ) -> Result<u16, String> {
        let fate = self.services.call().await;
        let field = |name: &str| body[name].as_str().unwrap_or_default().to_string();
        if field("idempotency_key") != key
            || field("channel") != self.channel
            || field("to").is_empty()
        {
            self.services
                .malformed(format!("{} webhook: key {key}, body {body}", self.channel));
            return Ok(400);
        }
        let delivery = Delivery {
            channel: self.channel,
            key: key.to_string(),
            about: format!(
                "{} {} {}",
                field("user_id"),
                field("order_id"),
                field("event")
            ),
        };
        match self.services.settle(fate, delivery) {
            Ok(()) => Ok(200),
            Err(_) if fate == Fate::Refused => Ok(503),
            Err(e) => Err(e),
        }
    }
}

/// The mail server the SMTP sink submits to.
struct SimMailServer(NotificationServices);

#[async_trait]
impl MailTransport for SimMailServer {
    async fn submit(&self, email: lettre::Message) -> Result<(), String> {
        let fate = self.0.call().await;
        let header = |name: &str| {
            email
                .headers()
                .get_raw(name)
                .unwrap_or_default()
                .to_string()
        };
        let (id, to, subject) = (header("Message-ID"), header("To"), header("Subject"));
        if id.is_empty() || to.is_empty() {
            self.0
                .malformed(format!("email to {to:?} with Message-ID {id:?}"));
            return Err("550 a message needs a recipient and a Message-ID".into());
        }
        let delivery = Delivery {
            channel: "email",
            key: id,
            about: format!("{to} {subject}"),
        };
        self.0.settle(fate, delivery)
    }
}

/// Checks what the services received against the notifications the disks hold.
pub fn check(world: &World, services: &NotificationServices) -> Vec<Violation> {
    let held: BTreeSet<String> = world.notification_keys();
    let held_emails: BTreeSet<String> = held.iter().map(|k| message_id(k)).collect();
    let mut out = Vec::new();
    for what in &services.lock().malformed {
        out.push(violation("notification-well-formed", what.clone()));
    }
    let mut keys_by_event: BTreeMap<(&str, String), BTreeSet<String>> = BTreeMap::new();
    for d in services.deliveries() {
        let durable = match d.channel {
            "email" => held_emails.contains(&d.key),
            _ => held.contains(&d.key),
        };
        if !durable {
            out.push(violation(
                "notification-of-a-durable-change",
                format!("{} {} ({}) is on no disk", d.channel, d.key, d.about),
            ));
        }
        keys_by_event
            .entry((d.channel, d.about))
            .or_default()
            .insert(d.key);
    }
    for ((channel, about), keys) in keys_by_event {
        if keys.len() > 1 {
            out.push(violation(
                "one-key-per-notification",
                format!(
                    "{channel} {about} arrived under {} keys: {keys:?}",
                    keys.len()
                ),
            ));
        }
    }
    out
}

fn violation(invariant: &'static str, detail: String) -> Violation {
    Violation { invariant, detail }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_actors::inbox::{Channel, Notification};
    use agora_actors::notify::{NotificationSink, Outgoing};

    fn note(channel: Channel) -> (Notification, Outgoing) {
        let n = Notification {
            channel,
            kind: "ORDER_CONFIRMED".into(),
            order_id: "o1".into(),
            at_ms: 0,
        };
        let to = match channel {
            Channel::Email => "ann@example.com",
            _ => "+15550100",
        };
        let m = Outgoing {
            to: Some(to.into()),
            subject: "Your order is confirmed (o1)".into(),
            body: "Confirmed.".into(),
        };
        (n, m)
    }

    /// Sends until a service answers Ok (as the relay does), under one key.
    async fn send_until_answered(services: &NotificationServices, channel: Channel, key: &str) {
        let sinks = services.sinks();
        let (n, m) = note(channel);
        while sinks.send(key, "u1", &n, &m).await.is_err() {}
    }

    #[tokio::test(start_paused = true)]
    async fn what_the_real_sinks_send_is_booked_and_checked_against_the_disks() {
        let services = NotificationServices::new(7);
        for channel in [Channel::Email, Channel::Sms, Channel::WhatsApp] {
            let (n, _) = note(channel);
            let key = agora_actors::inbox::notification_key("u1", &n);
            for _ in 0..40 {
                send_until_answered(&services, channel, &key).await;
            }
        }
        let deliveries = services.deliveries();
        assert!(deliveries.len() >= 120, "{deliveries:?}");
        assert_eq!(deliveries[0].key, message_id("u1:o1:ORDER_CONFIRMED:email"));
        // The disks hold none of them: every delivery is reported.
        let world = World::default();
        let unheld = check(&world, &services)
            .iter()
            .filter(|v| v.invariant == "notification-of-a-durable-change")
            .count();
        assert_eq!(unheld, deliveries.len());
        // A second key for the same event on the same channel is reported.
        send_until_answered(&services, Channel::Sms, "u1:o1:ORDER_CONFIRMED:sms:again").await;
        let twice: Vec<Violation> = check(&world, &services)
            .into_iter()
            .filter(|v| v.invariant == "one-key-per-notification")
            .collect();
        assert_eq!(twice.len(), 1, "{twice:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_webhook_call_whose_keys_differ_is_refused_and_reported() {
        let services = NotificationServices::new(1);
        let hook = SimWebhook {
            services: services.clone(),
            channel: "sms",
        };
        let body = serde_json::json!({"idempotency_key": "a", "channel": "sms", "to": "+1"});
        assert_eq!(hook.post_json("u", "b", &body).await, Ok(400));
        let reported = check(&World::default(), &services);
        assert_eq!(reported.len(), 1, "{reported:?}");
        assert_eq!(reported[0].invariant, "notification-well-formed");
    }
}
