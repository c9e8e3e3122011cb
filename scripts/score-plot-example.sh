#!/usr/bin/env bash
# Makes docs/score-plot.svg, the README's `hark score --plot` figure, from the real fan
# recordings in ../shared/data (which stay there: only the picture is committed).
#   scripts/score-plot-example.sh [OUT.svg]
# Enrols on fan/train, joins a normal clip, a blade-fault clip and another normal clip
# (python3's wave module, no crossfade) and scores the result with the shipped model.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/score-plot.svg}
data=../shared/data/fan
test -d "$data" || { echo "$0: $data is missing" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cargo build --quiet --bin hark
hark=target/debug/hark
"$hark" enroll "$data" --model models/default.safetensors --out "$tmp/fan.bank.safetensors"
python3 - "$tmp/fan-normal-fault-normal.wav" \
    "$data/test/normal_id_00_20210210T012029.wav" \
    "$data/test/anomaly_id_00_bladefault_20200318T205628.wav" \
    "$data/test/normal_id_00_20210210T012217.wav" <<'PY'
import sys, wave
out, ins = sys.argv[1], sys.argv[2:]
with wave.open(out, "wb") as w:
    for i, f in enumerate(ins):
        with wave.open(f, "rb") as r:
            if i == 0:
                w.setparams(r.getparams())
            w.writeframes(r.readframes(r.getnframes()))
PY
cat >"$tmp/hark.toml" <<TOML
[[source]]
name = "fan"
model = "models/default.safetensors"
bank = "$tmp/fan.bank.safetensors"
TOML
"$hark" score "$tmp/fan-normal-fault-normal.wav" --config "$tmp/hark.toml" --plot "$out" --json >"$tmp/scores.jsonl"
# The events, as the README describes them: first and last window marked anomalous.
python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
marked = [r["t"] for r in rows if r["anomaly"]]
over = [r["t"] for r in rows if r["score"] > r["threshold"]]
flags = [r["anomaly"] for r in rows]
events = sum(1 for a, b in zip([False] + flags, flags) if b and not a)
print(f"{events} event(s); anomalous windows end {marked[0]:.1f}-{marked[-1]:.1f} s; last over threshold {over[-1]:.1f} s")
' "$tmp/scores.jsonl"
echo "wrote $out"
