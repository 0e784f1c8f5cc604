//! Replays the committed seed corpora (`fuzz/seeds/<target>/`) through every target, plus a few
//! hundred fixed pseudo-random inputs, on the stable toolchain: the targets keep compiling
//! against the codecs' current API, and every seed still passes the targets' checks. Run by
//! `scripts/test` as `cargo test --manifest-path fuzz/Cargo.toml --no-default-features`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use switchboard_fuzz::TARGETS;

/// Inputs libFuzzer would start from if a target had no corpus: fixed, so a failure reproduces.
fn pseudo_random_inputs() -> impl Iterator<Item = Vec<u8>> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..300).map(move |i| (0..(i % 97) * 7).map(|_| next() as u8).collect())
}

#[test]
fn every_target_has_seeds_and_passes_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    for (name, target) in TARGETS {
        let dir = root.join(name);
        let mut seeds: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| {
                panic!("{}: {e} (write them with `cargo run --example write_seeds`)", dir.display())
            })
            .map(|entry| entry.unwrap().path())
            .collect();
        seeds.sort();
        assert!(seeds.len() >= 5, "{name}: only {} seeds in {}", seeds.len(), dir.display());
        for seed in seeds {
            let data = std::fs::read(&seed).unwrap();
            let run = std::panic::catch_unwind(|| target(&data));
            assert!(run.is_ok(), "{name} fails on seed {}", seed.display());
        }
        for data in pseudo_random_inputs() {
            let run = std::panic::catch_unwind(|| target(&data));
            assert!(run.is_ok(), "{name} fails on {data:02x?}");
        }
    }
}

#[test]
fn every_fuzz_target_is_replayed() {
    let manifest = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let bins: Vec<&str> = manifest
        .lines()
        .filter_map(|line| line.strip_prefix("name = \""))
        .filter_map(|rest| rest.strip_suffix('"'))
        .filter(|name| *name != "switchboard-fuzz")
        .collect();
    let replayed: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
    assert_eq!(bins, replayed, "each [[bin]] of fuzz/Cargo.toml needs its entry in TARGETS");
}
