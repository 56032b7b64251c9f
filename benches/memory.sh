#!/usr/bin/env bash
# Resident memory per idle shopper, and start-up time: the simulator at its real-time default
# pace with SHOPPERS shoppers (default 100,000), against a baseline with one shopper. Start-up is
# the real time from launch until /readyz answers 200 (every shopper's task running); memory is
# read once the run has settled (5 s after it was ready).
# Usage: benches/memory.sh [SHOPPERS] [BINARY]   (BINARY: default target/release/simulator,
# built first)
set -euo pipefail
cd "$(dirname "$0")/.."
shoppers=${1:-100000}
bin=${2:-}
if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin=target/release/simulator
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

measure() { # prints "startup_seconds rss_kib" for a run with $1 shoppers
  local port started pid ready rss
  port=$(free_port)
  started=$(date +%s.%N)
  # Each run keeps its ledger in a directory of its own: two runs never share one.
  RUST_LOG=warn "$bin" --shoppers "$1" --sink null --metrics-addr "127.0.0.1:$port" \
    --output-dir "$(mktemp -d -p "$work")" &
  pid=$!
  until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { echo "the simulator exited before it was ready" >&2; exit 1; }
    sleep 0.05
  done
  ready=$(date +%s.%N)
  sleep 5
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
  kill -TERM "$pid"
  wait "$pid"
  echo "$(awk -v a="$started" -v b="$ready" 'BEGIN { printf "%.2f", b - a }') $rss"
}

read -r _ base < <(measure 1)
read -r startup full < <(measure "$shoppers")
echo "baseline (1 shopper): ${base} KiB"
echo "$shoppers shoppers: $full KiB ($((full * 1024 / 1000000)) MB), ready after $startup s"
echo "per idle shopper: $(( (full - base) * 1024 / shoppers )) bytes"
