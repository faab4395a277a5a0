//! Shipment: the delivery of one order. The courier books it; progress then follows the
//! courier's plan on durable timers: `CREATED → PICKED_UP → IN_TRANSIT → OUT_FOR_DELIVERY →
//! DELIVERED`. A delivery attempt the courier's plan marks as failing goes
//! `OUT_FOR_DELIVERY → DELIVERY_FAILED`, and the next leg retries (`→ OUT_FOR_DELIVERY`);
//! after `MAX_DELIVERY_ATTEMPTS` failed attempts the parcel goes back: `→ RETURNED`, which
//! the order compensates (restock, refund).

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
    /// A delivery attempt failed; another follows after a leg.
    DeliveryFailed,
    /// Returned to the shop after the last failed attempt (terminal).
    Returned,
}

/// Delivery attempts before the parcel goes back.
pub const MAX_DELIVERY_ATTEMPTS: u32 = 3;

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
            ShipmentStatus::DeliveryFailed => "DELIVERY_FAILED",
            ShipmentStatus::Returned => "RETURNED",
        }
    }
}

impl ShipmentState {
    /// The status the next leg leads to (None when the shipment is over).
    fn next(&self) -> Option<ShipmentStatus> {
        match self.status()? {
            ShipmentStatus::Created => Some(ShipmentStatus::PickedUp),
            ShipmentStatus::PickedUp => Some(ShipmentStatus::InTransit),
            ShipmentStatus::InTransit => Some(ShipmentStatus::OutForDelivery),
            ShipmentStatus::OutForDelivery if self.attempts < self.failing_attempts => {
                Some(ShipmentStatus::DeliveryFailed)
            }
            ShipmentStatus::OutForDelivery => Some(ShipmentStatus::Delivered),
            ShipmentStatus::DeliveryFailed if self.attempts >= MAX_DELIVERY_ATTEMPTS => {
                Some(ShipmentStatus::Returned)
            }
            ShipmentStatus::DeliveryFailed => Some(ShipmentStatus::OutForDelivery),
            ShipmentStatus::Delivered | ShipmentStatus::Cancelled | ShipmentStatus::Returned => {
                None
            }
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
    /// The courier.
    pub courier: String,
    /// How many delivery attempts the courier's plan fails (from the booking).
    pub failing_attempts: u32,
    /// Delivery attempts made.
    pub attempts: u32,
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
        /// The courier chosen at checkout.
        courier: String,
    },
    /// The courier's booking (may come twice).
    Booked {
        /// Tracking number.
        tracking: String,
        /// Leg durations in ms.
        legs_ms: Vec<u64>,
        /// How many delivery attempts will fail (the courier's plan).
        failing_attempts: u32,
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
    /// The courier.
    pub courier: String,
    /// Delivery attempts made.
    pub attempts: u32,
}

const BOOKING_RETRY_MS: u64 = 10_000;

fn book(ctx: &mut Ctx, city: String, courier: String) {
    let shipment_id = ctx.me.id.clone();
    ctx.call(
        "SHIPMENT_BOOK",
        ExternalCall::BookShipment {
            key: format!("{shipment_id}:book"),
            shipment_id,
            city: city.clone(),
            courier,
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
            courier,
        } => {
            if s.events.is_empty() {
                s.order_id = order_id;
                s.customer = customer;
                s.courier = courier.clone();
                s.events.push((ShipmentStatus::Created, ctx.now_ms));
                book(ctx, city, courier);
            }
        }
        ShipmentCommand::Booked {
            tracking,
            legs_ms,
            failing_attempts,
        } => {
            if s.tracking.is_none() && s.status() == Some(ShipmentStatus::Created) {
                let first = legs_ms.first().copied().unwrap_or(0);
                s.tracking = Some(tracking);
                s.legs_ms = legs_ms;
                s.failing_attempts = failing_attempts;
                ctx.timer(
                    ctx.now_ms + first,
                    "SHIPMENT_PROGRESS",
                    Command::Shipment(ShipmentCommand::Advance),
                );
            }
        }
        ShipmentCommand::CheckBooking { city } => {
            if s.tracking.is_none() && s.status() == Some(ShipmentStatus::Created) {
                book(ctx, city, s.courier.clone());
            }
        }
        ShipmentCommand::Advance => {
            if let Some(next) = s.next() {
                s.events.push((next, ctx.now_ms));
                if matches!(
                    next,
                    ShipmentStatus::DeliveryFailed | ShipmentStatus::Delivered
                ) {
                    s.attempts += 1;
                }
                let order = EntityRef::new(EntityKind::Order, s.order_id.clone());
                let topic = match next {
                    ShipmentStatus::Delivered => "ORDER_DELIVERED",
                    ShipmentStatus::Returned => "ORDER_RETURNED",
                    _ => "ORDER_SHIPPED",
                };
                // A failed attempt or its retry changes nothing for the order: not sent.
                if !matches!(
                    next,
                    ShipmentStatus::DeliveryFailed | ShipmentStatus::OutForDelivery
                ) || s.attempts == 0
                {
                    ctx.send(
                        order,
                        topic,
                        Command::Order(OrderCommand::ShipmentProgress { status: next }),
                    );
                }
                if !matches!(next, ShipmentStatus::Delivered | ShipmentStatus::Returned) {
                    // Legs: pickup, transit, out for delivery, the attempt; retries and the
                    // way back take the last leg's time.
                    let leg = (s.events.len() - 1).min(s.legs_ms.len().saturating_sub(1));
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
        courier: s.courier.clone(),
        attempts: s.attempts,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::DomainConfig;
    use crate::message::Body;
    use proptest::prelude::*;

    fn run(s: &mut ShipmentState, cmd: ShipmentCommand) -> Vec<crate::OutboxMessage> {
        let me = EntityRef::new(EntityKind::Shipment, "shp-o1");
        let cfg = DomainConfig::default();
        let mut ctx = Ctx::new(1_000, &me, 1, &cfg);
        handle(s, cmd, &mut ctx).unwrap();
        ctx.take_outbox()
    }

    /// Books with `failing` failed attempts and advances until no timer is left; returns the
    /// statuses and the progress the order was told.
    fn ride(failing: u32) -> (Vec<ShipmentStatus>, Vec<ShipmentStatus>) {
        let mut s = ShipmentState::default();
        run(
            &mut s,
            ShipmentCommand::Create {
                order_id: "o1".into(),
                customer: "u".into(),
                city: "Pune".into(),
                courier: "swift".into(),
            },
        );
        let mut out = run(
            &mut s,
            ShipmentCommand::Booked {
                tracking: "T".into(),
                legs_ms: vec![10; 4],
                failing_attempts: failing,
            },
        );
        let mut told = Vec::new();
        for _ in 0..50 {
            let advance = out.iter().any(|m| {
                matches!(
                    m.body,
                    Body::Command(Command::Shipment(ShipmentCommand::Advance))
                )
            });
            if !advance {
                break;
            }
            out = run(&mut s, ShipmentCommand::Advance);
            for m in &out {
                if let Body::Command(Command::Order(OrderCommand::ShipmentProgress { status })) =
                    &m.body
                {
                    told.push(*status);
                }
            }
        }
        (s.events.iter().map(|(st, _)| *st).collect(), told)
    }

    #[test]
    fn a_failed_attempt_is_retried_and_then_delivered() {
        use ShipmentStatus::*;
        let (statuses, told) = ride(1);
        assert_eq!(
            statuses,
            vec![
                Created,
                PickedUp,
                InTransit,
                OutForDelivery,
                DeliveryFailed,
                OutForDelivery,
                Delivered
            ]
        );
        assert_eq!(told, vec![PickedUp, InTransit, OutForDelivery, Delivered]);
    }

    #[test]
    fn after_the_last_failed_attempt_the_parcel_is_returned() {
        use ShipmentStatus::*;
        let (statuses, told) = ride(MAX_DELIVERY_ATTEMPTS);
        assert_eq!(
            statuses.iter().filter(|s| **s == DeliveryFailed).count() as u32,
            MAX_DELIVERY_ATTEMPTS
        );
        assert_eq!(statuses.last(), Some(&Returned));
        assert_eq!(told, vec![PickedUp, InTransit, OutForDelivery, Returned]);
    }

    proptest! {
        #[test]
        fn every_plan_ends_delivered_or_returned(failing in 0u32..10) {
            let (statuses, told) = ride(failing);
            let last = *statuses.last().unwrap();
            if failing >= MAX_DELIVERY_ATTEMPTS {
                prop_assert_eq!(last, ShipmentStatus::Returned);
            } else {
                prop_assert_eq!(last, ShipmentStatus::Delivered);
            }
            // The order hears of the end exactly once.
            prop_assert_eq!(told.iter().filter(|s| matches!(s, ShipmentStatus::Delivered | ShipmentStatus::Returned)).count(), 1);
        }
    }
}
