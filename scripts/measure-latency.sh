#!/usr/bin/env bash
# measure-latency.sh: detection latency, from the first anomalous sample to the MQTT
# publish of the event "start", with the default window (0.69 s, hop 256 ms, 3 of 4).
#
# Method: enrol a bank from fan/train; replay (realtime = true) fan/test's normal clip
# normal_id_00_20210210T012029.wav followed directly by anomaly_id_00_bladefault_
# 20200318T205628.wav, so the anomaly starts at T = the normal clip's length. An
# external mosquitto on a free loopback port carries the messages; mosquitto_sub stamps
# each arrival (unix time, ns). t0 = the timestamp of hark's `capture started` log line
# (the replay thread starts just before it). Latency = arrival of the first event with
# "type":"start" − (t0 + T). Prints one JSON line.
#
# Run: scripts/measure-latency.sh        (needs target/release/hark, mosquitto,
#      mosquitto-clients, python3; HARK=, DATA= override the binary and data paths)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HARK=${HARK:-$ROOT/target/release/hark}
FAN=${DATA:-$ROOT/../shared/data}/fan
NORMAL=$FAN/test/normal_id_00_20210210T012029.wav
ANOMALY=$FAN/test/anomaly_id_00_bladefault_20200318T205628.wav
TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
. "$ROOT/scripts/lib.sh"

# (a) bank, (b) normal + anomaly WAV; T = normal length in seconds.
"$HARK" enroll "$FAN" --model "$ROOT/models/default.safetensors" \
    --out "$TMP/fan.bank.safetensors" >"$TMP/enroll.log" 2>&1
T=$(python3 - "$NORMAL" "$ANOMALY" "$TMP/test.wav" <<'EOF'
import sys, wave
a, b = (wave.open(p, "rb") for p in sys.argv[1:3])
assert a.getparams()[:3] == b.getparams()[:3], "clips differ in format"
with wave.open(sys.argv[3], "wb") as out:
    out.setparams(a.getparams())
    out.writeframes(a.readframes(a.getnframes()))
    out.writeframes(b.readframes(b.getnframes()))
print(a.getnframes() / a.getframerate())
EOF
)

# (c) broker, subscriber (ready once it has seen a probe), hark.
start_broker_and_subscriber
: >"$TMP/hark.log"
cat >"$TMP/hark.toml" <<EOF
node = "bench"
state_dir = "$TMP"
[mqtt]
url = "mqtt://127.0.0.1:$PORT"
[[source]]
name = "fan"
device = "file:$TMP/test.wav"
realtime = true
model = "$ROOT/models/default.safetensors"
bank = "$TMP/fan.bank.safetensors"
EOF
"$HARK" run --config "$TMP/hark.toml" 2>"$TMP/hark.log" & HARK_PID=$!; PIDS+=($HARK_PID)

# Wait for capture to start (60 s at most), then for the start event or T + 10 s;
# then SIGTERM.
for ((i = 0; i < 600; i++)); do
    grep -q 'capture started' "$TMP/hark.log" && break
    kill -0 "$HARK_PID" 2>/dev/null || break
    sleep 0.1
done
ticks=$(python3 -c "print(int(($T + 10) * 10))")   # in 0.1 s steps
for ((i = 0; i < ticks; i++)); do
    grep -q '/event .*"type":"start"' "$TMP/sub.txt" && break
    kill -0 "$HARK_PID" 2>/dev/null || break
    sleep 0.1
done
sleep 0.3   # let the anomaly state message that follows the event arrive
kill -TERM "$HARK_PID" 2>/dev/null || true
rc=0; wait "$HARK_PID" || rc=$?

# (d) t0 from `capture started`; results.
python3 - "$T" "$rc" "$TMP/hark.log" "$TMP/sub.txt" <<'EOF'
import json, re, sys
from datetime import datetime
T, rc, log, sub = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
lines = open(log).read().splitlines()
start = next((l for l in lines if "capture started" in l), None)
if start is None:
    sys.exit(print(json.dumps({"error": "no `capture started` line", "hark_exit": rc, "log": lines[-5:]})))
t0 = datetime.fromisoformat(start.split()[0].replace("Z", "+00:00")).timestamp()
startup = next((int(m.group(1)) for l in lines if (m := re.search(r"startup_ms=(\d+)", l))), None)
event = state = None
for l in open(sub):
    arrival, topic, payload = l.rstrip("\n").split(" ", 2)
    if topic.endswith("/event") and event is None:
        p = json.loads(payload)
        if p["type"] == "start": event = (float(arrival), p)
    if topic.endswith("/state") and state is None:
        p = json.loads(payload)
        if p["state"] == "anomaly": state = (float(arrival), p)
onset = t0 + T
r = {"onset_s": T, "t0_unix": round(t0, 6), "startup_ms": startup, "hark_exit": rc,
     "latency_s": round(event[0] - onset, 3) if event else None,
     "event_t_start": event[1]["t_start"] if event else None,
     "event_t_end": event[1]["t_end"] if event else None,
     # the share of the latency that is windowing (t_end - T); the rest is compute + MQTT
     "window_delay_s": round(event[1]["t_end"] - T, 3) if event else None,
     "anomaly_state_latency_s": round(state[0] - onset, 3) if state else None,
     "anomaly_state_t": state[1]["t"] if state else None,
     "hark_warnings": [l for l in lines
                       if (" WARN " in l or " ERROR " in l) and "anomaly raised" not in l]}
print(json.dumps(r))
EOF
