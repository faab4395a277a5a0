//! Drain, move and remove as asynchronous admin operations, on real processes: the request
//! answers 202 with the operation, and `GET /admin/operations/{id}` follows it to its end.
//! Errors known at once (a shard not owned, an unknown operation or dead letter) are still
//! answered at once.

use agora_tests::cluster::Cluster;
use agora_tests::operations::{accepted, finished};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_is_accepted_at_once_and_its_operation_counts_every_shard_moved() {
    let cluster = Cluster::start(3, 50).await;
    cluster.wait_for_raft_leader().await;
    let had = cluster.owners().await.iter().filter(|o| **o == 3).count();
    assert!(had > 0, "node 3 owns no shard to drain");
    let ops3 = cluster.ops(2);

    // Errors known at once are still answered at once.
    let unknown = ops3.get("/admin/operations/no-such-operation").await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    unknown.assert_problem("an unknown operation");
    // A dead letter this node does not keep cannot be discarded.
    let no_letter = ops3.delete("/admin/dead-letters/999999").await;
    assert_eq!(no_letter.status, 404, "{}", no_letter.text);
    no_letter.assert_problem("an unknown dead letter");
    let not_its = cluster.owners().await.iter().position(|o| *o != 3);
    let shard = not_its.expect("a shard another node owns");
    let refused = ops3
        .post(&format!("/admin/shards/{shard}/move"), &json!({"to": 2}))
        .await;
    assert_eq!(refused.status, 409, "{}", refused.text);
    refused.assert_problem("a move of a shard node 3 does not own");

    let first = ops3
        .post("/admin/cluster/members/3/drain", &json!({}))
        .await;
    let id = accepted(&first, "drain", "drain node 3");
    assert_eq!(first.body["node"], 3, "{}", first.text);
    assert_eq!(first.body["progress"]["total"], had, "{}", first.text);
    assert_eq!(first.body["progress"]["unit"], "shards", "{}", first.text);
    // Asked again while it runs: the same operation. Another id only if the first had
    // ended before the second was asked.
    let second = ops3
        .post("/admin/cluster/members/3/drain", &json!({}))
        .await;
    let again = accepted(&second, "drain", "drain node 3 again");

    let op = finished(&ops3, &id).await;
    assert_eq!(op["state"], "succeeded", "{op}");
    let progress = &op["progress"];
    assert_eq!(
        (&progress["done"], &progress["total"]),
        (&had.into(), &had.into()),
        "{op}"
    );
    assert_eq!(op["result"]["moved_shards"], had, "{op}");
    assert!(
        op["finished_at"].is_string() && op["started_at"].is_string(),
        "{op}"
    );
    if again != id {
        let second_started = second.body["started_at"].as_str().unwrap_or_default();
        let first_ended = op["finished_at"].as_str().unwrap_or_default();
        assert!(
            first_ended <= second_started,
            "a second drain started while the first ran: {op} / {}",
            second.text
        );
    }
    let owners = cluster.owners().await;
    assert!(
        owners.iter().all(|o| *o != 3),
        "node 3 still owns shards: {owners:?}"
    );
    // The list has it, newest first.
    let list = ops3.get("/admin/operations").await;
    let items = list.body["items"].as_array().cloned().unwrap_or_default();
    assert!(
        items.iter().any(|o| o["id"] == id.as_str()),
        "{}",
        list.text
    );
    assert_eq!(
        items[0]["id"],
        again.as_str(),
        "newest first: {}",
        list.text
    );
}
