//! Every metric the node exports, with its HELP text, registered at start: counters appear
//! at zero before their first event, latencies are histograms whose buckets fit the figures
//! measured on this kind of machine (sub-millisecond commits to multi-second stalls), and
//! `agora_build_info` says which build is running.

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};

/// What kind of metric a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution (latencies in seconds, sizes in counts).
    Histogram,
}

use Kind::{Counter, Gauge, Histogram};

/// Every metric: kind, name, HELP text.
pub const METRICS: &[(Kind, &str, &str)] = &[
    (
        Counter,
        "agora_catalog_facts_pulled_total",
        "Catalog facts pulled from other nodes' shards.",
    ),
    (
        Counter,
        "agora_cluster_connections_refused_total",
        "Cluster-port connections closed at once: the unauthenticated ones, in total or from their address, were at their bound.",
    ),
    (
        Counter,
        "agora_tls_reloads_total",
        "Checks that found the node's TLS files changed, by outcome: reloaded (new connections use them) or refused (unusable; the certificate in use stays).",
    ),
    (
        Counter,
        "agora_cluster_frames_refused_total",
        "Cluster connections closed for a frame over the limit (the handshake limit before authentication, the frame limit after).",
    ),
    (
        Counter,
        "agora_outbound_failures_total",
        "Outbound calls (notification webhooks, the payment gateway) that failed or were refused, by destination (scheme, host and port).",
    ),
    (
        Histogram,
        "agora_replication_handover_quiesce_seconds",
        "Time a lead that moves waits for its shard's work to commit and its successor to catch up.",
    ),
    (
        Counter,
        "agora_replication_held_campaigns_total",
        "Elections called by a replica held out of elections (leaving, or just stepped aside) because a candidate lacked entries only it held.",
    ),
    (
        Counter,
        "agora_replication_appends_split_total",
        "Appends to a peer that were over the cluster frame limit and were sent again as fewer entries at once.",
    ),
    (
        Counter,
        "agora_replication_fenced_entries_total",
        "Log entries skipped on apply because a proposer of an ended leadership made them (they were appended under a later term).",
    ),
    (
        Counter,
        "agora_replication_removal_retries_total",
        "Removals of delivered outbox rows proposed again after their group lost them while this node led the shard.",
    ),
    (
        Counter,
        "agora_replication_snapshot_bytes_received_total",
        "Bytes of replica snapshots received from peers (replicas built or rebuilt here).",
    ),
    (
        Counter,
        "agora_replication_rebuild_log_bytes_received_total",
        "Bytes of rows in log entries received by replicas being rebuilt here.",
    ),
    (
        Counter,
        "agora_cluster_identity_refused_total",
        "Cluster sessions stopped at authentication: the node id they claimed was not proven (with TLS, their certificate names another node).",
    ),
    (
        Counter,
        "agora_cluster_handshakes_timed_out_total",
        "Cluster connections closed because they had not authenticated (TLS and the secret's challenge) within the handshake timeout.",
    ),
    (
        Counter,
        "agora_cluster_dead_letters_total",
        "Cluster messages that could not be decoded or delivered and were dropped.",
    ),
    (
        Counter,
        "agora_cluster_joins_refused_total",
        "Nodes refused entry to the cluster (not in the cluster file, no valid join token).",
    ),
    (
        Counter,
        "agora_cluster_refused_envelopes_total",
        "Envelopes refused by this node's gateway (wrong node, stale epoch, shard not here).",
    ),
    (
        Counter,
        "agora_cluster_ask_retries_total",
        "Asks sent again after a node refused them undelivered (it did not serve the shard).",
    ),
    (
        Counter,
        "agora_cluster_remote_calls_total",
        "Requests sent to another node's gateway.",
    ),
    (
        Counter,
        "agora_dead_letters_total",
        "Outbox messages moved to the dead letters (refused by their receiver).",
    ),
    (
        Counter,
        "agora_dead_letters_discarded_total",
        "Dead letters an operator discarded (DELETE /admin/dead-letters/{id}).",
    ),
    (
        Counter,
        "agora_dead_letters_replayed_total",
        "Dead letters an operator replayed (POST /admin/dead-letters/{id}/replay), by outcome: delivered (and removed), refused (kept), unavailable (kept).",
    ),
    (
        Counter,
        "agora_dedup_disk_reads_skipped_total",
        "Early deliveries deduplicated from memory without a disk read.",
    ),
    (
        Counter,
        "agora_entity_activations_total",
        "Entities activated (loaded from the store on their first message).",
    ),
    (
        Counter,
        "agora_entity_evictions_total",
        "Entities passivated early because their shard was at its share of the active-entity cap.",
    ),
    (
        Counter,
        "agora_entity_failures_total",
        "Entity actors that failed and were restarted from the store.",
    ),
    (
        Counter,
        "agora_entity_passivations_total",
        "Entities passivated after being idle.",
    ),
    (
        Counter,
        "agora_entity_reloads_total",
        "Entities that reloaded their state after a change of theirs was refused.",
    ),
    (
        Counter,
        "agora_entity_writes_total",
        "Entity changes handed to the writer.",
    ),
    (
        Counter,
        "agora_handoffs_total",
        "Shard handoffs this node took part in.",
    ),
    (
        Counter,
        "agora_http_connections_idle_closed_total",
        "Shop API connections closed after sending nothing for the idle time.",
    ),
    (
        Counter,
        "agora_http_connections_refused_total",
        "Shop API connections closed at once: their address was at its connection limit.",
    ),
    (
        Counter,
        "agora_messages_deduplicated_total",
        "Messages that had already taken effect and were answered as duplicates.",
    ),
    (
        Counter,
        "agora_notification_file_syncs_total",
        "Fsyncs of the notification file sink.",
    ),
    (
        Counter,
        "agora_notifications_sent_total",
        "Notifications handed to their channel.",
    ),
    (
        Counter,
        "agora_notifications_undeliverable_total",
        "Notifications their channel refused for good.",
    ),
    (
        Counter,
        "agora_orphan_shard_copies_dropped_total",
        "Shard copies left by aborted handoffs and dropped.",
    ),
    (
        Counter,
        "agora_outbox_delivered_total",
        "Outbox messages delivered.",
    ),
    (
        Counter,
        "agora_outbox_early_dropped_total",
        "Early deliveries dropped because their sender's change was refused.",
    ),
    (
        Counter,
        "agora_outbox_early_total",
        "Messages delivered to entities of this node before their sender's commit.",
    ),
    (
        Counter,
        "agora_outbox_retries_total",
        "Outbox deliveries retried after a transient failure.",
    ),
    (
        Counter,
        "agora_outbox_rows_elided_total",
        "Outbox rows never written: their receiver took the message in the sender's own commit.",
    ),
    (
        Counter,
        "agora_password_hash_busy_total",
        "Password hashes refused with 503: too many running or queued past the wait.",
    ),
    (
        Counter,
        "agora_payment_mismatches_total",
        "Payment success reports that did not match the Payment's own charge, by field.",
    ),
    (
        Counter,
        "agora_rate_limited_total",
        "Shop API requests answered 429 by a rate limit.",
    ),
    (
        Counter,
        "agora_region_unserved_requests_total",
        "Requests refused because this node's lease on their shard had ended.",
    ),
    (
        Counter,
        "agora_replication_changes_proposed_total",
        "Entity changes handed to their shard's group by the writer.",
    ),
    (
        Counter,
        "agora_replication_changes_refused_total",
        "Entity changes their shard's group did not commit (lost lead or unknown outcome).",
    ),
    (
        Counter,
        "agora_replication_handovers_total",
        "Times a leader stepped aside for another replica (balance, or stopping).",
    ),
    (
        Counter,
        "agora_replication_leads_total",
        "Times this node started serving a shard as its group's leader.",
    ),
    (
        Counter,
        "agora_replication_step_downs_total",
        "Times this node stopped serving a shard (lost lead, new term or failed proposal).",
    ),
    (
        Counter,
        "agora_replication_log_appends_total",
        "Log entries appended by this node's shard groups.",
    ),
    (
        Counter,
        "agora_replication_snapshots_built_total",
        "Snapshots built by this node's shard groups.",
    ),
    (
        Counter,
        "agora_replication_snapshots_installed_total",
        "Snapshots installed by this node's shard groups.",
    ),
    (
        Counter,
        "agora_search_index_failures_total",
        "Search index batches that failed.",
    ),
    (
        Counter,
        "agora_store_cascade_gather_timeouts_total",
        "Commits that stopped waiting for early deliveries in flight after the gather limit.",
    ),
    (
        Counter,
        "agora_store_cascade_gathers_total",
        "Commits that waited for early deliveries in flight.",
    ),
    (
        Counter,
        "agora_store_commit_failures_total",
        "Store commits that failed (the store then takes no more writes).",
    ),
    (
        Counter,
        "agora_store_commits_total",
        "Store commits (one fsync each).",
    ),
    (
        Counter,
        "agora_store_direct_loads_total",
        "Entity loads read at once instead of behind the commit in progress.",
    ),
    (
        Counter,
        "agora_store_fenced_writes_total",
        "Writes refused for a stale shard epoch (fencing).",
    ),
    (
        Counter,
        "agora_prompt_elections_total",
        "Elections this node asked for because a replicated shard's leader was down (its session gone) past the leader's lease.",
    ),
    (
        Counter,
        "agora_store_marks_forgotten_total",
        "Applied-message marks forgotten after the retention time.",
    ),
    (
        Counter,
        "agora_store_sync_failures_total",
        "Syncs (fsync) of the store's file that failed; the store then fails every later sync and write (fail-stop).",
    ),
    (
        Gauge,
        "agora_active_entities",
        "Entities active on this node.",
    ),
    (
        Gauge,
        "agora_cluster_connections_unauthenticated",
        "Cluster-port connections accepted and not yet authenticated.",
    ),
    (
        Gauge,
        "agora_http_connections_open",
        "Shop API connections open.",
    ),
    (
        Gauge,
        "agora_replication_outstanding_changes",
        "Entity changes handed to their shard's group and not yet committed.",
    ),
    (
        Gauge,
        "agora_outbox_backlog",
        "Outbox messages waiting for delivery.",
    ),
    (
        Gauge,
        "agora_region_requests_in_flight",
        "Requests to this node's shards awaiting an answer.",
    ),
    (
        Gauge,
        "agora_search_documents",
        "Documents in the search index.",
    ),
    (Gauge, "agora_store_dead_letters", "Dead letters stored."),
    (
        Gauge,
        "agora_replication_groups_without_leader",
        "Shard groups with a replica on this node whose member knows no leader (those shards answer 503).",
    ),
    (
        Gauge,
        "agora_replication_groups_under_replicated",
        "Shard groups this node leads with fewer voters than the replication factor.",
    ),
    (
        Gauge,
        "agora_replication_groups_led",
        "Shard groups this node leads.",
    ),
    (
        Gauge,
        "agora_store_entity_rows",
        "Entity rows stored (records and applied-message marks).",
    ),
    (Gauge, "agora_store_outbox_rows", "Outbox rows stored."),
    (
        Gauge,
        "agora_stuck_sagas",
        "Orders that have not moved for longer than expected.",
    ),
    (
        Gauge,
        "agora_build_info",
        "The running build (value 1; labels version and profile).",
    ),
    (
        Histogram,
        "agora_entity_durable_wait_seconds",
        "How long answers waited for their change to become durable.",
    ),
    (
        Histogram,
        "agora_http_request_seconds",
        "Shop API request latency by method, route template and status.",
    ),
    (
        Histogram,
        "agora_replication_commit_seconds",
        "Time for one shard-group entry to be committed by a majority and applied here.",
    ),
    (
        Histogram,
        "agora_replication_changes_per_entry",
        "Changes carried by one shard-group log entry.",
    ),
    (
        Histogram,
        "agora_replication_entry_bytes",
        "Bytes of keys and values carried by one shard-group log entry.",
    ),
    (
        Histogram,
        "agora_search_batch_docs",
        "Documents indexed per search index batch.",
    ),
    (
        Histogram,
        "agora_search_visibility_seconds",
        "Time from a product change to its visibility in search.",
    ),
    (
        Histogram,
        "agora_store_batch_ops",
        "Operations written per store commit.",
    ),
    (
        Histogram,
        "agora_store_commit_seconds",
        "Store commit latency (write and fsync).",
    ),
];

/// Bucket bounds of latency histograms, in seconds.
const SECONDS_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.0,
    2.0, 5.0, 10.0,
];

/// Bucket bounds of size histograms (counts).
const COUNT_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0, 16384.0,
];

/// Bucket bounds of byte-size histograms.
const BYTES_BUCKETS: &[f64] = &[
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
];

/// The exporter with the histograms' buckets set.
pub fn exporter() -> Result<PrometheusBuilder, BuildError> {
    let mut b = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)?;
    for (kind, name, _) in METRICS {
        if *kind == Histogram && name.ends_with("_bytes") {
            b = b.set_buckets_for_metric(Matcher::Full((*name).into()), BYTES_BUCKETS)?;
        } else if *kind == Histogram && !name.ends_with("_seconds") {
            b = b.set_buckets_for_metric(Matcher::Full((*name).into()), COUNT_BUCKETS)?;
        }
    }
    Ok(b)
}

/// Describes every metric, starts every counter at zero, and sets `agora_build_info`.
pub fn register() {
    for (kind, name, help) in METRICS {
        match kind {
            Counter => {
                metrics::describe_counter!(*name, *help);
                metrics::counter!(*name).absolute(0);
            }
            Gauge => metrics::describe_gauge!(*name, *help),
            Histogram => metrics::describe_histogram!(*name, *help),
        }
    }
    for outcome in crate::admin_dead_letters::ReplayOutcome::ALL {
        metrics::counter!("agora_dead_letters_replayed_total", "outcome" => outcome.label())
            .absolute(0);
    }
    for outcome in agora_cluster::tls::ReloadOutcome::ALL {
        metrics::counter!("agora_tls_reloads_total", "outcome" => outcome.label()).absolute(0);
    }
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    metrics::gauge!("agora_build_info", "version" => env!("CARGO_PKG_VERSION"), "profile" => profile)
        .set(1.0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::Path;

    /// Metric names emitted with `metrics::counter!`/`gauge!`/`histogram!` in `dir`'s sources.
    fn emitted(dir: &Path, out: &mut BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                emitted(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                for macro_name in ["counter!(", "gauge!(", "histogram!("] {
                    for (i, _) in text.match_indices(macro_name) {
                        let rest = text[i + macro_name.len()..].trim_start();
                        if let Some(name) = rest.strip_prefix('"').and_then(|r| r.split('"').next())
                        {
                            if name.starts_with("agora_") {
                                out.insert(name.to_string());
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn every_metric_the_code_emits_is_described_once() {
        let names: Vec<&str> = METRICS.iter().map(|(_, n, _)| *n).collect();
        let unique: BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "a metric is listed twice");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut found = BTreeSet::new();
        for krate in [
            "actors",
            "store",
            "runtime",
            "cluster",
            "catalog",
            "replication",
            "node",
            "http-edge",
        ] {
            emitted(&root.join(krate).join("src"), &mut found);
        }
        assert!(found.len() > 40, "the source scan found only {found:?}");
        let missing: Vec<&String> = found
            .iter()
            .filter(|n| !unique.contains(n.as_str()))
            .collect();
        assert!(missing.is_empty(), "metrics without HELP text: {missing:?}");
    }

    /// The `agora_*` names an operator's file refers to, less a histogram's suffixes.
    fn referenced(text: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for (i, _) in text.match_indices("agora_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(&name);
            out.insert(base.to_string());
        }
        out
    }

    #[test]
    fn the_alert_rules_and_the_dashboard_use_only_metrics_the_node_exports() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
        let known: BTreeSet<&str> = METRICS.iter().map(|(_, n, _)| *n).collect();
        for file in ["prometheus/alerts.yml", "grafana/agora.json"] {
            let text = std::fs::read_to_string(root.join(file)).expect("the deploy file");
            let used = referenced(&text);
            assert!(used.len() >= 5, "{file} refers to only {used:?}");
            let unknown: Vec<&String> = used
                .iter()
                .filter(|n| !known.contains(n.as_str()))
                .collect();
            assert!(
                unknown.is_empty(),
                "{file} refers to metrics the node does not export: {unknown:?}"
            );
        }
    }
}
