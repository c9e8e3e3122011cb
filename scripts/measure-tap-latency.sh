#!/usr/bin/env bash
# measure-tap-latency.sh: tap-mode latency, from the end of a knock's window to the MQTT
# arrival of its verdict (hark/tapbench/station/verdict), with models/tap.safetensors.
#
# Method: enrol a bank from bottles/train with the tap model; build a 48 kHz mono WAV of
# 1 s of low noise then 15 bottle strikes (bottles/test/*.wav sorted, every 10th file,
# the first 15; each one 2048-sample strike), each followed by a gap of 0.3–1.0 s (fixed
# seed). The noise floor under it all is fan/train/normal_id_00_20210210T012001.wav
# (16 kHz), each sample repeated 3 times, scaled by 0.003, looped if too short. Replay it
# (realtime = true, mode = "tap") through an external mosquitto on a free loopback port;
# mosquitto_sub stamps each arrival (unix time, ns). t0 = the timestamp of hark's
# `capture started` log line. Each verdict is matched to the strike nearest its "t" (the
# detected onset, stream seconds; within 50 ms). The window ends 45.7 ms after the onset
# (50.7 ms window from 5 ms before it), so latency = arrival − (t0 + t + 0.0457).
# hark gets SIGTERM 1 s after the WAV's length has played. Prints one JSON line
# (latencies in ms; p90 is nearest-rank). The file replay hands over 10 ms blocks at the
# time of their first sample, so the window's last sample reaches hark up to 10 ms before
# t0 + t + 0.0457 and latencies can be negative; after_block_ms_* measure instead from
# the hand-over of the block holding that sample (taken as strike start + 2193 samples),
# i.e. hark's own detection + inference + MQTT time.
#
# Run: scripts/measure-tap-latency.sh    (needs target/release/hark, mosquitto,
#      mosquitto-clients, python3; HARK=, DATA= override the binary and data paths)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HARK=${HARK:-$ROOT/target/release/hark}
DATA=${DATA:-$ROOT/../shared/data}
MODEL=$ROOT/models/tap.safetensors
[ -x "$HARK" ] || { echo "no hark binary at $HARK (build it: cargo build --release)" >&2; exit 1; }
TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
. "$ROOT/scripts/lib.sh"

# (a) bank, (b) noise + strikes WAV; strikes.txt = each strike's start (s), last line
# the WAV's length (s).
"$HARK" enroll "$DATA/bottles" --model "$MODEL" \
    --out "$TMP/station.bank.safetensors" >"$TMP/enroll.log" 2>&1
python3 - "$DATA" "$TMP/test.wav" >"$TMP/strikes.txt" <<'EOF'
import glob, random, struct, sys, wave
data, out = sys.argv[1:3]
RATE = 48000
def read(p):
    with wave.open(p, "rb") as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2, p
        return w.getframerate(), struct.unpack(f"<{w.getnframes()}h", w.readframes(w.getnframes()))
_, fan = read(f"{data}/fan/train/normal_id_00_20210210T012001.wav")
noise = [v * 0.003 for v in fan for _ in range(3)]           # 16 kHz -> 48 kHz
strikes = sorted(glob.glob(f"{data}/bottles/test/*.wav"))[::10][:15]
rng = random.Random(1234)
x, starts = [0.0] * RATE, []                                   # 1 s of noise only
for p in strikes:
    rate, s = read(p)
    assert rate == RATE, p
    starts.append(len(x) / RATE)
    x += s
    x += [0.0] * int(rng.uniform(0.3, 1.0) * RATE)
with wave.open(out, "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(RATE)
    w.writeframes(b"".join(struct.pack("<h", max(-32768, min(32767, round(v + noise[i % len(noise)]))))
                           for i, v in enumerate(x)))
print("\n".join(f"{t:.6f}" for t in starts)); print(len(x) / RATE)
EOF
DUR=$(tail -n1 "$TMP/strikes.txt")

# (c) broker, subscriber (ready once it has seen a probe), hark.
start_broker_and_subscriber
: >"$TMP/hark.log"
cat >"$TMP/hark.toml" <<EOF
node = "tapbench"
state_dir = "$TMP"
[mqtt]
url = "mqtt://127.0.0.1:$PORT"
[[source]]
name = "station"
device = "file:$TMP/test.wav"
realtime = true
mode = "tap"
model = "$MODEL"
bank = "$TMP/station.bank.safetensors"
EOF
"$HARK" run --config "$TMP/hark.toml" 2>"$TMP/hark.log" & HARK_PID=$!; PIDS+=($HARK_PID)

# Wait for capture to start (60 s at most), then the WAV's length + 1 s; then SIGTERM.
for ((i = 0; i < 600; i++)); do
    grep -q 'capture started' "$TMP/hark.log" && break
    kill -0 "$HARK_PID" 2>/dev/null || break
    sleep 0.1
done
grep -q 'capture started' "$TMP/hark.log" && sleep "$(python3 -c "print($DUR + 1)")"
kill -TERM "$HARK_PID" 2>/dev/null || true
rc=0; wait "$HARK_PID" || rc=$?

# (d) t0 from `capture started`; match verdicts to strikes; results.
python3 - "$rc" "$TMP/strikes.txt" "$TMP/hark.log" "$TMP/sub.txt" <<'EOF'
import json, math, re, sys
from datetime import datetime
rc, strikes, log, sub = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
starts = [float(l) for l in open(strikes).read().split()]
dur, starts = starts[-1], starts[:-1]
lines = open(log).read().splitlines()
start = next((l for l in lines if "capture started" in l), None)
if start is None:
    sys.exit(print(json.dumps({"error": "no `capture started` line", "hark_exit": rc, "log": lines[-5:]})))
t0 = datetime.fromisoformat(start.split()[0].replace("Z", "+00:00")).timestamp()
startup = next((int(m.group(1)) for l in lines if (m := re.search(r"startup_ms=(\d+)", l))), None)
WINDOW_AFTER_ONSET = 0.0457
matched, unmatched, dups = {}, [], 0
for l in open(sub):
    arrival, topic, payload = l.rstrip("\n").split(" ", 2)
    if topic != "hark/tapbench/station/verdict":
        continue
    v = json.loads(payload)
    k = min(range(len(starts)), key=lambda i: abs(starts[i] - v["t"]))
    if abs(starts[k] - v["t"]) > 0.05:
        unmatched.append(v["t"]); continue
    if k in matched:
        dups += 1; continue
    block = (round(starts[k] * 48000) + 2193) // 480          # replay block, 10 ms
    matched[k] = (float(arrival) - (t0 + v["t"] + WINDOW_AFTER_ONSET), v["t"] - starts[k],
                  float(arrival) - (t0 + block * 0.01))
lat = sorted(m[0] * 1000 for m in matched.values())
blk = sorted(m[2] * 1000 for m in matched.values())
ms = lambda x: round(x, 1)
med = lambda a: ms((a[(len(a) - 1) // 2] + a[len(a) // 2]) / 2) if a else None
r = {"knocks": len(starts), "verdicts": len(matched) + len(unmatched) + dups,
     "matched": len(matched), "missing_knocks": [round(starts[i], 3) for i in range(len(starts)) if i not in matched],
     "unmatched_verdict_t": unmatched, "duplicate_verdicts": dups,
     "latency_ms_median": med(lat),
     "latency_ms_p90": ms(lat[math.ceil(0.9 * len(lat)) - 1]) if lat else None,
     "latency_ms_max": ms(lat[-1]) if lat else None, "latency_ms_min": ms(lat[0]) if lat else None,
     "after_block_ms_median": med(blk),
     "after_block_ms_max": ms(blk[-1]) if blk else None,
     "onset_offset_ms_max": ms(max(abs(m[1]) * 1000 for m in matched.values())) if matched else None,
     "wav_s": round(dur, 3), "t0_unix": round(t0, 6), "startup_ms": startup, "hark_exit": rc,
     "hark_warnings": [l for l in lines if " WARN " in l or " ERROR " in l]}
print(json.dumps(r))
EOF
