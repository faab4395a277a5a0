//! The node's guard over the storage backend it opens the database on: once a sync failed,
//! nothing later is trusted. After a failed fsync Linux may have dropped the pages it could
//! not write (and marked them clean), so a later sync that succeeds proves nothing about
//! them ("fsyncgate", which lost PostgreSQL data in 2018). redb 4 already latches every I/O
//! error (each later operation returns `StorageError::PreviousIo`); this guard makes the
//! rule the node's own, whatever the library does: a failed sync fails every later sync and
//! write, so the commit fails, the writer stops and the node exits (fail-stop) to restart
//! from what is durable.

use redb::{BackendError, StorageBackend};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};

/// A storage backend that never trusts a sync after one failed.
#[derive(Debug)]
pub struct FailStopBackend<B> {
    inner: B,
    sync_failed: AtomicBool,
}

impl<B: StorageBackend> FailStopBackend<B> {
    /// Guards `inner`.
    pub fn new(inner: B) -> Self {
        Self {
            inner,
            sync_failed: AtomicBool::new(false),
        }
    }

    /// Whether a sync has failed (the backend takes no more writes or syncs).
    pub fn sync_failed(&self) -> bool {
        self.sync_failed.load(Ordering::Acquire)
    }

    fn refuse_after_failed_sync(&self) -> Result<(), std::io::Error> {
        if self.sync_failed() {
            return Err(std::io::Error::other(
                "a sync failed earlier: no later write or sync is trusted (fail-stop)",
            ));
        }
        Ok(())
    }
}

impl<B: StorageBackend> StorageBackend for FailStopBackend<B> {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.refuse_after_failed_sync()?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.refuse_after_failed_sync()?;
        let Err(e) = self.inner.sync_data() else {
            return Ok(());
        };
        if agora_seams::planted::is_planted(agora_seams::planted::Bug::TrustFailedFsync)
            && self.inner.sync_data().is_ok()
        {
            // Planted: the failed sync is retried, and the retry's success trusted.
            return Ok(());
        }
        self.sync_failed.store(true, Ordering::Release);
        tracing::error!(error = %e, "a sync failed: the store stops taking writes (fail-stop)");
        metrics::counter!("agora_store_sync_failures_total").increment(1);
        Err(e)
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.refuse_after_failed_sync()?;
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), std::io::Error> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Store, Writer};
    use redb::backends::InMemoryBackend;
    use std::sync::atomic::AtomicU32;
    use std::sync::Arc;

    /// An in-memory disk whose next `fail_syncs` syncs fail.
    #[derive(Debug, Default)]
    struct FlakySync {
        inner: InMemoryBackend,
        fail_syncs: Arc<AtomicU32>,
    }

    impl StorageBackend for FlakySync {
        fn len(&self) -> Result<u64, std::io::Error> {
            self.inner.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
            self.inner.read(offset, out)
        }
        fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
            self.inner.set_len(len)
        }
        fn sync_data(&self) -> Result<(), std::io::Error> {
            let left = self.fail_syncs.load(Ordering::SeqCst);
            if left > 0 {
                self.fail_syncs.store(left - 1, Ordering::SeqCst);
                return Err(std::io::Error::other("EIO (test)"));
            }
            self.inner.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
            self.inner.write(offset, data)
        }
    }

    #[test]
    fn a_failed_sync_fails_every_later_sync_and_write() {
        let flaky = FlakySync::default();
        let fail = flaky.fail_syncs.clone();
        let guard = FailStopBackend::new(flaky);
        guard.set_len(8).unwrap();
        guard.write(0, &[1; 8]).unwrap();
        guard.sync_data().unwrap();
        fail.store(1, Ordering::SeqCst);
        assert!(guard.sync_data().is_err());
        assert!(
            guard.sync_data().is_err(),
            "a sync after a failed one must not be trusted"
        );
        assert!(guard.write(0, &[2; 8]).is_err());
        assert!(guard.set_len(64).is_err());
        let mut out = [0u8; 8];
        guard.read(0, &mut out).unwrap();
        assert_eq!(out, [1; 8], "reads still work");
    }

    #[tokio::test]
    async fn a_failed_commit_sync_is_fatal_and_nothing_after_it_is_acknowledged() {
        let flaky = FlakySync::default();
        let fail = flaky.fail_syncs.clone();
        let store = Store::open_backend(flaky).unwrap();
        let (relay, _) = tokio::sync::mpsc::unbounded_channel();
        let inline = crate::writer::StorageExecutor::Inline {
            latency: Arc::new(|| std::time::Duration::ZERO),
        };
        let writer = Writer::start_on(store.clone(), relay, Vec::new(), inline).unwrap();
        writer.put_meta("a", b"1".to_vec()).await.unwrap();
        fail.store(1, Ordering::SeqCst);
        assert!(
            writer.put_meta("b", b"2".to_vec()).await.is_err(),
            "a change whose commit's sync failed is not acknowledged"
        );
        assert!(writer.progress().borrow().failed, "the failure is fatal");
        assert_eq!(fail.load(Ordering::SeqCst), 0, "the disk syncs again");
        assert!(
            writer.put_meta("c", b"3".to_vec()).await.is_err(),
            "nothing after the failed sync is acknowledged"
        );
    }
}
