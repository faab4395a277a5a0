//! Seeded replacements of `getrandom`, `getentropy` and `clock_gettime`, linked only into
//! the simulator binary: third-party code that asks the OS for randomness or the time
//! (std's hash seeds, Raft's election timers) gets answers that follow from the seed.
//! Wall-clock measurements of the harness itself use the raw system call.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

static ENTROPY: Mutex<Option<ChaCha8Rng>> = Mutex::new(None);
/// Fake nanoseconds handed out so far (each call moves time by 1 µs).
static TICKS: AtomicU64 = AtomicU64::new(0);
/// 2026-01-01T00:00:00Z.
const EPOCH_SECS: i64 = 1_767_225_600;

/// Seeds the process's randomness with the run's seed.
pub fn seed(seed: u64) {
    let mut g = ENTROPY.lock().unwrap_or_else(|p| p.into_inner());
    *g = Some(ChaCha8Rng::seed_from_u64(agora_sim::seed::derive(
        seed,
        "process-entropy",
    )));
}

fn fill(buf: &mut [u8]) {
    let mut g = ENTROPY.lock().unwrap_or_else(|p| p.into_inner());
    g.get_or_insert_with(|| ChaCha8Rng::seed_from_u64(0))
        .fill_bytes(buf);
}

/// Real seconds on the monotonic clock (the raw system call, not the shim).
pub fn wall_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the kernel to fill; the `syscall` shim passes
    // clock_gettime through to the kernel.
    unsafe {
        libc::syscall(
            libc::SYS_clock_gettime,
            libc::CLOCK_MONOTONIC,
            &mut ts as *mut libc::timespec,
        );
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// `getrandom(2)`, seeded.
///
/// # Safety
/// `buf` must point to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn getrandom(buf: *mut u8, len: usize, _flags: u32) -> isize {
    if buf.is_null() {
        return -1;
    }
    // SAFETY: the caller guarantees `buf` points to `len` writable bytes.
    let out = unsafe { std::slice::from_raw_parts_mut(buf, len) };
    fill(out);
    len as isize
}

/// `getentropy(3)`, seeded.
///
/// # Safety
/// `buf` must point to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn getentropy(buf: *mut u8, len: usize) -> i32 {
    if buf.is_null() || len > 256 {
        return -1;
    }
    // SAFETY: the caller guarantees `buf` points to `len` writable bytes.
    let out = unsafe { std::slice::from_raw_parts_mut(buf, len) };
    fill(out);
    0
}

/// `clock_gettime(2)`, virtual: every clock starts at the simulated epoch (the realtime
/// clock) or at one second (the others) and moves 1 µs per call.
///
/// # Safety
/// `tp` must point to a writable `timespec`.
#[no_mangle]
pub unsafe extern "C" fn clock_gettime(clock: libc::clockid_t, tp: *mut libc::timespec) -> i32 {
    if tp.is_null() {
        return -1;
    }
    let ns = TICKS.fetch_add(1_000, Ordering::Relaxed);
    let base = if clock == libc::CLOCK_REALTIME || clock == libc::CLOCK_REALTIME_COARSE {
        EPOCH_SECS
    } else {
        1
    };
    // SAFETY: the caller guarantees `tp` is writable.
    unsafe {
        (*tp).tv_sec = base + (ns / 1_000_000_000) as i64;
        (*tp).tv_nsec = (ns % 1_000_000_000) as i64;
    }
    0
}

/// `syscall(2)` with the `getrandom` number answered from the seed (getrandom 0.2, used by
/// rand 0.8's thread RNG and so by Raft's election timers, calls it this way); every other
/// call goes to the kernel unchanged. On x86-64 a variadic call passes its integer arguments
/// in the same registers as a plain six-argument call, so this signature receives them.
///
/// # Safety
/// As for `syscall(2)`: the arguments must be valid for the call `num`.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[no_mangle]
pub unsafe extern "C" fn syscall(
    num: libc::c_long,
    a1: libc::c_long,
    a2: libc::c_long,
    a3: libc::c_long,
    a4: libc::c_long,
    a5: libc::c_long,
    a6: libc::c_long,
) -> libc::c_long {
    if num == libc::SYS_getrandom {
        let (buf, len) = (a1 as *mut u8, a2 as usize);
        if buf.is_null() {
            return -1;
        }
        // SAFETY: the caller passes a buffer of `len` writable bytes.
        fill(unsafe { std::slice::from_raw_parts_mut(buf, len) });
        return len as libc::c_long;
    }
    let ret: libc::c_long;
    // SAFETY: a raw system call with the caller's arguments, as libc's `syscall` makes it.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") num => ret,
            in("rdi") a1,
            in("rsi") a2,
            in("rdx") a3,
            in("r10") a4,
            in("r8") a5,
            in("r9") a6,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    if (-4095..0).contains(&ret) {
        // SAFETY: errno is this thread's.
        unsafe { *libc::__errno_location() = -ret as i32 };
        return -1;
    }
    ret
}
