#!/usr/bin/env bash
# Whole-process throughput: the performance issue's hour (`--profile flat --rate 360000/h
# --shoppers 10000 --seed 7 --start 2026-01-05T00:00:00Z --speed max --duration 1h`) run
# ROUNDS times per binary, binaries alternated round by round so that a change in the machine's
# load touches each alike; prints each run and the medians. Events are every event the run
# generated (its closing line), over wall time.
#
# Usage: benches/whole_process.sh [-r ROUNDS] [-p PROFILE] [-s SINK] [-t CPUS] [BINARY...]
#   -r  rounds per binary (default 5)
#   -p  traffic profile: flat (default) or realistic
#   -s  sink kinds, as --sink takes them (default null)
#   -t  a CPU list for taskset (for example 0 for one core); default: every core
#   BINARY  simulators to compare (default: target/release/simulator, built first)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=5 profile=flat sink=null cpus=
while getopts r:p:s:t: opt; do
  case $opt in
    r) rounds=$OPTARG ;;
    p) profile=$OPTARG ;;
    s) sink=$OPTARG ;;
    t) cpus=$OPTARG ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
if [ $# -eq 0 ]; then
  cargo build --release --quiet
  set -- target/release/simulator
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pin=()
[ -n "$cpus" ] && pin=(taskset -c "$cpus")

run() { # prints "events seconds peak_kib"
  local out=$work/out.$$ dir
  dir=$(mktemp -d -p "$work")
  RUST_LOG=info /usr/bin/time -f "%e %M" -o "$work/time" "${pin[@]}" "$1" \
    --profile "$profile" --rate 360000/h --shoppers 10000 --seed 7 \
    --start 2026-01-05T00:00:00Z --speed max --duration 1h --sink "$sink" \
    --output-dir "$dir" >"$out" 2>&1
  local events
  events=$(grep -o 'generated=[0-9]*' "$out" | tail -1 | cut -d= -f2)
  rm -rf "$dir"
  echo "$events $(cat "$work/time")"
}

declare -A results
for ((round = 1; round <= rounds; round++)); do
  for bin in "$@"; do
    read -r events secs kib < <(run "$bin")
    rate=$(awk -v e="$events" -v s="$secs" 'BEGIN { printf "%d", e / s }')
    echo "round $round  $bin  $events events  $secs s  $rate events/s  ${kib} KiB peak"
    results[$bin]+="$secs "
    last_events=$events
  done
done
for bin in "$@"; do
  median=$(tr ' ' '\n' <<<"${results[$bin]}" | grep . | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
  rate=$(awk -v e="$last_events" -v s="$median" 'BEGIN { printf "%d", e / s }')
  echo "median  $bin  $profile  sink=$sink  ${cpus:+cpus=$cpus  }$median s  $rate events/s"
done
