//! The OpenAPI document, generated from the handlers' annotations.

use crate::dto::*;
use crate::routes::{
    cart, inventory, me, notifications, orders, products, reviews, session, users,
};
use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Every error answer is a problem (`application/problem+json`): each operation's documented
/// errors get the `ProblemDto` schema, and the errors any operation may answer are documented
/// on all of them: a malformed request (400), no valid token (401, where a token is needed), a
/// body too large, not JSON or not a valid request (413, 415, 422, with a body), too many
/// requests (429, when rate limits are on) and a shard not served right now (503, retry after
/// `Retry-After`).
struct ProblemResponses;

impl Modify for ProblemResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        add_problem_responses(openapi, |op| {
            let mut common = vec![
                ("400", "malformed request: bad path, query or JSON"),
                ("429", "too many requests; retry after Retry-After seconds"),
                (
                    "503",
                    "not served right now (failover, overload); retry after Retry-After seconds",
                ),
            ];
            if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                common.push((
                    "401",
                    "no valid bearer token (missing, malformed or expired)",
                ));
            }
            if op.request_body.is_some() {
                common.push(("413", "body too large"));
                common.push(("415", "body is not application/json"));
                common.push((
                    "422",
                    "the body is JSON but not a valid request (a field missing, of the wrong type or out of range)",
                ));
            }
            common
        });
    }
}

/// Documents every operation's error answers as problems: adds the responses `common` gives
/// for an operation (status, description) where the operation documents none, describes any
/// response left without a description by its status's reason phrase, and gives every 4xx
/// and 5xx without content the `ProblemDto` schema as `application/problem+json`.
pub fn add_problem_responses(
    openapi: &mut utoipa::openapi::OpenApi,
    common: impl Fn(&utoipa::openapi::path::Operation) -> Vec<(&'static str, &'static str)>,
) {
    use utoipa::openapi::{Content, Ref, RefOr, Response};
    let problem = Content::new(Some(Ref::from_schema_name("ProblemDto")));
    for item in openapi.paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in ops.into_iter().flatten() {
            let common = common(op);
            let responses = &mut op.responses.responses;
            for (code, description) in common {
                responses
                    .entry(code.to_string())
                    .or_insert_with(|| RefOr::T(Response::new(description)));
            }
            for (code, response) in responses.iter_mut() {
                let RefOr::T(r) = response else { continue };
                if r.description.is_empty() {
                    // OpenAPI requires one; the status's reason phrase says enough.
                    r.description = code
                        .parse::<u16>()
                        .ok()
                        .and_then(|c| axum::http::StatusCode::from_u16(c).ok())
                        .and_then(|c| c.canonical_reason())
                        .unwrap_or("answer")
                        .to_string();
                }
                let error = code.starts_with('4') || code.starts_with('5');
                if error && r.content.is_empty() {
                    r.content
                        .insert("application/problem+json".into(), RefOr::T(problem.clone()));
                }
            }
        }
    }
}

/// The shop API's OpenAPI description.
#[derive(OpenApi)]
#[openapi(
    info(title = "Agora shop API", description = "Every error is application/problem+json (RFC 9457)."),
    paths(
        users::register, users::login, session::refresh, session::logout, me::get_me, me::patch_me,
        products::list, products::get_one, products::create, products::update, products::archive,
        inventory::get_stock, inventory::receive, inventory::write_off,
        cart::get_cart, cart::add_item, cart::remove_item,
        orders::checkout, orders::get_one, orders::list, orders::cancel, orders::get_shipment,
        notifications::list,
        reviews::list, reviews::submit, reviews::get_mine, reviews::put_mine, reviews::hide, reviews::unhide,
    ),
    components(schemas(
        MoneyDto, RegisterRequest, UserCreated, LoginRequest, TokenResponse, RefreshRequest, SavedAddressDto, ProfileDto, ProfilePatchDto, ProductDto, ProductPage, FacetsDto, FacetCountDto, CreateProductRequest, UpdateProductRequest,
        QuantityRequest, StockDto, AddItemRequest, CartLineDto, CartDto, PaymentRequest, AddressDto, CheckoutRequest,
        OrderCreated, ShippingRequest, OrderShippingDto, OrderLineDto, StatusAt, OrderPaymentDto, OrderDto, OrderList, ShipmentDto, NotificationDto, NotificationList,
        ReviewRequest, ReviewDto, ReviewPageDto, ProblemDto,
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}

/// The whole document: the main routes plus the payment, wallet and shipping routes.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::routes::payments::PaymentsApi::openapi());
    ProblemResponses.modify(&mut doc);
    doc
}

/// Routes served but deliberately left out of the document: the document itself and the page
/// that shows it. Every other route must be documented (checked by a test).
pub const UNDOCUMENTED_ROUTES: &[&str] = &["/openapi.json", "/docs", "/docs/", "/docs/{*file}"];

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use serde_json::Value;
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use tower::ServiceExt;

    fn app() -> axum::Router {
        crate::router(crate::testing::state(Arc::new(crate::testing::Nobody)))
    }

    /// The paths of the real router, read from its `Debug` output (axum prints its path
    /// table as `Node { paths: {RouteId(n): "/path", …} }`), so that a route added anywhere
    /// is seen.
    fn router_paths() -> BTreeSet<String> {
        let dbg = format!("{:?}", crate::routes::routes());
        let start = dbg
            .find("Node { paths: {")
            .expect("axum's Debug output changed: no `Node { paths: {`");
        let table = &dbg[start..];
        // The map ends with the last path's closing quote and a brace (paths hold no quotes).
        let end = table.find("\"}").expect("end of the path table");
        let table = &table[..=end];
        let paths: BTreeSet<String> = table
            .split('"')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        assert!(
            paths.contains("/api/v1/products") && paths.len() > 20,
            "the path table did not parse: {paths:?}"
        );
        paths
    }

    /// A concrete URI for a path template (`{x}` and `{*x}` become `x`).
    fn concrete(path: &str) -> String {
        path.split('/')
            .map(|seg| if seg.starts_with('{') { "x" } else { seg })
            .collect::<Vec<_>>()
            .join("/")
    }

    const METHODS: [Method; 7] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
        Method::TRACE,
    ];

    /// The (method, path) pairs the router serves: every path of its table, with each method
    /// that does not answer 405.
    async fn served_routes() -> BTreeSet<(String, String)> {
        let app = app();
        let mut served = BTreeSet::new();
        for path in router_paths() {
            for m in METHODS {
                let req = Request::builder()
                    .method(m.clone())
                    .uri(concrete(&path))
                    .body(Body::empty())
                    .expect("request");
                let resp = app.clone().oneshot(req).await.expect("infallible");
                if resp.status() != StatusCode::METHOD_NOT_ALLOWED {
                    served.insert((m.as_str().to_lowercase(), path.clone()));
                }
            }
        }
        served
    }

    fn document() -> Value {
        serde_json::to_value(super::document()).expect("document serializes")
    }

    fn documented_routes(doc: &Value) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for m in METHODS {
                let m = m.as_str().to_lowercase();
                if item.get(&m).is_some() {
                    out.insert((m, path.clone()));
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn every_route_is_documented_and_every_documented_route_is_served() {
        let served = served_routes().await;
        assert!(
            served.contains(&("post".into(), "/api/v1/products/{sku}/reviews".into())),
            "{served:?}"
        );
        let doc = document();
        let documented = documented_routes(&doc);
        let undocumented: Vec<_> = served
            .iter()
            .filter(|(_, p)| !UNDOCUMENTED_ROUTES.contains(&p.as_str()))
            .filter(|r| !documented.contains(r))
            .collect();
        assert!(
            undocumented.is_empty(),
            "routes missing from the OpenAPI document (add #[utoipa::path] and list them in ApiDoc): {undocumented:?}"
        );
        let phantom: Vec<_> = documented.difference(&served).collect();
        assert!(
            phantom.is_empty(),
            "documented routes the router does not serve: {phantom:?}"
        );
        for p in UNDOCUMENTED_ROUTES {
            assert!(
                served.contains(&("get".into(), p.to_string())),
                "{p} is listed as undocumented but not served"
            );
        }
    }

    #[test]
    fn every_error_an_operation_documents_is_a_problem_and_the_common_ones_are_documented() {
        let doc = document();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                let responses = op["responses"].as_object().expect("responses");
                assert!(responses.contains_key("503"), "{method} {path}: no 503");
                let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
                assert!(
                    !secured || responses.contains_key("401"),
                    "{method} {path}: needs a token but documents no 401"
                );
                assert!(
                    op["requestBody"].is_null() || responses.contains_key("422"),
                    "{method} {path}: takes a body but documents no 422"
                );
                for (code, r) in responses {
                    if code.starts_with('4') || code.starts_with('5') {
                        assert_eq!(
                            r["content"]["application/problem+json"]["schema"]["$ref"],
                            "#/components/schemas/ProblemDto",
                            "{method} {path} {code}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn every_operation_has_a_success_response_and_every_schema_an_example() {
        let doc = document();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                let responses = op["responses"].as_object().expect("responses");
                assert!(
                    responses
                        .keys()
                        .any(|k| k.starts_with('2') || k.starts_with('3')),
                    "{method} {path} documents no success response"
                );
                assert!(op.get("tags").is_some(), "{method} {path} has no tag");
            }
        }
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        let without: Vec<&String> = schemas
            .iter()
            .filter(|(_, s)| s.get("examples").is_none() && s.get("example").is_none())
            .map(|(name, _)| name)
            .collect();
        assert!(
            without.is_empty(),
            "schemas without an example: {without:?}"
        );
    }

    #[test]
    fn every_operation_id_is_unique() {
        let doc = serde_json::to_value(document()).expect("the document serializes");
        let mut seen = std::collections::BTreeMap::new();
        let paths = doc["paths"].as_object().expect("paths");
        for (path, ops) in paths {
            for (method, op) in ops.as_object().expect("operations") {
                if let Some(id) = op["operationId"].as_str() {
                    if let Some(first) = seen.insert(id.to_string(), format!("{method} {path}")) {
                        panic!("operationId {id} names {first} and {method} {path}");
                    }
                }
            }
        }
        assert!(seen.len() > 30, "only {} operations", seen.len());
    }

    #[test]
    fn the_document_matches_its_snapshot() {
        insta::assert_json_snapshot!("openapi", document());
    }
}
