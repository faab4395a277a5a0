//! The tail of a group's log kept in memory. A leader reads every entry again soon after it
//! appends it: once per follower to send it, and once to apply it; a follower once to
//! apply it. Served from redb, each read is a trip to the storage executor, a read
//! transaction and a decode. The cache holds the last entries appended durably, so those
//! reads are a copy instead.
//!
//! Invariant: the cache holds a contiguous run of indexes, and each cached entry is the
//! entry the durable log holds at its index. Entries enter only after their append is
//! durable; a truncation or a purge removes them before it is written, so the cache never
//! holds an entry the log may have lost.

use crate::types::Entry;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Most bytes (encoded) one group's cache holds; the oldest entries leave first.
pub const TAIL_CACHE_BYTES: usize = 1 << 20;

/// Most entries one group's cache holds.
pub const TAIL_CACHE_ENTRIES: usize = 512;

/// One group's cached log tail, shared by its log store and its readers.
#[derive(Clone, Default)]
pub struct TailCache {
    inner: Arc<Mutex<Tail>>,
}

#[derive(Default)]
struct Tail {
    /// `(entry, its encoded size)`, by index, contiguous.
    entries: VecDeque<(Entry, usize)>,
    /// The sum of the encoded sizes.
    bytes: usize,
}

impl Tail {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.log_id.index)
    }

    fn last_index(&self) -> Option<u64> {
        self.entries.back().map(|(e, _)| e.log_id.index)
    }

    fn pop_front(&mut self) {
        if let Some((_, size)) = self.entries.pop_front() {
            self.bytes -= size;
        }
    }

    fn pop_back(&mut self) {
        if let Some((_, size)) = self.entries.pop_back() {
            self.bytes -= size;
        }
    }

    fn check(&self) {
        assert_eq!(
            self.bytes,
            self.entries.iter().map(|(_, s)| s).sum::<usize>(),
            "the cache's byte count is the sum of its entries' sizes"
        );
        assert!(
            self.entries.len() <= TAIL_CACHE_ENTRIES,
            "the cache is within its entry bound"
        );
        if let (Some(first), Some(last)) = (self.first_index(), self.last_index()) {
            assert_eq!(
                last - first + 1,
                self.entries.len() as u64,
                "the cached indexes are contiguous"
            );
        }
    }
}

impl TailCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tail> {
        // A panic while holding the lock leaves the cache consistent (every method checks
        // before it returns); take it back rather than fail every later read.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records entries whose append is durable, with their encoded sizes. An append that
    /// does not continue the cached run (the first after a start, or after a snapshot moved
    /// the log on) starts a new run.
    pub fn appended(&self, entries: impl IntoIterator<Item = (Entry, usize)>) {
        let mut tail = self.lock();
        for (entry, size) in entries {
            let index = entry.log_id.index;
            if tail
                .last_index()
                .is_some_and(|last| last.checked_add(1) != Some(index))
            {
                tail.entries.clear();
                tail.bytes = 0;
            }
            tail.entries.push_back((entry, size));
            tail.bytes += size;
            while tail.entries.len() > TAIL_CACHE_ENTRIES
                || (tail.bytes > TAIL_CACHE_BYTES && tail.entries.len() > 1)
            {
                tail.pop_front();
            }
        }
        tail.check();
    }

    /// Forgets the entries at `index` and after (the log is being truncated there).
    pub fn truncate_from(&self, index: u64) {
        let mut tail = self.lock();
        while tail.last_index().is_some_and(|last| last >= index) {
            tail.pop_back();
        }
        tail.check();
    }

    /// Forgets the entries at `index` and before (the log is being purged to there).
    pub fn purge_to(&self, index: u64) {
        let mut tail = self.lock();
        while tail.first_index().is_some_and(|first| first <= index) {
            tail.pop_front();
        }
        tail.check();
    }

    /// The entries with indexes in `[start, end)`, when the cache holds every one of them.
    pub fn get(&self, start: u64, end: u64) -> Option<Vec<Entry>> {
        let tail = self.lock();
        let first = tail.first_index()?;
        let last = tail.last_index()?;
        if start < first || end > last.checked_add(1)? || start >= end {
            return None;
        }
        let from = usize::try_from(start - first).ok()?;
        let count = usize::try_from(end - start).ok()?;
        let out: Vec<Entry> = tail
            .entries
            .iter()
            .skip(from)
            .take(count)
            .map(|(e, _)| e.clone())
            .collect();
        assert_eq!(out.len(), count, "a covered range yields every entry");
        assert!(
            out.iter()
                .zip(start..)
                .all(|(e, index)| e.log_id.index == index),
            "the cache yields the indexes asked for, in order"
        );
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload, LogId};

    fn entry(index: u64) -> (Entry, usize) {
        let e = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        };
        (e, 100)
    }

    fn indexes(v: Option<Vec<Entry>>) -> Option<Vec<u64>> {
        v.map(|v| v.iter().map(|e| e.log_id.index).collect())
    }

    #[test]
    fn serves_only_ranges_it_holds_whole() {
        let cache = TailCache::default();
        assert_eq!(cache.get(1, 2), None, "an empty cache serves nothing");
        cache.appended((3..=6).map(entry));
        assert_eq!(indexes(cache.get(4, 6)), Some(vec![4, 5]));
        assert_eq!(indexes(cache.get(3, 7)), Some(vec![3, 4, 5, 6]));
        assert_eq!(cache.get(2, 5), None, "index 2 is not cached");
        assert_eq!(cache.get(5, 8), None, "index 7 is not cached");
        assert_eq!(cache.get(5, 5), None, "an empty range goes to the store");
    }

    #[test]
    fn truncation_and_purge_forget_entries_before_they_are_read_again() {
        let cache = TailCache::default();
        cache.appended((1..=8).map(entry));
        cache.truncate_from(6);
        assert_eq!(cache.get(5, 7), None, "6 was truncated");
        assert_eq!(indexes(cache.get(1, 6)), Some(vec![1, 2, 3, 4, 5]));
        cache.appended([entry(6)]);
        assert_eq!(indexes(cache.get(5, 7)), Some(vec![5, 6]));
        cache.purge_to(3);
        assert_eq!(cache.get(3, 5), None, "3 was purged");
        assert_eq!(indexes(cache.get(4, 7)), Some(vec![4, 5, 6]));
    }

    #[test]
    fn a_gap_starts_a_new_run_and_the_bounds_hold() {
        let cache = TailCache::default();
        cache.appended((1..=4).map(entry));
        cache.appended([entry(10)]);
        assert_eq!(cache.get(4, 5), None, "the old run is gone");
        assert_eq!(indexes(cache.get(10, 11)), Some(vec![10]));
        let many = (11..11 + TAIL_CACHE_ENTRIES as u64 + 5).map(entry);
        cache.appended(many);
        let last = 10 + TAIL_CACHE_ENTRIES as u64 + 5;
        let first = last + 1 - TAIL_CACHE_ENTRIES as u64;
        assert!(
            cache.get(first - 1, first).is_none(),
            "the oldest left first"
        );
        assert!(cache.get(first, last + 1).is_some());
        let big = TailCache::default();
        big.appended((1..=3).map(|i| (entry(i).0, TAIL_CACHE_BYTES / 2)));
        assert_eq!(big.get(1, 2), None, "the byte bound evicted the oldest");
        assert_eq!(indexes(big.get(2, 4)), Some(vec![2, 3]));
    }
}
