//! ReviewBoard: the reviews of one product, keyed by SKU.
//!
//! Verified purchase is message-driven: when an order reaches DELIVERED, the Order sends
//! `Delivered` to the board of each SKU it contains (through the outbox, so at least once, and
//! deduplicated by message id like every message). The board remembers the buyer, and only a
//! remembered buyer may review. A customer has at most one review per SKU; submitting again
//! replaces its rating, title and body (the id, creation time and hidden flag stay). An admin
//! can hide a review: a hidden review leaves the listing, the average and the histogram, but
//! its author still reads it (`GetMine`) and editing it does not unhide it.
//!
//! The board is one record, rewritten on every change, so it is bounded: at most
//! `MAX_REVIEWS_PER_PRODUCT` reviews (a new one beyond is refused with a conflict; edits
//! still pass) and `MAX_WAITING_BUYERS_PER_PRODUCT` buyers who have not reviewed yet (a
//! buyer who reviews is known by the review and leaves that list; a delivery beyond it is
//! not remembered, and a review from an unknown customer is then refused with a conflict
//! rather than a "not a buyer"). Worst case about 8.5 MiB (every review at the longest
//! title and body in 4-byte characters), a few hundred KiB in practice.

use crate::command::Reply;
use crate::entity::{reply, Ctx, Outcome};
use crate::error::{invalid, DomainError};
use crate::limits::{valid_text, MAX_REVIEW_BODY_LEN, MAX_REVIEW_TITLE_LEN};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Lowest rating.
pub const MIN_RATING: u8 = 1;
/// Highest rating.
pub const MAX_RATING: u8 = 5;

/// Most reviews one product keeps.
pub const MAX_REVIEWS_PER_PRODUCT: usize = 500;
/// Most buyers of one product remembered before they review it.
pub const MAX_WAITING_BUYERS_PER_PRODUCT: usize = 5_000;

/// One customer's review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    /// Id within the board, from 1, in order of first submission.
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
    /// Where the review stands in the listing (newest first: a higher key comes first).
    pub fn key(&self) -> ReviewKey {
        ReviewKey {
            created_at_ms: self.created_at_ms,
            id: self.id,
        }
    }
}

/// A review's place in the listing: by creation time, then id (both only ever grow for a
/// new review, and an edit changes neither), so a walk by key sees each review once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReviewKey {
    /// First submission.
    pub created_at_ms: u64,
    /// Id within the board.
    pub id: u64,
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

/// The board's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewBoardState {
    /// Customers with a delivered order containing the SKU (user ids).
    pub buyers: BTreeSet<String>,
    /// Reviews by author user id.
    pub reviews: BTreeMap<String, Review>,
    /// The id the next new review gets.
    pub next_id: u64,
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

/// One page of visible reviews with the figures over all of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewPage {
    /// Figures over every visible review.
    pub summary: RatingSummary,
    /// The page, newest first (ties: higher id first).
    pub items: Vec<Review>,
}

/// Commands for a ReviewBoard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReviewCommand {
    /// ORDER_DELIVERED from an Order containing this SKU: `customer` may review.
    Delivered {
        /// The customer's user id.
        customer: String,
        /// The order, for logs.
        order_id: String,
    },
    /// Create or replace the author's review.
    Submit {
        /// The author's user id.
        author: String,
        /// The author's display name.
        author_name: String,
        /// What they wrote.
        input: ReviewInput,
    },
    /// Hide or show a review again (admin).
    SetHidden {
        /// The review's id.
        review_id: u64,
        /// Hidden or not.
        hidden: bool,
    },
    /// Read the author's own review, hidden or not.
    GetMine {
        /// The author's user id.
        author: String,
    },
    /// Read a page of visible reviews and the figures.
    List {
        /// Reviews to skip.
        offset: usize,
        /// Reviews to return.
        limit: usize,
    },
    /// Read the figures only.
    Summary,
    /// Read visible reviews listed after `after` (from the newest when `None`), newest first,
    /// and the figures.
    ListAfter {
        /// The key of the last review already read.
        after: Option<ReviewKey>,
        /// Reviews to return.
        limit: usize,
    },
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

impl ReviewBoardState {
    /// The figures over the visible reviews.
    pub fn summary(&self) -> RatingSummary {
        let mut s = RatingSummary::default();
        for r in self.reviews.values().filter(|r| !r.hidden) {
            s.count += 1;
            s.sum += u64::from(r.rating);
            if let Some(slot) = s.histogram.get_mut(usize::from(r.rating.saturating_sub(1))) {
                *slot += 1;
            }
        }
        s
    }

    /// The visible reviews, newest first (ties: higher id first).
    fn visible(&self) -> Vec<&Review> {
        let mut v: Vec<&Review> = self.reviews.values().filter(|r| !r.hidden).collect();
        v.sort_by_key(|r| std::cmp::Reverse(r.key()));
        v
    }

    /// A page of the visible reviews, newest first, that skips `offset` of them and those
    /// listed up to `after`, with the figures.
    fn page(&self, after: Option<ReviewKey>, offset: usize, limit: usize) -> ReviewPage {
        let items = self
            .visible()
            .into_iter()
            .filter(|r| after.is_none_or(|a| r.key() < a))
            .skip(offset)
            .take(limit)
            .cloned()
            .collect();
        ReviewPage {
            summary: self.summary(),
            items,
        }
    }
}

/// Whether `author` may submit: an edit of their review, or a first review by a buyer while
/// the board has room.
fn may_submit(s: &ReviewBoardState, author: &str) -> Result<(), DomainError> {
    if s.reviews.contains_key(author) {
        return Ok(());
    }
    if !s.buyers.contains(author) {
        if s.buyers.len() >= MAX_WAITING_BUYERS_PER_PRODUCT {
            return Err(DomainError::Conflict(format!(
                "this product's list of {MAX_WAITING_BUYERS_PER_PRODUCT} buyers waiting to review is full, so the purchase cannot be verified"
            )));
        }
        return Err(DomainError::Forbidden(
            "only a customer with a delivered order of this product may review it".into(),
        ));
    }
    if s.reviews.len() >= MAX_REVIEWS_PER_PRODUCT {
        return Err(DomainError::Conflict(format!(
            "this product has reached its limit of {MAX_REVIEWS_PER_PRODUCT} reviews"
        )));
    }
    Ok(())
}

fn view(ctx: &Ctx, review: &Review) -> Result<Outcome, DomainError> {
    reply(Reply::Review(ReviewView {
        sku: ctx.me.id.clone(),
        review: review.clone(),
    }))
}

/// Handles one command.
pub fn handle(
    s: &mut ReviewBoardState,
    cmd: ReviewCommand,
    ctx: &mut Ctx,
) -> Result<Outcome, DomainError> {
    match cmd {
        ReviewCommand::Delivered { customer, order_id } => {
            if s.reviews.contains_key(&customer) {
                // Already known by the review.
            } else if s.buyers.len() < MAX_WAITING_BUYERS_PER_PRODUCT {
                s.buyers.insert(customer);
            } else {
                tracing::warn!(sku = %ctx.me.id, order_id, "review board full: buyer not remembered");
            }
            reply(Reply::Ack)
        }
        ReviewCommand::Submit {
            author,
            author_name,
            input,
        } => {
            validate(&input)?;
            may_submit(s, &author)?;
            let now = ctx.now_ms;
            let ReviewInput {
                rating,
                title,
                body,
            } = input;
            match s.reviews.get_mut(&author) {
                Some(r) => {
                    if (r.rating, &r.title, &r.body, &r.author_name)
                        != (rating, &title, &body, &author_name)
                    {
                        r.rating = rating;
                        r.title = title;
                        r.body = body;
                        r.author_name = author_name;
                        r.updated_at_ms = now;
                    }
                }
                None => {
                    s.buyers.remove(&author);
                    s.next_id += 1;
                    s.reviews.insert(
                        author.clone(),
                        Review {
                            id: s.next_id,
                            author_name,
                            rating,
                            title,
                            body,
                            created_at_ms: now,
                            updated_at_ms: now,
                            hidden: false,
                        },
                    );
                }
            }
            match s.reviews.get(&author) {
                Some(r) => view(ctx, r),
                None => Err(DomainError::NotFound("review".into())),
            }
        }
        ReviewCommand::SetHidden { review_id, hidden } => {
            let Some(r) = s.reviews.values_mut().find(|r| r.id == review_id) else {
                return Err(DomainError::NotFound(format!("review {review_id}")));
            };
            r.hidden = hidden;
            let r = r.clone();
            view(ctx, &r)
        }
        ReviewCommand::GetMine { author } => match s.reviews.get(&author) {
            Some(r) => view(ctx, r),
            None => Err(DomainError::NotFound("your review of this product".into())),
        },
        ReviewCommand::List { offset, limit } => reply(Reply::Reviews(s.page(None, offset, limit))),
        ReviewCommand::ListAfter { after, limit } => reply(Reply::Reviews(s.page(after, 0, limit))),
        ReviewCommand::Summary => reply(Reply::Reviews(ReviewPage {
            summary: s.summary(),
            items: Vec::new(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::DomainConfig;
    use crate::{EntityKind, EntityRef};

    fn run(s: &mut ReviewBoardState, now: u64, cmd: ReviewCommand) -> Result<Reply, DomainError> {
        let me = EntityRef::new(EntityKind::ReviewBoard, "SKU-1");
        let config = DomainConfig::default();
        let mut ctx = Ctx::new(now, &me, 1, &config);
        let mut work = s.clone();
        let out = handle(&mut work, cmd, &mut ctx)?;
        assert!(ctx.outbox().is_empty(), "a board sends nothing");
        *s = work;
        match out {
            Outcome::Reply(r) => Ok(r),
            Outcome::Park => panic!("a board never parks"),
        }
    }

    fn input(rating: u8, title: &str) -> ReviewInput {
        ReviewInput {
            rating,
            title: title.into(),
            body: "body".into(),
        }
    }

    fn delivered(s: &mut ReviewBoardState, who: &str) {
        run(
            s,
            1,
            ReviewCommand::Delivered {
                customer: who.into(),
                order_id: format!("o-{who}"),
            },
        )
        .unwrap();
    }

    fn submit(
        s: &mut ReviewBoardState,
        who: &str,
        now: u64,
        i: ReviewInput,
    ) -> Result<Review, DomainError> {
        match run(
            s,
            now,
            ReviewCommand::Submit {
                author: who.into(),
                author_name: format!("name of {who}"),
                input: i,
            },
        )? {
            Reply::Review(v) => Ok(v.review),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn page(s: &mut ReviewBoardState, offset: usize, limit: usize) -> ReviewPage {
        match run(s, 1, ReviewCommand::List { offset, limit }).unwrap() {
            Reply::Reviews(p) => p,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn only_a_buyer_with_a_delivery_may_review() {
        let mut s = ReviewBoardState::default();
        let err = submit(&mut s, "u1", 5, input(5, "great")).unwrap_err();
        assert!(matches!(err, DomainError::Forbidden(_)), "{err:?}");
        assert_eq!(s, ReviewBoardState::default(), "a refusal changes nothing");
        delivered(&mut s, "u1");
        // The same delivery again (another order of the same SKU) changes nothing more.
        delivered(&mut s, "u1");
        assert_eq!(s.buyers.len(), 1);
        let r = submit(&mut s, "u1", 5, input(5, "great")).unwrap();
        assert_eq!(
            (r.id, r.rating, r.created_at_ms, r.hidden),
            (1, 5, 5, false)
        );
        // Another customer still may not.
        assert!(matches!(
            submit(&mut s, "u2", 6, input(1, "bad")),
            Err(DomainError::Forbidden(_))
        ));
    }

    #[test]
    fn bad_input_is_refused_before_anything_else() {
        let mut s = ReviewBoardState::default();
        delivered(&mut s, "u1");
        let before = s.clone();
        let field = |e: DomainError| match e {
            DomainError::Invalid { field, .. } => field,
            other => panic!("{other:?}"),
        };
        for rating in [0, 6, 255] {
            let e = submit(&mut s, "u1", 2, input(rating, "t")).unwrap_err();
            assert_eq!(field(e), "rating");
        }
        for title in ["", "   ", &"t".repeat(MAX_REVIEW_TITLE_LEN + 1), "a\u{0}b"] {
            let e = submit(&mut s, "u1", 2, input(3, title)).unwrap_err();
            assert_eq!(field(e), "title", "{title:?}");
        }
        let long = ReviewInput {
            body: "b".repeat(MAX_REVIEW_BODY_LEN + 1),
            ..input(3, "t")
        };
        assert_eq!(field(submit(&mut s, "u1", 2, long).unwrap_err()), "body");
        // A non-buyer with bad input learns about the input first (422 before 403).
        assert_eq!(
            field(submit(&mut s, "u9", 2, input(9, "t")).unwrap_err()),
            "rating"
        );
        assert_eq!(s, before);
        // The limits themselves are accepted.
        let max = ReviewInput {
            rating: 1,
            title: "t".repeat(MAX_REVIEW_TITLE_LEN),
            body: "b".repeat(MAX_REVIEW_BODY_LEN),
        };
        assert!(submit(&mut s, "u1", 2, max).is_ok());
    }

    #[test]
    fn a_second_submission_edits_the_one_review() {
        let mut s = ReviewBoardState::default();
        delivered(&mut s, "u1");
        submit(&mut s, "u1", 10, input(2, "meh")).unwrap();
        let r = submit(&mut s, "u1", 20, input(4, "better now")).unwrap();
        assert_eq!((r.id, r.rating, r.title.as_str()), (1, 4, "better now"));
        assert_eq!((r.created_at_ms, r.updated_at_ms), (10, 20));
        assert_eq!(s.reviews.len(), 1);
        // The same text again is no change at all (a retried request).
        let again = s.clone();
        submit(&mut s, "u1", 30, input(4, "better now")).unwrap();
        assert_eq!(s, again);
        let p = page(&mut s, 0, 10);
        assert_eq!((p.summary.count, p.summary.sum), (1, 4));
        assert_eq!(p.summary.histogram, [0, 0, 0, 1, 0]);
    }

    #[test]
    fn hidden_reviews_leave_the_figures_but_not_their_author() {
        let mut s = ReviewBoardState::default();
        for (i, who) in ["a", "b", "c"].iter().enumerate() {
            delivered(&mut s, who);
            submit(&mut s, who, 10 + i as u64, input(5 - i as u8 * 2, who)).unwrap();
        }
        // Ratings 5, 3, 1.
        let p = page(&mut s, 0, 10);
        assert_eq!(p.summary.histogram, [1, 0, 1, 0, 1]);
        assert_eq!(p.summary.average(), 3.0);
        let titles: Vec<_> = p.items.iter().map(|r| r.title.as_str()).collect();
        assert_eq!(titles, ["c", "b", "a"], "newest first");

        let hidden = run(
            &mut s,
            50,
            ReviewCommand::SetHidden {
                review_id: 3,
                hidden: true,
            },
        )
        .unwrap();
        assert!(matches!(hidden, Reply::Review(ref v) if v.review.hidden && v.review.title == "c"));
        let p = page(&mut s, 0, 10);
        assert_eq!((p.summary.count, p.summary.average()), (2, 4.0));
        assert_eq!(p.summary.histogram, [0, 0, 1, 0, 1]);
        assert_eq!(p.items.len(), 2);
        // The author still sees it, and editing it keeps it hidden.
        let mine = run(&mut s, 51, ReviewCommand::GetMine { author: "c".into() }).unwrap();
        assert!(matches!(mine, Reply::Review(ref v) if v.review.hidden));
        assert!(submit(&mut s, "c", 52, input(2, "edited")).unwrap().hidden);
        assert_eq!(page(&mut s, 0, 10).summary.count, 2);
        // Shown again, it counts again.
        run(
            &mut s,
            53,
            ReviewCommand::SetHidden {
                review_id: 3,
                hidden: false,
            },
        )
        .unwrap();
        let p = page(&mut s, 0, 10);
        assert_eq!(p.summary.histogram, [0, 1, 1, 0, 1]);
        assert_eq!(p.summary.average(), 3.33);
        // Unknown ids and reviews are not found.
        assert!(matches!(
            run(
                &mut s,
                54,
                ReviewCommand::SetHidden {
                    review_id: 99,
                    hidden: true
                }
            ),
            Err(DomainError::NotFound(_))
        ));
        assert!(matches!(
            run(
                &mut s,
                54,
                ReviewCommand::GetMine {
                    author: "zz".into()
                }
            ),
            Err(DomainError::NotFound(_))
        ));
    }

    #[test]
    fn pages_split_the_visible_reviews() {
        let mut s = ReviewBoardState::default();
        for i in 0..7u64 {
            let who = format!("u{i}");
            delivered(&mut s, &who);
            submit(&mut s, &who, 100 - i, input(4, &who)).unwrap();
        }
        let first = page(&mut s, 0, 3);
        let rest = page(&mut s, 3, 10);
        assert_eq!(first.items.len(), 3);
        assert_eq!(rest.items.len(), 4);
        assert_eq!(first.summary.count, 7);
        let ids: Vec<u64> = first
            .items
            .iter()
            .chain(&rest.items)
            .map(|r| r.id)
            .collect();
        assert_eq!(
            ids,
            [1, 2, 3, 4, 5, 6, 7],
            "newest (created first here) first"
        );
        assert!(page(&mut s, 7, 3).items.is_empty());
        // By key: each review once, newest first, even with a review added mid-walk.
        let mut after = None;
        let mut seen = Vec::new();
        loop {
            let cmd = ReviewCommand::ListAfter { after, limit: 3 };
            let Reply::Reviews(p) = run(&mut s, 1, cmd).unwrap() else {
                panic!("not a page");
            };
            let Some(last) = p.items.last() else { break };
            after = Some(last.key());
            seen.extend(p.items.iter().map(|r| r.id));
            if seen.len() == 3 {
                delivered(&mut s, "late");
                submit(&mut s, "late", 1_000, input(3, "late")).unwrap();
            }
        }
        assert_eq!(seen, [1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn average_rounds_to_hundredths() {
        let s = |count, sum| RatingSummary {
            count,
            sum,
            histogram: [0; 5],
        };
        assert_eq!(s(0, 0).average(), 0.0);
        assert_eq!(s(3, 14).average(), 4.67);
        assert_eq!(s(3, 13).average(), 4.33);
        assert_eq!(s(8, 37).average(), 4.63);
        assert_eq!(s(1, 5).average(), 5.0);
    }

    #[test]
    fn the_board_is_bounded_and_says_so_when_full() {
        let me = EntityRef::new(EntityKind::ReviewBoard, "SKU-1");
        let config = DomainConfig::default();
        let mut ctx = Ctx::new(1, &me, 1, &config);
        let mut s = ReviewBoardState::default();
        let mut send = |s: &mut ReviewBoardState, cmd| handle(s, cmd, &mut ctx).map(|_| ());
        let deliver = |who: String| ReviewCommand::Delivered {
            customer: who,
            order_id: "o".into(),
        };
        let review = |who: String| ReviewCommand::Submit {
            author: who,
            author_name: "n".into(),
            input: input(5, "t"),
        };
        // Reviews up to the bound; each reviewer leaves the waiting buyers.
        for i in 0..=MAX_REVIEWS_PER_PRODUCT {
            send(&mut s, deliver(format!("r{i}"))).unwrap();
        }
        for i in 0..MAX_REVIEWS_PER_PRODUCT {
            send(&mut s, review(format!("r{i}"))).unwrap();
        }
        assert_eq!(s.reviews.len(), MAX_REVIEWS_PER_PRODUCT);
        assert_eq!(s.buyers.len(), 1);
        let e = send(&mut s, review(format!("r{MAX_REVIEWS_PER_PRODUCT}"))).unwrap_err();
        assert!(
            matches!(&e, DomainError::Conflict(m) if m.contains("limit")),
            "{e:?}"
        );
        assert_eq!(s.reviews.len(), MAX_REVIEWS_PER_PRODUCT);
        send(&mut s, review("r0".into())).expect("an edit passes at the bound");
        // A reviewer's later delivery takes no waiting place.
        send(&mut s, deliver("r1".into())).unwrap();
        assert_eq!(s.buyers.len(), 1);
        // Waiting buyers up to the bound; a delivery beyond is not remembered, and a review
        // from a customer the board does not know is then a conflict, not "not a buyer".
        for i in 0..MAX_WAITING_BUYERS_PER_PRODUCT + 10 {
            send(&mut s, deliver(format!("w{i}"))).unwrap();
        }
        assert_eq!(s.buyers.len(), MAX_WAITING_BUYERS_PER_PRODUCT);
        let e = send(&mut s, review("stranger".into())).unwrap_err();
        assert!(
            matches!(&e, DomainError::Conflict(m) if m.contains("full")),
            "{e:?}"
        );
    }

    #[test]
    fn a_full_board_at_the_longest_texts_fits_one_cluster_frame() {
        let wide = |n: usize| "\u{1F600}".repeat(n);
        let mut s = ReviewBoardState::default();
        for i in 0..MAX_REVIEWS_PER_PRODUCT {
            let review = Review {
                id: i as u64,
                author_name: wide(crate::limits::MAX_NAME_LEN),
                rating: 5,
                title: wide(MAX_REVIEW_TITLE_LEN),
                body: wide(MAX_REVIEW_BODY_LEN),
                created_at_ms: u64::MAX,
                updated_at_ms: u64::MAX,
                hidden: false,
            };
            s.reviews.insert(format!("{i:036}"), review);
        }
        s.buyers = (0..MAX_WAITING_BUYERS_PER_PRODUCT)
            .map(|i| format!("{i:036}"))
            .collect();
        let bytes = crate::host::EntityState::ReviewBoard(s).encode().unwrap();
        // The cluster's default frame limit (`cluster_connections.max_frame_bytes`).
        assert!(bytes.len() < 16 * 1024 * 1024, "{} bytes", bytes.len());
    }
}
