//! The `registrar` target: the check in `fuzz/checks/registrar.rs`, which the fuzzed
//! crate's `tests/fuzz_regressions.rs` runs on every committed input.

#![no_main]

mod check {
    include!("../checks/registrar.rs");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
