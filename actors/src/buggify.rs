//! Code-level fault points for the simulator, FoundationDB style: `buggify!(p)` is true with
//! probability `p` once the simulator has switched faults on, and a constant `false` in any
//! build without the `buggify` feature (production never enables it).

#[cfg(feature = "buggify")]
mod on {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    static ENABLED: AtomicBool = AtomicBool::new(false);
    static STATE: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);

    /// Switches the fault points on, drawing from `seed` (the simulator, once per process).
    pub fn enable(seed: u64) {
        STATE.store(seed | 1, Ordering::Relaxed);
        ENABLED.store(true, Ordering::Relaxed);
    }

    /// Switches them off (healing).
    pub fn disable() {
        ENABLED.store(false, Ordering::Relaxed);
    }

    /// True with probability `p` while enabled.
    pub fn fire(p: f64) -> bool {
        if !ENABLED.load(Ordering::Relaxed) {
            return false;
        }
        // xorshift64*: the simulation is single-threaded, so the sequence follows the seed.
        let mut x = STATE.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        STATE.store(x, Ordering::Relaxed);
        let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        (r as f64 / (1u64 << 53) as f64) < p
    }
}

#[cfg(feature = "buggify")]
pub use on::{disable, enable, fire};

/// Always false: this build has no fault points.
#[cfg(not(feature = "buggify"))]
#[inline(always)]
pub fn fire(_p: f64) -> bool {
    false
}

/// True with the given probability inside the simulator; `false` in production builds.
#[macro_export]
macro_rules! buggify {
    ($p:expr) => {
        $crate::buggify::fire($p)
    };
}
