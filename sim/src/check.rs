//! The checkers: what must hold at the end of every run, read from the nodes' disks (the
//! authority) and the clients' history.

use crate::disk::SimDisk;
use crate::workload::{Op, Outcome};
use agora_actors::history::{page_owner, PageEntries, PageState};
use agora_actors::host::EntityState;
use agora_actors::inbox::Notification;
use agora_actors::order::{transition_allowed, OrderState};
use agora_actors::stock::StockState;
use agora_actors::EntityKind;
use agora_store::Store;
use serde::Serialize;
use std::collections::BTreeMap;

/// A broken promise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Which invariant (a short stable name).
    pub invariant: &'static str,
    /// What was seen.
    pub detail: String,
}

fn violation(invariant: &'static str, detail: String) -> Violation {
    Violation { invariant, detail }
}

/// Every entity on every disk: kind/id → (node, state).
#[derive(Default)]
pub struct World {
    orders: BTreeMap<String, (u64, OrderState)>,
    accounts: std::collections::BTreeSet<String>,
    inbox_duplicates: Vec<String>,
    /// The key of every notification an inbox or a sealed page holds.
    notification_keys: std::collections::BTreeSet<String>,
    stock: BTreeMap<String, (u64, StockState)>,
    duplicates: Vec<String>,
    /// Messages sent to be delivered at once (not timers) still in an outbox, by node.
    undelivered: BTreeMap<u64, Vec<String>>,
    /// Shards whose replicas hold different rows (replicated shards only).
    replica_differences: Vec<String>,
    /// Registered accounts' wallets, by account id.
    wallets: BTreeMap<String, crate::wallets::Wallet>,
    /// What each wallet payment moved, by order id.
    wallet_moves: BTreeMap<String, crate::wallets::WalletMoves>,
    /// Each cart's lines, by its shopper's account id.
    carts: BTreeMap<String, BTreeMap<String, u32>>,
    /// Entities read.
    pub entities: usize,
    /// Entity rows on each node's disk.
    pub entities_by_node: BTreeMap<u64, usize>,
}

/// Reads every node's disk (a snapshot of its page cache). With `replicated` shards an
/// entity lives on several disks: the copy with the highest seq is the world's, a replica
/// may lag behind it, but two copies at the same seq must be the same state.
pub fn read_world(disks: &[(u64, SimDisk)], replicated: bool) -> Result<World, String> {
    let mut w = World::default();
    let mut replica_rows = crate::replicas::ReplicaRows::default();
    let mut seen: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    // Notifications by holding entity (inbox or page): the copy with the highest seq.
    let mut notes: BTreeMap<String, (u64, String, Vec<Notification>)> = BTreeMap::new();
    let mut replicas: BTreeMap<String, (u64, EntityState)> = BTreeMap::new();
    let mut shard_nodes: BTreeMap<u32, std::collections::BTreeSet<u64>> = BTreeMap::new();
    for (node, disk) in disks {
        let store = Store::open_backend(disk.snapshot_backend())
            .map_err(|e| format!("node {node}'s disk does not open: {e}"))?;
        let rows = store
            .outbox_rows()
            .map_err(|e| format!("node {node}'s outbox does not read: {e}"))?;
        let at_once: Vec<String> = rows
            .iter()
            .filter(|(_, r)| r.message.deliver_at_ms == agora_actors::entity::DUE_AT_ONCE)
            .map(|(_, r)| format!("{} {} to {:?}", r.message.id, r.message.topic, r.message.to))
            .collect();
        if !at_once.is_empty() {
            w.undelivered.insert(*node, at_once);
        }
        if replicated {
            for (key, _) in rows {
                if let Some((shard, _)) = agora_store::keys::parse_outbox_key(&key) {
                    replica_rows.outbox(shard, *node, key);
                }
            }
        }
        store
            .scan_entities(&EntityKind::ALL, |entity, record| {
                w.entities += 1;
                *w.entities_by_node.entry(*node).or_default() += 1;
                shard_nodes
                    .entry(entity.shard(crate::host::SHARDS))
                    .or_default()
                    .insert(*node);
                let name = format!("{}/{}", entity.kind.name(), entity.id);
                let here = (*node, record.seq, record.epoch);
                if replicated {
                    let shard = entity.shard(crate::host::SHARDS);
                    replica_rows.entity(shard, *node, name.clone(), record.seq);
                    match replicas.get(&name) {
                        Some((seq, state)) if *seq == record.seq && *state != record.state => {
                            w.duplicates.push(format!(
                                "{name}: replicas differ at seq {seq} (node {node})"
                            ));
                            return;
                        }
                        Some((seq, _)) if *seq >= record.seq => return,
                        _ => {
                            replicas.insert(name.clone(), (record.seq, record.state.clone()));
                        }
                    }
                } else if let Some(other) = seen.insert(name.clone(), here) {
                    w.duplicates.push(format!(
                        "{name} on nodes {} (seq {}, epoch {}) and {} (seq {}, epoch {})",
                        other.0, other.1, other.2, here.0, here.1, here.2
                    ));
                }
                match record.state {
                    EntityState::Order(o) => {
                        w.orders.insert(entity.id, (*node, o));
                    }
                    EntityState::Stock(s) => {
                        w.stock.insert(entity.id, (*node, s));
                    }
                    EntityState::Account(a) => {
                        if let Some(wallet) = crate::wallets::Wallet::of(&a) {
                            w.wallets.insert(entity.id, wallet);
                        }
                        if let Some(p) = a.profile {
                            w.accounts.insert(p.email);
                        }
                    }
                    EntityState::Cart(c) => {
                        w.carts.insert(entity.id, c.lines);
                    }
                    EntityState::Payment(p) => {
                        if let Some(moves) = crate::wallets::WalletMoves::of(&p) {
                            w.wallet_moves.insert(entity.id, moves);
                        }
                    }
                    state => {
                        if let Some((user, items)) = notifications_of(&entity, state) {
                            let held = notes.entry(name).or_insert((0, user, Vec::new()));
                            if held.0 <= record.seq {
                                held.0 = record.seq;
                                held.2 = items;
                            }
                        }
                    }
                }
            })
            .map_err(|e| format!("node {node}'s disk does not read: {e}"))?;
    }
    for (shard, nodes) in shard_nodes {
        if nodes.len() > 1 && !replicated {
            w.duplicates
                .push(format!("shard {shard} has entities on nodes {nodes:?}"));
        }
    }
    w.replica_differences = replica_rows.differences();
    w.notification_keys = notes
        .values()
        .flat_map(|(_, user, items)| {
            items
                .iter()
                .map(|n| agora_actors::inbox::notification_key(user, n))
        })
        .collect();
    w.inbox_duplicates = notification_duplicates(notes.into_values());
    Ok(w)
}

/// The user and notifications an inbox or a sealed page of notifications holds.
fn notifications_of(
    entity: &agora_actors::EntityRef,
    state: EntityState,
) -> Option<(String, Vec<Notification>)> {
    match state {
        EntityState::Inbox(i) => Some((entity.id.clone(), i.items.newest)),
        EntityState::HistoryPage(PageState {
            entries: Some(PageEntries::Notifications(items)),
        }) => Some((page_owner(&entity.id)?.id, items)),
        _ => None,
    }
}

/// Each notification a user's inbox and pages hold twice (one event, one channel), named.
fn notification_duplicates(
    held: impl Iterator<Item = (u64, String, Vec<Notification>)>,
) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for (_, user, items) in held {
        for n in items {
            let what = format!("{} for {} on {:?}", n.kind, n.order_id, n.channel);
            if !seen.insert((user.clone(), what.clone())) {
                out.push(format!("inbox {user}: {what} twice"));
            }
        }
    }
    out
}

/// Runs every check; `healed` says whether the healing phase reached quiescence rules
/// (every saga should be over).
pub fn check(world: &World, history: &[Op]) -> Vec<Violation> {
    let mut out = Vec::new();
    // At most one live copy of an entity (one owner per shard per epoch).
    for d in &world.duplicates {
        out.push(violation("one-owner", d.clone()));
    }
    // One effect per message: an order event becomes one notification per channel.
    for d in &world.inbox_duplicates {
        out.push(violation("one-effect-per-message", d.clone()));
    }
    // Acknowledged registrations are durable.
    for op in history
        .iter()
        .filter(|o| o.kind == "register" && o.outcome == Outcome::Ok)
    {
        let email = format!("{}@sim.test", op.client);
        if !world.accounts.contains(&email) {
            out.push(violation(
                "acknowledged-registration-lost",
                format!(
                    "{email} got 201 at {} ms; no node has the account",
                    op.end_ms
                ),
            ));
        }
    }
    // Acknowledged means durable.
    for op in history.iter().filter(|o| o.kind == "checkout") {
        if op.outcome == Outcome::Ok {
            match op.order_id.as_deref() {
                Some(id) if world.orders.contains_key(id) => {}
                Some(id) => out.push(violation(
                    "acknowledged-order-lost",
                    format!(
                        "{} got 201 for {id} at {} ms; no node has it",
                        op.client, op.end_ms
                    ),
                )),
                None => out.push(violation(
                    "acknowledged-order-lost",
                    format!(
                        "{} got 201 without an order id at {} ms",
                        op.client, op.end_ms
                    ),
                )),
            }
        }
    }
    out.extend(retried_keys(history));
    // Stock: never negative (u64), conserved, and matching what the admin received.
    let mut received: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for op in history.iter().filter(|o| o.kind == "receive") {
        if let Some(sku) = op.sku.as_deref() {
            let e = received.entry(sku).or_default();
            match op.outcome {
                Outcome::Ok => {
                    e.0 += op.quantity;
                    e.1 += op.quantity;
                }
                Outcome::Unknown => e.1 += op.quantity,
                Outcome::Fail => {}
            }
        }
    }
    for (sku, (_, s)) in &world.stock {
        let total = s.available + s.reserved + s.sold;
        if s.received < s.written_off || total != s.received - s.written_off {
            out.push(violation("stock-conservation", format!("{sku}: {s:?}")));
        }
        let held: u64 = s.reservations.values().sum();
        if held != s.reserved {
            out.push(violation(
                "stock-conservation",
                format!(
                    "{sku}: reserved {} but reservations hold {held}",
                    s.reserved
                ),
            ));
        }
        if let Some((lo, hi)) = received.get(sku.as_str()) {
            if s.received < *lo || s.received > *hi {
                out.push(violation(
                    "stock-received",
                    format!(
                        "{sku}: received {} outside acknowledged {lo}..={hi}",
                        s.received
                    ),
                ));
            }
        }
        if s.reserved != 0 {
            out.push(violation(
                "reservation-released",
                format!(
                    "{sku}: {} units still reserved after healing: {:?}",
                    s.reserved, s.reservations
                ),
            ));
        }
    }
    // Every order ended, along allowed transitions.
    for (id, (node, o)) in &world.orders {
        match o.status() {
            Some(st) if st.is_terminal() => {}
            st => out.push(violation(
                "order-terminal",
                format!("order {id} on node {node} is {st:?} after healing"),
            )),
        }
        for pair in o.history.windows(2) {
            let (from, to) = (pair[0].0, pair[1].0);
            if from != to && !transition_allowed(from, to) {
                out.push(violation(
                    "order-transition",
                    format!("order {id}: {from:?} -> {to:?}"),
                ));
            }
        }
    }
    // Every message is delivered: a compensation still in an outbox (a restock, a refund)
    // would show nowhere else once every order looks finished.
    for (node, held) in &world.undelivered {
        out.push(violation(
            "messages-delivered",
            format!(
                "node {node} still holds {} undelivered messages after healing: {}",
                held.len(),
                held.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
            ),
        ));
    }
    // Every replica of a shard holds the same rows once the cluster has healed.
    for d in &world.replica_differences {
        out.push(violation("replicas-identical", d.clone()));
    }
    out.extend(crate::models::orders(world, history));
    out.extend(crate::models::stock(world, history));
    out.extend(crate::carts::check(history, &world.carts_by_client()));
    // Units sold match the orders that were paid and kept their goods (one effect per
    // message: a repeated restock or release shows here).
    let mut delivered: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, o) in world.orders.values() {
        if o.status() == Some(agora_actors::order::OrderStatus::Delivered) {
            if let Some(p) = &o.placement {
                for l in &p.lines {
                    *delivered.entry(l.sku.as_str()).or_default() += u64::from(l.quantity);
                }
            }
        }
    }
    for (sku, (_, s)) in &world.stock {
        let want = delivered.get(sku.as_str()).copied().unwrap_or(0);
        if s.sold != want {
            out.push(violation(
                "sold-matches-orders",
                format!("{sku}: sold {} but delivered orders hold {want}", s.sold),
            ));
        }
    }
    out
}

/// What a retried idempotency key answered: once a checkout under a key was answered 2xx,
/// a later 2xx under it (the same body sent again) replays that answer (same order,
/// `Idempotent-Replayed: true`): anything else took effect twice (`retry-replays`). The
/// same key with another body is refused (`reused-key-refused`).
fn retried_keys(history: &[Op]) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut answered: BTreeMap<&str, &Op> = BTreeMap::new();
    let mut by_end: Vec<&Op> = history
        .iter()
        .filter(|o| o.kind == "checkout" && o.outcome == Outcome::Ok && o.key.is_some())
        .collect();
    by_end.sort_by_key(|o| o.end_ms);
    for op in by_end {
        let Some(key) = op.key.as_deref() else {
            continue;
        };
        match answered.get(key) {
            Some(first) if op.invoke_ms > first.end_ms => {
                if !op.replayed || op.order_id != first.order_id {
                    out.push(violation(
                        "retry-replays",
                        format!(
                            "key {key}: {:?} answered at {} ms, then at {} ms {:?} (replayed: {})",
                            first.order_id, first.end_ms, op.end_ms, op.order_id, op.replayed
                        ),
                    ));
                }
            }
            Some(_) => {}
            None => {
                answered.insert(key, op);
            }
        }
    }
    for op in history
        .iter()
        .filter(|o| o.kind == crate::workload::CHECKOUT_REUSED_KEY && o.outcome == Outcome::Ok)
    {
        out.push(violation(
            "reused-key-refused",
            format!(
                "{}: key {:?} sent with another body answered {} at {} ms",
                op.client, op.key, op.status, op.end_ms
            ),
        ));
    }
    out
}

/// Counts for the report: orders by status name.
pub fn order_statuses(world: &World) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for (_, o) in world.orders.values() {
        let name = o.status().map_or("NONE", |s| s.name());
        *m.entry(name.to_string()).or_insert(0) += 1;
    }
    m
}

impl World {
    /// The key of every notification the disks hold (an inbox's or a sealed page's).
    pub fn notification_keys(&self) -> std::collections::BTreeSet<String> {
        self.notification_keys.clone()
    }

    /// The lines of each registered shopper's cart as the disks hold them, by the shopper's
    /// client name (its email's local part); a shopper whose cart was never written has none.
    pub fn carts_by_client(&self) -> BTreeMap<String, BTreeMap<String, u32>> {
        self.wallets
            .iter()
            .filter_map(|(account, w)| {
                let client = w.email.strip_suffix("@sim.test")?;
                let lines = self.carts.get(account).cloned().unwrap_or_default();
                Some((client.to_string(), lines))
            })
            .collect()
    }

    /// Registered accounts' wallets, by account id.
    pub fn wallets(&self) -> &BTreeMap<String, crate::wallets::Wallet> {
        &self.wallets
    }

    /// What each wallet payment moved (one per order paid from a wallet).
    pub fn wallet_moves(&self) -> Vec<crate::wallets::WalletMoves> {
        self.wallet_moves.values().cloned().collect()
    }

    /// The order `id` as the world holds it.
    pub fn order(&self, id: &str) -> Option<&OrderState> {
        self.orders.get(id).map(|(_, o)| o)
    }

    /// The stock of `sku` as the world holds it.
    pub fn stock(&self, sku: &str) -> Option<&StockState> {
        self.stock.get(sku).map(|(_, s)| s)
    }
}

/// Whether every saga is over and no stock is held (healing can stop early).
pub fn quiescent(world: &World) -> bool {
    world
        .orders
        .values()
        .all(|(_, o)| o.status().is_some_and(|s| s.is_terminal()))
        && world.stock.values().all(|(_, s)| s.reserved == 0)
        && world.undelivered.is_empty()
        && world.replica_differences.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Shown;
    use agora_actors::order::OrderStatus;

    #[test]
    fn a_notification_twice_across_an_inbox_and_its_pages_is_caught() {
        use agora_actors::history::{page_ref, HistoryList};
        use agora_actors::inbox::{Channel, InboxState};
        let n = |order: &str| Notification {
            channel: Channel::Email,
            kind: "ORDER_PLACED".into(),
            order_id: order.into(),
            at_ms: 1,
        };
        let inbox = agora_actors::EntityRef::new(EntityKind::Inbox, "u1");
        let mut state = InboxState::default();
        state.items.newest = vec![n("o2"), n("o3")];
        let page = page_ref(HistoryList::Notifications, "u1", 0);
        let sealed = PageState {
            entries: Some(PageEntries::Notifications(vec![n("o1"), n("o2")])),
        };
        let held = [
            notifications_of(&inbox, EntityState::Inbox(state)),
            notifications_of(&page, EntityState::HistoryPage(sealed)),
        ];
        let held = held.into_iter().flatten().map(|(u, items)| (1, u, items));
        let found = notification_duplicates(held);
        assert_eq!(found, ["inbox u1: ORDER_PLACED for o2 on Email twice"]);
    }

    #[test]
    fn a_retried_key_must_replay_its_answer_and_another_body_must_be_refused() {
        let keyed = |t: (u64, u64), order: &str, replayed: bool| Op {
            key: Some("k".into()),
            replayed,
            ..op("a", "checkout", t, order, "AWAITING_PAYMENT")
        };
        let names = |h: &[Op]| -> Vec<&'static str> {
            retried_keys(h).into_iter().map(|v| v.invariant).collect()
        };
        let first = keyed((0, 10), "o1", false);
        assert!(names(&[first.clone(), keyed((20, 30), "o1", true)]).is_empty());
        // Sent while the first was in flight (after a lost answer): either may be first.
        assert!(names(&[first.clone(), keyed((5, 30), "o1", false)]).is_empty());
        assert_eq!(
            names(&[first.clone(), keyed((20, 30), "o1", false)]),
            ["retry-replays"]
        );
        assert_eq!(
            names(&[first.clone(), keyed((20, 30), "o2", true)]),
            ["retry-replays"]
        );
        let reused = Op {
            kind: crate::workload::CHECKOUT_REUSED_KEY,
            ..keyed((40, 50), "o1", true)
        };
        assert_eq!(names(&[first, reused]), ["reused-key-refused"]);
    }

    fn op(client: &str, kind: &'static str, t: (u64, u64), order: &str, status: &str) -> Op {
        Op {
            client: client.into(),
            kind,
            invoke_ms: t.0,
            end_ms: t.1,
            outcome: Outcome::Ok,
            status: 200,
            key: None,
            order_id: Some(order.into()),
            sku: None,
            quantity: 0,
            status_seen: Some(status.into()),
            replayed: false,
            shown: crate::workload::Shown::Nothing,
            refused_why: None,
        }
    }

    fn world_with(order: OrderState, stock: StockState) -> World {
        World {
            orders: [("o1".to_string(), (1, order))].into_iter().collect(),
            stock: [("S".to_string(), (1, stock))].into_iter().collect(),
            entities: 2,
            entities_by_node: [(1, 2)].into_iter().collect(),
            ..World::default()
        }
    }

    fn delivered_order() -> OrderState {
        let mut o = OrderState::default();
        for (i, s) in [
            OrderStatus::Pending,
            OrderStatus::StockReserved,
            OrderStatus::AwaitingPayment,
            OrderStatus::Confirmed,
            OrderStatus::Shipped,
            OrderStatus::Delivered,
        ]
        .into_iter()
        .enumerate()
        {
            o.history.push((s, i as u64));
        }
        o
    }

    fn invariants(v: &[Violation]) -> Vec<&'static str> {
        v.iter().map(|v| v.invariant).collect()
    }

    #[test]
    fn a_read_that_goes_back_in_an_orders_history_is_caught() {
        let orders = crate::models::orders;
        let w = world_with(delivered_order(), StockState::default());
        let ok = [
            op("a", "checkout", (0, 10), "o1", "AWAITING_PAYMENT"),
            op("b", "read", (20, 30), "o1", "CONFIRMED"),
            // Concurrent with the next one, which it may follow.
            op("c", "read", (25, 60), "o1", "CONFIRMED"),
            op("b", "read", (40, 50), "o1", "DELIVERED"),
        ];
        assert!(orders(&w, &ok).is_empty());
        let back = [
            op("a", "read", (0, 10), "o1", "CONFIRMED"),
            op("b", "read", (20, 30), "o1", "AWAITING_PAYMENT"),
        ];
        assert_eq!(invariants(&orders(&w, &back)), ["linearizable-order"]);
        let never = [op("a", "read", (0, 10), "o1", "REFUNDED")];
        assert_eq!(invariants(&orders(&w, &never)), ["linearizable-order"]);
        // Unknown and refused operations constrain nothing.
        let mut lost = op("a", "read", (40, 50), "o1", "PENDING");
        lost.outcome = Outcome::Unknown;
        assert!(orders(&w, &[ok[3].clone(), lost]).is_empty());
    }

    fn receipt(t: (u64, u64), units: u64, shown: Option<u64>) -> Op {
        Op {
            kind: "receive",
            sku: Some("S".into()),
            quantity: units,
            order_id: None,
            status_seen: None,
            outcome: if shown.is_some() {
                Outcome::Ok
            } else {
                Outcome::Unknown
            },
            shown: shown.map_or(Shown::Nothing, Shown::StockReceived),
            refused_why: None,
            ..op("admin", "receive", t, "", "")
        }
    }

    #[test]
    fn stock_receipts_must_add_up_in_some_order() {
        let stock = |received: u64| {
            let w = world_with(
                delivered_order(),
                StockState {
                    available: received,
                    received,
                    ..StockState::default()
                },
            );
            move |h: &[Op]| invariants(&crate::models::stock(&w, h))
        };
        // An unknown receipt that landed late, after the next one was answered.
        let late = [
            receipt((0, 10), 30, Some(30)),
            receipt((20, 26), 2, None),
            receipt((30, 40), 3, Some(33)),
            receipt((50, 60), 1, Some(36)),
        ];
        assert!(stock(36)(&late).is_empty());
        // The same receipt never landed: the disks say so at the end.
        let never = [
            receipt((0, 10), 30, Some(30)),
            receipt((20, 26), 2, None),
            receipt((30, 40), 3, Some(33)),
        ];
        assert!(stock(33)(&never).is_empty());
        // The disks lost an answered receipt.
        assert_eq!(stock(30)(&never), ["linearizable-stock"]);
        // A receipt answered as if an earlier answered one had not happened (lost update).
        let lost = [
            receipt((0, 10), 30, Some(30)),
            receipt((20, 30), 3, Some(3)),
        ];
        assert_eq!(stock(33)(&lost), ["linearizable-stock"]);
    }

    /// Found by seed 3038: every order looked finished while a refunded order's restock still
    /// waited in an outbox, and the run stopped early and blamed the stock.
    #[test]
    fn a_message_still_in_an_outbox_keeps_the_run_going_and_fails_at_the_end() {
        let mut w = world_with(delivered_order(), StockState::default());
        assert!(quiescent(&w));
        assert!(check(&w, &[]).is_empty());
        w.undelivered.insert(2, vec!["o1#3.0 RESTOCK".into()]);
        assert!(!quiescent(&w));
        assert_eq!(invariants(&check(&w, &[])), ["messages-delivered"]);
    }

    #[test]
    fn broken_stock_and_lost_orders_are_caught() {
        let stock = StockState {
            available: 3,
            received: 5,
            ..StockState::default()
        };
        let w = world_with(delivered_order(), stock);
        let mut lost = op("a", "checkout", (0, 10), "o2", "AWAITING_PAYMENT");
        lost.key = Some("k".into());
        let found = invariants(&check(&w, &[lost]));
        assert!(found.contains(&"stock-conservation"), "{found:?}");
        assert!(found.contains(&"acknowledged-order-lost"), "{found:?}");
    }
}
