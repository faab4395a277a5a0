//! Tests of the review board with its slots and pages, hosted by a fake cluster that
//! delivers outbox messages in any order.

use super::*;
use crate::entity::DomainConfig;
use crate::host::{EntityState, HeldState};
use crate::message::{Body, Destination, OutboxMessage};
use crate::review_slot::ReviewSlotState;
use crate::{EntityKind, EntityRef};
use async_trait::async_trait;
use proptest::prelude::*;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

const SKU: &str = "SKU-1";

/// Entities as a cluster holds them, and the messages their changes sent, not yet delivered.
#[derive(Default)]
pub(crate) struct World {
    entities: Mutex<BTreeMap<EntityRef, HeldState>>,
    queue: Mutex<VecDeque<OutboxMessage>>,
    seq: AtomicU64,
}

impl World {
    /// Runs `cmd` on `to` at time `now` as the runtime would: a refused command changes
    /// nothing and sends nothing.
    pub(crate) fn run(
        &self,
        to: &EntityRef,
        now: u64,
        cmd: Command,
    ) -> Result<Outcome, DomainError> {
        let mut entities = self.entities.lock().unwrap();
        let held = entities
            .entry(to.clone())
            .or_insert_with(|| HeldState::new(EntityState::empty(to.kind)).unwrap());
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let config = DomainConfig::default();
        let mut ctx = Ctx::new(now, to, seq, &config);
        let handled = held.handle(cmd, &mut ctx)?;
        self.queue.lock().unwrap().extend(ctx.take_outbox());
        Ok(handled.outcome)
    }

    /// Stores `state` as `to`'s record.
    pub(crate) fn put(&self, to: EntityRef, state: EntityState) {
        let held = HeldState::new(state).unwrap();
        self.entities.lock().unwrap().insert(to, held);
    }

    /// Delivers the message at `pick` (modulo the queue's length); false if none is left.
    pub(crate) fn deliver(&self, pick: usize) -> bool {
        let message = {
            let mut queue = self.queue.lock().unwrap();
            if queue.is_empty() {
                return false;
            }
            let at = pick % queue.len();
            queue.remove(at).unwrap()
        };
        let (Destination::Entity(to), Body::Command(cmd)) = (message.to, message.body) else {
            panic!("a review entity called outside");
        };
        self.run(&to, 1, cmd).expect("a message is accepted");
        true
    }

    /// Delivers every message, oldest first.
    pub(crate) fn settle(&self) {
        while self.deliver(0) {}
    }

    /// The state of `to`.
    pub(crate) fn state(&self, to: &EntityRef) -> Option<EntityState> {
        let entities = self.entities.lock().unwrap();
        entities.get(to).map(|h| h.state().clone())
    }

    /// Messages not delivered yet.
    pub(crate) fn in_flight(&self) -> usize {
        self.queue.lock().unwrap().len()
    }
}

#[async_trait]
impl EntityClient for World {
    async fn ask(&self, to: EntityRef, cmd: Command) -> Result<Reply, AskError> {
        match self.run(&to, 1, cmd)? {
            Outcome::Reply(r) => Ok(r),
            // A parked read that nothing answers here.
            Outcome::Park => Err(AskError::Timeout),
        }
    }

    async fn ask_once(&self, to: EntityRef, cmd: Command, _: String) -> Result<Reply, AskError> {
        self.ask(to, cmd).await
    }
}

pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
        .block_on(f)
}

fn board() -> EntityRef {
    EntityRef::new(EntityKind::ReviewBoard, SKU)
}

fn input(rating: u8, title: &str) -> ReviewInput {
    ReviewInput {
        rating,
        title: title.into(),
        body: "body".into(),
    }
}

fn slot_cmd(
    w: &World,
    who: &str,
    now: u64,
    cmd: ReviewSlotCommand,
) -> Result<Outcome, DomainError> {
    w.run(&slot_ref(SKU, who), now, Command::ReviewSlot(cmd))
}

fn delivered(w: &World, who: &str) {
    let cmd = ReviewSlotCommand::Delivered {
        order_id: format!("o-{who}"),
    };
    slot_cmd(w, who, 1, cmd).unwrap();
}

fn submit(w: &World, who: &str, now: u64, i: ReviewInput) -> Result<Review, DomainError> {
    let cmd = ReviewSlotCommand::Submit {
        author_name: format!("name of {who}"),
        input: i,
    };
    match slot_cmd(w, who, now, cmd)? {
        Outcome::Reply(Reply::Review(v)) => Ok(v.review),
        other => panic!("unexpected {other:?}"),
    }
}

fn head(w: &World) -> ReviewHead {
    match block_on(w.ask(board(), Command::Review(ReviewCommand::Head))) {
        Ok(Reply::ReviewHead(h)) => h,
        other => panic!("unexpected {other:?}"),
    }
}

fn set_hidden(w: &World, id: u64, hidden: bool) -> Result<Review, DomainError> {
    let h = head(w);
    let entry = block_on(entry_of(w, SKU, &h.index, id))
        .unwrap()
        .ok_or_else(|| DomainError::NotFound(format!("review {id}")))?;
    let cmd = ReviewSlotCommand::SetHidden {
        review_id: id,
        hidden,
    };
    match slot_cmd(w, &entry.author, 2, cmd)? {
        Outcome::Reply(Reply::Review(v)) => Ok(v.review),
        other => panic!("unexpected {other:?}"),
    }
}

/// Every listed review, walked newest first `limit` index entries at a time.
fn walk(w: &World, limit: usize) -> Vec<Review> {
    let h = head(w);
    let mut all = Vec::new();
    let mut before = None;
    loop {
        let page = block_on(list(w, SKU, &h.index, before, limit)).expect("a listing");
        assert!(page.items.len() <= limit);
        all.extend(page.items);
        match page.next_before {
            Some(b) => before = Some(b),
            None => return all,
        }
    }
}

fn ids(reviews: &[Review]) -> Vec<u64> {
    reviews.iter().map(|r| r.id).collect()
}

#[test]
fn a_review_is_counted_and_listed_once_the_board_has_its_message() {
    let w = World::default();
    delivered(&w, "u1");
    let r = submit(&w, "u1", 5, input(5, "great")).unwrap();
    assert_eq!(
        (r.id, r.rating, r.created_at_ms),
        (0, 5, 5),
        "no id before the board's"
    );
    // The write is not settled until the board has counted it.
    let settled = slot_cmd(&w, "u1", 6, ReviewSlotCommand::Settled).unwrap();
    assert_eq!(settled, Outcome::Park);
    assert_eq!(head(&w).summary.count, 0);
    w.settle();
    let Outcome::Reply(Reply::Review(v)) =
        slot_cmd(&w, "u1", 6, ReviewSlotCommand::Settled).unwrap()
    else {
        panic!("not settled");
    };
    assert_eq!(v.review.id, 1);
    let h = head(&w);
    assert_eq!((h.summary.count, h.summary.histogram), (1, [0, 0, 0, 0, 1]));
    assert_eq!(ids(&walk(&w, 10)), [1]);
}

#[test]
fn hidden_reviews_leave_the_figures_and_the_listing_but_not_their_author() {
    let w = World::default();
    for (i, who) in ["a", "b", "c"].iter().enumerate() {
        delivered(&w, who);
        submit(&w, who, 10 + i as u64, input(5 - i as u8 * 2, who)).unwrap();
        w.settle();
    }
    let h = head(&w);
    assert_eq!(h.summary.histogram, [1, 0, 1, 0, 1]);
    assert_eq!(h.summary.average(), 3.0);
    let titles: Vec<_> = walk(&w, 10).into_iter().map(|r| r.title).collect();
    assert_eq!(titles, ["c", "b", "a"], "newest first");

    assert!(set_hidden(&w, 3, true).unwrap().hidden);
    // The listing drops it at once (it reads the slot); the figures once counted.
    assert_eq!(ids(&walk(&w, 10)), [2, 1]);
    w.settle();
    let h = head(&w);
    assert_eq!((h.summary.count, h.summary.average()), (2, 4.0));
    // Its author still reads it, and editing it keeps it hidden and uncounted.
    let mine = slot_cmd(&w, "c", 51, ReviewSlotCommand::Get).unwrap();
    assert!(matches!(mine, Outcome::Reply(Reply::Review(ref v)) if v.review.hidden));
    assert!(submit(&w, "c", 52, input(2, "edited")).unwrap().hidden);
    w.settle();
    assert_eq!(head(&w).summary.count, 2);
    // Shown again, it counts again with its edit.
    set_hidden(&w, 3, false).unwrap();
    w.settle();
    let h = head(&w);
    assert_eq!(h.summary.histogram, [0, 1, 1, 0, 1]);
    assert_eq!(h.summary.average(), 3.33);
    assert_eq!(ids(&walk(&w, 2)), [3, 2, 1]);
    // Unknown ids are not found, nor a slot's review under another id.
    assert!(matches!(
        set_hidden(&w, 99, true),
        Err(DomainError::NotFound(_))
    ));
    assert!(matches!(
        set_hidden(&w, 0, true),
        Err(DomainError::NotFound(_))
    ));
    let wrong = ReviewSlotCommand::SetHidden {
        review_id: 1,
        hidden: true,
    };
    assert!(matches!(
        slot_cmd(&w, "c", 60, wrong),
        Err(DomainError::NotFound(_))
    ));
}

#[test]
fn more_than_500_reviews_page_newest_first_across_sealed_pages() {
    let w = World::default();
    let n = 650u64;
    for i in 0..n {
        let who = format!("u{i:04}");
        delivered(&w, &who);
        submit(&w, &who, 100 + i, input((i % 5) as u8 + 1, &who)).unwrap();
        w.settle();
    }
    let h = head(&w);
    assert_eq!(h.summary.count, n);
    assert_eq!(h.index.total(), n);
    assert!(h.index.sealed_pages >= 4, "{} pages", h.index.sealed_pages);
    assert!(h.index.newest.len() <= 2 * REVIEW_PAGE_LEN);
    let page0 = history::page_ref(HistoryList::Reviews, SKU, 0);
    assert!(matches!(w.state(&page0), Some(EntityState::HistoryPage(p)) if p.entries.is_some()));
    // Hide a review that lives in a sealed page and one among the newest.
    set_hidden(&w, 7, true).unwrap();
    set_hidden(&w, 640, true).unwrap();
    w.settle();
    assert_eq!(head(&w).summary.count, n - 2);
    for limit in [1, 7, 100] {
        let all = walk(&w, limit);
        let want: Vec<u64> = (1..=n).rev().filter(|id| ![7, 640].contains(id)).collect();
        assert_eq!(ids(&all), want, "limit {limit}");
    }
    // A page of index entries holding a hidden review comes back short, and the next page
    // still starts where this one stopped.
    let page = block_on(list(&w, SKU, &head(&w).index, Some(8), 2)).unwrap();
    assert_eq!((ids(&page.items), page.next_before), (vec![8], Some(6)));
}

#[test]
fn a_board_stays_small_whatever_the_number_of_reviews() {
    let me = board();
    let config = DomainConfig::default();
    let mut s = ReviewBoardState::default();
    for i in 0..10_000u64 {
        let mut ctx = Ctx::new(1, &me, i + 1, &config);
        let index = ReviewCommand::Index {
            author: format!("{i:036}"),
            created_at_ms: u64::MAX,
            rating: Some(5),
        };
        handle(&mut s, index, &mut ctx).unwrap();
    }
    assert_eq!((s.index.total(), s.summary().count), (10_000, 10_000));
    let bytes = EntityState::ReviewBoard(s).encode().unwrap();
    assert!(bytes.len() < 32 * 1024, "{} bytes", bytes.len());
}

#[test]
fn an_old_delivery_message_to_the_board_reaches_the_slot() {
    let w = World::default();
    let old = ReviewCommand::Delivered {
        customer: "u1".into(),
        order_id: "o1".into(),
    };
    w.run(&board(), 1, Command::Review(old)).unwrap();
    assert!(matches!(
        submit(&w, "u1", 2, input(4, "t")),
        Err(DomainError::Forbidden(_))
    ));
    w.settle();
    assert!(submit(&w, "u1", 2, input(4, "t")).is_ok());
}

/// `Review` as a board stored it before slots.
#[derive(Serialize)]
struct ReviewV4 {
    id: u64,
    author_name: String,
    rating: u8,
    title: String,
    body: String,
    created_at_ms: u64,
    updated_at_ms: u64,
    hidden: bool,
}

/// `ReviewBoardState` before slots.
#[derive(Serialize)]
struct BoardV4 {
    buyers: BTreeSet<String>,
    reviews: BTreeMap<String, ReviewV4>,
    next_id: u64,
}

/// The stored encoding of a board before slots (`EntityState` variant 8).
fn old_board(reviews: u64, buyers: &[&str]) -> Vec<u8> {
    let board = BoardV4 {
        buyers: buyers.iter().map(|b| b.to_string()).collect(),
        reviews: (1..=reviews)
            .map(|id| {
                let review = ReviewV4 {
                    id,
                    author_name: format!("old {id}"),
                    rating: (id % 5) as u8 + 1,
                    title: format!("t{id}"),
                    body: String::new(),
                    created_at_ms: 1_000 + id,
                    updated_at_ms: 1_000 + id,
                    hidden: id == 2,
                };
                (format!("a{id:03}"), review)
            })
            .collect(),
        next_id: reviews,
    };
    bincode::serde::encode_to_vec((8u32, board), bincode::config::standard()).unwrap()
}

#[test]
fn a_board_stored_before_slots_is_migrated_by_its_first_command() {
    let bytes = old_board(250, &["waiting"]);
    let state = EntityState::decode(&bytes).expect("an old board decodes");
    let EntityState::LegacyReviewBoard(old) = &state else {
        panic!("not an old board: {state:?}");
    };
    let old_summary = old.summary();
    assert_eq!(old_summary.count, 249);
    let w = World::default();
    w.put(board(), state);
    // Reads wait until every slot has its migrated review.
    let ready = w
        .run(&board(), 1, Command::Review(ReviewCommand::Ready))
        .unwrap();
    assert_eq!(ready, Outcome::Park);
    assert!(matches!(
        w.state(&board()),
        Some(EntityState::ReviewBoard(_))
    ));
    assert!(w.in_flight() > 250);
    w.settle();
    let h = head(&w);
    assert_eq!(h.summary, old_summary);
    assert_eq!(h.index.total(), 250);
    // The listing is the old one: newest first, the hidden review left out, ids unchanged.
    let want: Vec<u64> = (1..=250).rev().filter(|&id| id != 2).collect();
    let all = walk(&w, 30);
    assert_eq!(ids(&all), want);
    assert_eq!(all.last().map(|r| r.title.as_str()), Some("t1"));
    // Authors read and edit their reviews in their slots; the waiting buyer may review.
    let mine = slot_cmd(&w, "a002", 5, ReviewSlotCommand::Get).unwrap();
    assert!(
        matches!(mine, Outcome::Reply(Reply::Review(ref v)) if v.review.id == 2 && v.review.hidden)
    );
    let edited = submit(&w, "a010", 5_000, input(1, "changed")).unwrap();
    assert_eq!((edited.id, edited.created_at_ms), (10, 1_010));
    let new = submit(&w, "waiting", 5_001, input(5, "late")).unwrap();
    w.settle();
    assert_eq!(new.id, 0);
    assert_eq!(ids(&walk(&w, 1))[0], 251);
    let h = head(&w);
    assert_eq!(h.summary.count, 250);
    assert!(matches!(
        submit(&w, "stranger", 1, input(5, "x")),
        Err(DomainError::Forbidden(_))
    ));
}

/// One step of a random history of one product's reviews.
#[derive(Debug, Clone)]
enum Step {
    Deliver(usize),
    Submit(usize, u8),
    Hide(usize, bool),
    /// Deliver the message at this index of the queue (if any).
    Relay(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..4usize).prop_map(Step::Deliver),
        (0..4usize, 0..7u8).prop_map(|(c, r)| Step::Submit(c, r)),
        (0..4usize, any::<bool>()).prop_map(|(c, h)| Step::Hide(c, h)),
        any::<usize>().prop_map(Step::Relay),
        any::<usize>().prop_map(Step::Relay),
    ]
}

/// The slot of customer `c`.
fn slot_state(w: &World, c: usize) -> ReviewSlotState {
    match w.state(&slot_ref(SKU, &format!("c{c}"))) {
        Some(EntityState::ReviewSlot(s)) => s,
        _ => ReviewSlotState::default(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever the order of submits, edits, hides, unhides and message deliveries, once
    /// every message is delivered the board's figures are those of the visible reviews and
    /// the listing is each visible review once, newest first.
    #[test]
    fn the_board_counts_exactly_the_visible_reviews(steps in prop::collection::vec(step(), 1..60)) {
        let w = World::default();
        for (t, s) in steps.into_iter().enumerate() {
            let now = 10 + t as u64;
            match s {
                Step::Deliver(c) => delivered(&w, &format!("c{c}")),
                Step::Submit(c, rating) => {
                    let bought = slot_state(&w, c).bought;
                    let r = submit(&w, &format!("c{c}"), now, input(rating, "t"));
                    prop_assert_eq!(r.is_ok(), bought && (1..=5).contains(&rating), "{:?}", r);
                }
                Step::Hide(c, hidden) => {
                    let id = slot_state(&w, c).review.map_or(0, |r| r.id);
                    let cmd = ReviewSlotCommand::SetHidden { review_id: id, hidden };
                    let r = slot_cmd(&w, &format!("c{c}"), now, cmd);
                    prop_assert_eq!(r.is_ok(), id > 0);
                }
                Step::Relay(pick) => {
                    w.deliver(pick);
                }
            }
            let Some(EntityState::ReviewBoard(b)) = w.state(&board()) else { continue };
            // While messages travel the board counts no more than it has indexed.
            prop_assert!(b.summary().count <= b.index.total());
        }
        w.settle();
        let mut histogram = [0u64; 5];
        let mut visible = Vec::new();
        for c in 0..4 {
            let s = slot_state(&w, c);
            prop_assert!(s.settled());
            if let Some(r) = s.review {
                prop_assert!(r.id > 0);
                if !r.hidden {
                    histogram[usize::from(r.rating - 1)] += 1;
                    visible.push(r.id);
                }
            }
        }
        visible.sort_unstable_by(|a, b| b.cmp(a));
        let listed = if w.state(&board()).is_some() { ids(&walk(&w, 3)) } else { Vec::new() };
        prop_assert_eq!(listed, visible);
        if w.state(&board()).is_some() {
            prop_assert_eq!(head(&w).summary.histogram, histogram);
        }
    }
}
