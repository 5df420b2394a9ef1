//! The fuzz targets' checks (`fuzz/checks/`) on every committed input:
//! the seeds in `fuzz/seeds/<target>/` and each crash once found, kept in
//! `fuzz/regressions/<target>/`. `scripts/fuzz.sh` does the fuzzing.

mod replay {
    include!("../../fuzz/checks/replay.rs");
}

mod sdp_check {
    include!("../../fuzz/checks/sdp.rs");
}

#[test]
fn sdp() {
    replay::replay("sdp", sdp_check::check);
}
