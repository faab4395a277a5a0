//! ReviewBoard: the figures and the listing index of one product's reviews, keyed by SKU.
//!
//! Each review lives in its own record, the customer's `ReviewSlot` (`review_slot`, id
//! `<sku>:<customer>`), which also holds "this customer bought it": the Order sends
//! `Delivered` to the slot, and the slot checks the verified purchase when its customer
//! submits. The board holds only bounded figures, kept by messages from the slots (through
//! the outbox, at least once, deduplicated by message id):
//!
//! * the rating histogram of the visible reviews (count, sum and average follow from it);
//! * the listing index, one [`ReviewEntry`] per review in order of first submission. A
//!   review's id is its position in the index plus one, assigned when the slot's `Index`
//!   message arrives. The board keeps the newest entries and seals older ones into
//!   `HistoryPage` entities exactly as order and notification histories do
//!   (`history::Recent`, `HistoryList::Reviews`), so the listing walks newest first by
//!   position with no cap.
//!
//! A slot has at most one message to the board in flight (`Index` for a first review,
//! `Recount` for a change of rating or visibility) and the board acknowledges each one to
//! the slot (`Counted`); a change made meanwhile is sent with the acknowledgement. So the
//! board's histogram never sees a removal before its addition, and a write is settled (the
//! board counts the review as it stands) once the slot has nothing in flight: the edge
//! waits for that before answering a write (read your writes).
//!
//! A board stored before slots existed (every review inside, [`LegacyBoardState`]) is
//! migrated by its first command: its reviews become index entries (ids unchanged: they
//! were already 1..=n in order of first submission) and their figures the histogram, and
//! each review and each waiting buyer is sent to its slot (`Import`). Until every slot has
//! acknowledged its import, the board's reads (`Ready`, `Head`) wait, so nothing reads or
//! writes a slot whose review is still on its way.

use crate::client::{AskError, EntityClient};
use crate::command::{Command, Reply};
use crate::entity::{reply, Ctx, Outcome};
use crate::error::{invalid, DomainError};
use crate::history::{self, Entry, HistoryList, PageEntries, Recent};
use crate::limits::{valid_text, MAX_REVIEW_BODY_LEN, MAX_REVIEW_TITLE_LEN, REVIEW_PAGE_LEN};
use crate::review_slot::{slot_ref, ReviewSlotCommand};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Lowest rating.
pub const MIN_RATING: u8 = 1;
/// Highest rating.
pub const MAX_RATING: u8 = 5;

/// One customer's review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    /// Id within the product's reviews, from 1, in order of first submission (0 until the
    /// board has indexed it).
    pub id: u64,
    /// The author's display name when last submitted.
    pub author_name: String,
    /// 1 to 5.
    pub rating: u8,
    /// Title.
    pub title: String,
    /// Text (may be empty).
    pub body: String,
    /// First submission.
    pub created_at_ms: u64,
    /// Last change of the text or rating.
    pub updated_at_ms: u64,
    /// Hidden by an admin.
    pub hidden: bool,
}

impl Review {
    /// The rating the board counts for this review: none while hidden.
    pub fn vote(&self) -> Option<u8> {
        (!self.hidden).then_some(self.rating)
    }
}

/// What a customer submits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewInput {
    /// 1 to 5.
    pub rating: u8,
    /// 1..=`MAX_REVIEW_TITLE_LEN` characters.
    pub title: String,
    /// 0..=`MAX_REVIEW_BODY_LEN` characters.
    pub body: String,
}

/// Checks a submission; the error names the field.
pub fn validate(input: &ReviewInput) -> Result<(), DomainError> {
    if !(MIN_RATING..=MAX_RATING).contains(&input.rating) {
        return Err(invalid("rating", "an integer from 1 to 5"));
    }
    if input.title.trim().is_empty() || !valid_text(&input.title, MAX_REVIEW_TITLE_LEN) {
        return Err(invalid(
            "title",
            format!("1..={MAX_REVIEW_TITLE_LEN} printable characters"),
        ));
    }
    if !valid_text(&input.body, MAX_REVIEW_BODY_LEN) {
        return Err(invalid(
            "body",
            format!("at most {MAX_REVIEW_BODY_LEN} printable characters"),
        ));
    }
    Ok(())
}

/// Rating figures over the visible (not hidden) reviews.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RatingSummary {
    /// Visible reviews.
    pub count: u64,
    /// Sum of their ratings.
    pub sum: u64,
    /// Visible reviews per rating, index 0 for 1 star … index 4 for 5 stars.
    pub histogram: [u64; 5],
}

impl RatingSummary {
    /// The figures of a histogram of visible reviews per rating.
    pub fn from_histogram(histogram: [u64; 5]) -> Self {
        let count = histogram.iter().sum();
        let sum = (1u64..).zip(histogram).map(|(stars, n)| stars * n).sum();
        Self {
            count,
            sum,
            histogram,
        }
    }

    /// The average rating rounded to two decimals, 0 without reviews.
    pub fn average(&self) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let hundredths = (self.sum * 100 + self.count / 2) / self.count;
        hundredths as f64 / 100.0
    }
}

/// A review as read back: the review, visible or not, and whose it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewView {
    /// The SKU.
    pub sku: String,
    /// The review.
    pub review: Review,
}

/// One review's place in a board's listing index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewEntry {
    /// The review's id: its position in the index plus one.
    pub id: u64,
    /// The author's user id (the slot is `<sku>:<author>`).
    pub author: String,
    /// First submission.
    pub created_at_ms: u64,
}

/// Starts a header entry: user ids never hold a NUL character.
const HEADER_MARK: &str = "\u{0}sealed_pages";

impl Entry for ReviewEntry {
    const LIST: HistoryList = HistoryList::Reviews;
    const PAGE_LEN: usize = REVIEW_PAGE_LEN;

    fn header(sealed_pages: u64) -> Self {
        ReviewEntry {
            id: sealed_pages,
            author: HEADER_MARK.to_string(),
            created_at_ms: 0,
        }
    }

    fn header_pages(&self) -> Option<u64> {
        (self.author == HEADER_MARK).then_some(self.id)
    }

    fn into_page(entries: Vec<Self>) -> PageEntries {
        PageEntries::Reviews(entries)
    }

    fn from_page(page: PageEntries) -> Option<Vec<Self>> {
        match page {
            PageEntries::Reviews(v) => Some(v),
            _ => None,
        }
    }
}

/// The board's state: bounded whatever the number of reviews.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewBoardState {
    /// Visible reviews per rating, index 0 for 1 star … index 4 for 5 stars.
    pub histogram: [u64; 5],
    /// The listing index: the newest entries and the count of sealed pages.
    pub index: Recent<ReviewEntry>,
    /// Slots sent an `Import` by the migration that have not acknowledged it yet.
    pub importing: u64,
}

/// What the listing reads from a board: the figures and the index's newest entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewHead {
    /// Figures over every visible review.
    pub summary: RatingSummary,
    /// The index's newest entries and sealed page count.
    pub index: Recent<ReviewEntry>,
}

/// Commands for a ReviewBoard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReviewCommand {
    /// ORDER_DELIVERED as Orders sent it before slots existed (still in outboxes): passed on
    /// to the customer's slot.
    Delivered {
        /// The customer's user id.
        customer: String,
        /// The order, for logs.
        order_id: String,
    },
    /// REVIEW_CREATED from a slot: index its first review and count its rating.
    Index {
        /// The author's user id.
        author: String,
        /// The review's first submission.
        created_at_ms: u64,
        /// The rating to count (none if hidden meanwhile).
        rating: Option<u8>,
    },
    /// REVIEW_RECOUNTED from a slot: it now counts `to` instead of `from`.
    Recount {
        /// The author's user id.
        author: String,
        /// The rating counted so far (none: not counted).
        from: Option<u8>,
        /// The rating to count now (none: not counted).
        to: Option<u8>,
    },
    /// REVIEW_IMPORTED from a slot: the migration's `Import` arrived.
    Imported,
    /// Answers once no migrated review is on its way to its slot.
    Ready,
    /// Read the figures and the index's newest entries (waits as `Ready` does).
    Head,
}

/// A board as stored before slots: every review and waiting buyer inside.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyBoardState {
    /// Customers with a delivered order who had not reviewed yet (user ids).
    pub buyers: BTreeSet<String>,
    /// Reviews by author user id.
    pub reviews: BTreeMap<String, Review>,
    /// The id the last new review got.
    pub next_id: u64,
}

impl LegacyBoardState {
    /// The figures over the visible reviews.
    pub fn summary(&self) -> RatingSummary {
        let mut histogram = [0u64; 5];
        for r in self.reviews.values() {
            if let Some(n) = r.vote().and_then(|v| histogram.get_mut(bucket_index(v))) {
                *n += 1;
            }
        }
        RatingSummary::from_histogram(histogram)
    }
}

/// The histogram index of a rating (1 → 0 … 5 → 4; out of range → 5, no bucket).
fn bucket_index(rating: u8) -> usize {
    match rating {
        MIN_RATING..=MAX_RATING => usize::from(rating - 1),
        _ => 5,
    }
}

/// Turns a board stored before slots into the current form: its reviews become index
/// entries in order of id (their ids unchanged), and each review and waiting buyer is sent
/// to its slot; the board waits for every slot's acknowledgement (`importing`).
pub fn migrate(old: LegacyBoardState, ctx: &mut Ctx) -> ReviewBoardState {
    let sku = ctx.me.id.clone();
    let mut s = ReviewBoardState::default();
    let mut reviews: Vec<(String, Review)> = old.reviews.into_iter().collect();
    reviews.sort_by_key(|(_, r)| r.id);
    for (author, mut review) in reviews {
        let id = s.index.total() + 1;
        if review.id != id {
            tracing::warn!(sku, old = review.id, new = id, "migrated review renumbered");
        }
        review.id = id;
        if let Some(n) = review
            .vote()
            .and_then(|v| s.histogram.get_mut(bucket_index(v)))
        {
            *n += 1;
        }
        let entry = ReviewEntry {
            id,
            author: author.clone(),
            created_at_ms: review.created_at_ms,
        };
        s.index.append(entry, ctx);
        let import = ReviewSlotCommand::Import {
            review: Some(review),
        };
        ctx.send(
            slot_ref(&sku, &author),
            "REVIEW_MIGRATED",
            Command::ReviewSlot(import),
        );
        s.importing += 1;
    }
    for buyer in old.buyers {
        let import = ReviewSlotCommand::Import { review: None };
        ctx.send(
            slot_ref(&sku, &buyer),
            "REVIEW_MIGRATED",
            Command::ReviewSlot(import),
        );
        s.importing += 1;
    }
    s.assert_invariants();
    s
}

impl ReviewBoardState {
    /// The figures over the visible reviews.
    pub fn summary(&self) -> RatingSummary {
        RatingSummary::from_histogram(self.histogram)
    }

    /// Checks the board's invariants; panics (in every build) if one is broken: the index
    /// keeps at most its bound, its newest entries have the ids of their positions, and no
    /// more reviews are counted than indexed.
    pub fn assert_invariants(&self) {
        assert!(
            self.index.newest.len() <= Recent::<ReviewEntry>::MAX_NEWEST,
            "review index over its bound"
        );
        let first = self.index.first_recent();
        for (pos, entry) in (first..).zip(&self.index.newest) {
            assert_eq!(entry.id, pos + 1, "review id is not its position");
        }
        assert!(
            self.summary().count <= self.index.total(),
            "more reviews counted than indexed"
        );
    }

    /// Counts `rating` once more (`add`) or once less.
    fn count(&mut self, rating: Option<u8>, add: bool) -> Result<(), DomainError> {
        let Some(rating) = rating else { return Ok(()) };
        let Some(n) = self.histogram.get_mut(bucket_index(rating)) else {
            return Err(invalid("rating", "an integer from 1 to 5"));
        };
        *n = if add {
            n.saturating_add(1)
        } else {
            n.checked_sub(1).ok_or_else(|| {
                DomainError::Conflict(format!("no counted review of {rating} stars to remove"))
            })?
        };
        Ok(())
    }
}

/// Acknowledges a slot's message (`id`: the id its first review got).
fn counted(author: &str, id: Option<u64>, ctx: &mut Ctx) {
    let slot = slot_ref(&ctx.me.id, author);
    let ack = ReviewSlotCommand::Counted { id };
    ctx.send(slot, "REVIEW_COUNTED", Command::ReviewSlot(ack));
}

/// Handles one command.
pub fn handle(
    s: &mut ReviewBoardState,
    cmd: ReviewCommand,
    ctx: &mut Ctx,
) -> Result<Outcome, DomainError> {
    let out = match cmd {
        ReviewCommand::Delivered { customer, order_id } => {
            let slot = slot_ref(&ctx.me.id, &customer);
            let delivered = ReviewSlotCommand::Delivered { order_id };
            ctx.send(slot, "ORDER_DELIVERED", Command::ReviewSlot(delivered));
            reply(Reply::Ack)
        }
        ReviewCommand::Index {
            author,
            created_at_ms,
            rating,
        } => {
            s.count(rating, true)?;
            let id = s.index.total() + 1;
            let entry = ReviewEntry {
                id,
                author: author.clone(),
                created_at_ms,
            };
            s.index.append(entry, ctx);
            counted(&author, Some(id), ctx);
            reply(Reply::Ack)
        }
        ReviewCommand::Recount { author, from, to } => {
            s.count(from, false)?;
            s.count(to, true)?;
            counted(&author, None, ctx);
            reply(Reply::Ack)
        }
        ReviewCommand::Imported => {
            s.importing = s.importing.saturating_sub(1);
            reply(Reply::Ack)
        }
        ReviewCommand::Ready if s.importing > 0 => Ok(Outcome::Park),
        ReviewCommand::Ready => reply(Reply::Ack),
        ReviewCommand::Head if s.importing > 0 => Ok(Outcome::Park),
        ReviewCommand::Head => reply(Reply::ReviewHead(ReviewHead {
            summary: s.summary(),
            index: s.index.clone(),
        })),
    };
    s.assert_invariants();
    out
}

/// A page of a product's listing: the visible reviews among the index entries read, newest
/// first, and where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewListing {
    /// The visible reviews, newest first (fewer than asked when some are hidden).
    pub items: Vec<Review>,
    /// The `before` of the next page (a position in the index); `None` at the oldest.
    pub next_before: Option<u64>,
}

/// Reads the `limit` index entries before position `before` (from the newest when `None`)
/// of `sku`'s board whose head is `head`, and each entry's review from its slot; hidden
/// reviews are left out, so a page may come back short while `next_before` still moves on
/// by `limit` entries.
pub async fn list(
    client: &dyn EntityClient,
    sku: &str,
    head: &Recent<ReviewEntry>,
    before: Option<u64>,
    limit: usize,
) -> Result<ReviewListing, AskError> {
    let window = history::read(client, sku, head, before, limit).await?;
    let mut items = Vec::with_capacity(window.items.len());
    for entry in window.items {
        if let Some(review) = review_of(client, sku, &entry).await? {
            if !review.hidden {
                items.push(review);
            }
        }
    }
    Ok(ReviewListing {
        items,
        next_before: window.next_before,
    })
}

/// The review an index entry names, hidden or not; `None` if its slot holds no review of
/// that id.
pub async fn review_of(
    client: &dyn EntityClient,
    sku: &str,
    entry: &ReviewEntry,
) -> Result<Option<Review>, AskError> {
    let slot = slot_ref(sku, &entry.author);
    match client
        .ask(slot, Command::ReviewSlot(ReviewSlotCommand::Get))
        .await
    {
        // A slot whose id is still on its way (0) has only this entry's review.
        Ok(Reply::Review(ReviewView { mut review, .. }))
            if review.id == entry.id || review.id == 0 =>
        {
            review.id = entry.id;
            Ok(Some(review))
        }
        Ok(_) | Err(AskError::Domain(DomainError::NotFound(_))) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The index entry of review `id` of `sku`'s board whose head is `head`, if any.
pub async fn entry_of(
    client: &dyn EntityClient,
    sku: &str,
    head: &Recent<ReviewEntry>,
    id: u64,
) -> Result<Option<ReviewEntry>, AskError> {
    if id == 0 || id > head.total() {
        return Ok(None);
    }
    // Review `id` is at position `id - 1`.
    let window = history::read(client, sku, head, Some(id), 1).await?;
    Ok(window.items.into_iter().find(|e| e.id == id))
}

#[cfg(test)]
mod tests;
