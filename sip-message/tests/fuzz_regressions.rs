//! The fuzz targets' checks (`fuzz/checks/`) on every committed input:
//! the seeds in `fuzz/seeds/<target>/` and each crash once found, kept in
//! `fuzz/regressions/<target>/`. `scripts/fuzz.sh` does the fuzzing.

mod replay {
    include!("../../fuzz/checks/replay.rs");
}

mod parse_check {
    include!("../../fuzz/checks/parse.rs");
}

mod framer_check {
    include!("../../fuzz/checks/framer.rs");
}

#[test]
fn parse() {
    replay::replay("parse", parse_check::check);
}

#[test]
fn framer() {
    replay::replay("framer", framer_check::check);
}
