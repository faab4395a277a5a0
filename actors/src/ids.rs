//! Entity identity: `(kind, id)` and the fixed shard function.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The kinds of entity Agora hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EntityKind {
    /// A shopper or admin account, keyed by user id.
    Account,
    /// A catalog product, keyed by SKU.
    Product,
    /// The stock of one SKU.
    StockItem,
    /// A shopper's cart, keyed by user id.
    Cart,
    /// An order, keyed by order id; it runs the order saga.
    Order,
    /// The payment of one order, keyed by order id.
    Payment,
    /// The shipment of one order, keyed by shipment id.
    Shipment,
    /// A shopper's notification inbox, keyed by user id.
    Inbox,
    /// The reviews of one product, keyed by SKU.
    ReviewBoard,
    /// One sealed page of a shopper's history (orders, notifications), keyed by
    /// `<list>:<user id>:<page>`; it lives on its owner's shard.
    HistoryPage,
    /// One customer's review of one product (and whether they bought it), keyed by
    /// `<sku>:<user id>`.
    ReviewSlot,
}

impl EntityKind {
    /// Every kind, in a fixed order.
    pub const ALL: [EntityKind; 11] = [
        EntityKind::Account,
        EntityKind::Product,
        EntityKind::StockItem,
        EntityKind::Cart,
        EntityKind::Order,
        EntityKind::Payment,
        EntityKind::Shipment,
        EntityKind::Inbox,
        EntityKind::ReviewBoard,
        EntityKind::HistoryPage,
        EntityKind::ReviewSlot,
    ];

    /// A stable one-byte code used in storage keys.
    pub fn code(self) -> u8 {
        match self {
            EntityKind::Account => 1,
            EntityKind::Product => 2,
            EntityKind::StockItem => 3,
            EntityKind::Cart => 4,
            EntityKind::Order => 5,
            EntityKind::Payment => 6,
            EntityKind::Shipment => 7,
            EntityKind::Inbox => 8,
            EntityKind::ReviewBoard => 9,
            EntityKind::HistoryPage => 10,
            EntityKind::ReviewSlot => 11,
        }
    }

    /// The kind for a storage code.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }

    /// The lower-case name used in URLs and logs.
    pub fn name(self) -> &'static str {
        match self {
            EntityKind::Account => "account",
            EntityKind::Product => "product",
            EntityKind::StockItem => "stock",
            EntityKind::Cart => "cart",
            EntityKind::Order => "order",
            EntityKind::Payment => "payment",
            EntityKind::Shipment => "shipment",
            EntityKind::Inbox => "inbox",
            EntityKind::ReviewBoard => "review_board",
            EntityKind::HistoryPage => "history_page",
            EntityKind::ReviewSlot => "review_slot",
        }
    }

    /// The kind for a lower-case name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// The identity of one entity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EntityRef {
    /// What kind of entity.
    pub kind: EntityKind,
    /// Its id within the kind.
    pub id: String,
}

impl EntityRef {
    /// Builds a reference.
    pub fn new(kind: EntityKind, id: impl Into<String>) -> Self {
        Self {
            kind,
            id: id.into(),
        }
    }

    /// The shard that owns this entity: a fixed hash (xxh3 with a constant seed), never
    /// `RandomState`, so every node and every run agrees. A history page lives on its
    /// owner's shard, and a review slot on its product's review board's, so their messages
    /// and the listing's reads stay on one node (an optimisation: nothing relies on it).
    pub fn shard(&self, shard_count: u32) -> u32 {
        assert!(shard_count > 0, "shard_count must be positive");
        if self.kind == EntityKind::HistoryPage {
            if let Some(owner) = crate::history::page_owner(&self.id) {
                return owner.shard(shard_count);
            }
        }
        if self.kind == EntityKind::ReviewSlot {
            if let Some((sku, _)) = crate::review_slot::slot_parts(&self.id) {
                return EntityRef::new(EntityKind::ReviewBoard, sku).shard(shard_count);
            }
        }
        let mut bytes = Vec::with_capacity(self.id.len() + 1);
        bytes.push(self.kind.code());
        bytes.extend_from_slice(self.id.as_bytes());
        let h = xxhash_rust::xxh3::xxh3_64_with_seed(&bytes, 0x4147_4f52_4121);
        (h % u64::from(shard_count)) as u32
    }
}

impl fmt::Display for EntityRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.name(), self.id)
    }
}

/// Namespace for deterministic ids derived with UUID v5.
const AGORA_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6167_6f72_612d_4e53_8000_0000_0000_0001);

/// The user id for an email address: deterministic, so registration and login find the
/// same Account entity without a secondary index.
pub fn user_id_for_email(email: &str) -> String {
    let normalized = email.trim().to_lowercase();
    uuid::Uuid::new_v5(&AGORA_NAMESPACE, format!("email:{normalized}").as_bytes()).to_string()
}

/// The order id for a (user, idempotency key) pair: a retried checkout lands on the same
/// Order entity, which makes "one key, at most one order" a property of addressing.
pub fn order_id_for_key(user_id: &str, idempotency_key: &str) -> String {
    uuid::Uuid::new_v5(
        &AGORA_NAMESPACE,
        format!("order:{user_id}:{idempotency_key}").as_bytes(),
    )
    .to_string()
}

/// The shipment id of an order (one shipment per order).
pub fn shipment_id_for_order(order_id: &str) -> String {
    format!("shp-{order_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_is_stable_and_in_range() {
        let r = EntityRef::new(EntityKind::StockItem, "SKU-1");
        let a = r.shard(64);
        assert_eq!(a, r.shard(64));
        assert!(a < 64);
        // Pinned value: changing the hash would silently move every entity.
        assert_eq!(EntityRef::new(EntityKind::Order, "x").shard(1), 0);
    }

    #[test]
    fn a_history_page_lives_on_its_owners_shard() {
        use crate::history::{page_ref, HistoryList};
        for user in ["u-1", "6f1c0c3b-9d10-5c4e-9a51-2f1c0c3b9d10", "a:b"] {
            for page in [0, 1, 77] {
                let account = EntityRef::new(EntityKind::Account, user);
                let orders = page_ref(HistoryList::Orders, user, page);
                assert_eq!(orders.shard(64), account.shard(64), "{orders}");
                let inbox = EntityRef::new(EntityKind::Inbox, user);
                let notes = page_ref(HistoryList::Notifications, user, page);
                assert_eq!(notes.shard(64), inbox.shard(64), "{notes}");
            }
        }
        // An id that is not a page's is hashed as itself, in range.
        assert!(EntityRef::new(EntityKind::HistoryPage, "nonsense").shard(64) < 64);
    }

    #[test]
    fn a_review_slot_and_its_boards_pages_live_on_the_boards_shard() {
        use crate::history::{page_ref, HistoryList};
        use crate::review_slot::slot_ref;
        for sku in ["SKU-1", "HP-ANC-100", "x"] {
            let board = EntityRef::new(EntityKind::ReviewBoard, sku).shard(64);
            for user in ["u-1", "6f1c0c3b-9d10-5c4e-9a51-2f1c0c3b9d10"] {
                assert_eq!(slot_ref(sku, user).shard(64), board);
            }
            assert_eq!(page_ref(HistoryList::Reviews, sku, 3).shard(64), board);
        }
        assert!(EntityRef::new(EntityKind::ReviewSlot, "nonsense").shard(64) < 64);
    }

    #[test]
    fn kind_codes_round_trip() {
        for k in EntityKind::ALL {
            assert_eq!(EntityKind::from_code(k.code()), Some(k));
            assert_eq!(EntityKind::from_name(k.name()), Some(k));
        }
    }

    #[test]
    fn derived_ids_are_deterministic() {
        assert_eq!(user_id_for_email("A@b.c "), user_id_for_email("a@b.c"));
        assert_ne!(order_id_for_key("u", "k1"), order_id_for_key("u", "k2"));
        assert_ne!(order_id_for_key("u1", "k"), order_id_for_key("u2", "k"));
    }
}
