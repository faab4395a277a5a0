//! The state of any entity kind in one enum, and the one function that runs a command
//! against it: on a working copy, so that a refused command changes nothing.

use crate::account::{self, AccountState};
use crate::cart::{self, CartState};
use crate::command::Command;
use crate::entity::{Ctx, Outcome};
use crate::error::DomainError;
use crate::inbox::{self, InboxState};
use crate::order::{self, OrderState};
use crate::payment::{self, PaymentState};
use crate::product::{self, ProductState};
use crate::review::{self, ReviewBoardState};
use crate::shipment::{self, ShipmentState};
use crate::stock::{self, StockState};
use crate::EntityKind;
use serde::{Deserialize, Serialize};

/// The state of one entity, whatever its kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntityState {
    /// An Account.
    Account(AccountState),
    /// A Product.
    Product(ProductState),
    /// A StockItem.
    Stock(StockState),
    /// A Cart.
    Cart(CartState),
    /// An Order.
    Order(OrderState),
    /// A Payment.
    Payment(PaymentState),
    /// A Shipment.
    Shipment(ShipmentState),
    /// An Inbox.
    Inbox(InboxState),
    /// A ReviewBoard.
    ReviewBoard(ReviewBoardState),
}

/// The result of running one command.
#[derive(Debug)]
pub struct Handled {
    /// What to answer.
    pub outcome: Outcome,
    /// Whether the state changed (and so must be written).
    pub changed: bool,
}

/// Errors encoding or decoding stored state.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The bytes do not decode.
    #[error("cannot decode entity state: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    /// The state does not encode.
    #[error("cannot encode entity state: {0}")]
    Encode(#[from] bincode::error::EncodeError),
}

fn run<S: Clone + PartialEq, C>(
    state: &mut S,
    cmd: C,
    ctx: &mut Ctx,
    f: fn(&mut S, C, &mut Ctx) -> Result<Outcome, DomainError>,
) -> Result<Handled, DomainError> {
    let mut work = state.clone();
    let outcome = f(&mut work, cmd, ctx)?;
    let changed = work != *state;
    if changed {
        *state = work;
    }
    Ok(Handled { outcome, changed })
}

impl EntityState {
    /// The empty state of a kind (an entity that was never written).
    pub fn empty(kind: EntityKind) -> Self {
        match kind {
            EntityKind::Account => EntityState::Account(AccountState::default()),
            EntityKind::Product => EntityState::Product(ProductState::default()),
            EntityKind::StockItem => EntityState::Stock(StockState::default()),
            EntityKind::Cart => EntityState::Cart(CartState::default()),
            EntityKind::Order => EntityState::Order(OrderState::default()),
            EntityKind::Payment => EntityState::Payment(PaymentState::default()),
            EntityKind::Shipment => EntityState::Shipment(ShipmentState::default()),
            EntityKind::Inbox => EntityState::Inbox(InboxState::default()),
            EntityKind::ReviewBoard => EntityState::ReviewBoard(ReviewBoardState::default()),
        }
    }

    /// Runs `cmd`. On error the state is untouched and the context's outbox must be dropped.
    pub fn handle(&mut self, cmd: Command, ctx: &mut Ctx) -> Result<Handled, DomainError> {
        match (self, cmd) {
            (EntityState::Account(s), Command::Account(c)) => run(s, c, ctx, account::handle),
            (EntityState::Product(s), Command::Product(c)) => run(s, c, ctx, product::handle),
            (EntityState::Stock(s), Command::Stock(c)) => run(s, c, ctx, stock::handle),
            (EntityState::Cart(s), Command::Cart(c)) => run(s, c, ctx, cart::handle),
            (EntityState::Order(s), Command::Order(c)) => run(s, c, ctx, order::handle),
            (EntityState::Payment(s), Command::Payment(c)) => run(s, c, ctx, payment::handle),
            (EntityState::Shipment(s), Command::Shipment(c)) => run(s, c, ctx, shipment::handle),
            (EntityState::Inbox(s), Command::Inbox(c)) => run(s, c, ctx, inbox::handle),
            (EntityState::ReviewBoard(s), Command::Review(c)) => run(s, c, ctx, review::handle),
            (_, c) => Err(DomainError::WrongKind {
                kind: ctx.me.kind.name().to_string(),
                command: c.name(),
            }),
        }
    }

    /// Encodes for storage (bincode 2, serde mode).
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        Ok(bincode::serde::encode_to_vec(
            self,
            bincode::config::standard(),
        )?)
    }

    /// Decodes from storage.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let (s, _) = bincode::serde::decode_from_slice(bytes, bincode::config::standard())?;
        Ok(s)
    }

    /// The state as JSON, for operators.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}
