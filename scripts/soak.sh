#!/usr/bin/env bash
# soak.sh: accelerated soak of `hark run`: SOURCES sources (default 8) at 48 kHz, each
# replaying MINUTES (default 60) of real fan audio at SPEED times real time (default 20)
# through the whole pipeline into the embedded broker.
#
# Reports per source the windows scored, dropped samples (goal 0) and dropped windows,
# the process RSS soon after start and at the end (goal: flat within 10 %), the peak
# RSS, and the CPU time per source per audio second. The audio is made once by
# `examples/soak_audio.rs` (fan recordings resampled 16 → 48 kHz, a fault clip every
# fifth clip) and kept in $SOAK_DIR (default /tmp/hark-soak).
#
# Run: scripts/soak.sh            (SOURCES=, MINUTES=, SPEED=, DATA=, SOAK_DIR= override)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/lib.sh"
SOURCES=${SOURCES:-8}
MINUTES=${MINUTES:-60}
SPEED=${SPEED:-20}
DATA=${DATA:-$ROOT/../shared/data}
SOAK_DIR=${SOAK_DIR:-/tmp/hark-soak}
mkdir -p "$SOAK_DIR"
cd "$ROOT"
cargo build --release --quiet --bin hark --example soak_audio
HARK=$ROOT/target/release/hark
WAV=$SOAK_DIR/fan-48k-${MINUTES}min.wav
[[ -s $WAV ]] || ./target/release/examples/soak_audio "$DATA" "$MINUTES" "$WAV"
TMP=$(mktemp -d)
trap 'kill $PID 2>/dev/null || true; rm -rf "$TMP"' EXIT

{
    echo "node = \"soak\""
    echo "state_dir = \"$TMP\""
    echo "[mqtt]"
    echo "embedded_port = $(free_port)"
    for i in $(seq 1 "$SOURCES"); do
        cat <<EOT
[[source]]
name = "mic$i"
device = "file:$WAV"
realtime = true
replay_speed = $SPEED
model = "$ROOT/models/default.safetensors"
learn_seconds = 120
EOT
    done
} >"$TMP/hark.toml"

"$HARK" run --config "$TMP/hark.toml" 2>"$TMP/hark.log" & PID=$!
rss() { awk '/^VmRSS/ {print $2}' "/proc/$PID/status"; }
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$PID/stat"; }
sleep 10
RSS_START=$(rss)
RSS_PEAK=$RSS_START
echo "rss after 10 s: $RSS_START kB; replaying $MINUTES min × $SOURCES sources at ${SPEED}×"
while [[ $(grep -c "input ended" "$TMP/hark.log" || true) -lt $SOURCES ]]; do
    kill -0 "$PID" 2>/dev/null || { cat "$TMP/hark.log"; exit 1; }
    r=$(rss); (( r > RSS_PEAK )) && RSS_PEAK=$r
    sleep 5
done
sleep 2
RSS_END=$(rss)
CPU=$(cpu_s)
kill -TERM "$PID"; wait "$PID"
grep "source totals" "$TMP/hark.log" | sed 's/^.*INFO //'
AUDIO_S=$(( MINUTES * 60 ))
python3 - "$RSS_START" "$RSS_END" "$RSS_PEAK" "$CPU" "$SOURCES" "$AUDIO_S" "$SPEED" <<'PY'
import json, sys
start, end, peak, cpu, n, audio, speed = map(float, sys.argv[1:])
print(json.dumps({
    "sources": int(n), "audio_s_per_source": audio, "speed": speed,
    "rss_start_kb": int(start), "rss_end_kb": int(end), "rss_peak_kb": int(peak),
    "rss_change_pct": round(100 * (end - start) / start, 1),
    "cpu_s": round(cpu, 1),
    "cpu_s_per_audio_s_per_source": round(cpu / (n * audio), 6),
}))
PY
# Anomaly events are expected (a fault clip every fifth clip); anything else is news.
if grep -E "WARN|ERROR" "$TMP/hark.log" | grep -v "anomaly raised"; then echo "warnings above"; fi
