//! `POST /admin/dead-letters/{id}/replay` on real processes: a dead letter replayed once its
//! cause is gone reaches its receiver on another node, takes effect once and leaves the list;
//! one refused again is kept, answered with the receiver's reason; a copy of a message that
//! took effect already is absorbed by the receiver's dedup; without mutations it is 403. The
//! same holds with replicated shards, the receiver reached through its group's leader.

use agora_tests::cluster::{Cluster, ADMIN_TOKEN};
use agora_tests::dead_letters::{top_up_message, write_dead_letters};
use agora_tests::{
    counter, poll_until, unique_email, AgoraProcess, Client, ServerOptions, POLL_TIMEOUT,
    USER_PASSWORD,
};
use serde_json::{json, Value};

/// A wallet's balance when its account is created.
const WELCOME_BALANCE_MINOR: u64 = 500_000;
/// What the dead-lettered top-up adds.
const TOP_UP_MINOR: u64 = 700;

/// An email whose account lives on node 2 (node 1 answers 421 naming node 2 as its owner).
async fn email_owned_by_node_2(ops1: &Client) -> String {
    for _ in 0..64 {
        let email = unique_email();
        let id = agora_actors::ids::user_id_for_email(&email);
        let r = ops1.get(&format!("/admin/entities/account/{id}")).await;
        if r.status == 421 && r.body["owner"] == 2 {
            return email;
        }
    }
    panic!("no account of 64 lives on node 2");
}

/// Node 1's dead letters: (id, msg_id) newest first.
async fn listed(ops1: &Client) -> Vec<(u64, String)> {
    let r = ops1
        .get("/admin/dead-letters")
        .await
        .expect_status(200, "dead letters");
    let items = r.body["items"].as_array().cloned().unwrap_or_default();
    items
        .iter()
        .map(|d| {
            let id = d["id"].as_u64().unwrap_or_default();
            (id, d["msg_id"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

async fn replay(ops: &Client, id: u64) -> agora_tests::Resp {
    ops.post(&format!("/admin/dead-letters/{id}/replay"), &json!({}))
        .await
}

/// A replay retried while it answers 503 (a receiver's shard without a leader for a moment
/// after the restart), as an operator's client would: its first other answer.
async fn replay_settled(ops: &Client, id: u64) -> agora_tests::Resp {
    poll_until("a replay that is not 503", POLL_TIMEOUT, || async {
        let r = replay(ops, id).await;
        if r.status == 503 {
            assert!(r.header("retry-after").is_some(), "{}", r.text);
            return Err(r.text);
        }
        Ok(r)
    })
    .await
}

async fn balance(user: &Client) -> u64 {
    let w = user
        .get("/api/v1/me/wallet")
        .await
        .expect_status(200, "wallet");
    w.body["balance"]["amount_minor"]
        .as_u64()
        .unwrap_or_default()
}

/// The replay counter of one outcome on node 1.
async fn replayed(ops1: &Client, outcome: &str) -> f64 {
    counter(
        ops1,
        &format!("agora_dead_letters_replayed_total{{outcome=\"{outcome}\"}}"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_dead_letter_takes_effect_once_when_its_cause_is_gone_and_is_kept_while_refused()
{
    let mut cluster = Cluster::start(2, 50).await;
    let ops1 = cluster.ops(0);
    let email = email_owned_by_node_2(&ops1).await;
    replay_scenario(&mut cluster, &email).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_replicated_shards_a_replay_reaches_the_receivers_group_through_its_leader() {
    let mut cluster = Cluster::start_replicated(3, 50, 3).await;
    replay_scenario(&mut cluster, &unique_email()).await;
}

/// Node 1 holds three dead letters (two copies of a top-up of `email`'s account, not yet
/// created, and a top-up of an account that never will be); each is replayed.
async fn replay_scenario(cluster: &mut Cluster, email: &str) {
    let stranger = unique_email();

    // Node 1's relay gave up on three messages: a top-up of an account not yet created, a
    // second copy of that same message, and a top-up of an account that never will be.
    cluster.nodes[0].kill9();
    let letters = vec![
        top_up_message("replay-a#1.0", email, TOP_UP_MINOR),
        top_up_message("replay-a#1.0", email, TOP_UP_MINOR),
        top_up_message("replay-b#1.0", &stranger, TOP_UP_MINOR),
    ];
    let data_dir = cluster.nodes[0].data_dir().to_path_buf();
    write_dead_letters(&data_dir, "not found: account", letters).await;
    cluster.nodes[0].restart();
    cluster.wait_ready().await;
    let ops1 = cluster.ops(0);
    let before = listed(&ops1).await;
    assert_eq!(before.len(), 3, "{before:?}");
    let (b, a_copy, a) = (before[0].0, before[1].0, before[2].0);
    assert_eq!(before[2].1, "replay-a#1.0", "{before:?}");
    // Each names its receiver, the account the top-up was for.
    let user = agora_actors::ids::user_id_for_email(email);
    let to = agora_actors::EntityRef::new(agora_actors::EntityKind::Account, user).to_string();
    let r = ops1.get("/admin/dead-letters").await;
    assert_eq!(r.body["items"][2]["to"], to.as_str(), "{}", r.text);

    // The account does not exist yet: refused again, answered with the receiver's reason,
    // and kept.
    let refused = replay_settled(&ops1, a).await;
    assert_eq!(refused.status, 409, "{}", refused.text);
    refused.assert_problem("a replay refused again");
    let reason = refused.body["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("not found"), "{}", refused.text);
    assert_eq!(refused.body["msg_id"], "replay-a#1.0", "{}", refused.text);
    assert_eq!(listed(&ops1).await, before);

    // The cause goes: the account is created (through another node). The replay reaches it
    // where it lives, takes effect, and the dead letter leaves the list.
    let shop = cluster.nodes[1].client();
    shop.register(email, USER_PASSWORD, "Replay Test")
        .await
        .expect_status(201, "register");
    let user = shop.login_as(email, USER_PASSWORD).await;
    assert_eq!(balance(&user).await, WELCOME_BALANCE_MINOR);
    let done = replay_settled(&ops1, a).await;
    assert_eq!(done.status, 204, "{}", done.text);
    let left: Vec<u64> = listed(&ops1).await.iter().map(|(id, _)| *id).collect();
    assert_eq!(left, [b, a_copy]);
    assert_eq!(balance(&user).await, WELCOME_BALANCE_MINOR + TOP_UP_MINOR);
    // Gone: a second replay of it finds nothing.
    assert_eq!(replay(&ops1, a).await.status, 404);

    // The copy of the same message is taken as a duplicate: harmless, and gone too.
    let copy = replay_settled(&ops1, a_copy).await;
    assert_eq!(copy.status, 204, "{}", copy.text);
    assert_eq!(balance(&user).await, WELCOME_BALANCE_MINOR + TOP_UP_MINOR);

    // The stranger's top-up stays refused and stays listed.
    let still = replay_settled(&ops1, b).await;
    assert_eq!(still.status, 409, "{}", still.text);
    assert_eq!(listed(&ops1).await, [(b, "replay-b#1.0".to_string())]);

    // Audited: a WARN naming the message.
    let log = cluster.nodes[0].stderr_tail(200_000);
    let audited = log.lines().any(|l| {
        l.contains("WARN")
            && l.contains("dead letter replayed by an operator")
            && l.contains("replay-a#1.0")
    });
    assert!(audited, "no audit line for the replay in: {log}");

    // Counted by outcome.
    poll_until("replays counted", POLL_TIMEOUT, || async {
        let counts = (
            replayed(&ops1, "delivered").await,
            replayed(&ops1, "refused").await,
        );
        match counts {
            (2.0, 2.0) => Ok(()),
            other => Err(format!("(delivered, refused) = {other:?}")),
        }
    })
    .await;
}

#[tokio::test]
async fn a_replay_without_mutations_is_forbidden() {
    let mut opts = ServerOptions::default();
    opts.env
        .push(("AGORA_ADMIN_TOKEN".to_string(), ADMIN_TOKEN.to_string()));
    let srv = AgoraProcess::start(opts);
    let ops = srv.admin_port_client().with_token(ADMIN_TOKEN);
    // The list is open to the token; a replay, like a discard, needs admin_mutations.
    ops.get("/admin/dead-letters")
        .await
        .expect_status(200, "dead letters");
    let r = replay(&ops, 1).await;
    assert_eq!(r.status, 403, "{}", r.text);
    r.assert_problem("a replay without mutations");
    let detail: &Value = &r.body["detail"];
    assert!(
        detail
            .as_str()
            .unwrap_or_default()
            .contains("admin_mutations"),
        "{}",
        r.text
    );
}
