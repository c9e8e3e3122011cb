#!/usr/bin/env bash
# Leave-one-set-out check of tap-model training: train on one knock set's train/ clips
# (bottles or stones), evaluate on the *other* set, which the model never heard. This is
# how a trained tap model has to prove it generalises to another station; compare with
# the fixed-seed network of the same geometry (the first row). About 30 s per row here.
# Usage: scripts/loso-tap.sh [DATA_DIR]   (needs `cargo build --release` first)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data}
hark=./target/release/hark
geometry=(--mode tap --sample-rate 48000 --n-fft 512 --hop 128 --fmax 24000 --frames 16 --window-hop-frames 4)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Rows without --anchor set `--anchor 0`: `hark train` anchors at 0.3 unless told.
row() { # name, train flags...
    local name=$1
    shift
    for pair in "stones bottles" "bottles stones"; do
        local train=${pair% *} held_out=${pair#* }
        "$hark" train "$data/$train" "${geometry[@]}" --out "$out/$name.safetensors" "$@" >/dev/null 2>&1
        printf '%-10s trained on %-8s ' "$name" "$train"
        "$hark" eval "$data/$held_out" --model "$out/$name.safetensors" 2>/dev/null | grep AUC
    done
}
untrained() {
    for pair in "stones bottles" "bottles stones"; do
        local train=${pair% *} held_out=${pair#* }
        "$hark" init-model "${geometry[@]}" --seed 7 --out "$out/untrained.safetensors" >/dev/null 2>&1
        printf '%-10s trained on %-8s ' untrained "$train"
        "$hark" eval "$data/$held_out" --model "$out/untrained.safetensors" 2>/dev/null | grep AUC
    done
}
untrained
row e5 --epochs 5 --anchor 0
row e1 --epochs 1 --anchor 0
row lr1e-4e3 --epochs 3 --lr 1e-4 --anchor 0
row no-mask --epochs 5 --no-spec-mask --anchor 0
row mixup --epochs 5 --mixup 0.5 --anchor 0
# The anchor keeps each embedding near the fixed-seed network's while the classes pull.
row anchor0.1 --epochs 5 --anchor 0.1
row anchor0.3 --epochs 5 --anchor 0.3
row anchor1 --epochs 5 --anchor 1
row anchor10 --epochs 5 --anchor 10
row anchor1e20 --epochs 20 --anchor 1
# Training on the window at each knock only, as the station scores (not the default).
row knock-e5 --epochs 5 --knock-windows --anchor 0
row knock-a0.3 --epochs 5 --anchor 0.3 --knock-windows
