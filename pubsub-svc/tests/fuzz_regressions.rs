//! The fuzz targets' checks (`fuzz/checks/`) on every committed input:
//! the seeds in `fuzz/seeds/<target>/` and each crash once found, kept in
//! `fuzz/regressions/<target>/`. `scripts/fuzz.sh` does the fuzzing.

mod replay {
    include!("../../fuzz/checks/replay.rs");
}

mod dialog_info_check {
    include!("../../fuzz/checks/dialog_info.rs");
}

#[test]
fn dialog_info() {
    replay::replay("dialog_info", dialog_info_check::check);
}
