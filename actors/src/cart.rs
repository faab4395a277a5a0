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
}

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
    /// Take an order's lines out of the cart (sent by the order once stock is reserved).
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
pub fn handle(s: &mut CartState, cmd: CartCommand, _ctx: &mut Ctx) -> Result<Outcome, DomainError> {
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
        CartCommand::CheckedOut { order_id, lines } => {
            if !s.checked_out.contains(&order_id) {
                for (sku, q) in lines {
                    if let Some(have) = s.lines.get_mut(&sku) {
                        *have = have.saturating_sub(q);
                        if *have == 0 {
                            s.lines.remove(&sku);
                        }
                    }
                }
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
            }
        }
    }
}
