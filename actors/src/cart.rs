//! Cart: a shopper's cart, keyed by user id.

use crate::command::Reply;
use crate::entity::{reply, Ctx, Outcome};
use crate::error::{invalid, DomainError};
use crate::limits::{MAX_CART_LINES, MAX_LINE_QUANTITY};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The cart's lines: SKU → quantity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartState {
    /// Lines by SKU.
    pub lines: BTreeMap<String, u32>,
    /// Orders whose lines were already taken out (so a redelivered checkout does nothing).
    pub checked_out: Vec<String>,
    /// Lines handed to a checkout and not yet confirmed by its order: order id → lines.
    pub held: BTreeMap<String, Vec<(String, u32)>>,
}

/// How long a checkout may hold the cart's lines before they return to the cart
/// (a checkout that never reached its order).
pub const HOLD_TTL_MS: u64 = 10 * 60 * 1000;

/// Most checkouts holding lines at once.
pub const MAX_HELD: usize = 8;

/// Commands for a Cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CartCommand {
    /// Add units of a SKU (the edge checks the SKU exists).
    AddItem {
        /// The SKU.
        sku: String,
        /// Units to add.
        quantity: u32,
    },
    /// Remove a SKU's line.
    RemoveItem {
        /// The SKU.
        sku: String,
    },
    /// Hand every line to a checkout, atomically: the lines leave the cart and are held for
    /// the order; a repeat with the same order id answers the same lines.
    Hold {
        /// The order the checkout will place.
        order_id: String,
    },
    /// Give a checkout's held lines back to the cart (its order was refused).
    Restore {
        /// The order.
        order_id: String,
    },
    /// Durable timer: a hold nobody confirmed or restored returns to the cart.
    HoldExpired {
        /// The order.
        order_id: String,
    },
    /// The order has its stock: forget its held lines (sent by the order once stock is
    /// reserved). Lines of an order that was never held are subtracted from the cart.
    CheckedOut {
        /// The order.
        order_id: String,
        /// Lines bought: SKU and quantity.
        lines: Vec<(String, u32)>,
    },
    /// Read the cart.
    Get,
}

/// Handles one command.
pub fn handle(s: &mut CartState, cmd: CartCommand, ctx: &mut Ctx) -> Result<Outcome, DomainError> {
    match cmd {
        CartCommand::AddItem { sku, quantity } => {
            if quantity == 0 || quantity > MAX_LINE_QUANTITY {
                return Err(invalid(
                    "quantity",
                    format!("must be 1..={MAX_LINE_QUANTITY}"),
                ));
            }
            if !s.lines.contains_key(&sku) && s.lines.len() >= MAX_CART_LINES {
                return Err(invalid(
                    "sku",
                    format!("a cart holds at most {MAX_CART_LINES} lines"),
                ));
            }
            let q = s.lines.get(&sku).copied().unwrap_or(0) + quantity;
            if q > MAX_LINE_QUANTITY {
                return Err(invalid(
                    "quantity",
                    format!("at most {MAX_LINE_QUANTITY} of one SKU"),
                ));
            }
            s.lines.insert(sku, q);
        }
        CartCommand::RemoveItem { sku } => {
            if s.lines.remove(&sku).is_none() {
                return Err(DomainError::NotFound(format!("cart line {sku}")));
            }
        }
        CartCommand::Hold { order_id } => {
            if let Some(lines) = s.held.get(&order_id) {
                return reply(Reply::Cart(lines.clone()));
            }
            if s.checked_out.contains(&order_id) {
                return reply(Reply::Cart(Vec::new()));
            }
            if s.lines.is_empty() {
                return reply(Reply::Cart(Vec::new()));
            }
            if s.held.len() >= MAX_HELD {
                return Err(DomainError::Conflict(format!(
                    "at most {MAX_HELD} checkouts of one cart can be in progress"
                )));
            }
            let lines: Vec<(String, u32)> = std::mem::take(&mut s.lines).into_iter().collect();
            s.held.insert(order_id.clone(), lines.clone());
            ctx.timer(
                ctx.now_ms + HOLD_TTL_MS,
                "CART_HOLD_EXPIRED",
                crate::command::Command::Cart(CartCommand::HoldExpired { order_id }),
            );
            return reply(Reply::Cart(lines));
        }
        CartCommand::Restore { order_id } | CartCommand::HoldExpired { order_id } => {
            if let Some(lines) = s.held.remove(&order_id) {
                for (sku, q) in lines {
                    put_back(s, sku, q);
                }
            }
        }
        CartCommand::CheckedOut { order_id, lines } => {
            if s.held.remove(&order_id).is_none() && !s.checked_out.contains(&order_id) {
                for (sku, q) in lines {
                    if let Some(have) = s.lines.get_mut(&sku) {
                        *have = have.saturating_sub(q);
                        if *have == 0 {
                            s.lines.remove(&sku);
                        }
                    }
                }
            }
            if !s.checked_out.contains(&order_id) {
                s.checked_out.push(order_id);
                if s.checked_out.len() > 50 {
                    s.checked_out.remove(0);
                }
            }
        }
        CartCommand::Get => {}
    }
    reply(Reply::Cart(
        s.lines.iter().map(|(k, v)| (k.clone(), *v)).collect(),
    ))
}

/// Returns held units to the cart, within the cart's limits (what does not fit is dropped:
/// the shopper sees the cart as it can be).
fn put_back(s: &mut CartState, sku: String, q: u32) {
    if !s.lines.contains_key(&sku) && s.lines.len() >= MAX_CART_LINES {
        return;
    }
    let have = s.lines.entry(sku).or_insert(0);
    *have = have.saturating_add(q).min(MAX_LINE_QUANTITY);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::DomainConfig;
    use crate::{EntityKind, EntityRef};
    use proptest::prelude::*;

    fn arb_cmd() -> impl Strategy<Value = CartCommand> {
        let sku = (0u8..60).prop_map(|i| format!("SKU-{i}"));
        prop_oneof![
            (sku.clone(), 0u32..120)
                .prop_map(|(sku, quantity)| CartCommand::AddItem { sku, quantity }),
            sku.clone().prop_map(|sku| CartCommand::RemoveItem { sku }),
            (
                (0u8..5).prop_map(|o| format!("o{o}")),
                prop::collection::vec((sku, 0u32..10), 0..4)
            )
                .prop_map(|(order_id, lines)| CartCommand::CheckedOut { order_id, lines }),
            (0u8..5).prop_map(|o| CartCommand::Hold {
                order_id: format!("o{o}")
            }),
            (0u8..5).prop_map(|o| CartCommand::Restore {
                order_id: format!("o{o}")
            }),
            (0u8..5).prop_map(|o| CartCommand::HoldExpired {
                order_id: format!("o{o}")
            }),
        ]
    }

    proptest! {
        #[test]
        fn any_command_sequence_keeps_the_cart_within_its_limits(cmds in prop::collection::vec(arb_cmd(), 0..200)) {
            let me = EntityRef::new(EntityKind::Cart, "u");
            let cfg = DomainConfig::default();
            let mut s = CartState::default();
            for c in cmds {
                let mut ctx = Ctx::new(0, &me, 1, &cfg);
                let mut work = s.clone();
                if handle(&mut work, c, &mut ctx).is_ok() {
                    s = work;
                }
                prop_assert!(s.lines.len() <= MAX_CART_LINES);
                prop_assert!(s.lines.values().all(|q| (1..=MAX_LINE_QUANTITY).contains(q)));
                prop_assert!(s.checked_out.len() <= 50);
                prop_assert!(s.held.len() <= MAX_HELD);
            }
        }
    }

    fn run(s: &mut CartState, cmd: CartCommand) -> Vec<(String, u32)> {
        let me = EntityRef::new(EntityKind::Cart, "u");
        let cfg = DomainConfig::default();
        let mut ctx = Ctx::new(0, &me, 1, &cfg);
        match handle(s, cmd, &mut ctx) {
            Ok(Outcome::Reply(Reply::Cart(lines))) => lines,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn add(sku: &str, quantity: u32) -> CartCommand {
        CartCommand::AddItem {
            sku: sku.into(),
            quantity,
        }
    }

    #[test]
    fn an_item_added_while_a_checkout_is_in_flight_stays_in_the_cart() {
        let mut s = CartState::default();
        run(&mut s, add("A", 1));
        let held = run(
            &mut s,
            CartCommand::Hold {
                order_id: "o1".into(),
            },
        );
        assert_eq!(held, vec![("A".to_string(), 1)]);
        // The shopper adds again before the order's CheckedOut arrives.
        run(&mut s, add("A", 1));
        let after = run(
            &mut s,
            CartCommand::CheckedOut {
                order_id: "o1".into(),
                lines: held.clone(),
            },
        );
        assert_eq!(after, vec![("A".to_string(), 1)]);
        // A redelivered CheckedOut and a repeated Hold change nothing.
        run(
            &mut s,
            CartCommand::CheckedOut {
                order_id: "o1".into(),
                lines: held,
            },
        );
        assert_eq!(
            run(
                &mut s,
                CartCommand::Hold {
                    order_id: "o1".into()
                }
            ),
            vec![]
        );
        assert_eq!(run(&mut s, CartCommand::Get), vec![("A".to_string(), 1)]);
    }

    #[test]
    fn a_refused_checkout_gives_its_lines_back_once() {
        let mut s = CartState::default();
        run(&mut s, add("A", 2));
        run(
            &mut s,
            CartCommand::Hold {
                order_id: "o1".into(),
            },
        );
        assert_eq!(run(&mut s, CartCommand::Get), vec![]);
        assert_eq!(
            run(
                &mut s,
                CartCommand::Hold {
                    order_id: "o1".into()
                }
            ),
            vec![("A".to_string(), 2)],
            "a retried checkout gets the same lines"
        );
        run(
            &mut s,
            CartCommand::Restore {
                order_id: "o1".into(),
            },
        );
        run(
            &mut s,
            CartCommand::HoldExpired {
                order_id: "o1".into(),
            },
        );
        assert_eq!(run(&mut s, CartCommand::Get), vec![("A".to_string(), 2)]);
    }
}
