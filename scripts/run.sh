#!/usr/bin/env bash
# The main job: installs build dependencies when missing, builds hark, and runs the
# daemon with config/hark.toml (or the config given as $1).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release --locked
exec ./target/release/hark run --config "${1:-config/hark.toml}"
