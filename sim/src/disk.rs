//! The simulated disk behind redb's `StorageBackend`. The harness owns it, so it outlives the
//! node that uses it: a node killed and restarted finds what a real disk would hold.
//!
//! Writes land in the "page cache" (`current`) and are remembered as pending until a sync
//! makes them durable. A process kill keeps the page cache; a power loss keeps only what was
//! synced plus a random subset of pending writes, each possibly torn at sector size. Writes
//! and syncs can fail with EIO or ENOSPC when the fault plan says so. A frozen disk ignores
//! every change: the harness freezes it before a host dies, so the database's clean close on
//! drop cannot write what a crash would not have written. An armed crash point kills the host
//! from inside: its operation and every later one fail until the harness restarts the host.
//!
//! Disk modes beyond the per-operation rates: with `sync_drops` ("fsyncgate", Linux's
//! behaviour that lost PostgreSQL data in 2018) a failed sync drops the pending writes from
//! what can ever become durable: they stay readable in the page cache, a later sync that
//! succeeds does not make them durable, and a restart reads the platter (the page cache may
//! have evicted them). A full disk fails every write that grows the file with ENOSPC. Reads
//! may fail with EIO. A lying disk answers every sync with success and makes nothing durable.

use crate::seed::Stream;
use rand::Rng;
use redb::backends::InMemoryBackend;
use redb::StorageBackend;
use std::sync::{Arc, Mutex, MutexGuard};

/// Sector size: the unit a torn write is cut at.
pub const SECTOR: usize = 512;

/// Failure rates and modes of one disk.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DiskFaults {
    /// Chance a write or sync fails with EIO.
    pub eio: f64,
    /// Chance a write that grows the file fails with ENOSPC.
    pub enospc: f64,
    /// A failed sync drops the pending writes for good (fsyncgate): they stay in the page
    /// cache until the host restarts, and never become durable.
    pub sync_drops: bool,
    /// Chance a sync fails with EIO on its own (a writeback error: the writes before it
    /// succeeded into the page cache).
    pub sync_eio: f64,
    /// The disk is full: every write that grows the file fails with ENOSPC.
    pub full: bool,
    /// Chance a read fails with EIO.
    pub read_eio: f64,
    /// Every sync answers success and makes nothing durable (a disk that lies).
    pub lying_sync: bool,
}

#[derive(Debug)]
enum Pending {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug)]
struct DiskState {
    /// What the OS would answer reads with (the page cache).
    current: Vec<u8>,
    /// What survives a power loss.
    durable: Vec<u8>,
    /// Writes since the last sync, in order.
    pending: Vec<Pending>,
    /// Writes a failed sync dropped (fsyncgate) are still in the page cache: `current` is
    /// more than `durable` plus `pending` until the host restarts.
    dropped_in_cache: bool,
    frozen: bool,
    /// Disk operations (writes, length changes, syncs) left before the host dies, if armed.
    crash_in_ops: Option<(u64, Death)>,
    /// How the host died at an armed crash point (until it restarts): every operation fails.
    crashed: Option<Death>,
    faults: DiskFaults,
    rng: Stream,
    syncs: u64,
    writes: u64,
    failures: u64,
    /// Writes dropped by failed syncs (fsyncgate).
    dropped: u64,
}

/// A disk shared by the harness and the node that mounts it.
#[derive(Debug, Clone)]
pub struct SimDisk {
    state: Arc<Mutex<DiskState>>,
}

/// How a host died, for what its disk keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Death {
    /// The process was killed: the page cache survives.
    Kill,
    /// The machine lost power: synced data survives, pending writes maybe, maybe torn.
    PowerLoss,
}

fn io(kind: std::io::ErrorKind, what: &str) -> std::io::Error {
    std::io::Error::new(kind, what.to_string())
}

fn apply(image: &mut Vec<u8>, op: &Pending) {
    match op {
        Pending::Write { offset, data } => {
            let start = *offset as usize;
            let end = start + data.len();
            if image.len() < end {
                image.resize(end, 0);
            }
            image[start..end].copy_from_slice(data);
        }
        Pending::SetLen(len) => image.resize(*len as usize, 0),
    }
}

impl SimDisk {
    /// An empty disk drawing its faults from `rng`.
    pub fn new(rng: Stream) -> Self {
        Self {
            state: Arc::new(Mutex::new(DiskState {
                current: Vec::new(),
                durable: Vec::new(),
                pending: Vec::new(),
                dropped_in_cache: false,
                frozen: false,
                crash_in_ops: None,
                crashed: None,
                faults: DiskFaults::default(),
                rng,
                syncs: 0,
                writes: 0,
                failures: 0,
                dropped: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, DiskState> {
        // The simulation is single-threaded; a poisoned lock means a panic already failed
        // the run, so carry on with the data as it is.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the failure rates and modes.
    pub fn set_faults(&self, faults: DiskFaults) {
        self.lock().faults = faults;
    }

    /// Changes some of the failure rates and modes.
    pub fn update_faults(&self, change: impl FnOnce(&mut DiskFaults)) {
        change(&mut self.lock().faults);
    }

    /// Evicts from the page cache the writes failed syncs dropped: what is read from now on
    /// is the platter plus the writes still pending (a restarted host reads this, and so do
    /// the checkers at the end of a run).
    pub fn evict_dropped(&self) {
        let mut s = self.lock();
        if !s.dropped_in_cache {
            return;
        }
        let mut image = s.durable.clone();
        for op in &s.pending {
            apply(&mut image, op);
        }
        s.current = image;
        s.dropped_in_cache = false;
    }

    /// Arms a crash point: the host dies by `death` at the `ops`-th disk operation from now
    /// (a write, a length change or a sync), which does not happen: a crash inside a commit.
    pub fn arm_crash(&self, ops: u64, death: Death) {
        assert!(ops > 0, "a crash point is at least one operation away");
        self.lock().crash_in_ops = Some((ops, death));
    }

    /// Drops an armed crash point that has not fired.
    pub fn disarm(&self) {
        self.lock().crash_in_ops = None;
    }

    /// How the host died at a crash point, if one fired since it last started.
    pub fn crashed(&self) -> Option<Death> {
        self.lock().crashed
    }

    /// Stops taking changes (the host is about to die).
    pub fn freeze(&self) {
        self.lock().frozen = true;
    }

    /// Loses everything, written or not (the disk is replaced by an empty one; its host is
    /// dead).
    pub fn destroy(&self) {
        let mut s = self.lock();
        assert!(s.frozen, "a disk is replaced only while its host is dead");
        s.current.clear();
        s.durable.clear();
        s.pending.clear();
        s.dropped_in_cache = false;
    }

    /// Applies what `death` keeps and takes changes again (the host is about to restart).
    /// Writes dropped by a failed sync are gone from the page cache either way.
    pub fn recover(&self, death: Death) {
        self.evict_dropped();
        let mut s = self.lock();
        if death == Death::PowerLoss {
            let pending = std::mem::take(&mut s.pending);
            let mut image = s.durable.clone();
            for op in &pending {
                match s.rng.random_range(0..3u8) {
                    0 => {} // never reached the platter
                    1 => apply(&mut image, op),
                    _ => {
                        // Torn: a prefix of whole sectors made it.
                        if let Pending::Write { offset, data } = op {
                            let sectors = data.len().div_ceil(SECTOR);
                            let kept = s.rng.random_range(0..=sectors) * SECTOR;
                            let cut = kept.min(data.len());
                            apply(
                                &mut image,
                                &Pending::Write {
                                    offset: *offset,
                                    data: data[..cut].to_vec(),
                                },
                            );
                        }
                    }
                }
            }
            s.current = image.clone();
            s.durable = image;
        }
        s.frozen = false;
        s.crashed = None;
    }

    /// A backend for redb on this disk.
    pub fn backend(&self) -> SimBackend {
        SimBackend { disk: self.clone() }
    }

    /// A copy of the page cache opened as a read-only-in-spirit database (for the checkers).
    pub fn snapshot_backend(&self) -> InMemoryBackend {
        let image = self.lock().current.clone();
        let b = InMemoryBackend::new();
        // Writing into a fresh in-memory backend cannot fail.
        let _ = b.set_len(image.len() as u64);
        let _ = b.write(0, &image);
        b
    }

    /// Hash of the page cache (part of the trace).
    pub fn digest(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64(&self.lock().current)
    }

    /// (writes, syncs, injected failures) so far.
    pub fn counters(&self) -> (u64, u64, u64) {
        let s = self.lock();
        (s.writes, s.syncs, s.failures)
    }

    /// Whether the page cache holds writes a failed sync dropped (until a restart evicts them).
    pub fn holds_dropped(&self) -> bool {
        self.lock().dropped_in_cache
    }

    /// Writes dropped by failed syncs so far (fsyncgate).
    pub fn dropped_writes(&self) -> u64 {
        self.lock().dropped
    }
}

/// redb's view of a `SimDisk`.
#[derive(Debug)]
pub struct SimBackend {
    disk: SimDisk,
}

impl SimBackend {
    /// Counts down an armed crash point: the operation that reaches it fails and every later
    /// one too, until the harness kills and restarts the host.
    fn crash_point(s: &mut DiskState) -> Result<(), std::io::Error> {
        let dead = || {
            io(
                std::io::ErrorKind::Other,
                "the host died (simulated crash point)",
            )
        };
        if s.crashed.is_some() {
            return Err(dead());
        }
        if let Some((left, death)) = s.crash_in_ops.as_mut() {
            *left -= 1;
            if *left == 0 {
                s.crashed = Some(*death);
                s.crash_in_ops = None;
                s.frozen = true;
                return Err(dead());
            }
        }
        Ok(())
    }

    fn fail(s: &mut DiskState, grows: bool) -> Option<std::io::Error> {
        let DiskFaults {
            eio, enospc, full, ..
        } = s.faults;
        if eio > 0.0 && s.rng.random_bool(eio.min(1.0)) {
            s.failures += 1;
            return Some(io(std::io::ErrorKind::Other, "EIO (simulated)"));
        }
        if grows && full {
            s.failures += 1;
            return Some(io(
                std::io::ErrorKind::StorageFull,
                "ENOSPC (simulated: disk full)",
            ));
        }
        if grows && enospc > 0.0 && s.rng.random_bool(enospc.min(1.0)) {
            s.failures += 1;
            return Some(io(std::io::ErrorKind::StorageFull, "ENOSPC (simulated)"));
        }
        None
    }
}

impl StorageBackend for SimBackend {
    fn len(&self) -> Result<u64, std::io::Error> {
        Ok(self.disk.lock().current.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        let mut s = self.disk.lock();
        let read_eio = s.faults.read_eio;
        if read_eio > 0.0 && s.rng.random_bool(read_eio.min(1.0)) {
            s.failures += 1;
            return Err(io(std::io::ErrorKind::Other, "EIO on read (simulated)"));
        }
        let start = offset as usize;
        let end = start + out.len();
        if end > s.current.len() {
            return Err(io(std::io::ErrorKind::UnexpectedEof, "read past the end"));
        }
        out.copy_from_slice(&s.current[start..end]);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        let mut s = self.disk.lock();
        Self::crash_point(&mut s)?;
        if s.frozen {
            return Ok(());
        }
        let grows = len as usize > s.current.len();
        if let Some(e) = Self::fail(&mut s, grows) {
            return Err(e);
        }
        let op = Pending::SetLen(len);
        apply(&mut s.current, &op);
        s.pending.push(op);
        Ok(())
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        let mut s = self.disk.lock();
        Self::crash_point(&mut s)?;
        if s.frozen {
            return Ok(());
        }
        let writeback = s.faults.sync_eio;
        let failed = Self::fail(&mut s, false).or_else(|| {
            (writeback > 0.0 && s.rng.random_bool(writeback.min(1.0))).then(|| {
                s.failures += 1;
                io(std::io::ErrorKind::Other, "EIO on writeback (simulated)")
            })
        });
        if let Some(e) = failed {
            if s.faults.sync_drops {
                // fsyncgate: the kernel marked the pages clean; they will never be written.
                let pending = std::mem::take(&mut s.pending);
                s.dropped += pending.len() as u64;
                s.dropped_in_cache |= !pending.is_empty();
            }
            return Err(e);
        }
        s.syncs += 1;
        if s.faults.lying_sync {
            // Success, and the writes stay as unsynced as they were.
            return Ok(());
        }
        let pending = std::mem::take(&mut s.pending);
        for op in &pending {
            apply(&mut s.durable, op);
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        let mut s = self.disk.lock();
        Self::crash_point(&mut s)?;
        if s.frozen {
            return Ok(());
        }
        let grows = offset as usize + data.len() > s.current.len();
        if let Some(e) = Self::fail(&mut s, grows) {
            return Err(e);
        }
        let op = Pending::Write {
            offset,
            data: data.to_vec(),
        };
        apply(&mut s.current, &op);
        s.pending.push(op);
        s.writes += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk() -> SimDisk {
        SimDisk::new(Stream::new(7, "disk-test"))
    }

    #[test]
    fn a_kill_keeps_unsynced_writes_and_a_power_loss_keeps_synced_ones() {
        let d = disk();
        let b = d.backend();
        b.write(0, &[1; 1024]).unwrap();
        b.sync_data().unwrap();
        b.write(0, &[2; 1024]).unwrap();
        d.freeze();
        b.write(0, &[3; 1024]).unwrap();
        d.recover(Death::Kill);
        let mut out = [0u8; 1024];
        b.read(0, &mut out).unwrap();
        assert_eq!(
            out, [2; 1024],
            "the page cache survives a kill; frozen writes do not"
        );
        d.freeze();
        d.recover(Death::PowerLoss);
        b.read(0, &mut out).unwrap();
        // Each sector is either the synced 1s or the pending 2s, in a prefix.
        let first_one = out.iter().position(|&x| x == 1).unwrap_or(1024);
        assert!(out[..first_one].iter().all(|&x| x == 2));
        assert!(out[first_one..].iter().all(|&x| x == 1));
        assert_eq!(first_one % SECTOR, 0, "torn at a sector boundary");
    }

    #[test]
    fn a_crash_point_fails_its_operation_and_every_later_one_until_the_restart() {
        let d = disk();
        let b = d.backend();
        b.write(0, &[1; 1024]).unwrap();
        b.sync_data().unwrap();
        d.arm_crash(2, Death::PowerLoss);
        b.write(0, &[2; 1024]).unwrap();
        assert!(
            b.sync_data().is_err(),
            "the second operation is the crash point"
        );
        assert_eq!(d.crashed(), Some(Death::PowerLoss));
        assert!(
            b.write(0, &[3; 1024]).is_err(),
            "a dead host writes nothing"
        );
        d.recover(Death::PowerLoss);
        assert_eq!(d.crashed(), None);
        let mut out = [0u8; 1024];
        b.read(0, &mut out).unwrap();
        assert!(
            out.iter().all(|&x| x == 1 || x == 2),
            "the unsynced write may be lost or torn, never more"
        );
        b.write(0, &[4; 1024]).unwrap();
    }

    fn read_at_0(b: &SimBackend) -> [u8; 1024] {
        let mut out = [0u8; 1024];
        b.read(0, &mut out).unwrap();
        out
    }

    /// A write, a sync that fails, then a sync that succeeds and the host's death: what the
    /// restarted host reads, with and without fsyncgate.
    fn after_a_failed_sync(sync_drops: bool, death: Death) -> [u8; 1024] {
        let d = disk();
        let b = d.backend();
        b.write(0, &[1; 1024]).unwrap();
        b.sync_data().unwrap();
        b.write(0, &[2; 1024]).unwrap();
        d.set_faults(DiskFaults {
            eio: 1.0,
            sync_drops,
            ..Default::default()
        });
        assert!(b.sync_data().is_err(), "the sync fails");
        d.set_faults(DiskFaults::default());
        assert_eq!(
            read_at_0(&b),
            [2; 1024],
            "the page cache still holds the write"
        );
        b.sync_data().unwrap();
        d.freeze();
        d.recover(death);
        read_at_0(&b)
    }

    #[test]
    fn under_fsyncgate_a_write_whose_sync_failed_never_becomes_durable() {
        for death in [Death::Kill, Death::PowerLoss] {
            assert_eq!(
                after_a_failed_sync(true, death),
                [1; 1024],
                "{death:?}: a later successful sync must not make the dropped write durable"
            );
            assert_eq!(
                after_a_failed_sync(false, death),
                [2; 1024],
                "{death:?}: without fsyncgate the retried sync makes it durable"
            );
        }
    }

    #[test]
    fn under_fsyncgate_writes_after_the_failed_sync_still_become_durable() {
        let d = disk();
        let b = d.backend();
        b.write(0, &[1; 1024]).unwrap();
        d.set_faults(DiskFaults {
            eio: 1.0,
            sync_drops: true,
            ..Default::default()
        });
        assert!(b.sync_data().is_err());
        assert_eq!(d.dropped_writes(), 1);
        d.set_faults(DiskFaults::default());
        b.write(1024, &[3; 512]).unwrap();
        b.sync_data().unwrap();
        d.evict_dropped();
        assert_eq!(read_at_0(&b), [0; 1024], "the dropped write is evicted");
        let mut tail = [0u8; 512];
        b.read(1024, &mut tail).unwrap();
        assert_eq!(tail, [3; 512], "the later write is durable");
    }

    #[test]
    fn a_full_disk_refuses_growth_only_and_takes_it_again_once_space_returns() {
        let d = disk();
        let b = d.backend();
        b.write(0, &[1; 1024]).unwrap();
        d.update_faults(|f| f.full = true);
        let grow = b.write(1024, &[2; 512]).unwrap_err();
        assert_eq!(grow.kind(), std::io::ErrorKind::StorageFull);
        assert!(b.set_len(4096).is_err(), "a longer file needs space");
        b.write(0, &[3; 1024]).unwrap();
        b.sync_data().unwrap();
        d.update_faults(|f| f.full = false);
        b.write(1024, &[2; 512]).unwrap();
        assert_eq!(b.len().unwrap(), 1536);
    }

    #[test]
    fn reads_fail_at_the_read_error_rate_and_the_data_stays() {
        let d = disk();
        let b = d.backend();
        b.write(0, &[1; 1024]).unwrap();
        d.update_faults(|f| f.read_eio = 1.0);
        let mut out = [0u8; 1024];
        assert!(b.read(0, &mut out).is_err());
        d.update_faults(|f| f.read_eio = 0.0);
        assert_eq!(read_at_0(&b), [1; 1024]);
    }

    #[test]
    fn a_lying_disk_loses_what_it_said_it_synced_at_a_power_loss() {
        let lost = (0..16).filter(|seed| {
            let d = SimDisk::new(Stream::new(*seed, "disk-test"));
            let b = d.backend();
            d.update_faults(|f| f.lying_sync = true);
            b.write(0, &[1; 1024]).unwrap();
            b.sync_data().unwrap();
            d.freeze();
            d.recover(Death::PowerLoss);
            b.len().unwrap() < 1024 || read_at_0(&b) != [1; 1024]
        });
        assert!(
            lost.count() > 0,
            "some power loss loses a write the disk said was synced"
        );
    }

    const T: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("t");

    fn open_db(d: &SimDisk) -> redb::Database {
        redb::Database::builder()
            .create_with_backend(d.backend())
            .unwrap()
    }

    /// Commits `key = value`; whether the commit succeeded.
    fn put(db: &redb::Database, value: u64) -> bool {
        let tx = db.begin_write().unwrap();
        tx.open_table(T).unwrap().insert(1, value).unwrap();
        tx.commit().is_ok()
    }

    /// The value the database on `d` holds once reopened.
    fn reopened_value(d: &SimDisk) -> u64 {
        use redb::ReadableDatabase;
        let db = open_db(d);
        let tx = db.begin_read().unwrap();
        let value = tx.open_table(T).unwrap().get(1).unwrap().unwrap().value();
        value
    }

    #[test]
    fn under_fsyncgate_a_restart_after_a_failed_commit_reads_the_commit_before_it() {
        let d = disk();
        {
            let db = open_db(&d);
            assert!(put(&db, 10));
            d.update_faults(|f| {
                f.sync_eio = 1.0;
                f.sync_drops = true;
            });
            assert!(!put(&db, 20), "the commit's sync fails");
            assert!(d.holds_dropped());
            d.freeze();
        }
        d.set_faults(DiskFaults::default());
        d.recover(Death::Kill);
        assert_eq!(
            reopened_value(&d),
            10,
            "the failed commit's pages were never durable"
        );
    }

    #[test]
    fn redb_reopens_what_it_committed_after_a_power_loss() {
        let d = disk();
        {
            let db = open_db(&d);
            assert!(put(&db, 10));
            d.freeze();
        }
        d.recover(Death::PowerLoss);
        assert_eq!(reopened_value(&d), 10);
    }
}
