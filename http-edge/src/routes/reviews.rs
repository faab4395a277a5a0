//! Product reviews: read them with the rating figures, write or edit one's own (verified
//! purchase only), and hide or show one (admin).
//!
//! The ReviewBoard entity of the SKU decides who may review: it learns of each delivered
//! order containing the SKU from the Order itself, through the outbox.

use super::products::fetch_product;
use crate::dto::{rfc3339, ReviewDto, ReviewPageDto, ReviewQuery, ReviewRequest};
use crate::extract::{Admin, ApiJson, ApiPath, ApiQuery, Caller};
use crate::problem::{ApiResult, Problem};
use crate::routes::paging::{self, CursorList};
use crate::routes::validate;
use crate::EdgeState;
use agora_actors::account::AccountCommand;
use agora_actors::client::EntityClient;
use agora_actors::review::{Review, ReviewCommand, ReviewInput, ReviewKey};
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

async fn one_review(client: &dyn EntityClient, sku: &str, cmd: ReviewCommand) -> ApiResult<Review> {
    match ask_board(client, sku, cmd).await? {
        Reply::Review(v) => Ok(v.review),
        _ => Err(Problem::internal("unexpected reply to a review command")),
    }
}

/// How a listing was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    /// By `limit` and `cursor`: the reviews after the key the cursor holds.
    Cursor {
        /// Page size.
        limit: usize,
        /// The last review already read.
        after: Option<ReviewKey>,
    },
    /// By `page` and `per_page` (also when neither way is named).
    Number {
        /// Page number, from 1.
        page: usize,
        /// Page size.
        per_page: usize,
    },
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
        let after = match &q.cursor {
            Some(c) => {
                let [created_at_ms, id] = paging::decode(CursorList::Reviews, c)?;
                Some(ReviewKey { created_at_ms, id })
            }
            None => None,
        };
        let limit = paging::limit(q.limit)?;
        return Ok(Paging::Cursor { limit, after });
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

/// Lists a product's visible reviews, newest first, with the average rating, the count and
/// the 1–5 histogram over all of them (hidden reviews count nowhere). Walk them with `limit`
/// and `next_cursor`; `page` and `per_page` still work (not with `limit` or `cursor`).
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
    fetch_product(st.client.as_ref(), &sku).await?;
    let how = paging(&q)?;
    // One more than the page tells whether another page follows.
    let (cmd, limit) = match how {
        Paging::Cursor { limit, after } => (
            ReviewCommand::ListAfter {
                after,
                limit: limit + 1,
            },
            limit,
        ),
        Paging::Number { page, per_page } => (
            ReviewCommand::List {
                offset: (page - 1) * per_page,
                limit: per_page + 1,
            },
            per_page,
        ),
    };
    let Reply::Reviews(mut p) = ask_board(st.client.as_ref(), &sku, cmd).await? else {
        return Err(Problem::internal("unexpected reply to ReviewBoard::List"));
    };
    let next_cursor = if p.items.len() > limit {
        p.items.truncate(limit);
        p.items.last().map(|r| {
            let key = r.key();
            paging::encode(CursorList::Reviews, [key.created_at_ms, key.id])
        })
    } else {
        None
    };
    let histogram = (1..=5)
        .zip(p.summary.histogram)
        .map(|(stars, n)| (stars.to_string(), n))
        .collect();
    let (page, per_page) = match how {
        Paging::Number { page, per_page } => (Some(page), Some(per_page)),
        Paging::Cursor { .. } => (None, None),
    };
    Ok(Json(ReviewPageDto {
        sku,
        average: p.summary.average(),
        count: p.summary.count,
        histogram,
        items: p.items.into_iter().map(dto).collect(),
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
    let author_name = display_name(st.client.as_ref(), &caller.user_id).await?;
    let review = one_review(
        st.client.as_ref(),
        sku,
        ReviewCommand::Submit {
            author: caller.user_id,
            author_name,
            input,
        },
    )
    .await?;
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
    fetch_product(st.client.as_ref(), &sku).await?;
    let r = one_review(
        st.client.as_ref(),
        &sku,
        ReviewCommand::GetMine {
            author: caller.user_id,
        },
    )
    .await?;
    Ok(Json(dto(r)))
}

async fn set_hidden(
    st: &EdgeState,
    sku: &str,
    review_id: u64,
    hidden: bool,
) -> ApiResult<Json<ReviewDto>> {
    fetch_product(st.client.as_ref(), sku).await?;
    let r = one_review(
        st.client.as_ref(),
        sku,
        ReviewCommand::SetHidden { review_id, hidden },
    )
    .await?;
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
        let cursor = paging::encode(CursorList::Reviews, [1_000, 7]);
        let by_cursor = ReviewQuery {
            cursor: Some(cursor.clone()),
            ..ReviewQuery::default()
        };
        let after = Some(ReviewKey {
            created_at_ms: 1_000,
            id: 7,
        });
        assert_eq!(
            paging(&by_cursor).unwrap(),
            Paging::Cursor { limit: 20, after }
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
