//! StockItem: the stock of one SKU. Invariant (asserted after every change):
//! `available + reserved + sold == received - written_off`, `reserved == Σ reservations`.

use crate::command::{Command, Reply};
use crate::entity::{reply, Ctx, Outcome};
use crate::error::{invalid, DomainError};
use crate::limits::MAX_STOCK_MOVE;
use crate::order::OrderCommand;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Stock of one SKU.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockState {
    /// Units that can be reserved.
    pub available: u64,
    /// Units held for orders awaiting payment.
    pub reserved: u64,
    /// Units sold (committed).
    pub sold: u64,
    /// Units ever received.
    pub received: u64,
    /// Units ever written off.
    pub written_off: u64,
    /// Open reservations by order id.
    pub reservations: BTreeMap<String, u64>,
}

impl StockState {
    /// Checks the conservation invariant; panics (in every build) if it is broken.
    pub fn assert_invariants(&self) {
        assert_eq!(
            self.available + self.reserved + self.sold,
            self.received - self.written_off,
            "stock conservation broken: {self:?}"
        );
        assert_eq!(
            self.reserved,
            self.reservations.values().sum::<u64>(),
            "reserved total does not match reservations: {self:?}"
        );
    }

    /// Units physically held (available plus reserved).
    pub fn on_hand(&self) -> u64 {
        self.available + self.reserved
    }
}

/// Commands for a StockItem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StockCommand {
    /// Goods arrived (admin).
    Receive {
        /// Units received.
        quantity: u64,
    },
    /// Goods lost or damaged (admin); only available units can be written off.
    WriteOff {
        /// Units written off.
        quantity: u64,
    },
    /// Hold units for an order (STOCK_RESERVED or STOCK_REJECTED goes back to the order).
    Reserve {
        /// The order.
        order_id: String,
        /// Units wanted.
        quantity: u64,
    },
    /// Give an order's held units back (failure, cancel, expiry).
    Release {
        /// The order.
        order_id: String,
    },
    /// Turn an order's held units into sold units (payment succeeded).
    Commit {
        /// The order.
        order_id: String,
    },
    /// Put sold units back on the shelf (an order cancelled after confirmation).
    Restock {
        /// The order.
        order_id: String,
        /// Units returned.
        quantity: u64,
    },
    /// Read the stock.
    Get,
}

/// The stock of one SKU as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockView {
    /// The SKU.
    pub sku: String,
    /// available + reserved.
    pub on_hand: u64,
    /// Held for orders.
    pub reserved: u64,
    /// Can be reserved.
    pub available: u64,
    /// Sold.
    pub sold: u64,
}

fn view(sku: &str, s: &StockState) -> Reply {
    Reply::Stock(StockView {
        sku: sku.to_string(),
        on_hand: s.on_hand(),
        reserved: s.reserved,
        available: s.available,
        sold: s.sold,
    })
}

fn check_quantity(quantity: u64) -> Result<(), DomainError> {
    if quantity == 0 || quantity > MAX_STOCK_MOVE {
        return Err(invalid("quantity", format!("must be 1..={MAX_STOCK_MOVE}")));
    }
    Ok(())
}

/// Handles one command.
pub fn handle(
    s: &mut StockState,
    cmd: StockCommand,
    ctx: &mut Ctx,
) -> Result<Outcome, DomainError> {
    let sku = ctx.me.id.clone();
    match cmd {
        StockCommand::Receive { quantity } => {
            check_quantity(quantity)?;
            s.received += quantity;
            s.available += quantity;
        }
        StockCommand::WriteOff { quantity } => {
            check_quantity(quantity)?;
            if quantity > s.available {
                return Err(DomainError::Conflict(format!(
                    "cannot write off {quantity}: only {} available",
                    s.available
                )));
            }
            s.written_off += quantity;
            s.available -= quantity;
        }
        StockCommand::Reserve { order_id, quantity } => {
            let order = crate::EntityRef::new(crate::EntityKind::Order, order_id.clone());
            if s.reservations.contains_key(&order_id) {
                // Already held for this order: answer the same way again.
                ctx.send(
                    order,
                    "STOCK_RESERVED",
                    Command::Order(OrderCommand::StockReserved { sku: sku.clone() }),
                );
            } else if quantity == 0
                || (quantity > s.available
                    && !agora_seams::planted::is_planted(agora_seams::planted::Bug::Oversell))
            {
                ctx.send(
                    order,
                    "STOCK_REJECTED",
                    Command::Order(OrderCommand::StockRejected {
                        sku: sku.clone(),
                        available: s.available,
                    }),
                );
            } else {
                s.available = s.available.saturating_sub(quantity);
                s.reserved += quantity;
                s.reservations.insert(order_id, quantity);
                ctx.send(
                    order,
                    "STOCK_RESERVED",
                    Command::Order(OrderCommand::StockReserved { sku: sku.clone() }),
                );
            }
        }
        StockCommand::Release { order_id } => {
            if let Some(q) = s.reservations.remove(&order_id) {
                s.reserved -= q;
                s.available += q;
            }
        }
        StockCommand::Commit { order_id } => {
            if let Some(q) = s.reservations.remove(&order_id) {
                s.reserved -= q;
                s.sold += q;
            }
        }
        StockCommand::Restock { quantity, .. } => {
            let q = quantity.min(s.sold);
            s.sold -= q;
            s.available += q;
        }
        StockCommand::Get => {}
    }
    s.assert_invariants();
    reply(view(&sku, s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::DomainConfig;
    use crate::{EntityKind, EntityRef};
    use proptest::prelude::*;

    fn run(s: &mut StockState, cmd: StockCommand) -> Result<Outcome, DomainError> {
        let me = EntityRef::new(EntityKind::StockItem, "SKU");
        let cfg = DomainConfig::default();
        let mut ctx = Ctx::new(0, &me, 1, &cfg);
        let mut work = s.clone();
        let r = handle(&mut work, cmd, &mut ctx);
        if r.is_ok() {
            *s = work;
        }
        r
    }

    fn arb_cmd() -> impl Strategy<Value = StockCommand> {
        let order = prop::sample::select(vec!["o1", "o2", "o3", "o4"]).prop_map(String::from);
        prop_oneof![
            (0u64..50).prop_map(|quantity| StockCommand::Receive { quantity }),
            (0u64..50).prop_map(|quantity| StockCommand::WriteOff { quantity }),
            (order.clone(), 0u64..30)
                .prop_map(|(order_id, quantity)| StockCommand::Reserve { order_id, quantity }),
            order
                .clone()
                .prop_map(|order_id| StockCommand::Release { order_id }),
            order
                .clone()
                .prop_map(|order_id| StockCommand::Commit { order_id }),
            (order, 0u64..30)
                .prop_map(|(order_id, quantity)| StockCommand::Restock { order_id, quantity }),
        ]
    }

    proptest! {
        #[test]
        fn any_command_sequence_conserves_stock(cmds in prop::collection::vec(arb_cmd(), 0..60)) {
            let mut s = StockState::default();
            for c in cmds {
                let before = s.clone();
                if run(&mut s, c).is_err() {
                    prop_assert_eq!(&s, &before, "a refused command changed state");
                }
                s.assert_invariants();
            }
        }

        #[test]
        fn reserve_never_exceeds_available(received in 0u64..20, wants in prop::collection::vec(1u64..10, 1..10)) {
            let mut s = StockState::default();
            if received > 0 { run(&mut s, StockCommand::Receive { quantity: received }).unwrap(); }
            for (i, q) in wants.iter().enumerate() {
                run(&mut s, StockCommand::Reserve { order_id: format!("o{i}"), quantity: *q }).unwrap();
            }
            prop_assert!(s.reserved <= received);
        }
    }

    #[test]
    fn reserve_twice_for_one_order_holds_once() {
        let mut s = StockState::default();
        run(&mut s, StockCommand::Receive { quantity: 5 }).unwrap();
        run(
            &mut s,
            StockCommand::Reserve {
                order_id: "o".into(),
                quantity: 2,
            },
        )
        .unwrap();
        run(
            &mut s,
            StockCommand::Reserve {
                order_id: "o".into(),
                quantity: 2,
            },
        )
        .unwrap();
        assert_eq!(s.reserved, 2);
        run(
            &mut s,
            StockCommand::Release {
                order_id: "o".into(),
            },
        )
        .unwrap();
        run(
            &mut s,
            StockCommand::Release {
                order_id: "o".into(),
            },
        )
        .unwrap();
        assert_eq!(s.available, 5);
    }

    #[test]
    fn write_off_beyond_available_is_refused() {
        let mut s = StockState::default();
        run(&mut s, StockCommand::Receive { quantity: 1 }).unwrap();
        assert!(matches!(
            run(&mut s, StockCommand::WriteOff { quantity: 2 }),
            Err(DomainError::Conflict(_))
        ));
    }
}
