#!/usr/bin/env bash
# The test command: installs test dependencies when missing, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh test
cargo test --locked --all-targets
