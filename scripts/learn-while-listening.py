#!/usr/bin/env python3
"""Does a source go on listening while `learn_stop` builds its new bank?

Replays a long recording of ../shared/data/fan/train (its clips, looped) through
`hark run` faster than real time, with a bank enrolled from the same clips, against a
mosquitto broker of its own. It sends `learn_start`, lets the source learn LEARN_S
seconds of the stream, sends `learn_stop`, and reports how long the reply took, how far
the scored stream moved on meanwhile (the `t` of the state messages, sent at most
every 0.1 s), and how many windows were dropped.

Replaying SPEED times faster makes a build of B seconds here cover SPEED × B seconds
of sound: at the default 20, a 3 s build is what a minute-long build (a Pi, or a long
learn) is at real time. The dsp → inference queue holds 64 windows (16 s of sound).

Usage: scripts/learn-while-listening.py [--hark BIN] [--speed 20] [--learn-s 1800]
(after `cargo build --release`; needs mosquitto and mosquitto_sub; stdlib only)
"""
import argparse
import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import wave

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def long_recording(fan_train, seconds, out):
    """fan/train's clips, looped to at least `seconds`, as one 16-bit mono WAV."""
    clips = sorted(f for f in os.listdir(fan_train) if f.endswith(".wav"))
    frames, rate, total = [], None, 0.0
    while total < seconds:
        for name in clips:
            with wave.open(os.path.join(fan_train, name)) as r:
                assert r.getnchannels() == 1 and r.getsampwidth() == 2, name
                rate = rate or r.getframerate()
                frames.append(r.readframes(r.getnframes()))
                total += r.getnframes() / r.getframerate()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(frames))
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hark", default=os.path.join(ROOT, "target/release/hark"))
    ap.add_argument("--data", default=os.path.join(ROOT, "../shared/data"))
    ap.add_argument("--speed", type=float, default=20.0)
    ap.add_argument("--learn-s", type=float, default=1800.0)
    a = ap.parse_args()
    for tool in ("mosquitto", "mosquitto_sub", "mosquitto_pub"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found (apt-get install mosquitto mosquitto-clients)")
    fan = os.path.join(a.data, "fan/train")
    model = os.path.join(ROOT, "models/default.safetensors")
    work = tempfile.mkdtemp()
    procs = []
    try:
        wav = os.path.join(work, "long.wav")
        total = long_recording(fan, a.learn_s + 120.0, wav)
        bank = os.path.join(work, "fan.bank.safetensors")
        subprocess.run([a.hark, "enroll", fan, "--model", model, "--out", bank, "-q"],
                       check=True, stdout=subprocess.DEVNULL)
        port = free_port()
        with open(os.path.join(work, "mosquitto.conf"), "w") as f:
            f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
        procs.append(subprocess.Popen(["mosquitto", "-c", os.path.join(work, "mosquitto.conf")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(0.5)
        msgs = queue.Queue()
        sub = subprocess.Popen(["mosquitto_sub", "-p", str(port), "-t", "hark/#", "-v"],
                               stdout=subprocess.PIPE, text=True)
        procs.append(sub)

        def read():
            for line in sub.stdout:
                topic, _, payload = line.rstrip("\n").partition(" ")
                msgs.put((time.monotonic(), topic, payload))

        threading.Thread(target=read, daemon=True).start()
        time.sleep(0.3)
        config = os.path.join(work, "hark.toml")
        with open(config, "w") as f:
            f.write(f'node = "m"\nstate_dir = "{work}"\n[mqtt]\nurl = "mqtt://127.0.0.1:{port}"\n'
                    f'health_interval_s = 1.0\nstate_interval_s = 0.1\n[[source]]\nname = "fan"\n'
                    f'device = "file:{wav}"\nrealtime = true\nreplay_speed = {a.speed}\n'
                    f'model = "{model}"\nbank = "{bank}"\nevidence = false\n')
        hark = subprocess.Popen([a.hark, "run", "--config", config],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        procs.append(hark)
        base = "hark/m/fan"
        seen = []  # (arrival, topic, json)

        def wait(pred, timeout):
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                try:
                    at, topic, payload = msgs.get(timeout=0.2)
                except queue.Empty:
                    continue
                try:
                    doc = json.loads(payload)
                except ValueError:
                    doc = payload
                seen.append((at, topic, doc))
                if pred(topic, doc):
                    return at, doc
            sys.exit(f"timed out; hark said: {hark.stderr.read() if hark.poll() is not None else ''}")

        def cmd(c):
            subprocess.run(["mosquitto_pub", "-p", str(port), "-t", f"{base}/cmd", "-m",
                            json.dumps({"cmd": c})], check=True)

        is_state = lambda t, d: t == f"{base}/state" and isinstance(d, dict)
        wait(lambda t, d: is_state(t, d) and d.get("t", 0) > 0, 60)
        cmd("learn_start")
        _, started = wait(lambda t, d: t == f"{base}/cmd/result", 30)
        t0 = next(d["t"] for _, t, d in reversed(seen) if is_state(t, d))
        wait(lambda t, d: is_state(t, d) and d.get("t", 0) >= t0 + a.learn_s, a.learn_s / a.speed * 3 + 60)
        health = [d for _, t, d in seen if t == f"{base}/health"]
        dropped_before = health[-1]["dropped_windows"] if health else 0
        cmd("learn_stop")
        sent = time.monotonic()
        replied, reply = wait(lambda t, d: t == f"{base}/cmd/result" and d.get("cmd") == "learn_stop", 600)
        during = [d["t"] for at, t, d in seen if is_state(t, d) and sent < at < replied]
        # Two health reports after the reply: drops counted while the queue drained.
        after = time.monotonic()
        wait(lambda t, d: t == f"{base}/health" and time.monotonic() > after + 2.5, 30)
        dropped_after = [d for _, t, d in seen if t == f"{base}/health"][-1]["dropped_windows"]
        print(f"hark: {a.hark}")
        print(f"stream: {total:.0f} s of fan/train looped, replayed at {a.speed:g}x; learned {a.learn_s:g} s")
        print(f"learn_stop reply: {replied - sent:.2f} s after the command ({reply})")
        print(f"  = {(replied - sent) * a.speed:.0f} s of sound at this speed")
        if during:
            print(f"scored while the bank was built: stream t {min(during):.1f} .. {max(during):.1f} s "
                  f"({len(during)} state messages)")
        else:
            print("scored while the bank was built: nothing (no state message)")
        print(f"dropped windows: {dropped_before} before learn_stop, {dropped_after} after")
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
