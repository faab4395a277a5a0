//! What an order does when one of its partners answers: the stock items, the payment and
//! the shipment, and the shopper's cancel.

use super::steps::{
    delivered, end_unpaid, holds_stock, notify, payment, refund_and_restock, release_line,
    stock_settled, to_each_stock_item,
};
use super::{OrderPaymentStatus, OrderState, OrderStatus, Placement};
use crate::command::Command;
use crate::entity::Ctx;
use crate::error::DomainError;
use crate::ids::shipment_id_for_order;
use crate::payment::PaymentCommand;
use crate::shipment::{ShipmentCommand, ShipmentStatus};
use crate::stock::StockCommand;
use crate::{EntityKind, EntityRef};

/// A stock item's answer for `sku`: reserved (`available` is `None`) or rejected with the
/// units it had.
pub(super) fn stock_answer(
    s: &mut OrderState,
    p: &Placement,
    status: OrderStatus,
    sku: String,
    available: Option<u64>,
    ctx: &mut Ctx,
) {
    if available.is_none() && !holds_stock(status) {
        // A hold made after this order let go of its stock (its release overtook the
        // reservation, or the reservation came after the commit): give it back.
        release_line(&sku, ctx);
        return;
    }
    if status != OrderStatus::Pending || s.stock_answers.contains_key(&sku) {
        // A repeated answer while the hold is this order's: nothing changes.
        return;
    }
    s.stock_answers.insert(sku.clone(), available.is_none());
    if let Some(available) = available {
        if s.rejection.is_none() {
            s.rejection = Some((sku, available));
        }
    }
    if s.stock_answers.len() == p.lines.len() {
        stock_settled(s, p, ctx);
    }
}

/// PAYMENT_STARTED.
pub(super) fn payment_started(s: &mut OrderState, status: OrderStatus, ctx: &Ctx) {
    if status == OrderStatus::AwaitingPayment {
        s.set(OrderStatus::PaymentProcessing, ctx.now_ms);
    }
    if s.payment_status == OrderPaymentStatus::None {
        s.payment_status = OrderPaymentStatus::Processing;
    }
}

/// PAYMENT_SUCCEEDED: confirm (commit the stock, request the shipment), or refund an order
/// that ended before the money came.
pub(super) fn payment_succeeded(
    s: &mut OrderState,
    p: &Placement,
    status: OrderStatus,
    ctx: &mut Ctx,
) {
    s.payment_status = OrderPaymentStatus::Succeeded;
    if matches!(
        status,
        OrderStatus::AwaitingPayment | OrderStatus::PaymentProcessing
    ) {
        s.set(OrderStatus::Confirmed, ctx.now_ms);
        to_each_stock_item(p, ctx, "STOCK_COMMIT", |order_id, _| StockCommand::Commit {
            order_id,
        });
        let order_id = ctx.me.id.clone();
        ctx.send(
            EntityRef::new(EntityKind::Shipment, shipment_id_for_order(&order_id)),
            "SHIPMENT_REQUESTED",
            Command::Shipment(ShipmentCommand::Create {
                order_id,
                customer: p.customer.clone(),
                city: p.address.city.clone(),
                courier: p.shipping.courier.clone(),
            }),
        );
        notify(p, ctx, "ORDER_CONFIRMED");
    } else if matches!(status, OrderStatus::Cancelled | OrderStatus::Expired) {
        // Paid after the order ended: give the money back.
        s.payment_status = OrderPaymentStatus::Refunding;
        ctx.send(
            payment(ctx),
            "REFUND_REQUESTED",
            Command::Payment(PaymentCommand::Refund),
        );
    }
}

/// The payment failed (`reason`) or timed out: an order still waiting for it is cancelled.
pub(super) fn payment_ended_unpaid(
    s: &mut OrderState,
    p: &Placement,
    status: OrderStatus,
    reason: &str,
    ctx: &mut Ctx,
) {
    if matches!(
        status,
        OrderStatus::AwaitingPayment | OrderStatus::PaymentProcessing
    ) {
        s.set(OrderStatus::PaymentFailed, ctx.now_ms);
        notify(p, ctx, "PAYMENT_FAILED");
        end_unpaid(s, p, ctx, OrderStatus::Cancelled, reason);
    }
}

/// REFUND_ISSUED.
pub(super) fn refund_completed(
    s: &mut OrderState,
    p: &Placement,
    status: OrderStatus,
    ctx: &mut Ctx,
) {
    s.payment_status = OrderPaymentStatus::Refunded;
    if matches!(status, OrderStatus::RefundPending | OrderStatus::Returned) {
        s.set(OrderStatus::Refunded, ctx.now_ms);
    }
    notify(p, ctx, "REFUND_ISSUED");
}

/// The shopper cancels: before payment the order ends at once; once confirmed only the
/// shipment knows whether it is too late.
pub(super) fn cancel(
    s: &mut OrderState,
    p: &Placement,
    status: OrderStatus,
    ctx: &mut Ctx,
) -> Result<(), DomainError> {
    match status {
        st if st.holds_reservation() => {
            end_unpaid(s, p, ctx, OrderStatus::Cancelled, "cancelled_by_customer")
        }
        OrderStatus::Confirmed => {
            // The parcel may already be picked up: only the shipment knows. Refund and
            // restock once it confirms the cancellation (`ShipmentProgress { Cancelled }`).
            s.set(OrderStatus::RefundPending, ctx.now_ms);
            s.cancel_reason = Some("cancelled_by_customer".into());
            ctx.send(
                EntityRef::new(EntityKind::Shipment, shipment_id_for_order(&ctx.me.id)),
                "SHIPMENT_CANCEL",
                Command::Shipment(ShipmentCommand::Cancel),
            );
        }
        OrderStatus::Cancelled
        | OrderStatus::Expired
        | OrderStatus::RefundPending
        | OrderStatus::Refunded
        | OrderStatus::Returned => {}
        other => {
            return Err(DomainError::Conflict(format!(
                "an order that is {} cannot be cancelled",
                other.name()
            )))
        }
    }
    Ok(())
}

/// The shipment moved to `ship`.
pub(super) fn shipment_progress(
    s: &mut OrderState,
    p: &Placement,
    status: OrderStatus,
    ship: ShipmentStatus,
    ctx: &mut Ctx,
) {
    match (status, ship) {
        (OrderStatus::RefundPending, ShipmentStatus::Cancelled) => {
            refund_and_restock(s, p, ctx);
            notify(p, ctx, "ORDER_CANCELLED");
        }
        (OrderStatus::RefundPending, _) if ship != ShipmentStatus::Created => {
            // Picked up before the cancel reached the shipment: too late, it ships.
            s.cancel_reason = None;
            s.set(OrderStatus::Shipped, ctx.now_ms);
            notify(p, ctx, "ORDER_SHIPPED");
            if ship == ShipmentStatus::Delivered {
                delivered(s, p, ctx);
            }
        }
        (OrderStatus::Confirmed, ShipmentStatus::Delivered) => {
            s.set(OrderStatus::Shipped, ctx.now_ms);
            notify(p, ctx, "ORDER_SHIPPED");
            delivered(s, p, ctx);
        }
        (
            OrderStatus::Confirmed,
            ShipmentStatus::PickedUp | ShipmentStatus::InTransit | ShipmentStatus::OutForDelivery,
        ) => {
            s.set(OrderStatus::Shipped, ctx.now_ms);
            notify(p, ctx, "ORDER_SHIPPED");
        }
        (OrderStatus::Shipped, ShipmentStatus::Delivered) => delivered(s, p, ctx),
        (OrderStatus::Shipped, ShipmentStatus::Returned) => {
            // Every delivery attempt failed: the goods are back on the shelf and the
            // money goes back (the saga's compensation).
            s.set(OrderStatus::Returned, ctx.now_ms);
            s.cancel_reason = Some("delivery_failed".into());
            refund_and_restock(s, p, ctx);
            notify(p, ctx, "ORDER_RETURNED");
        }
        _ => {}
    }
}
