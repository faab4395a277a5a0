//! Keys of the group tables (`group_log`, `group_meta` in the store): the group first, so
//! each group's rows are one contiguous range and a group can be dropped as a unit.

use crate::GroupId;

/// Key of log entry `index` of `group`.
pub fn log_key(group: GroupId, index: u64) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&group.to_be_bytes());
    k[4..].copy_from_slice(&index.to_be_bytes());
    k
}

/// The index of a log key of `group`, if it is one.
pub fn log_index(group: GroupId, key: &[u8]) -> Option<u64> {
    let (g, i) = key.split_at_checked(4)?;
    if g != group.to_be_bytes() {
        return None;
    }
    Some(u64::from_be_bytes(i.try_into().ok()?))
}

/// Key of metadata `name` of `group`.
pub fn meta_key(group: GroupId, name: &str) -> Vec<u8> {
    let mut k = group.to_be_bytes().to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

/// Metadata name of the vote.
pub const VOTE: &str = "vote";
/// Metadata name of the last purged log id.
pub const PURGED: &str = "purged";
/// Metadata name of the applied state (last applied log id and membership).
pub const APPLIED: &str = "applied";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_keys_sort_by_group_then_index() {
        assert!(log_key(1, u64::MAX) < log_key(2, 0));
        assert!(log_key(1, 9) < log_key(1, 10));
        assert_eq!(log_index(3, &log_key(3, 42)), Some(42));
        assert_eq!(log_index(4, &log_key(3, 42)), None);
        assert_eq!(log_index(3, b"short"), None);
    }
}
