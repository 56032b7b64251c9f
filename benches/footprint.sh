#!/usr/bin/env bash
# CPU and resident memory of the simulator at its defaults (500 orders/h, 10,000 shoppers, file
# sink) over ten minutes of real time, of the release build or of another binary given (to set two
# builds side by side). Usage: benches/footprint.sh [SECONDS [BINARY]]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
binary=${2:-}
if [[ -z $binary ]]; then
  cargo build --release --quiet
  binary=target/release/simulator
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# As in the container image (deploy/container/Dockerfile).
export MIMALLOC_ARENA_EAGER_COMMIT=0
RUST_LOG=warn "$binary" --rate 500/h --output-dir "$out/data" --metrics-addr 127.0.0.1:0 &
pid=$!
ticks=$(getconf CLK_TCK)
sleep 5 # start-up: spawning the shoppers and publishing the catalogue
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
start=$(cpu)
max_rss=0
for _ in $(seq 1 $((seconds / 5))); do
  sleep 5
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
  ((rss > max_rss)) && max_rss=$rss
done
used=$(( $(cpu) - start ))
kill -TERM "$pid"
wait "$pid"
echo "over ${seconds} s: CPU $(awk -v u="$used" -v t="$ticks" -v s="$seconds" 'BEGIN { printf "%.3f%% of one core", 100 * u / t / s }')"
echo "resident memory, highest sample: $((max_rss / 1024)) MiB (${max_rss} KiB)"
