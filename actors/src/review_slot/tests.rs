//! Tests of one review slot's state machine on its own.

use super::*;
use crate::entity::DomainConfig;
use crate::limits::{MAX_REVIEW_BODY_LEN, MAX_REVIEW_TITLE_LEN};
use crate::message::{Body, Destination};

/// Runs `cmd` on a copy of `s`, kept if accepted; the reply and the board messages sent.
fn run(
    s: &mut ReviewSlotState,
    now: u64,
    cmd: ReviewSlotCommand,
) -> Result<(Outcome, Vec<ReviewCommand>), DomainError> {
    let me = slot_ref("SKU-1", "u1");
    let config = DomainConfig::default();
    let mut ctx = Ctx::new(now, &me, 1, &config);
    let mut work = s.clone();
    let out = handle(&mut work, cmd, &mut ctx)?;
    *s = work;
    let sent = ctx
        .take_outbox()
        .into_iter()
        .map(|m| match (m.to, m.body) {
            (Destination::Entity(to), Body::Command(Command::Review(c))) => {
                assert_eq!(to, EntityRef::new(EntityKind::ReviewBoard, "SKU-1"));
                c
            }
            other => panic!("a slot only writes to its board: {other:?}"),
        })
        .collect();
    Ok((out, sent))
}

fn input(rating: u8, title: &str) -> ReviewInput {
    ReviewInput {
        rating,
        title: title.into(),
        body: "body".into(),
    }
}

fn submit(rating: u8, title: &str) -> ReviewSlotCommand {
    ReviewSlotCommand::Submit {
        author_name: "n".into(),
        input: input(rating, title),
    }
}

#[test]
fn slot_ids_split_at_the_first_colon() {
    let r = slot_ref("SKU-1", "6f1c0c3b-9d10-5c4e-9a51-2f1c0c3b9d10");
    assert_eq!(r.kind, EntityKind::ReviewSlot);
    assert_eq!(
        slot_parts(&r.id),
        Some(("SKU-1", "6f1c0c3b-9d10-5c4e-9a51-2f1c0c3b9d10"))
    );
    // The longest SKU and a user id stay within the admin API's 128 characters.
    let long = slot_ref(&"S".repeat(crate::limits::MAX_SKU_LEN), &"u".repeat(36));
    assert!(long.id.len() <= 128);
    for bad in ["", ":", "SKU", ":u", "SKU:"] {
        assert_eq!(slot_parts(bad), None, "{bad}");
    }
}

#[test]
fn only_a_buyer_may_review_and_bad_input_is_refused_first() {
    let mut s = ReviewSlotState::default();
    let err = run(&mut s, 5, submit(5, "great")).unwrap_err();
    assert!(matches!(err, DomainError::Forbidden(_)), "{err:?}");
    // A non-buyer with bad input learns about the input first (422 before 403).
    let field = |e: DomainError| match e {
        DomainError::Invalid { field, .. } => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(field(run(&mut s, 5, submit(9, "t")).unwrap_err()), "rating");
    assert_eq!(s, ReviewSlotState::default(), "a refusal changes nothing");
    let delivered = ReviewSlotCommand::Delivered {
        order_id: "o".into(),
    };
    run(&mut s, 1, delivered.clone()).unwrap();
    run(&mut s, 1, delivered).unwrap();
    let before = s.clone();
    for rating in [0, 6, 255] {
        assert_eq!(
            field(run(&mut s, 2, submit(rating, "t")).unwrap_err()),
            "rating"
        );
    }
    for title in ["", "   ", &"t".repeat(MAX_REVIEW_TITLE_LEN + 1), "a\u{0}b"] {
        assert_eq!(
            field(run(&mut s, 2, submit(3, title)).unwrap_err()),
            "title"
        );
    }
    let long = ReviewSlotCommand::Submit {
        author_name: "n".into(),
        input: ReviewInput {
            body: "b".repeat(MAX_REVIEW_BODY_LEN + 1),
            ..input(3, "t")
        },
    };
    assert_eq!(field(run(&mut s, 2, long).unwrap_err()), "body");
    assert_eq!(s, before);
    // The limits themselves are accepted.
    let max = ReviewSlotCommand::Submit {
        author_name: "n".into(),
        input: ReviewInput {
            rating: 1,
            title: "t".repeat(MAX_REVIEW_TITLE_LEN),
            body: "b".repeat(MAX_REVIEW_BODY_LEN),
        },
    };
    assert!(run(&mut s, 2, max).is_ok());
}

#[test]
fn one_message_in_flight_and_the_next_change_sent_with_the_acknowledgement() {
    let mut s = ReviewSlotState {
        bought: true,
        ..ReviewSlotState::default()
    };
    let (_, sent) = run(&mut s, 10, submit(2, "meh")).unwrap();
    assert_eq!(
        sent,
        [ReviewCommand::Index {
            author: "u1".into(),
            created_at_ms: 10,
            rating: Some(2)
        }]
    );
    // An edit while the index is in flight sends nothing yet, and is not settled.
    let (_, sent) = run(&mut s, 20, submit(4, "better")).unwrap();
    assert!(sent.is_empty());
    assert_eq!(
        run(&mut s, 21, ReviewSlotCommand::Settled).unwrap().0,
        Outcome::Park
    );
    // The acknowledgement brings the id and sends the change.
    let (_, sent) = run(&mut s, 22, ReviewSlotCommand::Counted { id: Some(7) }).unwrap();
    assert_eq!(
        sent,
        [ReviewCommand::Recount {
            author: "u1".into(),
            from: Some(2),
            to: Some(4)
        }]
    );
    let r = s.review.clone().unwrap();
    assert_eq!(
        (r.id, r.rating, r.created_at_ms, r.updated_at_ms),
        (7, 4, 10, 20)
    );
    run(&mut s, 23, ReviewSlotCommand::Counted { id: None }).unwrap();
    assert!(s.settled());
    // The same text again is no change at all (a retried request): nothing sent.
    let again = s.clone();
    let (_, sent) = run(&mut s, 30, submit(4, "better")).unwrap();
    assert!(sent.is_empty());
    assert_eq!(s, again);
    // Hiding and showing again before the board answers: one message, then none needed.
    let hide = |hidden| ReviewSlotCommand::SetHidden {
        review_id: 7,
        hidden,
    };
    let (_, sent) = run(&mut s, 31, hide(true)).unwrap();
    assert_eq!(sent.len(), 1);
    run(&mut s, 32, hide(false)).unwrap();
    let (_, sent) = run(&mut s, 33, ReviewSlotCommand::Counted { id: None }).unwrap();
    assert_eq!(
        sent,
        [ReviewCommand::Recount {
            author: "u1".into(),
            from: None,
            to: Some(4)
        }],
        "shown again: counted again"
    );
    // An acknowledgement with nothing in flight (never sent twice) changes nothing.
    run(&mut s, 34, ReviewSlotCommand::Counted { id: None }).unwrap();
    let settled = s.clone();
    run(&mut s, 35, ReviewSlotCommand::Counted { id: Some(99) }).unwrap();
    assert_eq!(s, settled);
}

#[test]
fn an_imported_review_is_counted_already_and_acknowledged() {
    let mut s = ReviewSlotState::default();
    let review = Review {
        id: 3,
        author_name: "n".into(),
        rating: 5,
        title: "t".into(),
        body: String::new(),
        created_at_ms: 1,
        updated_at_ms: 1,
        hidden: true,
    };
    let (_, sent) = run(
        &mut s,
        2,
        ReviewSlotCommand::Import {
            review: Some(review),
        },
    )
    .unwrap();
    assert_eq!(sent, [ReviewCommand::Imported]);
    assert!(s.bought && s.settled());
    assert_eq!(s.counted, None, "a hidden review is not counted");
}
