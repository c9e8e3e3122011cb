#!/usr/bin/env bash
# How much of a new condition a bank must learn before another day stops raising
# events. ../shared/data/fan has seven recordings of 2020-03-18 and one of 2021-02-10
# in train/; its normal test clips are of 2021. The script enrols the 2020 recordings
# plus the first N seconds of the 2021 one (N = 0 … all of it; what `learn_start` /
# `learn_stop` for N seconds gives, since a rebuild equals enrolling every window:
# NormalBank::extend), then runs `hark score` over every test clip and prints, per N,
# how many normal and fault clips raise an event and the share of their windows
# over the threshold.
# Usage: scripts/new-day.sh [FAN_DIR] [MODEL] [SECONDS...]   (after `cargo build --release`)
set -euo pipefail
cd "$(dirname "$0")/.."
fan=$(realpath "${1:-../shared/data/fan}")
model=$(realpath "${2:-models/default.safetensors}")
shift $(($# > 2 ? 2 : $#))
seconds=("$@")
[ ${#seconds[@]} -gt 0 ] || seconds=(0 1 2 4 8 all)
hark=$(realpath ./target/release/hark)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
new_day=$(find "$fan/train" -name '*2021*.wav' | sort | head -1)
[ -n "$new_day" ] || { echo "$fan/train: no 2021 recording" >&2; exit 2; }
printf '| learned of 2021 | bank threshold | normal clips with an event | their windows over | fault clips with an event | their windows over |\n|---|---|---|---|---|---|\n'
for n in "${seconds[@]}"; do
    rm -rf "$work/enrol" && mkdir -p "$work/enrol"
    find "$fan/train" -name '*2020*.wav' -exec ln -s {} "$work/enrol/" \;
    if [ "$n" = all ]; then
        ln -s "$new_day" "$work/enrol/"
    elif [ "$n" != 0 ]; then
        python3 - "$new_day" "$work/enrol/new_day.wav" "$n" <<'EOF'
import sys, wave
src, dst, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
with wave.open(src) as r, wave.open(dst, "wb") as w:
    w.setparams(r.getparams())
    w.writeframes(r.readframes(int(seconds * r.getframerate())))
EOF
    fi
    "$hark" enroll "$work/enrol" --model "$model" --out "$work/bank.safetensors" -q >/dev/null
    printf '[[source]]\nname = "fan"\nmodel = "%s"\nbank = "%s"\n' "$model" "$work/bank.safetensors" >"$work/hark.toml"
    for f in "$fan"/test/*.wav; do
        "$hark" score "$f" --config "$work/hark.toml" --json 2>/dev/null |
            python3 -c 'import json,sys,os
rows=[json.loads(l) for l in sys.stdin]
print(os.path.basename(sys.argv[1]).split("_")[0], int(any(r["anomaly"] for r in rows)),
      sum(r["score"] > r["threshold"] for r in rows), len(rows), rows[0]["threshold"])' "$f"
    done >"$work/clips.txt"
    python3 - "$work/clips.txt" "$n" <<'EOF'
import sys
rows = [l.split() for l in open(sys.argv[1])]
def part(label):
    r = [x for x in rows if x[0] == label]
    events = sum(int(x[1]) for x in r)
    over = sum(int(x[2]) for x in r) / sum(int(x[3]) for x in r)
    return f"{events} of {len(r)} | {100 * over:.1f} %"
n = sys.argv[2]
print(f"| {'all (12.5 s)' if n == 'all' else n + ' s'} | {float(rows[0][4]):.3f} | {part('normal')} | {part('anomaly')} |")
EOF
done
