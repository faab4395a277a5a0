//! Storage key layout. Entity keys start with the shard (big-endian u32), so one shard's
//! entities are one contiguous range: they can be read, streamed and installed as a unit.
//! Outbox keys start with the sequence number and end with the shard.

use agora_actors::{EntityKind, EntityRef};

/// The key of an entity's record: `shard | kind | id`.
pub fn entity_key(shard: u32, entity: &EntityRef) -> Vec<u8> {
    let mut k = Vec::with_capacity(5 + entity.id.len());
    k.extend_from_slice(&shard.to_be_bytes());
    k.push(entity.kind.code());
    k.extend_from_slice(entity.id.as_bytes());
    k
}

/// Separates an entity key from a message id in a dedup key. Entity ids never hold it
/// (they are printable text), so it sorts a dedup row right after its entity's record.
const DEDUP_SEPARATOR: u8 = 0;

/// Parses an entity key back into (shard, entity); `None` for a dedup row or a bad key.
pub fn parse_entity_key(key: &[u8]) -> Option<(u32, EntityRef)> {
    let shard = u32::from_be_bytes(key.get(0..4)?.try_into().ok()?);
    let kind = EntityKind::from_code(*key.get(4)?)?;
    let id = key.get(5..)?;
    if id.contains(&DEDUP_SEPARATOR) {
        return None;
    }
    let id = std::str::from_utf8(id).ok()?;
    Some((shard, EntityRef::new(kind, id)))
}

/// The key recording that `msg_id` took effect on the entity at `entity_key`:
/// `shard | kind | id | 0 | msg_id`. It lives in the entities table right after the
/// entity's record, so recording a message usually dirties the page the record is written
/// to anyway (one page per change instead of two), and a shard's dedup rows stay inside the
/// shard's range.
pub fn dedup_key(entity_key: &[u8], msg_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(entity_key.len() + 1 + msg_id.len());
    k.extend_from_slice(entity_key);
    k.push(DEDUP_SEPARATOR);
    k.extend_from_slice(msg_id.as_bytes());
    k
}

/// Whether `key` (of the entities table) is a dedup row rather than an entity record.
pub fn is_dedup_key(key: &[u8]) -> bool {
    key.get(5..).is_some_and(|id| id.contains(&DEDUP_SEPARATOR))
}

/// The value of a dedup row: when the message was applied (ms since epoch).
pub fn dedup_value(at_ms: u64) -> [u8; 8] {
    at_ms.to_be_bytes()
}

/// Reads a dedup row's value back.
pub fn parse_dedup_value(v: &[u8]) -> u64 {
    v.get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

/// The first key of shard `shard` in any shard-prefixed table, and the first key after it.
pub fn shard_range(shard: u32) -> (Vec<u8>, Option<Vec<u8>>) {
    let start = shard.to_be_bytes().to_vec();
    let end = shard.checked_add(1).map(|n| n.to_be_bytes().to_vec());
    (start, end)
}

/// The key of an outbox row: `seq | shard`. Rows are appended in emission order, so a batch
/// of new rows (and, later, of deletes) dirties the last page or two of the table rather
/// than one page per shard; a shard's rows are found by the suffix (the outbox holds only
/// undelivered messages and timers, so a scan of it is short).
pub fn outbox_key(shard: u32, seq: u64) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&seq.to_be_bytes());
    k[8..].copy_from_slice(&shard.to_be_bytes());
    k
}

/// Parses an outbox key into (shard, seq).
pub fn parse_outbox_key(key: &[u8]) -> Option<(u32, u64)> {
    let seq = u64::from_be_bytes(key.get(0..8)?.try_into().ok()?);
    let shard = u32::from_be_bytes(key.get(8..12)?.try_into().ok()?);
    Some((shard, seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_keys_round_trip_and_group_by_shard() {
        let e = EntityRef::new(EntityKind::Order, "abc");
        let k = entity_key(7, &e);
        assert_eq!(parse_entity_key(&k), Some((7, e.clone())));
        assert!(entity_key(7, &e) < entity_key(8, &EntityRef::new(EntityKind::Account, "a")));
    }

    #[test]
    fn dedup_keys_are_shard_prefixed_and_unambiguous() {
        let a = entity_key(7, &EntityRef::new(EntityKind::Order, "ab"));
        let b = entity_key(7, &EntityRef::new(EntityKind::Order, "a"));
        assert_ne!(dedup_key(&a, "c"), dedup_key(&b, "bc"));
        assert!(dedup_key(&a, "x").starts_with(&7u32.to_be_bytes()));
        assert!(dedup_key(&a, "x").starts_with(&dedup_key(&a, "")));
    }

    #[test]
    fn dedup_rows_sort_right_after_their_entity_and_never_parse_as_entities() {
        let e = entity_key(7, &EntityRef::new(EntityKind::Order, "ab"));
        let next = entity_key(7, &EntityRef::new(EntityKind::Order, "ab-"));
        let d = dedup_key(&e, "msg-1");
        assert!(
            e < d && d < next,
            "a dedup row sits between its entity and the next"
        );
        assert!(is_dedup_key(&d) && !is_dedup_key(&e));
        assert_eq!(parse_entity_key(&d), None);
        assert_eq!(parse_dedup_value(&dedup_value(42)), 42);
    }

    #[test]
    fn outbox_keys_round_trip_in_order() {
        assert_eq!(parse_outbox_key(&outbox_key(3, 99)), Some((3, 99)));
        assert!(outbox_key(3, 99) < outbox_key(3, 100));
        assert!(
            outbox_key(9, 99) < outbox_key(3, 100),
            "emission order across shards"
        );
    }
}
