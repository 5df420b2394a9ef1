// Replays the committed inputs of one fuzz target through its check, as
// the crate's regression test: every seed (fuzz/seeds/<target>/) and every
// crash once found (fuzz/regressions/<target>/). Included with `include!`
// by the tests of the fuzzed crates, so the path is relative to the crate
// that includes it.

use std::path::{Path, PathBuf};

/// Runs `check` on every input of `target`; fails naming every input that
/// panics (each panic's message is printed as it happens).
pub fn replay(target: &str, check: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let fuzz = fuzz.canonicalize().unwrap_or(fuzz);
    let seeds = inputs(&fuzz.join("seeds").join(target));
    assert!(
        !seeds.is_empty(),
        "no seeds in fuzz/seeds/{target}: the fuzz directory moved?"
    );
    let all: Vec<PathBuf> = seeds
        .into_iter()
        .chain(inputs(&fuzz.join("regressions").join(target)))
        .collect();
    let failed: Vec<String> = all
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).expect("a committed fuzz input is readable");
            std::panic::catch_unwind(|| check(&data)).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} `{target}` inputs fail:\n{}",
        failed.len(),
        all.len(),
        failed.join("\n")
    );
}

/// The files of `dir`, sorted; none when it does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    files.sort();
    files
}
