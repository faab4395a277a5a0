//! The order saga's unit and property tests.

use super::*;
use crate::command::Command;
use crate::entity::DomainConfig;
use crate::message::{Body, Destination};
use crate::payment::PaymentCommand;
use crate::review_slot::{slot_parts, ReviewSlotCommand};
use crate::shipment::ShipmentCommand;
use crate::stock::StockCommand;
use crate::{EntityKind, EntityRef};
use proptest::prelude::*;

const DAY_MS: u64 = 24 * 3600 * 1000;

fn run_at(
    s: &mut OrderState,
    now_ms: u64,
    cmd: OrderCommand,
) -> Result<Vec<crate::OutboxMessage>, DomainError> {
    let me = EntityRef::new(EntityKind::Order, "o1");
    let cfg = DomainConfig::default();
    let mut ctx = Ctx::new(now_ms, &me, 1, &cfg);
    let mut work = s.clone();
    handle(&mut work, cmd, &mut ctx)?;
    *s = work;
    Ok(ctx.take_outbox())
}

fn run(s: &mut OrderState, cmd: OrderCommand) -> Vec<crate::OutboxMessage> {
    run_at(s, 1_000, cmd).unwrap()
}

fn placement(courier: &str, price: u64) -> Placement {
    Placement {
        customer: "u".into(),
        lines: vec![
            OrderLine {
                sku: "A".into(),
                quantity: 2,
                unit_price_minor: 1_000,
            },
            OrderLine {
                sku: "B".into(),
                quantity: 1,
                unit_price_minor: 500,
            },
        ],
        method: Method::Wallet,
        address: Address {
            name: "n".into(),
            line1: "l".into(),
            city: "Pune".into(),
            postal_code: "411001".into(),
            country: "IN".into(),
        },
        request_hash: "h".into(),
        placed_at_ms: 0,
        shipping: ShippingChoice {
            courier: courier.into(),
            price_minor: price,
        },
    }
}

/// An order placed, paid and taken to `ship` by the shipment.
fn shipped_to(ship: &[ShipmentStatus]) -> OrderState {
    let mut s = OrderState::default();
    run(&mut s, OrderCommand::Place(placement("swift", 99)));
    run(&mut s, OrderCommand::StockReserved { sku: "A".into() });
    let out = run(&mut s, OrderCommand::StockReserved { sku: "B".into() });
    // The payment is asked for the lines plus shipping.
    assert!(out.iter().any(|m| matches!(
        &m.body,
        Body::Command(Command::Payment(PaymentCommand::Authorize {
            amount_minor: 2_599,
            ..
        }))
    )));
    let out = run(&mut s, OrderCommand::PaymentSucceeded);
    assert!(out.iter().any(|m| matches!(
        &m.body,
        Body::Command(Command::Shipment(ShipmentCommand::Create { courier, .. })) if courier == "swift"
    )));
    for st in ship {
        run(&mut s, OrderCommand::ShipmentProgress { status: *st });
    }
    s
}

fn refund(lines: &[(&str, u32)], key: &str) -> OrderCommand {
    OrderCommand::RequestRefund {
        refund_id: key.into(),
        request_hash: format!("{lines:?}"),
        lines: lines.iter().map(|(k, q)| (k.to_string(), *q)).collect(),
        by_admin: false,
    }
}

#[test]
fn a_returned_parcel_restocks_and_refunds_then_ends_refunded() {
    use ShipmentStatus::*;
    let mut s = shipped_to(&[PickedUp, InTransit, OutForDelivery]);
    let out = run(&mut s, OrderCommand::ShipmentProgress { status: Returned });
    assert_eq!(s.status(), Some(OrderStatus::Returned));
    let restocked: u64 = out
        .iter()
        .filter_map(|m| match &m.body {
            Body::Command(Command::Stock(StockCommand::Restock { quantity, .. })) => {
                Some(*quantity)
            }
            _ => None,
        })
        .sum();
    assert_eq!(restocked, 3);
    assert!(out.iter().any(|m| matches!(
        m.body,
        Body::Command(Command::Payment(PaymentCommand::Refund))
    )));
    run(&mut s, OrderCommand::RefundCompleted);
    assert_eq!(s.status(), Some(OrderStatus::Refunded));
    assert!(s.status().is_some_and(OrderStatus::is_terminal));
}

#[test]
fn refunds_need_delivery_respect_the_window_and_never_exceed_the_paid_amount() {
    use ShipmentStatus::*;
    let mut s = shipped_to(&[PickedUp]);
    assert!(matches!(
        run_at(&mut s, 1_000, refund(&[], "k0")),
        Err(DomainError::Conflict(_))
    ));
    run(&mut s, OrderCommand::ShipmentProgress { status: Delivered });
    // Per line, then a retry of the same key (same answer), then the same key with
    // another body.
    run(&mut s, refund(&[("A", 1)], "k1"));
    run(&mut s, refund(&[("A", 1)], "k1"));
    assert_eq!(s.refunds.len(), 1);
    assert_eq!(s.refunds[0].amount_minor, 1_000);
    assert_eq!(
        run_at(&mut s, 1_000, refund(&[("B", 1)], "k1")),
        Err(DomainError::IdempotencyMismatch)
    );
    // More units than are left.
    assert!(matches!(
        run_at(&mut s, 1_000, refund(&[("A", 2)], "k2")),
        Err(DomainError::Conflict(_))
    ));
    assert!(matches!(
        run_at(&mut s, 1_000, refund(&[("Z", 1)], "k2")),
        Err(DomainError::Invalid { .. })
    ));
    // The owner after the window: refused; an admin: fine.
    let late = 1_000 + RETURN_WINDOW_MS + DAY_MS;
    assert!(matches!(
        run_at(&mut s, late, refund(&[("B", 1)], "k3")),
        Err(DomainError::Conflict(_))
    ));
    // Full: the rest, shipping included.
    let admin_full = OrderCommand::RequestRefund {
        refund_id: "k4".into(),
        request_hash: "h".into(),
        lines: vec![],
        by_admin: true,
    };
    run_at(&mut s, late, admin_full).unwrap();
    assert_eq!(s.refunds[1].amount_minor, 2_599 - 1_000);
    assert!(matches!(
        run_at(&mut s, 1_000, refund(&[("B", 1)], "k5")),
        Err(DomainError::Conflict(_))
    ));
    assert_eq!(s.status(), Some(OrderStatus::Delivered));
}

proptest! {
    /// Whatever refunds are asked, in whatever order, the sum of those accepted never
    /// exceeds what was paid, and no line is refunded beyond its units.
    #[test]
    fn accepted_refunds_never_exceed_the_paid_amount(reqs in prop::collection::vec(
        prop::collection::vec((prop_oneof![Just("A"), Just("B")], 1u32..3), 0..3), 0..12)) {
        use ShipmentStatus::*;
        let mut s = shipped_to(&[PickedUp, Delivered]);
        for (i, lines) in reqs.iter().enumerate() {
            let _ = run_at(&mut s, 2_000, refund(lines, &format!("k{i}")));
            let total: u64 = s.refunds.iter().map(|r| r.amount_minor).sum();
            prop_assert!(total <= 2_599);
            for (sku, units) in [("A", 2u64), ("B", 1)] {
                let refunded: u64 = s.refunds.iter().flat_map(|r| r.lines.iter())
                    .filter(|(k, _)| k == sku).map(|(_, q)| u64::from(*q)).sum();
                prop_assert!(refunded <= units);
            }
        }
    }
}

fn placement_of(skus: &[&str]) -> Placement {
    Placement {
        customer: "cust".into(),
        lines: skus
            .iter()
            .map(|s| OrderLine {
                sku: s.to_string(),
                quantity: 1,
                unit_price_minor: 100,
            })
            .collect(),
        method: Method::Wallet,
        address: Address {
            name: "A".into(),
            line1: "L".into(),
            city: "C".into(),
            postal_code: "1".into(),
            country: "IN".into(),
        },
        request_hash: "h".into(),
        placed_at_ms: 0,
        shipping: ShippingChoice::default(),
    }
}

/// Runs `cmd`; the messages it sent to review slots, as (SKU, customer).
fn step(s: &mut OrderState, cmd: OrderCommand) -> Vec<(String, String)> {
    let me = EntityRef::new(EntityKind::Order, "o-1");
    let config = DomainConfig::default();
    let mut ctx = Ctx::new(1, &me, 1, &config);
    handle(s, cmd, &mut ctx).expect("accepted");
    ctx.take_outbox()
        .into_iter()
        .filter_map(|m| match (m.to, m.body) {
            (
                Destination::Entity(to),
                Body::Command(Command::ReviewSlot(ReviewSlotCommand::Delivered { order_id })),
            ) => {
                assert_eq!(to.kind, EntityKind::ReviewSlot);
                assert_eq!(order_id, "o-1");
                let (sku, customer) = slot_parts(&to.id).expect("a slot id");
                Some((sku.to_string(), customer.to_string()))
            }
            _ => None,
        })
        .collect()
}

fn confirmed(skus: &[&str]) -> OrderState {
    let mut s = OrderState::default();
    assert!(step(&mut s, OrderCommand::Place(placement_of(skus))).is_empty());
    for sku in skus {
        step(
            &mut s,
            OrderCommand::StockReserved {
                sku: sku.to_string(),
            },
        );
    }
    assert!(step(&mut s, OrderCommand::PaymentSucceeded).is_empty());
    assert_eq!(s.status(), Some(OrderStatus::Confirmed));
    s
}

#[test]
fn delivery_tells_the_review_board_of_each_sku_once() {
    let mut s = confirmed(&["B", "A"]);
    let progress = |status| OrderCommand::ShipmentProgress { status };
    assert!(step(&mut s, progress(ShipmentStatus::PickedUp)).is_empty());
    let sent = step(&mut s, progress(ShipmentStatus::Delivered));
    assert_eq!(
        sent,
        [
            ("A".to_string(), "cust".to_string()),
            ("B".into(), "cust".into())
        ]
    );
    assert_eq!(s.status(), Some(OrderStatus::Delivered));
    // A repeated progress report sends nothing more.
    assert!(step(&mut s, progress(ShipmentStatus::Delivered)).is_empty());

    // Delivered straight from CONFIRMED (the pickup report was overtaken) also tells.
    let mut s = confirmed(&["A"]);
    assert_eq!(step(&mut s, progress(ShipmentStatus::Delivered)).len(), 1);
}

#[test]
fn an_order_that_never_arrives_tells_no_review_board() {
    let mut s = confirmed(&["A"]);
    assert!(step(&mut s, OrderCommand::Cancel).is_empty());
    assert!(step(
        &mut s,
        OrderCommand::ShipmentProgress {
            status: ShipmentStatus::Cancelled
        }
    )
    .is_empty());
    assert!(step(&mut s, OrderCommand::RefundCompleted).is_empty());
    assert_eq!(s.status(), Some(OrderStatus::Refunded));
}

/// The SKUs `out` releases holds on.
fn releases(out: &[crate::OutboxMessage]) -> Vec<String> {
    out.iter()
        .filter(|m| {
            matches!(
                m.body,
                Body::Command(Command::Stock(StockCommand::Release { .. }))
            )
        })
        .filter_map(|m| match &m.to {
            crate::Destination::Entity(e) => Some(e.id.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_hold_made_after_the_order_let_go_of_its_stock_is_released() {
    // Cancelled while pending: its releases may overtake a reservation still on its way.
    let mut s = OrderState::default();
    run(&mut s, OrderCommand::Place(placement("swift", 99)));
    assert_eq!(releases(&run(&mut s, OrderCommand::Cancel)), ["A", "B"]);
    assert_eq!(s.status(), Some(OrderStatus::Cancelled));
    let late = run(&mut s, OrderCommand::StockReserved { sku: "A".into() });
    assert_eq!(releases(&late), ["A"]);
    // Paid: the holds were committed, so a hold made now is a stray one too.
    let mut s = shipped_to(&[]);
    assert_eq!(s.status(), Some(OrderStatus::Confirmed));
    let late = run(&mut s, OrderCommand::StockReserved { sku: "B".into() });
    assert_eq!(releases(&late), ["B"]);
    // While the order holds stock, a repeated answer releases nothing.
    let mut s = OrderState::default();
    run(&mut s, OrderCommand::Place(placement("swift", 99)));
    run(&mut s, OrderCommand::StockReserved { sku: "A".into() });
    let again = run(&mut s, OrderCommand::StockReserved { sku: "A".into() });
    assert!(releases(&again).is_empty());
}
