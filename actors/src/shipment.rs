//! Shipment: the delivery of one order. The courier books it; progress then follows the
//! courier's plan on durable timers: `CREATED → PICKED_UP → IN_TRANSIT → OUT_FOR_DELIVERY →
//! DELIVERED`.

use crate::command::{Command, Reply};
use crate::entity::{reply, Ctx, Outcome};
use crate::error::DomainError;
use crate::message::ExternalCall;
use crate::order::OrderCommand;
use crate::{EntityKind, EntityRef};
use serde::{Deserialize, Serialize};

/// Where a shipment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShipmentStatus {
    /// Created; waiting for pickup.
    Created,
    /// Picked up by the courier.
    PickedUp,
    /// Between hubs.
    InTransit,
    /// With the delivery agent.
    OutForDelivery,
    /// Delivered.
    Delivered,
    /// Cancelled before pickup.
    Cancelled,
}

impl ShipmentStatus {
    /// The API name.
    pub fn name(self) -> &'static str {
        match self {
            ShipmentStatus::Created => "CREATED",
            ShipmentStatus::PickedUp => "PICKED_UP",
            ShipmentStatus::InTransit => "IN_TRANSIT",
            ShipmentStatus::OutForDelivery => "OUT_FOR_DELIVERY",
            ShipmentStatus::Delivered => "DELIVERED",
            ShipmentStatus::Cancelled => "CANCELLED",
        }
    }

    fn next(self) -> Option<ShipmentStatus> {
        match self {
            ShipmentStatus::Created => Some(ShipmentStatus::PickedUp),
            ShipmentStatus::PickedUp => Some(ShipmentStatus::InTransit),
            ShipmentStatus::InTransit => Some(ShipmentStatus::OutForDelivery),
            ShipmentStatus::OutForDelivery => Some(ShipmentStatus::Delivered),
            ShipmentStatus::Delivered | ShipmentStatus::Cancelled => None,
        }
    }
}

/// The shipment state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentState {
    /// The order shipped.
    pub order_id: String,
    /// The shopper.
    pub customer: String,
    /// Tracking number, once booked.
    pub tracking: Option<String>,
    /// Milliseconds each leg takes, from the courier's booking.
    pub legs_ms: Vec<u64>,
    /// Status history, oldest first.
    pub events: Vec<(ShipmentStatus, u64)>,
}

impl ShipmentState {
    /// The current status.
    pub fn status(&self) -> Option<ShipmentStatus> {
        self.events.last().map(|(s, _)| *s)
    }
}

/// Commands for a Shipment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShipmentCommand {
    /// Create it and book the courier (from the order saga).
    Create {
        /// The order.
        order_id: String,
        /// The shopper.
        customer: String,
        /// Destination city.
        city: String,
    },
    /// The courier's booking (may come twice).
    Booked {
        /// Tracking number.
        tracking: String,
        /// Leg durations in ms.
        legs_ms: Vec<u64>,
    },
    /// Durable timer: book again if the courier has not answered.
    CheckBooking {
        /// Destination city.
        city: String,
    },
    /// Durable timer: the next leg is done.
    Advance,
    /// Cancel before pickup.
    Cancel,
    /// Read it.
    Get,
}

/// A shipment as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentView {
    /// Shipment id.
    pub shipment_id: String,
    /// The order.
    pub order_id: String,
    /// The shopper.
    pub customer: String,
    /// Status name.
    pub status: String,
    /// Tracking number.
    pub tracking: Option<String>,
    /// History: status name and time.
    pub events: Vec<(String, u64)>,
}

const BOOKING_RETRY_MS: u64 = 10_000;

fn book(ctx: &mut Ctx, city: String) {
    let shipment_id = ctx.me.id.clone();
    ctx.call(
        "SHIPMENT_BOOK",
        ExternalCall::BookShipment {
            key: format!("{shipment_id}:book"),
            shipment_id,
            city: city.clone(),
        },
    );
    ctx.timer(
        ctx.now_ms + BOOKING_RETRY_MS,
        "SHIPMENT_BOOK_CHECK",
        Command::Shipment(ShipmentCommand::CheckBooking { city }),
    );
}

/// Handles one command.
pub fn handle(
    s: &mut ShipmentState,
    cmd: ShipmentCommand,
    ctx: &mut Ctx,
) -> Result<Outcome, DomainError> {
    match cmd {
        ShipmentCommand::Create {
            order_id,
            customer,
            city,
        } => {
            if s.events.is_empty() {
                s.order_id = order_id;
                s.customer = customer;
                s.events.push((ShipmentStatus::Created, ctx.now_ms));
                book(ctx, city);
            }
        }
        ShipmentCommand::Booked { tracking, legs_ms } => {
            if s.tracking.is_none() && s.status() == Some(ShipmentStatus::Created) {
                let first = legs_ms.first().copied().unwrap_or(0);
                s.tracking = Some(tracking);
                s.legs_ms = legs_ms;
                ctx.timer(
                    ctx.now_ms + first,
                    "SHIPMENT_PROGRESS",
                    Command::Shipment(ShipmentCommand::Advance),
                );
            }
        }
        ShipmentCommand::CheckBooking { city } => {
            if s.tracking.is_none() && s.status() == Some(ShipmentStatus::Created) {
                book(ctx, city);
            }
        }
        ShipmentCommand::Advance => {
            if let Some(next) = s.status().and_then(ShipmentStatus::next) {
                s.events.push((next, ctx.now_ms));
                let order = EntityRef::new(EntityKind::Order, s.order_id.clone());
                let topic = if next == ShipmentStatus::Delivered {
                    "ORDER_DELIVERED"
                } else {
                    "ORDER_SHIPPED"
                };
                ctx.send(
                    order,
                    topic,
                    Command::Order(OrderCommand::ShipmentProgress { status: next }),
                );
                let leg = s.events.len() - 1;
                if next != ShipmentStatus::Delivered {
                    let wait = s.legs_ms.get(leg).copied().unwrap_or(0);
                    ctx.timer(
                        ctx.now_ms + wait,
                        "SHIPMENT_PROGRESS",
                        Command::Shipment(ShipmentCommand::Advance),
                    );
                }
            }
        }
        ShipmentCommand::Cancel => {
            // After pickup a cancel is too late; the order learns it from the progress sent.
            if s.status() == Some(ShipmentStatus::Created) {
                s.events.push((ShipmentStatus::Cancelled, ctx.now_ms));
                ctx.send(
                    EntityRef::new(EntityKind::Order, s.order_id.clone()),
                    "SHIPMENT_CANCELLED",
                    Command::Order(OrderCommand::ShipmentProgress {
                        status: ShipmentStatus::Cancelled,
                    }),
                );
            }
        }
        ShipmentCommand::Get => {}
    }
    let Some(status) = s.status() else {
        return Err(DomainError::NotFound(format!("shipment {}", ctx.me.id)));
    };
    reply(Reply::Shipment(ShipmentView {
        shipment_id: ctx.me.id.clone(),
        order_id: s.order_id.clone(),
        customer: s.customer.clone(),
        status: status.name().to_string(),
        tracking: s.tracking.clone(),
        events: s
            .events
            .iter()
            .map(|(st, at)| (st.name().to_string(), *at))
            .collect(),
    }))
}
