//! The `sdp` target: the check in `fuzz/checks/sdp.rs`, which the fuzzed
//! crate's `tests/fuzz_regressions.rs` runs on every committed input.

#![no_main]

mod check {
    include!("../checks/sdp.rs");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
