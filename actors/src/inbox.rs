//! Inbox: a shopper's notifications, keyed by user id. Each event becomes one notification
//! per channel, recorded here and sent through the outbox to a `NotificationSink`. The inbox
//! keeps the newest notifications; older ones are sealed into pages (`history`).

use crate::command::Reply;
use crate::entity::{reply, Ctx, Outcome};
use crate::error::DomainError;
use crate::history::Recent;
use crate::message::ExternalCall;
use crate::notify::{render, Outgoing};
use serde::{Deserialize, Serialize};

/// A delivery channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Channel {
    /// Email.
    Email,
    /// SMS.
    Sms,
    /// WhatsApp.
    WhatsApp,
}

impl Channel {
    /// Lower-case name for the API.
    pub fn name(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::WhatsApp => "whatsapp",
        }
    }
}

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The channel it goes out on.
    pub channel: Channel,
    /// The event (ORDER_PLACED, ORDER_CONFIRMED, …).
    pub kind: String,
    /// The order it is about.
    pub order_id: String,
    /// When it was recorded.
    pub at_ms: u64,
}

/// Where the shopper is reached, as last told by their account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// The account's seq when it sent this (older copies are ignored).
    pub version: u64,
    /// Name used in greetings.
    pub name: String,
    /// Email address.
    pub email: String,
    /// Phone number (E.164), for SMS and WhatsApp.
    pub phone: Option<String>,
}

/// The inbox state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxState {
    /// The newest notifications, oldest first, and the count of sealed pages of older ones
    /// (stored as the plain list it was before pages).
    pub items: Recent<Notification>,
    /// Channels to use (email when empty).
    pub channels: Vec<Channel>,
    /// Where to reach the shopper (unknown until the account tells).
    pub contact: Option<Contact>,
}

/// Commands for an Inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InboxCommand {
    /// An order event to tell the shopper about.
    Event {
        /// The event name.
        kind: String,
        /// The order.
        order_id: String,
    },
    /// Read the newest notifications, oldest first (`History` reaches the rest).
    Get,
    /// The account's contact details and chosen channels changed.
    SetContact {
        /// The account's seq when it sent this.
        version: u64,
        /// Name.
        name: String,
        /// Email address.
        email: String,
        /// Phone number.
        phone: Option<String>,
        /// Chosen channels.
        channels: Vec<Channel>,
    },
    /// Read the history's head: the newest notifications and the count of sealed pages.
    History,
}

/// The key a notification goes out under, the same at every redelivery: the sink, or the
/// service behind it, drops repeats by it.
pub fn notification_key(user_id: &str, n: &Notification) -> String {
    format!("{user_id}:{}:{}:{}", n.order_id, n.kind, n.channel.name())
}

/// Handles one command.
pub fn handle(
    s: &mut InboxState,
    cmd: InboxCommand,
    ctx: &mut Ctx,
) -> Result<Outcome, DomainError> {
    match cmd {
        InboxCommand::Event { kind, order_id } => {
            let channels = if s.channels.is_empty() {
                vec![Channel::Email]
            } else {
                s.channels.clone()
            };
            for channel in channels {
                let to = s.contact.as_ref().and_then(|c| match channel {
                    Channel::Email => Some(c.email.clone()),
                    Channel::Sms | Channel::WhatsApp => c.phone.clone(),
                });
                let name = s.contact.as_ref().map_or("there", |c| c.name.as_str());
                let (subject, body) = render(&kind, &order_id, name, channel);
                let message = Outgoing { to, subject, body };
                let n = Notification {
                    channel,
                    kind: kind.clone(),
                    order_id: order_id.clone(),
                    at_ms: ctx.now_ms,
                };
                let key = notification_key(&ctx.me.id, &n);
                ctx.call(
                    "NOTIFY",
                    ExternalCall::Notify {
                        key,
                        user_id: ctx.me.id.clone(),
                        notification: n.clone(),
                        message,
                    },
                );
                s.items.append(n, ctx);
            }
        }
        InboxCommand::Get => {}
        InboxCommand::History => return reply(Reply::NotificationHistory(s.items.clone())),
        InboxCommand::SetContact {
            version,
            name,
            email,
            phone,
            channels,
        } => {
            if s.contact.as_ref().is_none_or(|c| c.version < version) {
                s.contact = Some(Contact {
                    version,
                    name,
                    email,
                    phone,
                });
                s.channels = channels;
            }
        }
    }
    reply(Reply::Inbox(s.items.newest.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::DomainConfig;
    use crate::message::Body;
    use crate::{EntityKind, EntityRef};

    fn calls(ctx: &Ctx) -> Vec<(String, Outgoing)> {
        ctx.outbox()
            .iter()
            .filter_map(|m| match &m.body {
                Body::External(ExternalCall::Notify { key, message, .. }) => {
                    Some((key.clone(), message.clone()))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_event_goes_out_once_per_chosen_channel_to_the_right_address() {
        let cfg = DomainConfig::default();
        let me = EntityRef::new(EntityKind::Inbox, "u1");
        let mut s = InboxState::default();
        let contact = |version, channels| InboxCommand::SetContact {
            version,
            name: "Asha".into(),
            email: "asha@example.com".into(),
            phone: Some("+919876543210".into()),
            channels,
        };
        let mut ctx = Ctx::new(0, &me, 1, &cfg);
        handle(
            &mut s,
            contact(5, vec![Channel::Email, Channel::Sms]),
            &mut ctx,
        )
        .unwrap();
        // An older copy of the contact arriving late changes nothing.
        handle(&mut s, contact(3, vec![Channel::WhatsApp]), &mut ctx).unwrap();
        let mut ctx = Ctx::new(10, &me, 2, &cfg);
        let event = InboxCommand::Event {
            kind: "ORDER_SHIPPED".into(),
            order_id: "o1".into(),
        };
        handle(&mut s, event, &mut ctx).unwrap();
        let sent = calls(&ctx);
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].0, "u1:o1:ORDER_SHIPPED:email");
        assert_eq!(sent[0].1.to.as_deref(), Some("asha@example.com"));
        assert!(sent[0].1.subject.contains("shipped"));
        assert!(sent[0].1.body.contains("Asha"));
        assert_eq!(sent[1].0, "u1:o1:ORDER_SHIPPED:sms");
        assert_eq!(sent[1].1.to.as_deref(), Some("+919876543210"));
        assert_eq!(s.items.newest.len(), 2);
    }
}
