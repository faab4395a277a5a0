//! The courier's side of the effect ledger: every pickup the simulated courier booked, kept
//! by the harness across every node and restart, set against the orders on the disks. A
//! pickup is an effect a shop pays for and cannot take back:
//! - one pickup per shipment (`one-pickup-per-shipment`): a booking retried, redelivered or
//!   sent again after a failover goes under the shipment's one key;
//! - a pickup only of an order that was paid (`pickup-of-a-paid-order`): its shipment
//!   exists once the order is confirmed, and the order on the disks says so.

use crate::check::{Violation, World};
use agora_actors::courier::CourierBooking;
use agora_actors::order::OrderStatus;
use std::collections::BTreeMap;

/// The courier's bookings against the world.
pub fn check(world: &World, bookings: &[CourierBooking]) -> Vec<Violation> {
    let mut keys_by_shipment: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for b in bookings {
        keys_by_shipment
            .entry(b.shipment_id.as_str())
            .or_default()
            .push(b.key.as_str());
    }
    let mut out = Vec::new();
    for (shipment, keys) in &keys_by_shipment {
        if keys.len() > 1 {
            out.push(Violation {
                invariant: "one-pickup-per-shipment",
                detail: format!("{shipment} booked {} times: {keys:?}", keys.len()),
            });
        }
        let order_id = shipment.strip_prefix("shp-").unwrap_or(shipment);
        let paid = world.order(order_id).is_some_and(|o| {
            o.history
                .iter()
                .any(|(status, _)| *status == OrderStatus::Confirmed)
        });
        if !paid {
            out.push(Violation {
                invariant: "pickup-of-a-paid-order",
                detail: format!("{shipment} picked up, but no disk holds {order_id} confirmed"),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn booking(key: &str, shipment: &str) -> CourierBooking {
        CourierBooking {
            key: key.into(),
            shipment_id: shipment.into(),
        }
    }

    #[test]
    fn a_shipment_booked_twice_or_of_an_unknown_order_is_reported() {
        let world = World::default();
        let found: Vec<&str> = check(&world, &[booking("k1", "shp-o1"), booking("k2", "shp-o1")])
            .iter()
            .map(|v| v.invariant)
            .collect();
        assert_eq!(
            found,
            ["one-pickup-per-shipment", "pickup-of-a-paid-order"],
            "{found:?}"
        );
        assert!(check(&world, &[]).is_empty());
    }
}
