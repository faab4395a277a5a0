//! The admin document against the admin router: every route documented, the token-protected
//! ones with the bearer scheme, every error a problem, every operation id unique.

use super::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The methods a route may be served under, as axum's `MethodRouter` names its fields.
const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The (method, path) pairs a router serves, read from its `Debug` output: axum prints its
/// route table as `PathRouter { routes: {RouteId(n): MethodRouter(MethodRouter { get: …,
/// head: None, … }), …}, node: Node { paths: {RouteId(n): "/path", …} } }`.
fn served_by(
    router: &axum::Router<std::sync::Arc<admin::AdminState>>,
) -> BTreeSet<(String, String)> {
    let dbg = format!("{router:?}");
    let routes_at = dbg
        .find("path_router: PathRouter { routes: {")
        .expect("axum's Debug output changed: no path_router");
    let paths_at = dbg[routes_at..]
        .find("node: Node { paths: {")
        .map(|i| routes_at + i)
        .expect("axum's Debug output changed: no node paths");
    let paths_end = dbg[paths_at..]
        .find("\"}")
        .map(|i| paths_at + i + 1)
        .expect("end of the path table");
    let route_id = |chunk: &str| chunk.split(')').next().map(str::to_string);
    let mut paths = BTreeMap::new();
    for chunk in dbg[paths_at..paths_end].split("RouteId(").skip(1) {
        let path = chunk.split('"').nth(1).expect("a quoted path");
        paths.insert(route_id(chunk).expect("route id"), path.to_string());
    }
    let mut served = BTreeSet::new();
    for chunk in dbg[routes_at..paths_at].split("RouteId(").skip(1) {
        let id = route_id(chunk).expect("route id");
        let fields = chunk.split("fallback:").next().unwrap_or(chunk);
        for m in METHODS {
            if fields.contains(&format!(" {m}: ")) && !fields.contains(&format!(" {m}: None")) {
                served.insert((m.to_string(), paths[&id].clone()));
            }
        }
    }
    assert!(!served.is_empty(), "the route table did not parse: {dbg}");
    served
}

fn doc() -> Value {
    serde_json::to_value(document()).expect("the document serializes")
}

/// Every (method, path) the document has, with the operation.
fn operations(doc: &Value) -> BTreeMap<(String, String), Value> {
    let mut out = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            out.insert((method.clone(), path.clone()), op.clone());
        }
    }
    out
}

#[test]
fn every_admin_route_is_documented_and_every_documented_route_is_served() {
    let open = served_by(&admin::open_routes());
    let protected = served_by(&admin::protected_routes());
    let ops = operations(&doc());
    let served: BTreeSet<_> = open.union(&protected).cloned().collect();
    for route in [
        ("get", "/healthz"),
        ("post", "/admin/shards/{shard}/move"),
        ("put", "/admin/faults/partition"),
    ] {
        let route = (route.0.to_string(), route.1.to_string());
        assert!(
            served.contains(&route),
            "the route table did not parse: {served:?}"
        );
    }
    let undocumented: Vec<_> = served
        .iter()
        .filter(|(_, p)| !UNDOCUMENTED_ROUTES.contains(&p.as_str()))
        .filter(|r| !ops.contains_key(*r))
        .collect();
    assert!(
        undocumented.is_empty(),
        "admin routes missing from the admin OpenAPI document (add #[utoipa::path] and list \
         them in AdminApiDoc): {undocumented:?}"
    );
    let phantom: Vec<_> = ops.keys().filter(|r| !served.contains(*r)).collect();
    assert!(phantom.is_empty(), "documented but not served: {phantom:?}");
    for p in UNDOCUMENTED_ROUTES {
        assert!(
            open.contains(&("get".into(), p.to_string())),
            "{p} is listed as undocumented but not served openly"
        );
    }
    for (route, op) in &ops {
        let secured = op["security"] == serde_json::json!([{ "bearer": [] }]);
        assert_eq!(
            secured,
            protected.contains(route),
            "{route:?}: documented security does not match the router's token check"
        );
    }
}

#[test]
fn every_response_is_described_and_every_error_is_a_problem() {
    for ((method, path), op) in operations(&doc()) {
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|k| k.starts_with('2')),
            "{method} {path}: no success response"
        );
        assert!(op.get("tags").is_some(), "{method} {path}: no tag");
        for (code, r) in responses {
            let described = r["description"].as_str().is_some_and(|d| !d.is_empty());
            assert!(described, "{method} {path} {code}: no description");
            if code.starts_with('4') || code.starts_with('5') {
                let problem = &r["content"]["application/problem+json"]["schema"]["$ref"];
                let plain = r["content"].get("text/plain").is_some();
                assert!(
                    problem == "#/components/schemas/ProblemDto" || plain,
                    "{method} {path} {code}: not a problem"
                );
            }
        }
        if op.get("security").is_some() {
            assert!(responses.contains_key("401"), "{method} {path}: no 401");
        }
    }
}

#[test]
fn every_operation_id_is_unique() {
    let mut seen = BTreeMap::new();
    for ((method, path), op) in operations(&doc()) {
        let id = op["operationId"]
            .as_str()
            .expect("an operationId")
            .to_string();
        if let Some(first) = seen.insert(id.clone(), format!("{method} {path}")) {
            panic!("operationId {id} names {first} and {method} {path}");
        }
    }
    assert!(seen.len() >= 14, "only {} operations", seen.len());
}

#[test]
fn the_admin_document_matches_its_snapshot() {
    insta::assert_json_snapshot!("admin_openapi", document());
}
