//! The `framer` target: the check in `fuzz/checks/framer.rs`, which the fuzzed
//! crate's `tests/fuzz_regressions.rs` runs on every committed input.

#![no_main]

mod check {
    include!("../checks/framer.rs");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
