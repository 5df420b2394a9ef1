//! The fuzz targets' checks (`fuzz/checks/`) on every committed input:
//! the seeds in `fuzz/seeds/<target>/` and each crash once found, kept in
//! `fuzz/regressions/<target>/`. `scripts/fuzz.sh` does the fuzzing.

mod replay {
    include!("../../fuzz/checks/replay.rs");
}

mod registrar_check {
    include!("../../fuzz/checks/registrar.rs");
}

#[test]
fn registrar() {
    replay::replay("registrar", registrar_check::check);
}
