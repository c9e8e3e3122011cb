#!/usr/bin/env bash
# measure-startup.sh: start-up time of `hark run`, from process start to capturing
# (model and bank loaded, input open, MQTT client started).
#
# Method: one file: source (realtime = true, fan/test normal_id_00_20210210T012029.wav)
# with a bank enrolled from fan/train; RUNS runs (default 5) with an external mosquitto
# on a free loopback port, then RUNS with the embedded broker on a free port. Each run
# measures the wall time from just before exec to the `capturing` line on hark's stderr
# and reads hark's own `startup_ms=`; it then waits 1 s, sends SIGTERM, and checks that
# hark exits 0 with no WARN/ERROR line. Prints one JSON line per run, then one summary
# line per broker (median, min, max in ms).
#
# Run: scripts/measure-startup.sh        (needs target/release/hark, mosquitto, python3;
#      HARK=, DATA=, RUNS= override the binary, the data path and the run count)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HARK=${HARK:-$ROOT/target/release/hark}
FAN=${DATA:-$ROOT/../shared/data}/fan
TMP=$(mktemp -d)
BROKER_PID=
cleanup() {
    [[ -n $BROKER_PID ]] && kill "$BROKER_PID" 2>/dev/null && wait "$BROKER_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
. "$ROOT/scripts/lib.sh"

"$HARK" enroll "$FAN" --model "$ROOT/models/default.safetensors" \
    --out "$TMP/fan.bank.safetensors" >"$TMP/enroll.log" 2>&1
PORT=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$PORT" >"$TMP/mosquitto.conf"
mosquitto -c "$TMP/mosquitto.conf" >"$TMP/mosquitto.log" 2>&1 & BROKER_PID=$!
wait_port "$PORT"

# config BROKER_LINE: writes $TMP/hark.toml with the given [mqtt] line.
config() {
    cat >"$TMP/hark.toml" <<EOF
node = "bench"
state_dir = "$TMP"
[mqtt]
$1
[[source]]
name = "fan"
device = "file:$FAN/test/normal_id_00_20210210T012029.wav"
realtime = true
model = "$ROOT/models/default.safetensors"
bank = "$TMP/fan.bank.safetensors"
EOF
}

# once BROKER: one run; prints its JSON line.
once() {
    python3 - "$HARK" "$TMP/hark.toml" "$1" <<'EOF'
import json, re, signal, subprocess, sys, time
hark, cfg, broker = sys.argv[1:4]
t = time.monotonic()
p = subprocess.Popen([hark, "run", "--config", cfg], stderr=subprocess.PIPE, text=True)
lines, wall_ms = [], None
for line in p.stderr:
    lines.append(line.rstrip())
    if "capturing" in line:
        wall_ms = (time.monotonic() - t) * 1000
        break
time.sleep(1)                      # let MQTT connect, so shutdown is the usual one
p.send_signal(signal.SIGTERM)
lines += p.stderr.read().splitlines()
rc = p.wait()
m = next((re.search(r"startup_ms=(\d+)", l) for l in lines if "startup_ms=" in l), None)
print(json.dumps({"broker": broker,
    "wall_ms": round(wall_ms, 1) if wall_ms is not None else None,
    "startup_ms": int(m.group(1)) if m else None, "exit": rc,
    "mqtt_connected": any("mqtt connected" in l for l in lines),
    "alarming": [l for l in lines if " WARN " in l or " ERROR " in l or "error" in l.lower()]}))
EOF
}

RUNS=${RUNS:-5}
for ((i = 0; i < RUNS; i++)); do config "url = \"mqtt://127.0.0.1:$PORT\""; once external; done | tee "$TMP/runs.jsonl"
for ((i = 0; i < RUNS; i++)); do config "embedded_port = $(free_port)"; once embedded; done | tee -a "$TMP/runs.jsonl"

python3 - "$TMP/runs.jsonl" <<'EOF'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
for broker in ("external", "embedded"):
    r = [x for x in runs if x["broker"] == broker]
    out = {"summary": broker, "runs": len(r),
           "all_exit_0": all(x["exit"] == 0 for x in r),
           "any_alarming": any(x["alarming"] for x in r)}
    for k in ("wall_ms", "startup_ms"):
        v = [x[k] for x in r if x[k] is not None]
        out[k] = {"median": statistics.median(v), "min": min(v), "max": max(v)} if v else None
    print(json.dumps(out))
EOF
