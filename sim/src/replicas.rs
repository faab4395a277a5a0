//! After healing, every replica of a shard holds the same rows: the same entities at the
//! same seq and the same outbox rows. A replica that lags, misses a removal or keeps a row
//! the group never committed shows here (checker `replicas-identical`).

use std::collections::{BTreeMap, BTreeSet};

/// What one node holds of one shard: entity name → seq, and outbox row keys.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Held {
    entities: BTreeMap<String, u64>,
    outbox: BTreeSet<Vec<u8>>,
}

/// The rows of every shard on every node, as read from the disks.
#[derive(Debug, Default)]
pub struct ReplicaRows {
    by_shard: BTreeMap<u32, BTreeMap<u64, Held>>,
}

impl ReplicaRows {
    /// Notes that `node` holds entity `name` of `shard` at `seq`.
    pub fn entity(&mut self, shard: u32, node: u64, name: String, seq: u64) {
        self.held(shard, node).entities.insert(name, seq);
    }

    /// Notes that `node` holds the outbox row `key` of `shard`.
    pub fn outbox(&mut self, shard: u32, node: u64, key: Vec<u8>) {
        self.held(shard, node).outbox.insert(key);
    }

    fn held(&mut self, shard: u32, node: u64) -> &mut Held {
        self.by_shard
            .entry(shard)
            .or_default()
            .entry(node)
            .or_default()
    }

    /// One line per shard whose replicas differ, naming the first difference.
    pub fn differences(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (shard, nodes) in &self.by_shard {
            let mut held = nodes.iter();
            let Some((first_node, first)) = held.next() else {
                continue;
            };
            for (node, other) in held {
                if other != first {
                    out.push(format!(
                        "shard {shard}: node {first_node} and node {node} differ: {}",
                        first_difference(first, other)
                    ));
                }
            }
        }
        out
    }
}

fn first_difference(a: &Held, b: &Held) -> String {
    let names: BTreeSet<&String> = a.entities.keys().chain(b.entities.keys()).collect();
    for name in names {
        let (x, y) = (a.entities.get(name), b.entities.get(name));
        if x != y {
            return format!("{name} at seq {x:?} and {y:?}");
        }
    }
    let only_a = a.outbox.difference(&b.outbox).count();
    let only_b = b.outbox.difference(&a.outbox).count();
    format!("outbox rows only on the first: {only_a}, only on the second: {only_b}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lagging_entity_and_a_leftover_outbox_row_are_named() {
        let mut rows = ReplicaRows::default();
        for node in [1, 2, 3] {
            rows.entity(0, node, "order/a".into(), 4);
            rows.outbox(0, node, vec![1]);
        }
        assert!(rows.differences().is_empty());
        rows.entity(1, 1, "stock/S".into(), 7);
        rows.entity(1, 2, "stock/S".into(), 6);
        rows.outbox(0, 3, vec![2]);
        let found = rows.differences();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("only on the second: 1"), "{found:?}");
        assert!(
            found[1].contains("stock/S at seq Some(7) and Some(6)"),
            "{found:?}"
        );
    }
}
