//! Lays out the simulator's binary with the code its usual runs execute together at the start
//! (`.cargo/symbol-order.txt`, written by `benches/symbol_order.sh`): the kernel maps a binary's
//! pages 64 KiB at a time around each page touched, so code scattered among functions that never
//! run costs resident memory. At the defaults the binary's mapped code falls from 5.4 MB to
//! 2.5 MB.
//!
//! Only where rustc links with its own LLD, which reads such a file: x86_64 Linux with glibc
//! from Rust 1.90 on, unless the build names another linker. A name that is no longer in the
//! binary is passed over; `tests/link_order.rs` says when too many are. The names thin LTO gives
//! the functions it shares between code units are made the same for any checkout of the same
//! code by `.cargo/config.toml`.

use std::env;
use std::path::Path;
use std::process::Command;

const ORDER: &str = ".cargo/symbol-order.txt";

fn main() {
    println!("cargo::rerun-if-changed={ORDER}");
    println!("cargo::rerun-if-env-changed=RUSTC_LINKER");
    let order = Path::new(&env::var("CARGO_MANIFEST_DIR").expect("set by cargo")).join(ORDER);
    if order.exists() && links_with_rust_lld() {
        // Through -Xlinker, so that a comma in the path is not taken for a separator.
        for arg in [
            format!("--symbol-ordering-file={}", order.display()),
            "--no-warn-symbol-ordering".to_owned(),
        ] {
            println!("cargo::rustc-link-arg-bin=simulator=-Xlinker");
            println!("cargo::rustc-link-arg-bin=simulator={arg}");
        }
    }
}

/// Whether rustc links the binary with its own LLD: its default for x86_64-unknown-linux-gnu
/// since 1.90, when neither the configuration nor the flags choose a linker.
fn links_with_rust_lld() -> bool {
    let var = |name| env::var(name).unwrap_or_default();
    if (
        var("CARGO_CFG_TARGET_ARCH"),
        var("CARGO_CFG_TARGET_OS"),
        var("CARGO_CFG_TARGET_ENV"),
    ) != ("x86_64".into(), "linux".into(), "gnu".into())
    {
        return false;
    }
    let flags = var("CARGO_ENCODED_RUSTFLAGS");
    if env::var_os("RUSTC_LINKER").is_some()
        || flags.contains("linker")
        || flags.contains("fuse-ld")
    {
        return false;
    }
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(output) = Command::new(rustc).arg("--version").output() else {
        return false;
    };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let version = String::from_utf8_lossy(&output.stdout);
    let mut numbers = version
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .split('.')
        .map(|n| n.parse::<u32>().unwrap_or(0));
    (numbers.next(), numbers.next()) >= (Some(1), Some(90))
}
