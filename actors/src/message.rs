//! Messages an entity emits: written to the outbox in the same transaction as the state
//! change, then delivered at least once by the relay; receivers deduplicate by message id.

use crate::command::Command;
use crate::ids::EntityRef;
use crate::money::Money;
use serde::{Deserialize, Serialize};

/// Where an outbox message goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Destination {
    /// Another entity (or the sender itself, for a durable timer).
    Entity(EntityRef),
    /// A service outside Agora (payment gateway, courier, notification sink).
    External,
}

/// A call to a service outside Agora. Each carries an idempotency key so a redelivery does
/// not charge, refund, book or notify twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExternalCall {
    /// Charge a card or UPI address; the result comes back as a callback to `Payment(order)`.
    Charge {
        /// Idempotency key at the gateway.
        key: String,
        /// The order (and payment entity id).
        order_id: String,
        /// How to pay.
        method: crate::payment::Method,
        /// How much.
        amount: Money,
    },
    /// Refund a previous charge; the result comes back as a callback to `Payment(order)`.
    Refund {
        /// Idempotency key at the gateway.
        key: String,
        /// The order (and payment entity id).
        order_id: String,
        /// The refund (`full` for the saga's refund), echoed in the result.
        refund_id: String,
        /// How much.
        amount: Money,
    },
    /// Book a courier pickup; the booking comes back as a callback to `Shipment(id)`.
    BookShipment {
        /// Idempotency key at the courier.
        key: String,
        /// The shipment.
        shipment_id: String,
        /// Destination city, for the courier's plan.
        city: String,
        /// The courier chosen at checkout.
        courier: String,
    },
    /// Send one notification through a sink.
    Notify {
        /// Idempotency key at the sink.
        key: String,
        /// The recipient's user id.
        user_id: String,
        /// The notification.
        notification: crate::inbox::Notification,
        /// The rendered message and its recipient.
        message: crate::notify::Outgoing,
    },
}

/// The body of an outbox message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// A command for an entity.
    Command(Command),
    /// A call to an outside service.
    External(ExternalCall),
}

/// One message in an entity's outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// Globally unique, deterministic id: `<sender>#<seq>.<n>`.
    pub id: String,
    /// The entity that emitted it.
    pub from: EntityRef,
    /// Where it goes.
    pub to: Destination,
    /// Not delivered before this time (ms since epoch); durable timers use it. Messages
    /// sent now carry `DUE_AT_ONCE` (0), so no node's clock holds them back.
    pub deliver_at_ms: u64,
    /// The topic, for logs and metrics (ORDER_PLACED, STOCK_RESERVED, …).
    pub topic: String,
    /// What it carries.
    pub body: Body,
}
