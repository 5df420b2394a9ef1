//! The fuzz targets' checks (`fuzz/checks/`) on every committed input:
//! the seeds in `fuzz/seeds/<target>/` and each crash once found, kept in
//! `fuzz/regressions/<target>/`. `scripts/fuzz.sh` does the fuzzing.

mod replay {
    include!("../../fuzz/checks/replay.rs");
}

mod pidf_check {
    include!("../../fuzz/checks/pidf.rs");
}

mod summary_check {
    include!("../../fuzz/checks/summary.rs");
}

#[test]
fn pidf() {
    replay::replay("pidf", pidf_check::check);
}

#[test]
fn summary() {
    replay::replay("summary", summary_check::check);
}
