//! The format 4 migration of replication log entries (see `agora_store::migrate`): an
//! entry's entity and outbox rows are rewritten like the shard's own rows, so every replica,
//! rewriting the same entries the same way, keeps the same log and applies the same rows.

use crate::codec::{decode, encode};
use crate::types::{Entry, ShardTable};
use agora_store::migrate::{RowKind, RowRewrite};
use agora_store::StoreError;
use openraft::EntryPayload;

/// The log entry `bytes` with its rows rewritten by `row`, or `None` when none changed.
pub fn rewrite_log_entry(
    bytes: &[u8],
    row: &mut RowRewrite,
) -> Result<Option<Vec<u8>>, StoreError> {
    let codec = |e: crate::ReplicationError| StoreError::Codec(e.to_string());
    let mut entry: Entry = decode(bytes).map_err(codec)?;
    let EntryPayload::Normal(shard_entry) = &mut entry.payload else {
        return Ok(None);
    };
    let mut changed = false;
    for r in &mut shard_entry.rows {
        let Some(value) = &r.value else { continue };
        let kind = match r.table {
            ShardTable::Entities => RowKind::Entity,
            ShardTable::Outbox => RowKind::Outbox,
        };
        if let Some(new) = row(kind, &r.key, value)? {
            r.value = Some(new);
            changed = true;
        }
    }
    if !changed {
        return Ok(None);
    }
    encode(&entry).map(Some).map_err(codec)
}
