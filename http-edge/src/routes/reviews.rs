//! Product reviews: read them with the rating figures, write or edit one's own (verified
//! purchase only), and hide or show one (admin).
//!
//! Each customer's review of a SKU lives in its ReviewSlot entity, which also decides who may
//! review: it learns of each delivered order containing the SKU from the Order itself,
//! through the outbox. The SKU's ReviewBoard keeps the figures and the listing index (see
//! `agora_actors::review`); a write is answered once the board counts it as it stands.

use super::products::fetch_product;
use crate::dto::{rfc3339, ReviewDto, ReviewPageDto, ReviewQuery, ReviewRequest};
use crate::extract::{Admin, ApiJson, ApiPath, ApiQuery, Caller};
use crate::problem::{ApiResult, Problem};
use crate::routes::paging::{self, CursorList};
use crate::routes::validate;
use crate::EdgeState;
use agora_actors::account::AccountCommand;
use agora_actors::client::EntityClient;
use agora_actors::review::{self, Review, ReviewCommand, ReviewHead, ReviewInput};
use agora_actors::review_slot::{slot_ref, ReviewSlotCommand};
use agora_actors::{Command, EntityKind, EntityRef, Reply};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use std::sync::Arc;

/// Largest page size.
pub const MAX_PER_PAGE: usize = 100;
/// Highest page number.
pub const MAX_PAGE: usize = 10_000;

fn dto(r: Review) -> ReviewDto {
    ReviewDto {
        id: r.id,
        author_name: r.author_name,
        rating: r.rating,
        title: r.title,
        body: r.body,
        verified_purchase: true,
        created_at: rfc3339(r.created_at_ms),
        updated_at: rfc3339(r.updated_at_ms),
        hidden: r.hidden,
    }
}

async fn ask_board(client: &dyn EntityClient, sku: &str, cmd: ReviewCommand) -> ApiResult<Reply> {
    Ok(client
        .ask(
            EntityRef::new(EntityKind::ReviewBoard, sku),
            Command::Review(cmd),
        )
        .await?)
}

/// Waits until the board has no migrated review on its way to a slot.
async fn board_ready(client: &dyn EntityClient, sku: &str) -> ApiResult<()> {
    match ask_board(client, sku, ReviewCommand::Ready).await? {
        Reply::Ack => Ok(()),
        _ => Err(Problem::internal("unexpected reply to ReviewBoard::Ready")),
    }
}

/// The board's figures and the newest entries of its index.
async fn board_head(client: &dyn EntityClient, sku: &str) -> ApiResult<ReviewHead> {
    match ask_board(client, sku, ReviewCommand::Head).await? {
        Reply::ReviewHead(h) => Ok(h),
        _ => Err(Problem::internal("unexpected reply to ReviewBoard::Head")),
    }
}

async fn ask_slot(
    client: &dyn EntityClient,
    sku: &str,
    customer: &str,
    cmd: ReviewSlotCommand,
) -> ApiResult<Review> {
    let slot = slot_ref(sku, customer);
    match client.ask(slot, Command::ReviewSlot(cmd)).await? {
        Reply::Review(v) => Ok(v.review),
        _ => Err(Problem::internal(
            "unexpected reply to a review slot command",
        )),
    }
}

/// How a listing was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    /// By `limit` and `cursor`: the index entries before the position the cursor holds.
    Cursor {
        /// Page size, in index entries.
        limit: usize,
        /// The position in the index to read before (from the newest when `None`).
        before: Option<u64>,
    },
    /// By `page` and `per_page` (also when neither way is named).
    Number {
        /// Page number, from 1.
        page: usize,
        /// Page size, in index entries.
        per_page: usize,
    },
}

/// The position a review cursor continues before. A cursor holds that position; one given
/// before review slots holds the last review's creation time and id, and review `id` is at
/// position `id - 1`.
fn cursor_before(cursor: &str) -> ApiResult<u64> {
    match paging::decode::<1>(CursorList::Reviews, cursor) {
        Ok([before]) => Ok(before),
        Err(e) => match paging::decode::<2>(CursorList::Reviews, cursor) {
            Ok([_created_at_ms, id]) => Ok(id.saturating_sub(1)),
            Err(_) => Err(e),
        },
    }
}

/// Checks the page parameters: `limit` and `cursor`, or `page` and `per_page`, not both.
pub fn paging(q: &ReviewQuery) -> ApiResult<Paging> {
    let by_number = q.page.is_some() || q.per_page.is_some();
    if q.limit.is_some() || q.cursor.is_some() {
        if by_number {
            return Err(Problem::bad_request(
                "page the reviews by limit and cursor, or by page and per_page, not both",
            ));
        }
        let before = q.cursor.as_deref().map(cursor_before).transpose()?;
        let limit = paging::limit(q.limit)?;
        return Ok(Paging::Cursor { limit, before });
    }
    let page = q.page.unwrap_or(1);
    let per_page = q.per_page.unwrap_or(paging::DEFAULT_LIMIT);
    if page == 0 || page > MAX_PAGE {
        return Err(Problem::invalid("page", format!("1..={MAX_PAGE}")));
    }
    if per_page == 0 || per_page > MAX_PER_PAGE {
        return Err(Problem::invalid("per_page", format!("1..={MAX_PER_PAGE}")));
    }
    Ok(Paging::Number { page, per_page })
}

/// Where a listing starts (`before`) and how many index entries it reads, over an index of
/// `total` entries; `None` for a page number past the end.
fn window(how: Paging, total: u64) -> Option<(Option<u64>, usize)> {
    match how {
        Paging::Cursor { limit, before } => Some((before, limit)),
        Paging::Number { page, per_page } => {
            let skip = (page as u64 - 1).saturating_mul(per_page as u64);
            (skip < total).then(|| (Some(total - skip), per_page))
        }
    }
}

/// Lists a product's visible reviews, newest first, with the average rating, the count and
/// the 1–5 histogram over all of them (hidden reviews count nowhere). Walk them with `limit`
/// and `next_cursor`, with no cap on how many a product has; `page` and `per_page` still
/// work (not with `limit` or `cursor`). A page covers `limit` (or `per_page`) reviews in
/// order of first submission and leaves hidden ones out, so it may hold fewer; an empty
/// page with a `next_cursor` is not the end.
#[utoipa::path(get, path = "/api/v1/products/{sku}/reviews", operation_id = "list_reviews", tag = "reviews",
    params(("sku" = String, Path, description = "SKU"),
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 100, description = "page size, 1..=100 (default 20)"),
        ("cursor" = Option<String>, Query, description = "the next_cursor of the previous page (opaque)"),
        ("page" = Option<usize>, Query, description = "page, from 1 (at most 10000); instead of cursor"),
        ("per_page" = Option<usize>, Query, description = "page size, 1..=100 (default 20); instead of limit")),
    responses((status = 200, body = ReviewPageDto), (status = 400, description = "malformed page, per_page or limit, a cursor this list did not give, or both ways of paging"),
              (status = 404, description = "no such product"), (status = 422, description = "page, per_page or limit out of range")))]
pub async fn list(
    State(st): State<Arc<EdgeState>>,
    ApiPath(sku): ApiPath<String>,
    ApiQuery(q): ApiQuery<ReviewQuery>,
) -> ApiResult<Json<ReviewPageDto>> {
    let client = st.client.as_ref();
    fetch_product(client, &sku).await?;
    let how = paging(&q)?;
    let head = board_head(client, &sku).await?;
    let (items, next_before) = match window(how, head.index.total()) {
        Some((before, limit)) => {
            let l = review::list(client, &sku, &head.index, before, limit).await?;
            (l.items, l.next_before)
        }
        None => (Vec::new(), None),
    };
    let next_cursor = next_before.map(|b| paging::encode(CursorList::Reviews, [b]));
    let histogram = (1..=5)
        .zip(head.summary.histogram)
        .map(|(stars, n)| (stars.to_string(), n))
        .collect();
    let (page, per_page) = match how {
        Paging::Number { page, per_page } => (Some(page), Some(per_page)),
        Paging::Cursor { .. } => (None, None),
    };
    Ok(Json(ReviewPageDto {
        sku,
        average: head.summary.average(),
        count: head.summary.count,
        histogram,
        items: items.into_iter().map(dto).collect(),
        next_cursor,
        page,
        per_page,
    }))
}

/// The caller's display name, shown with their reviews.
async fn display_name(client: &dyn EntityClient, user_id: &str) -> ApiResult<String> {
    match client
        .ask(
            EntityRef::new(EntityKind::Account, user_id),
            Command::Account(AccountCommand::Get),
        )
        .await?
    {
        Reply::Account(a) => Ok(a.name),
        _ => Err(Problem::internal("unexpected reply to Account::Get")),
    }
}

async fn save(
    st: &EdgeState,
    caller: Caller,
    sku: &str,
    req: ReviewRequest,
) -> ApiResult<(StatusCode, Json<ReviewDto>)> {
    fetch_product(st.client.as_ref(), sku).await?;
    let input = ReviewInput {
        rating: req.rating,
        title: req.title,
        body: req.body,
    };
    agora_actors::review::validate(&input)?;
    validate::name("title", &input.title)?;
    let client = st.client.as_ref();
    let author_name = display_name(client, &caller.user_id).await?;
    board_ready(client, sku).await?;
    let submit = ReviewSlotCommand::Submit { author_name, input };
    ask_slot(client, sku, &caller.user_id, submit).await?;
    // Answer once the board counts and lists the review as it now stands.
    let review = ask_slot(client, sku, &caller.user_id, ReviewSlotCommand::Settled).await?;
    let status = if review.created_at_ms == review.updated_at_ms {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(dto(review))))
}

/// Writes the caller's review of a product, or replaces it if they already wrote one (one
/// review per customer and product). Only a customer with a DELIVERED order containing the
/// product may review it. An edited review keeps its id, its creation time and, if an admin
/// hid it, stays hidden.
#[utoipa::path(post, path = "/api/v1/products/{sku}/reviews", tag = "reviews", request_body = ReviewRequest,
    security(("bearer" = [])), params(("sku" = String, Path, description = "SKU")),
    responses((status = 201, body = ReviewDto, description = "the review was created (a retry of that request answers 201 again)",
               headers(("Location" = String, description = "the caller's review: /api/v1/products/{sku}/reviews/mine"))),
              (status = 200, body = ReviewDto, description = "the caller's existing review was replaced"),
              (status = 401, description = "no valid bearer token"),
              (status = 403, description = "the caller has no delivered order of this product"),
              (status = 404, description = "no such product"),
              (status = 422, description = "rating not 1..=5, title not 1..=120 characters, body over 4000 characters, or an unknown field")))]
pub async fn submit(
    State(st): State<Arc<EdgeState>>,
    caller: Caller,
    ApiPath(sku): ApiPath<String>,
    ApiJson(req): ApiJson<ReviewRequest>,
) -> ApiResult<axum::response::Response> {
    let location = format!("/api/v1/products/{sku}/reviews/mine");
    Ok(crate::created::with_location(
        save(&st, caller, &sku, req).await?,
        &location,
    ))
}

/// Same as `POST /api/v1/products/{sku}/reviews`: creates or replaces the caller's review.
#[utoipa::path(put, path = "/api/v1/products/{sku}/reviews/mine", tag = "reviews", request_body = ReviewRequest,
    security(("bearer" = [])), params(("sku" = String, Path, description = "SKU")),
    responses((status = 201, body = ReviewDto, description = "the review was created"),
              (status = 200, body = ReviewDto, description = "the caller's existing review was replaced"),
              (status = 401, description = "no valid bearer token"),
              (status = 403, description = "the caller has no delivered order of this product"),
              (status = 404, description = "no such product"),
              (status = 422, description = "invalid field")))]
pub async fn put_mine(
    State(st): State<Arc<EdgeState>>,
    caller: Caller,
    ApiPath(sku): ApiPath<String>,
    ApiJson(req): ApiJson<ReviewRequest>,
) -> ApiResult<(StatusCode, Json<ReviewDto>)> {
    save(&st, caller, &sku, req).await
}

/// Reads the caller's own review of a product, including `hidden: true` if an admin hid it.
#[utoipa::path(get, path = "/api/v1/products/{sku}/reviews/mine", tag = "reviews",
    security(("bearer" = [])), params(("sku" = String, Path, description = "SKU")),
    responses((status = 200, body = ReviewDto), (status = 401, description = "no valid bearer token"),
              (status = 404, description = "no such product, or the caller has not reviewed it")))]
pub async fn get_mine(
    State(st): State<Arc<EdgeState>>,
    caller: Caller,
    ApiPath(sku): ApiPath<String>,
) -> ApiResult<Json<ReviewDto>> {
    let client = st.client.as_ref();
    fetch_product(client, &sku).await?;
    board_ready(client, &sku).await?;
    let r = ask_slot(client, &sku, &caller.user_id, ReviewSlotCommand::Settled).await?;
    Ok(Json(dto(r)))
}

async fn set_hidden(
    st: &EdgeState,
    sku: &str,
    review_id: u64,
    hidden: bool,
) -> ApiResult<Json<ReviewDto>> {
    let client = st.client.as_ref();
    fetch_product(client, sku).await?;
    let head = board_head(client, sku).await?;
    let Some(entry) = review::entry_of(client, sku, &head.index, review_id).await? else {
        return Err(Problem::not_found(format!("review {review_id}")));
    };
    let cmd = ReviewSlotCommand::SetHidden { review_id, hidden };
    ask_slot(client, sku, &entry.author, cmd).await?;
    // Answer once the board's figures follow.
    let r = ask_slot(client, sku, &entry.author, ReviewSlotCommand::Settled).await?;
    Ok(Json(dto(r)))
}

/// Hides a review (admin): it leaves the listing, the average, the count and the histogram
/// (also in product listings and search); its author still sees it. Hiding again changes
/// nothing.
#[utoipa::path(post, path = "/api/v1/products/{sku}/reviews/{review_id}/hide", tag = "reviews",
    security(("bearer" = [])),
    params(("sku" = String, Path, description = "SKU"), ("review_id" = u64, Path, description = "the review's id")),
    responses((status = 200, body = ReviewDto, description = "the hidden review (`hidden: true`)"),
              (status = 400, description = "malformed review id"), (status = 401, description = "no valid bearer token"),
              (status = 403, description = "not an admin"), (status = 404, description = "no such product or review")))]
pub async fn hide(
    State(st): State<Arc<EdgeState>>,
    _admin: Admin,
    ApiPath((sku, review_id)): ApiPath<(String, u64)>,
) -> ApiResult<Json<ReviewDto>> {
    set_hidden(&st, &sku, review_id, true).await
}

/// Shows a hidden review again (admin). Showing a visible review changes nothing.
#[utoipa::path(post, path = "/api/v1/products/{sku}/reviews/{review_id}/unhide", tag = "reviews",
    security(("bearer" = [])),
    params(("sku" = String, Path, description = "SKU"), ("review_id" = u64, Path, description = "the review's id")),
    responses((status = 200, body = ReviewDto), (status = 400, description = "malformed review id"),
              (status = 401, description = "no valid bearer token"), (status = 403, description = "not an admin"),
              (status = 404, description = "no such product or review")))]
pub async fn unhide(
    State(st): State<Arc<EdgeState>>,
    _admin: Admin,
    ApiPath((sku, review_id)): ApiPath<(String, u64)>,
) -> ApiResult<Json<ReviewDto>> {
    set_hidden(&st, &sku, review_id, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(page: Option<usize>, per_page: Option<usize>) -> ReviewQuery {
        ReviewQuery {
            page,
            per_page,
            ..ReviewQuery::default()
        }
    }

    #[test]
    fn page_numbers_count_index_entries_from_the_newest() {
        let number = |page, per_page| Paging::Number { page, per_page };
        assert_eq!(window(number(1, 20), 650), Some((Some(650), 20)));
        assert_eq!(window(number(3, 20), 650), Some((Some(610), 20)));
        assert_eq!(window(number(33, 20), 650), Some((Some(10), 20)));
        assert_eq!(window(number(34, 20), 650), None);
        assert_eq!(window(number(1, 20), 0), None);
        let cursor = Paging::Cursor {
            limit: 5,
            before: Some(9),
        };
        assert_eq!(window(cursor, 650), Some((Some(9), 5)));
    }

    #[test]
    fn paging_defaults_and_limits() {
        let number = |page, per_page| Paging::Number { page, per_page };
        assert_eq!(paging(&q(None, None)).unwrap(), number(1, 20));
        assert_eq!(paging(&q(Some(3), Some(10))).unwrap(), number(3, 10));
        assert_eq!(
            paging(&q(Some(MAX_PAGE), Some(MAX_PER_PAGE))).unwrap(),
            number(MAX_PAGE, MAX_PER_PAGE)
        );
        for (page, per_page, field) in [
            (Some(0), None, "page"),
            (Some(MAX_PAGE + 1), None, "page"),
            (None, Some(0), "per_page"),
            (None, Some(MAX_PER_PAGE + 1), "per_page"),
        ] {
            let p = paging(&q(page, per_page)).unwrap_err();
            assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(p.extra["field"], field);
        }
    }

    #[test]
    fn a_cursor_pages_by_key_and_does_not_mix_with_page_numbers() {
        let cursor = paging::encode(CursorList::Reviews, [640]);
        let by_cursor = |c: &str| ReviewQuery {
            cursor: Some(c.to_string()),
            ..ReviewQuery::default()
        };
        assert_eq!(
            paging(&by_cursor(&cursor)).unwrap(),
            Paging::Cursor {
                limit: 20,
                before: Some(640)
            }
        );
        // A cursor given before review slots (creation time and id of the last review
        // read) continues before that review's position.
        let old = paging::encode(CursorList::Reviews, [1_000, 7]);
        assert_eq!(
            paging(&by_cursor(&old)).unwrap(),
            Paging::Cursor {
                limit: 20,
                before: Some(6)
            }
        );
        let both = ReviewQuery {
            cursor: Some(cursor),
            page: Some(2),
            ..ReviewQuery::default()
        };
        assert_eq!(paging(&both).unwrap_err().status, StatusCode::BAD_REQUEST);
        let orders_cursor = ReviewQuery {
            cursor: Some(paging::encode(CursorList::Orders, [3])),
            ..ReviewQuery::default()
        };
        assert_eq!(
            paging(&orders_cursor).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        let too_many = ReviewQuery {
            limit: Some(101),
            ..ReviewQuery::default()
        };
        assert_eq!(
            paging(&too_many).unwrap_err().status,
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
}
