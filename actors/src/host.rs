//! The state of any entity kind in one enum, and `HeldState`, which runs a command against
//! it in place: the state's stored encoding tells whether it changed and undoes a refused
//! command, so nothing is cloned per command.

use crate::account::{self, AccountState};
use crate::cart::{self, CartState};
use crate::command::Command;
use crate::entity::{Ctx, Outcome};
use crate::error::DomainError;
use crate::history::{self, PageState};
use crate::inbox::{self, InboxState};
use crate::order::{self, OrderState};
use crate::payment::{self, PaymentState};
use crate::product::{self, ProductState};
use crate::review::{self, LegacyBoardState, ReviewBoardState};
use crate::review_slot::{self, ReviewSlotState};
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
    /// A ReviewBoard as stored before review slots (every review inside); its first
    /// command migrates it to `ReviewBoard` (`review::migrate`).
    LegacyReviewBoard(LegacyBoardState),
    /// A HistoryPage.
    HistoryPage(PageState),
    /// A ReviewBoard.
    ReviewBoard(ReviewBoardState),
    /// A ReviewSlot.
    ReviewSlot(ReviewSlotState),
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
            EntityKind::HistoryPage => EntityState::HistoryPage(PageState::default()),
            EntityKind::ReviewSlot => EntityState::ReviewSlot(ReviewSlotState::default()),
        }
    }

    /// Runs `cmd` in place. On error the state may be half changed: `HeldState` undoes it.
    fn handle_in_place(&mut self, cmd: Command, ctx: &mut Ctx) -> Result<Outcome, DomainError> {
        if let (EntityState::LegacyReviewBoard(old), Command::Review(_)) = (&mut *self, &cmd) {
            let migrated = review::migrate(std::mem::take(old), ctx);
            *self = EntityState::ReviewBoard(migrated);
        }
        match (self, cmd) {
            (EntityState::Account(s), Command::Account(c)) => account::handle(s, c, ctx),
            (EntityState::Product(s), Command::Product(c)) => product::handle(s, c, ctx),
            (EntityState::Stock(s), Command::Stock(c)) => stock::handle(s, c, ctx),
            (EntityState::Cart(s), Command::Cart(c)) => cart::handle(s, c, ctx),
            (EntityState::Order(s), Command::Order(c)) => order::handle(s, c, ctx),
            (EntityState::Payment(s), Command::Payment(c)) => payment::handle(s, c, ctx),
            (EntityState::Shipment(s), Command::Shipment(c)) => shipment::handle(s, c, ctx),
            (EntityState::Inbox(s), Command::Inbox(c)) => inbox::handle(s, c, ctx),
            (EntityState::ReviewBoard(s), Command::Review(c)) => review::handle(s, c, ctx),
            (EntityState::HistoryPage(s), Command::Page(c)) => history::handle(s, c, ctx),
            (EntityState::ReviewSlot(s), Command::ReviewSlot(c)) => review_slot::handle(s, c, ctx),
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

    /// Decodes from storage, within `MAX_STATE_BYTES`: a bad length prefix is an error, never
    /// an allocation without bound.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let limited = bincode::config::standard().with_limit::<MAX_STATE_BYTES>();
        let (s, _) = bincode::serde::decode_from_slice(bytes, limited)?;
        Ok(s)
    }

    /// The state as JSON, for operators.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// The most a decoded entity state may allocate (the store's record limit).
pub const MAX_STATE_BYTES: usize = 64 * 1024 * 1024;

thread_local! {
    /// Where a state is encoded after each command, before it is compared with the held one.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Encodes `state` into this thread's scratch buffer and hands it to `f`.
fn with_encoding<T>(
    state: &EntityState,
    f: impl FnOnce(&[u8]) -> T,
) -> Result<T, bincode::error::EncodeError> {
    SCRATCH.with(|scratch| {
        let mut buf = scratch.borrow_mut();
        buf.clear();
        bincode::serde::encode_into_std_write(state, &mut *buf, bincode::config::standard())?;
        Ok(f(&buf))
    })
}

/// An entity's state with its encoding (what is stored). The encoding is the change detector
/// (a command changed the state iff its encoding changed) and the undo record (a refused
/// command's half-made change is replaced by decoding it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldState {
    state: EntityState,
    encoded: Vec<u8>,
}

impl HeldState {
    /// Holds `state`, encoding it once.
    pub fn new(state: EntityState) -> Result<Self, CodecError> {
        let encoded = state.encode()?;
        Ok(Self { state, encoded })
    }

    /// The state.
    pub fn state(&self) -> &EntityState {
        &self.state
    }

    /// The state's encoding, as `EntityState::encode` makes it.
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }

    /// Runs `cmd`: a changed state keeps its change and new encoding; on error the state is
    /// what it was before, and the context's outbox must be dropped.
    pub fn handle(&mut self, cmd: Command, ctx: &mut Ctx) -> Result<Handled, DomainError> {
        match self.state.handle_in_place(cmd, ctx) {
            Ok(outcome) => {
                let changed = self.settle()?;
                Ok(Handled { outcome, changed })
            }
            Err(e) => {
                self.undo();
                Err(e)
            }
        }
    }

    /// Runs a read (a parked request asked again): whatever it answers, the state is left as
    /// it was.
    pub fn probe(&mut self, cmd: Command, ctx: &mut Ctx) -> Result<Outcome, DomainError> {
        let result = self.state.handle_in_place(cmd, ctx);
        self.undo();
        result
    }

    /// Whether the state changed; a changed state's encoding replaces the held one.
    fn settle(&mut self) -> Result<bool, DomainError> {
        let held = &mut self.encoded;
        let settled = with_encoding(&self.state, |fresh| {
            if fresh == held.as_slice() {
                return false;
            }
            held.clear();
            held.extend_from_slice(fresh);
            true
        });
        settled.map_err(|e| {
            self.restore();
            DomainError::StateCodec(e.to_string())
        })
    }

    /// Puts back the held state if the state no longer encodes to it.
    fn undo(&mut self) {
        let held = self.encoded.as_slice();
        if with_encoding(&self.state, |fresh| fresh != held).unwrap_or(true) {
            self.restore();
        }
    }

    /// Decodes the held encoding over the state.
    fn restore(&mut self) {
        let held = EntityState::decode(&self.encoded);
        // The held encoding was made from a state by this code: it always decodes.
        assert!(
            held.is_ok(),
            "a held entity state does not decode: {held:?}"
        );
        if let Ok(state) = held {
            self.state = state;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cart::CartCommand;
    use crate::entity::DomainConfig;
    use crate::ids::EntityRef;

    fn add(sku: &str, quantity: u32) -> Command {
        Command::Cart(CartCommand::AddItem {
            sku: sku.into(),
            quantity,
        })
    }

    fn run(held: &mut HeldState, cmd: Command) -> Result<Handled, DomainError> {
        let me = EntityRef::new(EntityKind::Cart, "u-1");
        let config = DomainConfig::default();
        let mut ctx = Ctx::new(1, &me, 1, &config);
        held.handle(cmd, &mut ctx)
    }

    #[test]
    fn a_state_over_the_decode_limit_is_an_error() {
        let mut cart = CartState::default();
        cart.lines.insert("S".repeat(MAX_STATE_BYTES + 1), 1);
        let bytes = EntityState::Cart(cart).encode().unwrap();
        assert!(EntityState::decode(&bytes).is_err());
        let small = EntityState::empty(EntityKind::Cart).encode().unwrap();
        assert!(EntityState::decode(&small).is_ok());
    }

    #[test]
    fn a_change_is_kept_with_its_encoding_and_a_read_changes_nothing() {
        let mut held = HeldState::new(EntityState::empty(EntityKind::Cart)).unwrap();
        assert!(run(&mut held, add("SKU-1", 2)).unwrap().changed);
        assert_eq!(held.encoded(), held.state().encode().unwrap().as_slice());
        let CartState { lines, .. } = match held.state() {
            EntityState::Cart(c) => c.clone(),
            other => panic!("not a cart: {other:?}"),
        };
        assert_eq!(lines.get("SKU-1"), Some(&2));
        let before = held.clone();
        assert!(
            !run(&mut held, Command::Cart(CartCommand::Get))
                .unwrap()
                .changed
        );
        assert_eq!(held, before);
    }

    #[test]
    fn a_refused_command_and_a_probe_leave_the_state_as_it_was() {
        let mut held = HeldState::new(EntityState::empty(EntityKind::Cart)).unwrap();
        run(&mut held, add("SKU-1", 1)).unwrap();
        let before = held.clone();
        assert!(run(&mut held, add("SKU-1", 0)).is_err());
        assert_eq!(held, before);
        // A probe runs a command for its answer only: even a change is undone.
        let me = EntityRef::new(EntityKind::Cart, "u-1");
        let config = DomainConfig::default();
        let mut ctx = Ctx::new(1, &me, 1, &config);
        held.probe(add("SKU-2", 3), &mut ctx).unwrap();
        assert_eq!(held, before);
    }
}
