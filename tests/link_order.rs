//! The release binary is laid out as `.cargo/symbol-order.txt` says (build.rs): the functions
//! the usual runs execute are still the binary's, and the linker put them together.
//!
//! The binary checked is the one that ships, `cargo build --release --bin simulator`, built here
//! in a target directory of its own: the one `cargo test` builds has other features (the
//! dev-dependencies' tokio `test-util` among them), so other symbol names.

#![cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

const REGENERATE: &str = "regenerate it with benches/symbol_order.sh";

/// The shipped binary, built as `cargo build --release --bin simulator` builds it.
fn release_binary() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("link-order");
    let output = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--locked",
            "--bin",
            "simulator",
            "--manifest-path",
        ])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo build failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    target.join("release/simulator")
}

/// Each function of `binary`: its address and size, by linker (mangled) name.
fn functions(binary: &Path) -> HashMap<String, (u64, u64)> {
    let output = Command::new("nm")
        .args(["--defined-only", "--print-size"])
        .arg(binary)
        .output()
        .expect("nm (binutils) runs");
    assert!(output.status.success(), "nm failed: {output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let [address, size, kind, name] = line.split_whitespace().collect::<Vec<_>>()[..]
            else {
                return None;
            };
            "tTwW".contains(kind).then(|| {
                let hex = |s| u64::from_str_radix(s, 16).unwrap();
                (name.to_owned(), (hex(address), hex(size)))
            })
        })
        .collect()
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "builds the release binary: cargo test --release"
)]
fn the_functions_the_usual_runs_execute_are_laid_out_together() {
    let order = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/.cargo/symbol-order.txt"
    ))
    .expect(".cargo/symbol-order.txt exists");
    // A function thin LTO shares between code units is listed under each name it may have
    // (NAME.llvm.UNIT for each unit of its crate, and NAME): it is there if one of them is.
    let mut listed: Vec<Vec<&str>> = Vec::new();
    let base = |name: &str| name.split(".llvm.").next().unwrap_or(name).to_owned();
    for name in order
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        match listed.last_mut() {
            Some(names) if base(names[0]) == base(name) => names.push(name),
            _ => listed.push(vec![name]),
        }
    }
    assert!(
        listed.len() > 1000,
        "only {} functions; {REGENERATE}",
        listed.len()
    );

    let functions = functions(&release_binary());
    // Aliases of one function (at one address) counted once.
    let found: BTreeSet<(u64, u64)> = listed
        .iter()
        .flatten()
        .filter_map(|n| functions.get(*n))
        .copied()
        .collect();
    let missing = listed
        .iter()
        .filter(|names| !names.iter().any(|n| functions.contains_key(*n)))
        .count();
    // Each function missing is laid out among those that never run, and can cost the process
    // a 64 KiB window of code more: 26 in 2,880 (an edit to the shoppers' start-up since the
    // file was written) cost 0.6 MB at the defaults.
    assert!(
        missing * 100 <= listed.len(),
        "{missing} of the {} functions listed are no longer in the binary (a new toolchain, \
         changed dependencies or code); {REGENERATE}",
        listed.len()
    );

    // Laid out together: a process maps a binary's code 64 KiB at a time around each page it
    // runs, so what counts is how many such windows the functions lie in. An unordered build
    // scatters them over nearly three times as many as their size fills, an ordered one over
    // about one and a half (C objects, librdkafka's, whose functions share a section, move
    // whole and add some).
    const WINDOW: u64 = 64 * 1024;
    let size: u64 = found.iter().map(|(_, size)| size).sum();
    let windows: BTreeSet<u64> = found
        .iter()
        .flat_map(|(address, size)| address / WINDOW..=(address + size.max(&1) - 1) / WINDOW)
        .collect();
    let least = size.div_ceil(WINDOW);
    assert!(
        windows.len() as u64 * 2 <= least * 3,
        "the {} functions ({size} bytes, {least} windows of 64 KiB at the least) lie in {} \
         windows: the linker did not lay them out together (build.rs)",
        found.len(),
        windows.len()
    );
}
