//! Refunds of a delivered order, in full or per line: checked against what was paid and
//! what earlier refunds took, then asked of the payment.

use super::steps::payment;
use super::{
    OrderRefund, OrderState, OrderStatus, Placement, MAX_REFUNDS_PER_ORDER, RETURN_WINDOW_MS,
};
use crate::command::Command;
use crate::entity::Ctx;
use crate::error::DomainError;
use crate::money::sum_minor;
use crate::payment::PaymentCommand;
use std::collections::BTreeMap;

/// Validates and records a refund of a delivered order, and asks the payment for it.
pub(super) fn request_refund(
    s: &mut OrderState,
    p: &Placement,
    ctx: &mut Ctx,
    refund_id: String,
    request_hash: String,
    lines: Vec<(String, u32)>,
    by_admin: bool,
) -> Result<(), DomainError> {
    if let Some(r) = s.refunds.iter().find(|r| r.refund_id == refund_id) {
        return if r.request_hash == request_hash {
            Ok(())
        } else {
            Err(DomainError::IdempotencyMismatch)
        };
    }
    let delivered_at = s
        .history
        .iter()
        .find(|(st, _)| *st == OrderStatus::Delivered)
        .map(|(_, at)| *at);
    let Some(delivered_at) = delivered_at else {
        return Err(DomainError::Conflict(
            "only a delivered order can be refunded; cancel it instead".into(),
        ));
    };
    if !by_admin && ctx.now_ms > delivered_at.saturating_add(RETURN_WINDOW_MS) {
        return Err(DomainError::Conflict(
            "the 30-day return window has closed".into(),
        ));
    }
    if s.refunds.len() >= MAX_REFUNDS_PER_ORDER {
        return Err(DomainError::Conflict(format!(
            "an order takes at most {MAX_REFUNDS_PER_ORDER} refunds"
        )));
    }
    let asked = sum_minor(s.refunds.iter().map(|r| r.amount_minor));
    let remaining = if agora_seams::planted::is_planted(agora_seams::planted::Bug::SkipRefundBound)
    {
        // The planted bug: earlier refunds are not taken off what may be refunded.
        p.total_minor()
    } else {
        p.total_minor().saturating_sub(asked)
    };
    let amount_minor = if lines.is_empty() {
        remaining
    } else {
        lines_minor(s, p, &lines)?
    };
    if amount_minor == 0 || amount_minor > remaining {
        return Err(DomainError::Conflict(format!(
            "refund exceeds what was paid: {remaining} minor units left to refund"
        )));
    }
    s.refunds.push(OrderRefund {
        refund_id: refund_id.clone(),
        request_hash,
        lines,
        amount_minor,
        requested_at_ms: ctx.now_ms,
        completed_at_ms: None,
    });
    ctx.send(
        payment(ctx),
        "REFUND_REQUESTED",
        Command::Payment(PaymentCommand::RefundPart {
            refund_id,
            amount_minor,
        }),
    );
    Ok(())
}

/// What refunding `lines` (SKU, units) of the order costs, checked against the units each
/// line still has to refund.
fn lines_minor(s: &OrderState, p: &Placement, lines: &[(String, u32)]) -> Result<u64, DomainError> {
    let mut amount = 0u64;
    let mut wanted: BTreeMap<&str, u64> = BTreeMap::new();
    for (i, (sku, qty)) in lines.iter().enumerate() {
        let Some(line) = p.lines.iter().find(|l| l.sku == *sku) else {
            return Err(crate::error::invalid(
                &format!("lines[{i}].sku"),
                format!("{sku} is not in this order"),
            ));
        };
        if *qty == 0 {
            return Err(crate::error::invalid(
                &format!("lines[{i}].quantity"),
                "at least 1",
            ));
        }
        let units = wanted.entry(sku.as_str()).or_default();
        *units = units.saturating_add(u64::from(*qty));
        let line_minor = u64::from(*qty).saturating_mul(line.unit_price_minor);
        amount = amount.saturating_add(line_minor);
    }
    let full = s.refunds.iter().any(|r| r.lines.is_empty());
    for (sku, qty) in wanted {
        let ordered = p
            .lines
            .iter()
            .find(|l| l.sku == sku)
            .map_or(0, |l| u64::from(l.quantity));
        let before: u64 = s
            .refunds
            .iter()
            .flat_map(|r| r.lines.iter())
            .filter(|(k, _)| k == sku)
            .map(|(_, q)| u64::from(*q))
            .sum();
        if full || before.saturating_add(qty) > ordered {
            return Err(DomainError::Conflict(format!(
                "refund exceeds what was paid: {sku} has {} of {ordered} units left to refund",
                if full {
                    0
                } else {
                    ordered.saturating_sub(before)
                }
            )));
        }
    }
    Ok(amount)
}
