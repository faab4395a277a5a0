//! How far this node has received each group's data from its peers (a replica built or
//! rebuilt here): snapshot bytes and chunks, whether the last chunk came, and the bytes of
//! log entries received while the replica was rebuilding. For the log and the admin
//! endpoint, so an operator can follow a rebuild.

use crate::types::GroupId;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// What one group's replica here has received from peers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RebuildReceipt {
    /// Bytes of the latest snapshot received (the end of its last chunk).
    pub snapshot_bytes: u64,
    /// Chunks of the latest snapshot received.
    pub snapshot_chunks: u64,
    /// Whether the latest snapshot's last chunk came.
    pub snapshot_done: bool,
    /// Bytes of rows in log entries received while the replica was rebuilding.
    pub log_bytes: u64,
}

/// What each group's replica here has received, by group.
#[derive(Debug, Default)]
pub struct RebuildProgress {
    by_group: Mutex<BTreeMap<GroupId, RebuildReceipt>>,
}

impl RebuildProgress {
    /// A chunk of `chunk_bytes` at `offset` of `group`'s snapshot arrived (`done`: the
    /// last one); a chunk at offset 0 starts a new snapshot. Returns the receipt so far.
    pub fn snapshot_chunk(
        &self,
        group: GroupId,
        offset: u64,
        chunk_bytes: u64,
        done: bool,
    ) -> RebuildReceipt {
        self.update(group, |r| {
            if offset == 0 {
                r.snapshot_bytes = 0;
                r.snapshot_chunks = 0;
            }
            r.snapshot_bytes = offset.saturating_add(chunk_bytes);
            r.snapshot_chunks += 1;
            r.snapshot_done = done;
            assert!(
                r.snapshot_bytes >= chunk_bytes,
                "a chunk ends before its own size"
            );
        })
    }

    /// Log entries carrying `rows_bytes` of rows arrived for `group`'s rebuilding replica.
    pub fn log_entries(&self, group: GroupId, rows_bytes: u64) -> RebuildReceipt {
        self.update(group, |r| {
            r.log_bytes = r.log_bytes.saturating_add(rows_bytes)
        })
    }

    fn update(&self, group: GroupId, change: impl FnOnce(&mut RebuildReceipt)) -> RebuildReceipt {
        let Ok(mut by_group) = self.by_group.lock() else {
            return RebuildReceipt::default();
        };
        let receipt = by_group.entry(group).or_default();
        change(receipt);
        *receipt
    }

    /// Every group's receipt, by group.
    pub fn all(&self) -> Vec<(GroupId, RebuildReceipt)> {
        self.by_group
            .lock()
            .map(|m| m.iter().map(|(g, r)| (*g, *r)).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_and_entries_add_up_and_a_new_snapshot_starts_over() {
        let p = RebuildProgress::default();
        assert_eq!(p.snapshot_chunk(5, 0, 100, false).snapshot_bytes, 100);
        let r = p.snapshot_chunk(5, 100, 50, true);
        assert_eq!(
            (r.snapshot_bytes, r.snapshot_chunks, r.snapshot_done),
            (150, 2, true)
        );
        assert_eq!(p.log_entries(5, 30).log_bytes, 30);
        let again = p.snapshot_chunk(5, 0, 10, false);
        assert_eq!(
            (
                again.snapshot_bytes,
                again.snapshot_chunks,
                again.snapshot_done,
                again.log_bytes
            ),
            (10, 1, false, 30)
        );
        assert_eq!(p.all(), vec![(5, again)]);
    }
}
