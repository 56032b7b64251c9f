#!/usr/bin/env bash
# Writes .cargo/symbol-order.txt: the functions of the simulator's binary that its usual runs
# execute, in the order they first run. The linker lays them out together at the start of the
# code (build.rs), so a process maps the code it uses and not the functions between them: the
# kernel maps a file's pages 64 KiB at a time around each one touched.
#
# Profiles, under valgrind's callgrind, of:
#   - the defaults (500 orders/h, file sink) for 30 s of real time, with /metrics and /readyz
#     scraped, then a graceful stop;
#   - the file sink at --speed max over three simulated hours from a past start (hour files
#     closed, ledger written);
#   - with SIMULATOR_TEST_KAFKA_BOOTSTRAP=HOST:PORT, the defaults into that broker for 30 s
#     (a tansu broker: its command line, `tansu`, creates the run's topics).
#
# Run it again when tests/link_order.rs says the file has gone stale (a new toolchain, changed
# dependencies, types or code), and after a change to the code the usual runs execute: a
# function it does not list is laid out among those that never run. Usage: benches/symbol_order.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || {
  echo "valgrind is required (apt-get install valgrind)" >&2
  exit 1
}
cargo build --release --quiet --bin simulator
bin=$PWD/target/release/simulator
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export MIMALLOC_ARENA_EAGER_COMMIT=0 RUST_LOG=warn

profile() { # NAME ARGS... : one run under callgrind, its profile in $work/NAME.out
  local name=$1
  shift
  # exec: run in the background, the signal then reaches valgrind itself.
  exec valgrind --tool=callgrind --demangle=no --callgrind-out-file="$work/$name.out" \
    "$bin" --output-dir "$work/$name-data" "$@" >"$work/$name.log" 2>&1
}

scraped() { # NAME PORT ARGS... : a real-time run, scraped, stopped after 30 s
  local name=$1 port=$2
  shift 2
  profile "$name" --metrics-addr "127.0.0.1:$port" "$@" &
  local pid=$!
  for _ in 1 2 3; do
    sleep 10
    curl -sf "http://127.0.0.1:$port/metrics" >/dev/null || true
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || true
  done
  # valgrind passes the signal on to the simulator, which stops as it would in a container.
  kill -TERM "$pid"
  wait "$pid" || { cat "$work/$name.log" >&2; exit 1; }
}

scraped defaults 19464 --rate 500/h
(profile hours --rate 5000/h --seed 7 --start 2026-01-05T00:00:00Z --speed max --duration 3h \
  --metrics-addr 127.0.0.1:0) || { cat "$work/hours.log" >&2; exit 1; }
if [[ -n ${SIMULATOR_TEST_KAFKA_BOOTSTRAP:-} ]]; then
  # Topics of this run's own, created with tansu's command line (the broker .ci/run starts).
  prefix="symbol-order-$$-"
  for topic in products customers orders payments; do
    tansu topic create --broker "tcp://$SIMULATOR_TEST_KAFKA_BOOTSTRAP" --partitions 4 \
      "$prefix$topic" >/dev/null
    export "SIMULATOR__KAFKA__TOPICS__${topic^^}=$prefix$topic"
  done
  scraped kafka 19465 --rate 500/h --sink kafka --bootstrap-servers "$SIMULATOR_TEST_KAFKA_BOOTSTRAP"
fi

python3 - "$bin" "$work" .cargo/symbol-order.txt <<'PY'
import re, subprocess, sys
from pathlib import Path

binary, work, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
# The binary's functions, by the linker's (mangled) name.
functions = set()
for line in subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True,
                           check=True).stdout.splitlines():
    parts = line.split()
    if len(parts) == 3 and parts[1] in "tTwW":
        functions.add(parts[2])

order, seen = [], set()
for profile in ["defaults", "hours", "kafka"]:
    path = work / f"{profile}.out"
    if not path.exists():
        continue
    objects, names, current = {}, {}, None
    for line in path.read_text().splitlines():
        # Compressed names: "ob=(3) /path" defines object 3, "ob=(3)" refers to it again.
        m = re.match(r"(c?ob)=\((\d+)\)(?: (.*))?$", line)
        if m:
            if m.group(3):
                objects[m.group(2)] = m.group(3)
            if m.group(1) == "ob":
                current = objects[m.group(2)]
            continue
        m = re.match(r"(c?fn)=\((\d+)\)(?: (.*))?$", line)
        if m:
            if m.group(3):
                # Recursion levels are told apart by a suffix: 'NAME'2.
                names[m.group(2)] = re.sub(r"'\d+$", "", m.group(3))
            name = names[m.group(2)]
            if m.group(1) == "fn" and current == binary and name in functions and name not in seen:
                seen.add(name)
                order.append(name)

# A function that thin LTO shares between the code units of its crate is named
# NAME.llvm.CRATE_HASH_cgu_N (.cargo/config.toml); an edit elsewhere in the crate can move it to
# another unit, or leave it unshared (plain NAME). Its other possible names follow it, so that
# the order outlives such edits; the linker passes over the names it does not find.
units = sorted({int(m.group(1)) for f in functions if (m := re.search(r"_cgu_(\d+)$", f))})
lines, listed = [], set()
for name in order:
    m = re.fullmatch(r"(.+)\.llvm\.(.+_cgu_)\d+", name)
    names = [name]
    if m:
        base, unit = m.groups()
        names += [f"{base}.llvm.{unit}{n}" for n in units] + [base]
    for each in names:
        if each not in listed:
            listed.add(each)
            lines.append(each)

header = """\
# The functions of the simulator's binary that its usual runs execute, in the order they first
# run: build.rs passes this file to the linker (--symbol-ordering-file), which lays them out
# together at the start of the code. Written by benches/symbol_order.sh from callgrind profiles;
# a function shared between code units by thin LTO is followed by its other possible names.
# tests/link_order.rs fails when too many of these functions are no longer in the binary.
"""
out.write_text(header + "\n".join(lines) + "\n")
print(f"{out}: {len(order)} functions, {len(lines)} names")
PY
