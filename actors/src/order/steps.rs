//! The order saga's steps: the messages an order sends to stock, payment, shipment, cart,
//! account, inbox and review slots, and the transitions that send them.

use super::{
    OrderCommand, OrderLine, OrderPaymentStatus, OrderState, OrderStatus, OrderView, Placement,
    Settlement,
};
use crate::account::AccountCommand;
use crate::cart::CartCommand;
use crate::command::{Command, Reply};
use crate::entity::{reply, Ctx, Outcome};
use crate::error::DomainError;
use crate::ids::shipment_id_for_order;
use crate::inbox::InboxCommand;
use crate::payment::PaymentCommand;
use crate::review_slot::{slot_ref, ReviewSlotCommand};
use crate::stock::StockCommand;
use crate::{EntityKind, EntityRef};

pub(super) fn stock(sku: &str) -> EntityRef {
    EntityRef::new(EntityKind::StockItem, sku)
}

/// Sends `kind` to the stock item of each of the order's lines, the command made by `make`
/// from the order id and the line.
pub(super) fn to_each_stock_item(
    p: &Placement,
    ctx: &mut Ctx,
    kind: &str,
    make: impl Fn(String, &OrderLine) -> StockCommand,
) {
    for l in &p.lines {
        let command = make(ctx.me.id.clone(), l);
        ctx.send(stock(&l.sku), kind, Command::Stock(command));
    }
}

pub(super) fn notify(p: &Placement, ctx: &mut Ctx, kind: &str) {
    let order_id = ctx.me.id.clone();
    ctx.send(
        EntityRef::new(EntityKind::Inbox, p.customer.clone()),
        kind,
        Command::Inbox(InboxCommand::Event {
            kind: kind.to_string(),
            order_id,
        }),
    );
}

/// Whether an order in `status` holds (or is getting) stock reservations: before its
/// payment settles; afterwards the holds were committed or released.
pub(super) fn holds_stock(status: OrderStatus) -> bool {
    matches!(
        status,
        OrderStatus::Pending
            | OrderStatus::StockReserved
            | OrderStatus::AwaitingPayment
            | OrderStatus::PaymentProcessing
    )
}

/// Releases this order's hold on `sku`.
pub(super) fn release_line(sku: &str, ctx: &mut Ctx) {
    let order_id = ctx.me.id.clone();
    ctx.send(
        stock(sku),
        "STOCK_RELEASE",
        Command::Stock(StockCommand::Release { order_id }),
    );
}

pub(super) fn release_all(p: &Placement, ctx: &mut Ctx) {
    let order_id = ctx.me.id.clone();
    for l in &p.lines {
        release_line(&l.sku, ctx);
        if agora_seams::planted::is_planted(agora_seams::planted::Bug::DoubleRelease) {
            // The planted bug: compensation also puts the units back a second way.
            restock_line(l, &order_id, ctx);
        }
    }
}

/// Puts an order's sold units back on the shelf (cancelled after confirmation, returned).
pub(super) fn restock_all(p: &Placement, ctx: &mut Ctx) {
    let order_id = ctx.me.id.clone();
    for l in &p.lines {
        restock_line(l, &order_id, ctx);
    }
}

/// Puts one line's units back on the shelf.
pub(super) fn restock_line(l: &OrderLine, order_id: &str, ctx: &mut Ctx) {
    ctx.send(
        stock(&l.sku),
        "STOCK_UPDATED",
        Command::Stock(StockCommand::Restock {
            order_id: order_id.to_string(),
            quantity: u64::from(l.quantity),
        }),
    );
}

/// Compensates a paid order that will not be delivered: the whole payment goes back and the
/// goods return to the shelf.
pub(super) fn refund_and_restock(s: &mut OrderState, p: &Placement, ctx: &mut Ctx) {
    s.payment_status = OrderPaymentStatus::Refunding;
    ctx.send(
        payment(ctx),
        "REFUND_REQUESTED",
        Command::Payment(PaymentCommand::Refund),
    );
    restock_all(p, ctx);
    if agora_seams::planted::is_planted(agora_seams::planted::Bug::DuplicateRestock) {
        // The planted bug: the goods go back on the shelf a second time.
        restock_all(p, ctx);
    }
}

/// Ends an order that still holds a reservation: release the stock, drop the payment.
pub(super) fn end_unpaid(
    s: &mut OrderState,
    p: &Placement,
    ctx: &mut Ctx,
    to: OrderStatus,
    reason: &str,
) {
    s.set(to, ctx.now_ms);
    s.cancel_reason = Some(reason.to_string());
    release_all(p, ctx);
    // Abandon as soon as the payment was asked for, even before PAYMENT_PROCESSING came back:
    // an unanswered charge otherwise retries for ever. The ask precedes this in its queue.
    if s.history
        .iter()
        .any(|(st, _)| *st == OrderStatus::AwaitingPayment)
    {
        ctx.send(
            payment(ctx),
            "PAYMENT_ABANDON",
            Command::Payment(PaymentCommand::Abandon),
        );
    }
    notify(p, ctx, "ORDER_CANCELLED");
}

/// DELIVERED: record it and tell the customer and their review slot of each SKU (the
/// customer may now review those products).
pub(super) fn delivered(s: &mut OrderState, p: &Placement, ctx: &mut Ctx) {
    s.set(OrderStatus::Delivered, ctx.now_ms);
    notify(p, ctx, "ORDER_DELIVERED");
    let order_id = ctx.me.id.clone();
    let skus: std::collections::BTreeSet<&str> = p.lines.iter().map(|l| l.sku.as_str()).collect();
    for sku in skus {
        ctx.send(
            slot_ref(sku, &p.customer),
            "ORDER_DELIVERED",
            Command::ReviewSlot(ReviewSlotCommand::Delivered {
                order_id: order_id.clone(),
            }),
        );
    }
}

pub(super) fn payment(ctx: &Ctx) -> EntityRef {
    EntityRef::new(EntityKind::Payment, ctx.me.id.clone())
}

pub(super) fn view(s: &OrderState, ctx: &Ctx) -> Result<Outcome, DomainError> {
    let p = s
        .placement
        .as_ref()
        .ok_or_else(|| DomainError::NotFound(format!("order {}", ctx.me.id)))?;
    let status = s
        .status()
        .map(OrderStatus::name)
        .unwrap_or("PENDING")
        .to_string();
    let confirmed = s
        .history
        .iter()
        .any(|(st, _)| *st == OrderStatus::Confirmed);
    reply(Reply::Order(OrderView {
        order_id: ctx.me.id.clone(),
        customer: p.customer.clone(),
        status,
        lines: p.lines.clone(),
        total_minor: p.total_minor(),
        payment_method: p.method.name().to_string(),
        payment_status: s.payment_status.to_string(),
        shipment_id: confirmed.then(|| shipment_id_for_order(&ctx.me.id)),
        history: s
            .history
            .iter()
            .map(|(st, at)| (st.name().to_string(), *at))
            .collect(),
        cancel_reason: s.cancel_reason.clone(),
        settlement: s.settlement.clone(),
        shipping: p.shipping.clone(),
        refunds: s.refunds.clone(),
    }))
}

pub(super) fn place(s: &mut OrderState, p: Placement, ctx: &mut Ctx) -> Result<(), DomainError> {
    if let Some(existing) = &s.placement {
        return if existing.request_hash == p.request_hash {
            Ok(())
        } else {
            Err(DomainError::IdempotencyMismatch)
        };
    }
    if p.lines.is_empty() {
        return Err(DomainError::Conflict("the cart is empty".into()));
    }
    to_each_stock_item(&p, ctx, "ORDER_PLACED", |order_id, l| {
        StockCommand::Reserve {
            order_id,
            quantity: u64::from(l.quantity),
        }
    });
    let order_id = ctx.me.id.clone();
    ctx.timer(
        ctx.now_ms + ctx.config.reservation_ttl_ms,
        "RESERVATION_EXPIRY",
        Command::Order(OrderCommand::ExpireReservation),
    );
    ctx.send(
        EntityRef::new(EntityKind::Account, p.customer.clone()),
        "ORDER_PLACED",
        Command::Account(AccountCommand::OrderPlaced { order_id }),
    );
    notify(&p, ctx, "ORDER_PLACED");
    s.history.push((OrderStatus::Pending, ctx.now_ms));
    s.payment_status = OrderPaymentStatus::None;
    s.placement = Some(p);
    Ok(())
}

/// Called when every line has answered.
pub(super) fn stock_settled(s: &mut OrderState, p: &Placement, ctx: &mut Ctx) {
    if let Some((sku, available)) = s.rejection.clone() {
        let requested = p
            .lines
            .iter()
            .find(|l| l.sku == sku)
            .map(|l| u64::from(l.quantity))
            .unwrap_or(0);
        s.settlement = Some(Settlement::OutOfStock {
            sku,
            requested,
            available,
        });
        end_unpaid(s, p, ctx, OrderStatus::Cancelled, "out_of_stock");
        ctx.send(
            EntityRef::new(EntityKind::Cart, p.customer.clone()),
            "CART_RESTORE",
            Command::Cart(CartCommand::Restore {
                order_id: ctx.me.id.clone(),
            }),
        );
        return;
    }
    s.set(OrderStatus::StockReserved, ctx.now_ms);
    s.set(OrderStatus::AwaitingPayment, ctx.now_ms);
    s.settlement = Some(Settlement::Accepted(OrderStatus::AwaitingPayment));
    let order_id = ctx.me.id.clone();
    ctx.send(
        payment(ctx),
        "PAYMENT_REQUESTED",
        Command::Payment(PaymentCommand::Authorize {
            customer: p.customer.clone(),
            amount_minor: p.total_minor(),
            method: p.method.clone(),
        }),
    );
    ctx.timer(
        ctx.now_ms + ctx.config.payment_timeout_ms,
        "PAYMENT_TIMEOUT",
        Command::Order(OrderCommand::PaymentTimeout),
    );
    ctx.send(
        EntityRef::new(EntityKind::Cart, p.customer.clone()),
        "CART_CHECKED_OUT",
        Command::Cart(CartCommand::CheckedOut {
            order_id,
            lines: p
                .lines
                .iter()
                .map(|l| (l.sku.clone(), l.quantity))
                .collect(),
        }),
    );
}
