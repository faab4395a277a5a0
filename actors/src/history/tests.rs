use super::*;
use crate::account::{self, AccountCommand, AccountState, Profile, Role};
use crate::entity::DomainConfig;
use crate::host::EntityState;
use crate::inbox::{Contact, InboxCommand, InboxState};
use crate::limits::{NOTIFICATION_PAGE_LEN, ORDER_PAGE_LEN};
use crate::message::{Body, Destination, OutboxMessage};
use crate::session::Security;
use async_trait::async_trait;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Mutex;

const P: usize = ORDER_PAGE_LEN;
/// The most order ids an account keeps itself.
const MAX: usize = Recent::<String>::MAX_NEWEST;

/// Page entities, as a fake cluster holds them.
#[derive(Default)]
struct Pages(Mutex<BTreeMap<EntityRef, PageState>>);

impl Pages {
    /// Delivers a seal (as the relay would) and answers whether it was accepted.
    fn deliver(&self, m: &OutboxMessage) -> Result<Outcome, DomainError> {
        let (Destination::Entity(to), Body::Command(Command::Page(cmd))) = (&m.to, &m.body) else {
            panic!("not a page message: {m:?}");
        };
        assert_eq!(to.kind, EntityKind::HistoryPage);
        let config = DomainConfig::default();
        let mut ctx = Ctx::new(0, to, 1, &config);
        let mut pages = self.0.lock().unwrap();
        let state = pages.entry(to.clone()).or_default();
        handle(state, cmd.clone(), &mut ctx)
    }
}

#[async_trait]
impl EntityClient for Pages {
    async fn ask(&self, to: EntityRef, cmd: Command) -> Result<Reply, AskError> {
        let Command::Page(cmd) = cmd else {
            panic!("only pages are asked: {cmd:?}");
        };
        let config = DomainConfig::default();
        let mut ctx = Ctx::new(0, &to, 1, &config);
        let mut state = self.0.lock().unwrap().get(&to).cloned().unwrap_or_default();
        match handle(&mut state, cmd, &mut ctx)? {
            Outcome::Reply(r) => Ok(r),
            // A parked read that is never answered.
            Outcome::Park => Err(AskError::Timeout),
        }
    }

    async fn ask_once(&self, to: EntityRef, cmd: Command, _: String) -> Result<Reply, AskError> {
        self.ask(to, cmd).await
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
        .block_on(f)
}

/// Every entry of the history, walked newest first `limit` at a time.
fn walk<T: Entry>(pages: &Pages, owner: &str, head: &Recent<T>, limit: usize) -> Vec<T> {
    let mut all = Vec::new();
    let mut before = None;
    loop {
        let got = block_on(read(pages, owner, head, before, limit)).expect("a read");
        assert!(got.items.len() <= limit);
        all.extend(got.items);
        match got.next_before {
            Some(b) => before = Some(b),
            None => return all,
        }
    }
}

fn place(s: &mut AccountState, me: &EntityRef, order_id: &str) -> Vec<OutboxMessage> {
    let config = DomainConfig::default();
    let mut ctx = Ctx::new(0, me, 1, &config);
    let cmd = AccountCommand::OrderPlaced {
        order_id: order_id.into(),
    };
    account::handle(s, cmd, &mut ctx).expect("placed");
    ctx.take_outbox()
}

#[test]
fn an_account_keeps_a_page_of_orders_and_seals_older_ones_in_order() {
    let me = EntityRef::new(EntityKind::Account, "u1");
    let mut s = AccountState::default();
    let pages = Pages::default();
    for i in 0..250 {
        for m in place(&mut s, &me, &format!("o{i}")) {
            assert_eq!(m.from, me);
            pages.deliver(&m).expect("sealed");
        }
    }
    // The 101st, 151st and 201st orders each sealed the oldest 50; the account keeps 100.
    assert_eq!((P, MAX), (50, 100));
    assert_eq!((s.orders.sealed_pages, s.orders.newest.len()), (3, 100));
    assert_eq!(s.orders.total(), 250);
    assert_eq!(s.orders.newest.first().map(String::as_str), Some("o150"));
    let first = page_ref(HistoryList::Orders, "u1", 0);
    assert_eq!(first.id, "orders:u1:0");
    let held = pages.0.lock().unwrap().get(&first).cloned().unwrap();
    let expected: Vec<String> = (0..P).map(|i| format!("o{i}")).collect();
    assert_eq!(held.entries, Some(PageEntries::Orders(expected)));
    // A repeat of any of the newest page's worth changes nothing and seals nothing.
    let before = s.clone();
    for i in 250 - P..250 {
        assert!(place(&mut s, &me, &format!("o{i}")).is_empty());
    }
    assert_eq!(s, before);
    let ids = walk(&pages, "u1", &s.orders, 20);
    let expected: Vec<String> = (0..250).rev().map(|i| format!("o{i}")).collect();
    assert_eq!(ids, expected);
}

#[test]
fn an_inbox_seals_its_notifications_into_pages() {
    let me = EntityRef::new(EntityKind::Inbox, "u1");
    let config = DomainConfig::default();
    let mut s = InboxState::default();
    let pages = Pages::default();
    for i in 0..230u64 {
        let mut ctx = Ctx::new(i, &me, i, &config);
        let event = InboxCommand::Event {
            kind: "ORDER_PLACED".into(),
            order_id: format!("o{i}"),
        };
        crate::inbox::handle(&mut s, event, &mut ctx).unwrap();
        for m in ctx.take_outbox() {
            if let Destination::Entity(_) = m.to {
                pages.deliver(&m).expect("sealed");
            }
        }
    }
    // Pages of 25 sealed at the 51st, 76th, … notification: 8 pages, 30 kept.
    assert_eq!(NOTIFICATION_PAGE_LEN, 25);
    assert_eq!((s.items.sealed_pages, s.items.newest.len()), (8, 30));
    let all = walk(&pages, "u1", &s.items, 100);
    let order_ids: Vec<String> = all.into_iter().map(|n| n.order_id).collect();
    let expected: Vec<String> = (0..230).rev().map(|i| format!("o{i}")).collect();
    assert_eq!(order_ids, expected);
}

#[test]
fn a_page_is_sealed_once_and_read_only_when_sealed() {
    let me = page_ref(HistoryList::Orders, "u1", 0);
    let config = DomainConfig::default();
    let mut ctx = Ctx::new(0, &me, 1, &config);
    let mut s = PageState::default();
    assert_eq!(
        handle(&mut s, PageCommand::Get, &mut ctx),
        Ok(Outcome::Park)
    );
    let ids = |tag: &str| (0..P).map(|i| format!("{tag}{i}")).collect::<Vec<_>>();
    let seal = |tag| PageCommand::Seal(PageEntries::Orders(ids(tag)));
    let short = PageCommand::Seal(PageEntries::Orders(vec!["o".into()]));
    assert!(matches!(
        handle(&mut s, short, &mut ctx),
        Err(DomainError::Invalid { .. })
    ));
    handle(&mut s, seal("a"), &mut ctx).unwrap();
    let sealed = s.clone();
    handle(&mut s, seal("a"), &mut ctx).expect("the same seal again");
    assert_eq!(s, sealed);
    assert!(matches!(
        handle(&mut s, seal("b"), &mut ctx),
        Err(DomainError::Conflict(_))
    ));
    assert_eq!(s, sealed);
    assert_eq!(
        handle(&mut s, PageCommand::Get, &mut ctx),
        Ok(Outcome::Reply(Reply::Page(PageEntries::Orders(ids("a")))))
    );
    assert!(ctx.outbox().is_empty(), "a page sends nothing");
}

#[test]
fn windows_split_positions_between_pages_and_the_newest() {
    let page = |page, from, to| Span::Page { page, from, to };
    // 250 entries: pages 0 and 1 sealed, 50 newest in the owner.
    let w = spans(250, 200, 100, None, 20);
    assert_eq!(w.spans, [Span::Recent { from: 30, to: 50 }]);
    assert_eq!(w.next_before, Some(230));
    let w = spans(250, 200, 100, Some(210), 100);
    assert_eq!(
        w.spans,
        [Span::Recent { from: 0, to: 10 }, page(1, 10, 100)]
    );
    assert_eq!(w.next_before, Some(110));
    let w = spans(250, 200, 100, Some(150), 100);
    assert_eq!(w.spans, [page(1, 0, 50), page(0, 50, 100)]);
    let w = spans(250, 200, 100, Some(30), 100);
    assert_eq!((w.spans, w.next_before), (vec![page(0, 0, 30)], None));
    // A `before` past the end counts from the end; at 0 nothing is left.
    let end = spans(250, 200, 100, Some(u64::MAX), 5);
    assert_eq!(end, spans(250, 200, 100, None, 5));
    assert_eq!(spans(250, 200, 100, Some(0), 5).spans, []);
    // Pages of 25: a window of 60 below the newest crosses three of them.
    let w = spans(120, 100, 25, Some(100), 60);
    assert_eq!(w.spans, [page(3, 0, 25), page(2, 0, 25), page(1, 15, 25)]);
    assert_eq!(
        spans(0, 0, 100, None, 5),
        Window {
            spans: vec![],
            next_before: None
        }
    );
}

fn legacy_profile() -> Profile {
    Profile {
        email: "a@b.co".into(),
        name: "A".into(),
        password_hash: "h".into(),
        role: Role::Customer,
        created_at_ms: 1,
        phone: None,
        addresses: Vec::new(),
        channels: vec![Channel::Email],
    }
}

/// `AccountState` as format 4 stored it, before order pages.
#[derive(Serialize)]
struct AccountStateV4 {
    profile: Option<Profile>,
    wallet_minor: u64,
    orders: Vec<String>,
    security: Security,
    top_ups: Vec<(String, u64)>,
}

/// `InboxState` as format 4 stored it, before notification pages.
#[derive(Serialize)]
struct InboxStateV4 {
    items: Vec<Notification>,
    channels: Vec<Channel>,
    contact: Option<Contact>,
}

/// The stored encoding of `EntityState` variant `index` holding `state`.
fn stored<S: Serialize>(index: u32, state: &S) -> Vec<u8> {
    bincode::serde::encode_to_vec((index, state), bincode::config::standard()).unwrap()
}

#[test]
fn an_account_stored_before_pages_loads_with_its_orders_as_the_newest() {
    let old = AccountStateV4 {
        profile: Some(legacy_profile()),
        wallet_minor: 500,
        orders: (0..100).map(|i| format!("o{i}")).collect(),
        security: Security::default(),
        top_ups: vec![("t".into(), 100)],
    };
    let bytes = stored(0, &old);
    let EntityState::Account(s) = EntityState::decode(&bytes).expect("decodes") else {
        panic!("not an account");
    };
    assert_eq!(s.orders.sealed_pages, 0);
    assert_eq!(s.orders.newest, old.orders);
    assert_eq!(
        (s.wallet_minor, s.top_ups.clone()),
        (500, old.top_ups.clone())
    );
    // Without pages the record is the old one, byte for byte.
    assert_eq!(EntityState::Account(s.clone()).encode().unwrap(), bytes);
    // Later orders seal the old ones as page 0, and they still list, newest first.
    let me = EntityRef::new(EntityKind::Account, "u1");
    let mut s = s;
    let pages = Pages::default();
    for i in 100..=200 {
        for m in place(&mut s, &me, &format!("o{i}")) {
            pages.deliver(&m).unwrap();
        }
    }
    assert_eq!((s.orders.sealed_pages, s.orders.newest.len()), (3, 51));
    let ids = walk(&pages, "u1", &s.orders, 7);
    let expected: Vec<String> = (0..=200).rev().map(|i| format!("o{i}")).collect();
    assert_eq!(ids, expected);
    let state = EntityState::Account(s.clone());
    let back = EntityState::decode(&state.encode().unwrap()).unwrap();
    assert_eq!(back, state);
    let json = state.to_json();
    assert_eq!(json["Account"]["orders"]["sealed_pages"], 3);
    assert_eq!(json["Account"]["orders"]["newest"][0], "o150");
}

#[test]
fn an_inbox_stored_before_pages_loads_with_its_items() {
    let n = |i: u64| Notification {
        channel: Channel::Sms,
        kind: "ORDER_SHIPPED".into(),
        order_id: format!("o{i}"),
        at_ms: i,
    };
    let old = InboxStateV4 {
        items: (0..50).map(n).collect(),
        channels: vec![Channel::Sms],
        contact: None,
    };
    let bytes = stored(7, &old);
    let EntityState::Inbox(s) = EntityState::decode(&bytes).expect("decodes") else {
        panic!("not an inbox");
    };
    assert_eq!((s.items.sealed_pages, &s.items.newest), (0, &old.items));
    assert_eq!(s.channels, old.channels);
    assert_eq!(EntityState::Inbox(s.clone()).encode().unwrap(), bytes);
    let mut s = s;
    s.items.sealed_pages = 3;
    let state = EntityState::Inbox(s);
    assert_eq!(
        EntityState::decode(&state.encode().unwrap()).unwrap(),
        state
    );
}

#[test]
fn page_ids_name_their_owner() {
    let r = page_ref(HistoryList::Notifications, "u:1", 12);
    assert_eq!(r.id, "notifications:u:1:12");
    assert_eq!(
        page_owner(&r.id),
        Some(EntityRef::new(EntityKind::Inbox, "u:1"))
    );
    assert_eq!(
        page_owner("reviews:SKU-1:3"),
        Some(EntityRef::new(EntityKind::ReviewBoard, "SKU-1"))
    );
    for bad in ["", "orders", "orders:u", "orders:u:x", "ratings:u:1"] {
        assert_eq!(page_owner(bad), None, "{bad}");
    }
    assert_eq!(String::header(9).header_pages(), Some(9));
    assert_eq!("o1".to_string().header_pages(), None);
}

proptest! {
    /// Any sequence of placed orders, each possibly delivered again soon after (a repeat the
    /// message id did not catch), with seals delivered possibly twice and in any order, lists
    /// every order exactly once, newest first, whatever the page size of the reader.
    #[test]
    fn every_placed_order_lists_once_newest_first(
        orders in 0usize..450,
        repeats in prop::collection::vec((0usize..450, 1usize..P), 0..60),
        seal_twice in any::<bool>(),
        reverse_seals in any::<bool>(),
        limit in 1usize..=100,
    ) {
        let me = EntityRef::new(EntityKind::Account, "u1");
        let mut s = AccountState::default();
        let mut seals = Vec::new();
        for i in 0..orders {
            seals.extend(place(&mut s, &me, &format!("o{i}")));
            for (at, back) in &repeats {
                if *at == i && *back <= i {
                    seals.extend(place(&mut s, &me, &format!("o{}", i - back)));
                }
            }
        }
        if reverse_seals {
            seals.reverse();
        }
        let pages = Pages::default();
        for m in &seals {
            prop_assert!(pages.deliver(m).is_ok());
            if seal_twice {
                prop_assert!(pages.deliver(m).is_ok());
            }
        }
        prop_assert!(s.orders.newest.len() <= MAX);
        prop_assert_eq!(s.orders.total(), orders as u64);
        let ids = walk(&pages, "u1", &s.orders, limit);
        let expected: Vec<String> = (0..orders).rev().map(|i| format!("o{i}")).collect();
        prop_assert_eq!(ids, expected);
    }
}
