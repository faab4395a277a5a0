//! The effect ledger's checkers: what the simulated payment gateway was made to do, kept by
//! the harness across every node and restart (one gateway behind the whole cluster), set
//! against the orders on the disks. Money is the external effect a shop cannot take back:
//! - at most one successful charge per order, of the order's total, for an order that exists;
//! - no refund asked above what the order's charge took (the gateway refuses it, as a real
//!   one does, and the ledger keeps the attempt);
//! - once every saga is over, each order's money is settled: a delivered order keeps its
//!   total less the refunds it granted, a cancelled, expired or refunded one keeps nothing.

use crate::check::{Violation, World};
use agora_actors::gateway::{ChargeOutcome, GatewayEffect};
use agora_actors::order::OrderStatus;
use std::collections::BTreeMap;

/// Money moved for one order: successful charges (key, amount) and the sum refunded.
#[derive(Debug, Default)]
struct OrderMoney {
    charges: Vec<(String, u64)>,
    refunded_minor: u64,
}

fn by_order(effects: &[GatewayEffect]) -> (BTreeMap<&str, OrderMoney>, Vec<String>) {
    let mut money: BTreeMap<&str, OrderMoney> = BTreeMap::new();
    let mut above = Vec::new();
    for e in effects {
        match e {
            GatewayEffect::Charge {
                key,
                order_id,
                amount_minor,
                outcome: ChargeOutcome::Succeeded,
            } => money
                .entry(order_id)
                .or_default()
                .charges
                .push((key.clone(), *amount_minor)),
            GatewayEffect::Charge { .. } => {}
            GatewayEffect::Refund {
                order_id,
                amount_minor,
                ..
            } => money.entry(order_id).or_default().refunded_minor += amount_minor,
            GatewayEffect::RefundAboveCharge {
                key,
                order_id,
                amount_minor,
                refundable_minor,
            } => above.push(format!(
                "{order_id}: refund {key} of {amount_minor} asked with {refundable_minor} refundable"
            )),
        }
    }
    (money, above)
}

/// Checks the ledger's `effects` against `world`; `settled` says every saga is over (the
/// world is quiescent), so money must be settled too.
pub fn check(world: &World, effects: &[GatewayEffect], settled: bool) -> Vec<Violation> {
    let mut out = Vec::new();
    let (money, above) = by_order(effects);
    for detail in above {
        out.push(violation("refund-within-charge", detail));
    }
    for (order_id, m) in &money {
        if m.charges.len() > 1 {
            out.push(violation(
                "one-charge-per-order",
                format!(
                    "{order_id} charged {} times: {:?}",
                    m.charges.len(),
                    m.charges
                ),
            ));
        }
        let order = world.order(order_id);
        let total = order
            .and_then(|o| o.placement.as_ref())
            .map(|p| p.total_minor());
        for (key, amount) in &m.charges {
            if total != Some(*amount) {
                out.push(violation(
                    "charge-matches-order",
                    format!("{order_id}: {key} charged {amount}, the order's total is {total:?}"),
                ));
            }
        }
        let Some(status) = order.and_then(|o| o.status()) else {
            continue;
        };
        let charged: u64 = m.charges.iter().map(|(_, a)| a).sum();
        let kept = charged.saturating_sub(m.refunded_minor);
        // A delivered order keeps its total less the refunds it granted (asked of the gateway
        // once every saga is over).
        let granted: u64 = order
            .map(|o| o.refunds.iter().map(|r| r.amount_minor).sum())
            .unwrap_or(0);
        let due = match status {
            OrderStatus::Delivered => total.unwrap_or(0).saturating_sub(granted),
            _ => 0,
        };
        if settled && status.is_terminal() && kept != due {
            out.push(violation(
                "money-settled",
                format!(
                    "{order_id} ended {status:?} keeping {kept} (charged {charged}, refunded {}), due {due}",
                    m.refunded_minor
                ),
            ));
        }
    }
    out
}

/// How many effects of each kind the ledger holds (for the run's report).
pub fn counts(effects: &[GatewayEffect]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in effects {
        let kind = match e {
            GatewayEffect::Charge { outcome, .. } => format!("charge-{outcome:?}").to_lowercase(),
            GatewayEffect::Refund { .. } => "refund".to_string(),
            GatewayEffect::RefundAboveCharge { .. } => "refund-above-charge".to_string(),
        };
        *out.entry(kind).or_insert(0) += 1;
    }
    out
}

fn violation(invariant: &'static str, detail: String) -> Violation {
    Violation { invariant, detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(order: &str, amount: u64) -> GatewayEffect {
        GatewayEffect::Charge {
            key: format!("pay:{order}:{amount}"),
            order_id: order.into(),
            amount_minor: amount,
            outcome: ChargeOutcome::Succeeded,
        }
    }

    #[test]
    fn two_charges_of_one_order_and_an_over_refund_are_reported() {
        let world = World::default();
        let effects = [
            charge("o1", 500),
            charge("o1", 500),
            GatewayEffect::RefundAboveCharge {
                key: "o1:refund:r9".into(),
                order_id: "o1".into(),
                amount_minor: 2_000,
                refundable_minor: 1_000,
            },
        ];
        let found: Vec<&str> = check(&world, &effects, false)
            .iter()
            .map(|v| v.invariant)
            .collect();
        assert!(found.contains(&"one-charge-per-order"), "{found:?}");
        assert!(found.contains(&"refund-within-charge"), "{found:?}");
        // The order is on no disk: money taken for nothing.
        assert!(found.contains(&"charge-matches-order"), "{found:?}");
    }
}
