//! Exports the seeded `getrandom`/`getentropy`/`clock_gettime` of the simulator binary to the
//! dynamic symbol table, so lookups through `dlsym` (as std does) find them too.

fn main() {
    for sym in ["getrandom", "getentropy", "clock_gettime", "syscall"] {
        println!("cargo:rustc-link-arg-bin=agora-sim=-Wl,--export-dynamic-symbol={sym}");
    }
}
