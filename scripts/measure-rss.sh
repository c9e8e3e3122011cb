#!/usr/bin/env bash
# measure-rss.sh: peak RSS of `hark run` with a 10,000-embedding bank.
#
# Method: fan/train (8 clips) linked 12 times under other names and enrolled with
# `--max-bank 10000` (~10,000 windows, every one kept, each with its band profile and
# clip name for explanations); then `hark run` on one file: source (fan/test normal
# clip, real time) with that bank and the embedded broker, stopped with SIGTERM after
# 4 s, under `/usr/bin/time -v`. RUNS runs (default 3); prints the bank size and each
# run's maximum resident set size.
#
# Run: scripts/measure-rss.sh   (needs target/release/hark and /usr/bin/time;
#      HARK=, DATA=, RUNS= override the binary, the data path and the run count)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HARK=${HARK:-$ROOT/target/release/hark}
FAN=${DATA:-$ROOT/../shared/data}/fan
RUNS=${RUNS:-3}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
. "$ROOT/scripts/lib.sh"

mkdir -p "$TMP/normal"
for i in $(seq 1 12); do
    for f in "$FAN"/train/*.wav; do
        ln -s "$f" "$TMP/normal/$i-$(basename "$f")"
    done
done
"$HARK" enroll "$TMP/normal" --max-bank 10000 --out "$TMP/big.bank.safetensors" 2>/dev/null
ls -l "$TMP/big.bank.safetensors" | awk '{printf "bank file: %.1f MB\n", $5 / 1e6}'
cat >"$TMP/hark.toml" <<TOML
node = "rss"
state_dir = "$TMP"
[mqtt]
embedded_port = $(free_port)
discovery = false
[[source]]
name = "fan"
device = "file:$FAN/test/normal_id_00_20210210T012029.wav"
realtime = true
model = "$ROOT/models/default.safetensors"
bank = "$TMP/big.bank.safetensors"
evidence = false
TOML
for run in $(seq 1 "$RUNS"); do
    /usr/bin/time -v "$HARK" run --config "$TMP/hark.toml" 2>"$TMP/run.log" &
    pid=$!
    sleep 4
    pkill -TERM -P "$pid" hark || true
    wait "$pid" || true
    grep -E "Maximum resident set size" "$TMP/run.log" |
        awk -v run="$run" '{printf "run %d: peak RSS %.1f MB\n", run, $NF / 1024}'
done
