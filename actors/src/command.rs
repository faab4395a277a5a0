//! The one command type and the one reply type every entity speaks, so that the runtime,
//! the outbox and (later) the cluster envelope can carry any of them.

use crate::account::{AccountCommand, AccountView, ProfileView, Role};
use crate::cart::CartCommand;
use crate::history::{PageCommand, PageEntries, Recent};
use crate::inbox::{InboxCommand, Notification};
use crate::order::{OrderCommand, OrderView};
use crate::payment::{PaymentCommand, PaymentView};
use crate::product::{ProductCommand, ProductView};
use crate::review::{ReviewCommand, ReviewHead, ReviewView};
use crate::review_slot::ReviewSlotCommand;
use crate::shipment::{ShipmentCommand, ShipmentView};
use crate::stock::{StockCommand, StockView};
use crate::EntityKind;
use serde::{Deserialize, Serialize};

/// A command for one entity kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// For an Account.
    Account(AccountCommand),
    /// For a Product.
    Product(ProductCommand),
    /// For a StockItem.
    Stock(StockCommand),
    /// For a Cart.
    Cart(CartCommand),
    /// For an Order.
    Order(OrderCommand),
    /// For a Payment.
    Payment(PaymentCommand),
    /// For a Shipment.
    Shipment(ShipmentCommand),
    /// For an Inbox.
    Inbox(InboxCommand),
    /// For a ReviewBoard.
    Review(ReviewCommand),
    /// For a HistoryPage.
    Page(PageCommand),
    /// For a ReviewSlot.
    ReviewSlot(ReviewSlotCommand),
}

impl Command {
    /// The kind of entity this command is for.
    pub fn kind(&self) -> EntityKind {
        match self {
            Command::Account(_) => EntityKind::Account,
            Command::Product(_) => EntityKind::Product,
            Command::Stock(_) => EntityKind::StockItem,
            Command::Cart(_) => EntityKind::Cart,
            Command::Order(_) => EntityKind::Order,
            Command::Payment(_) => EntityKind::Payment,
            Command::Shipment(_) => EntityKind::Shipment,
            Command::Inbox(_) => EntityKind::Inbox,
            Command::Review(_) => EntityKind::ReviewBoard,
            Command::Page(_) => EntityKind::HistoryPage,
            Command::ReviewSlot(_) => EntityKind::ReviewSlot,
        }
    }

    /// A short name for logs and metrics (`Stock::Reserve`).
    pub fn name(&self) -> String {
        let dbg = format!("{self:?}");
        // `Stock(Reserve { .. })` → `Stock::Reserve`
        let mut parts = dbg
            .split(|c: char| !c.is_alphanumeric())
            .filter(|p| !p.is_empty());
        match (parts.next(), parts.next()) {
            (Some(a), Some(b)) => format!("{a}::{b}"),
            (Some(a), None) => a.to_string(),
            _ => "unknown".into(),
        }
    }
}

/// What an entity answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Done, nothing to show.
    Ack,
    /// This message id was already applied; nothing done.
    Duplicate,
    /// An account.
    Account(AccountView),
    /// A login's stored credentials.
    Credentials {
        /// User id.
        user_id: String,
        /// Argon2id PHC string.
        password_hash: String,
        /// Role.
        role: Role,
    },
    /// A product.
    Product(ProductView),
    /// A stock item.
    Stock(StockView),
    /// A cart: SKU and quantity per line.
    Cart(Vec<(String, u32)>),
    /// An order.
    Order(OrderView),
    /// A list of order ids.
    OrderIds(Vec<String>),
    /// A payment.
    Payment(PaymentView),
    /// A shipment.
    Shipment(ShipmentView),
    /// An inbox.
    Inbox(Vec<Notification>),
    /// A signed-in session: who, with which role (login or refresh accepted).
    Session {
        /// User id.
        user_id: String,
        /// Role.
        role: Role,
    },
    /// A rotated refresh token was presented again: every session of the account was
    /// revoked.
    SessionsRevoked,
    /// A full profile.
    Profile(ProfileView),
    /// One review.
    Review(ReviewView),
    /// A review board's figures and the newest entries of its index.
    ReviewHead(ReviewHead),
    /// A sealed history page's entries.
    Page(PageEntries),
    /// The newest order ids of an account and the count of its sealed pages.
    OrderHistory(Recent<String>),
    /// The newest notifications of an inbox and the count of its sealed pages.
    NotificationHistory(Recent<Notification>),
}
