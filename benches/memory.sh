#!/usr/bin/env bash
# Resident memory per idle shopper: the simulator at its real-time default pace with 100,000
# shoppers, against a baseline with one shopper. Usage: benches/memory.sh [SHOPPERS]
set -euo pipefail
cd "$(dirname "$0")/.."
shoppers=${1:-100000}
cargo build --release --quiet
bin=target/release/simulator
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

rss_kib() { # RSS of a run with $1 shoppers, after it has settled
  # Each run keeps its ledger in a directory of its own: two runs never share one.
  RUST_LOG=warn "$bin" --shoppers "$1" --sink null --output-dir "$(mktemp -d -p "$work")" &
  local pid=$!
  sleep 5
  local rss
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
  kill -TERM "$pid"
  wait "$pid"
  echo "$rss"
}

base=$(rss_kib 1)
full=$(rss_kib "$shoppers")
echo "baseline (1 shopper): ${base} KiB"
echo "${shoppers} shoppers: ${full} KiB"
echo "per idle shopper: $(( (full - base) * 1024 / shoppers )) bytes"
