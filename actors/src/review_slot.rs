//! ReviewSlot: one customer's review of one product, keyed by `<sku>:<customer>` (a SKU
//! never holds a `:`, so the first one splits the id).
//!
//! The slot learns that its customer bought the product from the Order (`Delivered`,
//! through the outbox), so a verified purchase is checked here and nothing else remembers
//! buyers. It holds the review itself (rating, title, body, timestamps, hidden flag): one
//! review per customer and product, a second submission edits it (the id, creation time
//! and hidden flag stay). An admin can hide it: it then leaves the listing and the figures,
//! but its author still reads it and editing it does not unhide it.
//!
//! The product's board counts the slot's rating and lists it ([`crate::review`]): the slot
//! tells it of a first review (`Index`, which gives the review its id) and of each change
//! of what it counts (`Recount`), one message in flight at a time. [`ReviewSlotState::counted`]
//! is what the board counts once the message in flight (if any) is applied, and
//! `awaiting` says one is in flight; the board's acknowledgement (`Counted`) clears it and
//! sends the next change, if any. A write is *settled* when nothing is in flight and the
//! board counts the review as it stands; `Settled` waits for that.

use crate::command::{Command, Reply};
use crate::entity::{reply, Ctx, Outcome};
use crate::error::DomainError;
use crate::review::{validate, Review, ReviewCommand, ReviewInput, ReviewView};
use crate::{EntityKind, EntityRef};
use serde::{Deserialize, Serialize};

/// The slot of `customer`'s review of `sku`.
pub fn slot_ref(sku: &str, customer: &str) -> EntityRef {
    EntityRef::new(EntityKind::ReviewSlot, format!("{sku}:{customer}"))
}

/// The SKU and customer of a slot id, or `None` for another id.
pub fn slot_parts(slot_id: &str) -> Option<(&str, &str)> {
    slot_id
        .split_once(':')
        .filter(|(sku, customer)| !sku.is_empty() && !customer.is_empty())
}

/// A slot's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewSlotState {
    /// The customer has a delivered order containing the SKU.
    pub bought: bool,
    /// The customer's review (its id is 0 until the board has indexed it).
    pub review: Option<Review>,
    /// The rating the board counts for this slot once the message in flight is applied
    /// (none: not counted).
    pub counted: Option<u8>,
    /// A message to the board has not been acknowledged yet.
    pub awaiting: bool,
}

/// Commands for a ReviewSlot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReviewSlotCommand {
    /// ORDER_DELIVERED from an Order containing the SKU: the customer may review.
    Delivered {
        /// The order, for logs.
        order_id: String,
    },
    /// Create or replace the customer's review.
    Submit {
        /// The author's display name.
        author_name: String,
        /// What they wrote.
        input: ReviewInput,
    },
    /// Hide or show the review again (admin); `review_id` must be this slot's review.
    SetHidden {
        /// The review's id.
        review_id: u64,
        /// Hidden or not.
        hidden: bool,
    },
    /// Read the review, hidden or not, as it stands.
    Get,
    /// Read the review once the board counts it as it stands (waits while a message to the
    /// board is in flight).
    Settled,
    /// REVIEW_MIGRATED from a board stored before slots: the customer bought the product,
    /// and this is their review (already counted and indexed by the board), if any.
    Import {
        /// The review, with its id.
        review: Option<Review>,
    },
    /// REVIEW_COUNTED from the board: the message in flight is applied (`id`: the id the
    /// first review got).
    Counted {
        /// The review's id, for an `Index`.
        id: Option<u64>,
    },
}

impl ReviewSlotState {
    /// The rating the board should count: the review's, unless hidden.
    pub fn vote(&self) -> Option<u8> {
        self.review.as_ref().and_then(Review::vote)
    }

    /// Whether the board counts the review as it stands and nothing is in flight.
    pub fn settled(&self) -> bool {
        !self.awaiting
            && self.counted == self.vote()
            && self.review.as_ref().is_none_or(|r| r.id > 0)
    }

    /// Checks the slot's invariants; panics (in every build) if one is broken: a review has
    /// an id unless its `Index` is in flight, a review exists only for a buyer, and with
    /// nothing in flight the board counts what the slot shows.
    pub fn assert_invariants(&self) {
        if let Some(r) = &self.review {
            assert!(
                r.id > 0 || self.awaiting,
                "an unindexed review with nothing in flight"
            );
            assert!(self.bought, "a review without a purchase");
        }
        if !self.awaiting {
            assert_eq!(self.counted, self.vote(), "the board counts another rating");
        }
    }
}

/// The slot's SKU and customer, from its id.
fn parts(ctx: &Ctx) -> Result<(String, String), DomainError> {
    slot_parts(&ctx.me.id)
        .map(|(sku, customer)| (sku.to_string(), customer.to_string()))
        .ok_or_else(|| DomainError::NotFound(format!("review slot {}", ctx.me.id)))
}

/// Sends the board the change of what it should count, unless a message is in flight (the
/// acknowledgement sends it then) or there is none.
fn sync(s: &mut ReviewSlotState, ctx: &mut Ctx) -> Result<(), DomainError> {
    if s.awaiting {
        return Ok(());
    }
    let Some(review) = &s.review else {
        return Ok(());
    };
    let want = s.vote();
    let (sku, author) = parts(ctx)?;
    let (topic, cmd) = if review.id == 0 {
        let created_at_ms = review.created_at_ms;
        let rating = want;
        let index = ReviewCommand::Index {
            author,
            created_at_ms,
            rating,
        };
        ("REVIEW_CREATED", index)
    } else if want != s.counted {
        let from = s.counted;
        (
            "REVIEW_RECOUNTED",
            ReviewCommand::Recount {
                author,
                from,
                to: want,
            },
        )
    } else {
        return Ok(());
    };
    let board = EntityRef::new(EntityKind::ReviewBoard, sku);
    ctx.send(board, topic, Command::Review(cmd));
    s.counted = want;
    s.awaiting = true;
    Ok(())
}

/// Creates the review (a buyer's first) or edits it.
fn submit(
    s: &mut ReviewSlotState,
    author_name: String,
    input: ReviewInput,
    now: u64,
) -> Result<(), DomainError> {
    let ReviewInput {
        rating,
        title,
        body,
    } = input;
    match &mut s.review {
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
        None if !s.bought => {
            return Err(DomainError::Forbidden(
                "only a customer with a delivered order of this product may review it".into(),
            ))
        }
        None => {
            s.review = Some(Review {
                id: 0,
                author_name,
                rating,
                title,
                body,
                created_at_ms: now,
                updated_at_ms: now,
                hidden: false,
            })
        }
    }
    Ok(())
}

/// Answers with the review.
fn view(s: &ReviewSlotState, ctx: &Ctx) -> Result<Outcome, DomainError> {
    let (sku, _) = parts(ctx)?;
    match &s.review {
        Some(review) => reply(Reply::Review(ReviewView {
            sku,
            review: review.clone(),
        })),
        None => Err(DomainError::NotFound("your review of this product".into())),
    }
}

/// Handles one command.
pub fn handle(
    s: &mut ReviewSlotState,
    cmd: ReviewSlotCommand,
    ctx: &mut Ctx,
) -> Result<Outcome, DomainError> {
    let out = match cmd {
        ReviewSlotCommand::Delivered { order_id: _ } => {
            s.bought = true;
            reply(Reply::Ack)
        }
        ReviewSlotCommand::Submit { author_name, input } => {
            validate(&input)?;
            submit(s, author_name, input, ctx.now_ms)?;
            sync(s, ctx)?;
            view(s, ctx)
        }
        ReviewSlotCommand::SetHidden { review_id, hidden } => {
            let Some(r) = s.review.as_mut().filter(|r| r.id > 0 && r.id == review_id) else {
                return Err(DomainError::NotFound(format!("review {review_id}")));
            };
            r.hidden = hidden;
            sync(s, ctx)?;
            view(s, ctx)
        }
        ReviewSlotCommand::Get => view(s, ctx),
        ReviewSlotCommand::Settled if s.review.is_some() && !s.settled() => Ok(Outcome::Park),
        ReviewSlotCommand::Settled => view(s, ctx),
        ReviewSlotCommand::Import { review } => {
            import(s, review, ctx)?;
            reply(Reply::Ack)
        }
        ReviewSlotCommand::Counted { id } => {
            acknowledged(s, id, ctx)?;
            reply(Reply::Ack)
        }
    };
    s.assert_invariants();
    out
}

/// Takes a migrated review (the board already counts it) and acknowledges it.
fn import(
    s: &mut ReviewSlotState,
    review: Option<Review>,
    ctx: &mut Ctx,
) -> Result<(), DomainError> {
    let (sku, _) = parts(ctx)?;
    s.bought = true;
    if let Some(review) = review {
        if s.review.is_some() {
            // The board waits for every import before a write reaches a slot.
            tracing::error!(slot = %ctx.me.id, "a migrated review met a newer one: kept the newer");
        } else {
            s.counted = review.vote();
            s.awaiting = false;
            s.review = Some(review);
        }
    }
    let board = EntityRef::new(EntityKind::ReviewBoard, sku);
    ctx.send(
        board,
        "REVIEW_IMPORTED",
        Command::Review(ReviewCommand::Imported),
    );
    Ok(())
}

/// The board applied the message in flight: take the review's id, send the next change.
fn acknowledged(
    s: &mut ReviewSlotState,
    id: Option<u64>,
    ctx: &mut Ctx,
) -> Result<(), DomainError> {
    if !s.awaiting {
        tracing::warn!(slot = %ctx.me.id, "an acknowledgement with nothing in flight");
        return Ok(());
    }
    s.awaiting = false;
    if let (Some(id), Some(r)) = (id, s.review.as_mut()) {
        if r.id == 0 {
            r.id = id;
        }
    }
    sync(s, ctx)
}

#[cfg(test)]
mod tests;
