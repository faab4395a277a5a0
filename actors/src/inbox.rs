//! Inbox: a shopper's notifications, keyed by user id. Each event becomes one notification
//! per channel, recorded here and sent through the outbox to a `NotificationSink`.

use crate::command::Reply;
use crate::entity::{reply, Ctx, Outcome};
use crate::error::DomainError;
use crate::limits::MAX_INBOX_ITEMS;
use crate::message::ExternalCall;
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

/// The inbox state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxState {
    /// Newest last, at most `MAX_INBOX_ITEMS`.
    pub items: Vec<Notification>,
    /// Channels to use (email when empty).
    pub channels: Vec<Channel>,
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
    /// Read the inbox.
    Get,
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
                let n = Notification {
                    channel,
                    kind: kind.clone(),
                    order_id: order_id.clone(),
                    at_ms: ctx.now_ms,
                };
                let key = format!("{}:{}:{}:{}", ctx.me.id, order_id, kind, channel.name());
                ctx.call(
                    "NOTIFY",
                    ExternalCall::Notify {
                        key,
                        user_id: ctx.me.id.clone(),
                        notification: n.clone(),
                    },
                );
                s.items.push(n);
            }
            if s.items.len() > MAX_INBOX_ITEMS {
                let excess = s.items.len() - MAX_INBOX_ITEMS;
                s.items.drain(..excess);
            }
        }
        InboxCommand::Get => {}
    }
    reply(Reply::Inbox(s.items.clone()))
}
