#!/usr/bin/env bash
# Leave-one-set-out check of the default model's recipe: for each set of ../shared/data,
# train with the shipped command on every *other* set's train/ clips, then evaluate the
# left-out set (enrol on its train/, score its test/) with that model, beside the
# fixed-seed network of the same geometry. This is how the recipe has to prove it
# generalises to a machine it never heard. About 2.5 min per set here (2 vCPUs).
#
# Usage: scripts/loso-default.sh [DATA_DIR [TRAINING FLAGS...]]
#   (needs `cargo build --release` first). Flags after DATA_DIR replace the shipped
#   recipe's (`--anchor 0.3 --epochs 5`), e.g. `--no-twins --epochs 20`; the geometry
#   and the seed stay. With WINDOWS=DIR set, every evaluation also writes its windows
#   (DIR/untrained, DIR/without), so that `scripts/scorer-study.py DIR/without` scores
#   each left-out set by the embedding or the profile alone.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data}
shift || true
recipe=(--anchor 0.3 --epochs 5)
if [ $# -gt 0 ]; then
    # Flags replace the recipe: no anchor unless they name one (`hark train` would
    # otherwise anchor at 0.3, its default).
    recipe=("$@")
    [[ " $* " == *" --anchor "* ]] || recipe+=(--anchor 0)
fi
hark=./target/release/hark
geometry=(--profile --sample-rate 48000 --n-fft 1024 --hop 512 --fmax 24000 --window-hop-frames 24)
sets=(aircompressor bottles fan slider stones dcase2023)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
windows() { [ -n "${WINDOWS:-}" ] && echo --windows "$WINDOWS/$1"; true; }
"$hark" init-model "${geometry[@]}" --seed 7 --out "$out/untrained.safetensors" >/dev/null
echo "recipe: ${recipe[*]}"
for held_out in aircompressor bottles fan slider stones; do
    train=()
    for s in "${sets[@]}"; do
        [ "$s" = "$held_out" ] || train+=("$data/$s")
    done
    "$hark" train "${train[@]}" "${geometry[@]}" "${recipe[@]}" --seed 7 -q \
        --out "$out/without-$held_out.safetensors" >/dev/null 2>&1
    printf '%-10s ' untrained
    # shellcheck disable=SC2046
    "$hark" eval "$data/$held_out" --model "$out/untrained.safetensors" -q $(windows untrained) | grep AUC
    printf '%-10s ' "without"
    # shellcheck disable=SC2046
    "$hark" eval "$data/$held_out" --model "$out/without-$held_out.safetensors" -q $(windows without) | grep AUC
done
