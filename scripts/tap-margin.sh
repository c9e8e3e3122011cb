#!/usr/bin/env bash
# How much margin a tap bank's threshold needs, from normal knocks only: enrol on the
# first half of a knock set's train/ clips (sorted by name), score the second half with
# `hark score` (each clip is one knock), and compare the held-out scores with the
# threshold the bank calibrated. The margin behind TAP_THRESHOLD_MARGIN (src/bank.rs).
# Usage: scripts/tap-margin.sh [SET_DIR] [MODEL]   (needs `cargo build --release` first)
set -euo pipefail
cd "$(dirname "$0")/.."
set_dir=${1:-../shared/data/bottles}
model=$(realpath "${2:-models/tap.safetensors}")
hark=$(realpath ./target/release/hark)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/enrol/train" "$work/held_out"
mapfile -t clips < <(find "$(realpath "$set_dir")/train" -name '*.wav' | sort)
half=$((${#clips[@]} / 2))
for i in "${!clips[@]}"; do
    if [ "$i" -lt "$half" ]; then dest=$work/enrol/train; else dest=$work/held_out; fi
    ln -s "${clips[$i]}" "$dest/"
done
"$hark" enroll "$work/enrol" --model "$model" --out "$work/bank.safetensors" -q
cat >"$work/hark.toml" <<EOF
[[source]]
name = "station"
mode = "tap"
model = "$model"
bank = "$work/bank.safetensors"
EOF
for f in "$work"/held_out/*.wav; do
    "$hark" score "$f" --config "$work/hark.toml" --json 2>/dev/null
done >"$work/scores.jsonl"
python3 - "$work/scores.jsonl" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
scores = sorted(r["score"] for r in rows)
threshold = rows[0]["threshold"]
# The bank's own margin is in its threshold; the quantile is threshold / margin, and a
# tap bank's margin is 1 (a continuous one's 2): report against both.
p99 = scores[min(len(scores) - 1, round(0.99 * (len(scores) - 1)))]
print(json.dumps({
    "held_out": len(scores),
    "threshold": threshold,
    "held_out_p99": round(p99, 5),
    "held_out_max": round(scores[-1], 5),
    "p99_over_threshold": round(p99 / threshold, 3),
    "over_threshold": sum(s > threshold for s in scores),
}))
EOF
