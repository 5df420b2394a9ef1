//! The `dialog_info` target: the check in `fuzz/checks/dialog_info.rs`, which the fuzzed
//! crate's `tests/fuzz_regressions.rs` runs on every committed input.

#![no_main]

mod check {
    include!("../checks/dialog_info.rs");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
