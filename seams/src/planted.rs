//! Bugs planted on purpose, to prove that the simulator's checkers can fail. Each one
//! switches off one defence at the place that holds it. A build has them only with the
//! `planted` feature (the simulator's, never production's), and then none is active until
//! a process picks one with [`plant`] (`agora-sim --planted NAME`). Without the feature,
//! [`is_planted`] is a constant `false` and the compiler drops the planted branches.

/// One planted bug: the defence it switches off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Bug {
    /// An entity answers before its change is durable.
    AckBeforeDurable = 1,
    /// An entity applies a redelivered message again (no dedup).
    SkipDedup,
    /// The relay drops timers that are not yet due instead of keeping them.
    ForgetTimers,
    /// A gateway admits an envelope stamped with a stale shard-map epoch.
    StaleEpochGateway,
    /// The writer commits changes of a shard this node no longer owns.
    StaleEpochWriter,
    /// A handoff's old owner keeps serving the shard after it is frozen.
    StaleEpochHandoff,
    /// A stock item reserves more than it has.
    Oversell,
    /// Compensation puts an order's units back twice.
    DoubleRelease,
    /// A replicated shard's leader acknowledges a change before a majority holds it.
    AckBeforeMajority,
    /// A replicated shard's leader serves without a lease (a deposed leader answers).
    ServeWithoutLease,
    /// A replica applies a group's entry when it appends it, before it is committed.
    ApplyUncommitted,
    /// A replica on a replaced disk votes at once, before it holds what its group committed,
    /// so a lagging replica can win an election with its vote.
    RebuildFromLagging,
    /// A paid order that will not be delivered (returned, cancelled after confirmation) puts
    /// its units back on the shelf twice.
    DuplicateRestock,
    /// A refund of a delivered order is bounded by the order's total, not by what is left
    /// after earlier refunds.
    SkipRefundBound,
    /// A checkout retried under its idempotency key with another body is answered as the
    /// first one instead of refused.
    SkipRequestHash,
    /// The store retries a failed sync and trusts the retry (fsyncgate: the writes the failed
    /// sync dropped are acknowledged and never become durable).
    TrustFailedFsync,
    /// A wallet refund is sent to the account twice: the account applies both credits, while
    /// the payment counts one refund.
    DoubleWalletCredit,
}

impl Bug {
    /// Every planted bug.
    pub const ALL: [Bug; 17] = [
        Bug::AckBeforeDurable,
        Bug::SkipDedup,
        Bug::ForgetTimers,
        Bug::StaleEpochGateway,
        Bug::StaleEpochWriter,
        Bug::StaleEpochHandoff,
        Bug::Oversell,
        Bug::DoubleRelease,
        Bug::AckBeforeMajority,
        Bug::ServeWithoutLease,
        Bug::ApplyUncommitted,
        Bug::RebuildFromLagging,
        Bug::DuplicateRestock,
        Bug::SkipRefundBound,
        Bug::SkipRequestHash,
        Bug::TrustFailedFsync,
        Bug::DoubleWalletCredit,
    ];

    /// The bug's name on the command line (`ack-before-durable`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Bug::AckBeforeDurable => "ack-before-durable",
            Bug::SkipDedup => "skip-dedup",
            Bug::ForgetTimers => "forget-timers",
            Bug::StaleEpochGateway => "stale-epoch-gateway",
            Bug::StaleEpochWriter => "stale-epoch-writer",
            Bug::StaleEpochHandoff => "stale-epoch-handoff",
            Bug::Oversell => "oversell",
            Bug::DoubleRelease => "double-release",
            Bug::AckBeforeMajority => "ack-before-majority",
            Bug::ServeWithoutLease => "serve-without-lease",
            Bug::ApplyUncommitted => "apply-uncommitted",
            Bug::RebuildFromLagging => "rebuild-from-lagging",
            Bug::DuplicateRestock => "duplicate-restock",
            Bug::SkipRefundBound => "skip-refund-bound",
            Bug::SkipRequestHash => "skip-request-hash",
            Bug::TrustFailedFsync => "trust-failed-fsync",
            Bug::DoubleWalletCredit => "double-wallet-credit",
        }
    }

    /// The bug named `name`, if any.
    pub fn from_name(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|b| b.name() == name)
    }
}

#[cfg(feature = "planted")]
static ACTIVE: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Whether this build can plant bugs (built with the `planted` feature).
pub const CAN_PLANT: bool = cfg!(feature = "planted");

/// Activates `bug` for the rest of this process. Returns false (and changes nothing) in a
/// build without the `planted` feature.
pub fn plant(bug: Bug) -> bool {
    #[cfg(feature = "planted")]
    ACTIVE.store(bug as u8, std::sync::atomic::Ordering::SeqCst);
    let _ = bug;
    CAN_PLANT
}

/// Whether `bug` is planted in this process.
#[inline]
pub fn is_planted(bug: Bug) -> bool {
    #[cfg(feature = "planted")]
    {
        ACTIVE.load(std::sync::atomic::Ordering::Relaxed) == bug as u8
    }
    #[cfg(not(feature = "planted"))]
    {
        let _ = bug;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for bug in Bug::ALL {
            assert_eq!(Bug::from_name(bug.name()), Some(bug));
        }
        assert_eq!(Bug::from_name("stale-epoch"), None);
    }

    #[test]
    fn nothing_is_planted_until_a_process_plants_it() {
        assert!(Bug::ALL.into_iter().all(|b| !is_planted(b)));
    }
}
