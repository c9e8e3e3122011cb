#!/usr/bin/env bash
# Checks a hark .deb without installing it (installing would enable a systemd unit):
#   scripts/check-deb.sh [DEB]      default: the newest target/debian/hark_*.deb
# - every expected path is in it (dpkg-deb -c), Depends names libasound2 (dpkg-deb -f),
#   /etc/hark/hark.toml is a conffile, the unit is enabled but not started on install;
# - the unit runs /usr/bin/hark with the packaged config from /usr/share/hark;
# - the extracted binary runs (--version, devices: no panic), and from the unit's
#   WorkingDirectory the packaged config finds its model: enrol and score a noise clip.
# Exits non-zero, naming each problem, when anything is wrong.
set -euo pipefail
cd "$(dirname "$0")/.."
deb=${1:-$(ls -t target/debian/hark_*.deb 2>/dev/null | head -1)}
[ -n "$deb" ] && [ -f "$deb" ] || { echo "check-deb: no .deb (run cargo deb first)" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
problems=0
problem() { echo "check-deb: $*" >&2; problems=$((problems + 1)); }

contents=$(dpkg-deb -c "$deb" | awk '{print $6}')
for path in \
    ./usr/bin/hark \
    ./etc/hark/hark.toml \
    ./usr/share/hark/models/default.safetensors \
    ./usr/share/hark/models/tap.safetensors \
    ./usr/share/doc/hark/README.md \
    ./usr/share/doc/hark/copyright \
    ./usr/share/doc/hark/LICENSE-MIT \
    ./usr/share/doc/hark/LICENSE-APACHE; do
    grep -qxF "$path" <<<"$contents" || problem "missing $path"
done
# Merged /usr (Debian 12+, Raspberry Pi OS): /lib is /usr/lib; either location works.
unit=$(grep -xE '\./(usr/)?lib/systemd/system/hark\.service' <<<"$contents" || true)
[ -n "$unit" ] || problem "missing lib/systemd/system/hark.service"

depends=$(dpkg-deb -f "$deb" Depends)
grep -q 'libasound2' <<<"$depends" || problem "Depends lacks libasound2: '$depends'"
[ "$(dpkg-deb -f "$deb" Package)" = hark ] || problem "Package is not hark"

dpkg-deb -e "$deb" "$tmp/control"
grep -qxF /etc/hark/hark.toml "$tmp/control/conffiles" 2>/dev/null ||
    problem "/etc/hark/hark.toml is not a conffile"
grep -q 'deb-systemd-helper enable' "$tmp/control/postinst" 2>/dev/null ||
    problem "postinst does not enable hark.service"
# A fresh install must not start it (the config needs editing first); an upgrade may
# try-restart a running one.
if grep -qE 'deb-systemd-invoke (start|\$_dh_action) ' "$tmp/control/postinst" 2>/dev/null; then
    problem "postinst starts hark on install (it should only enable it)"
fi

dpkg-deb -x "$deb" "$tmp/root"
if [ -n "$unit" ]; then
    grep -qxF 'ExecStart=/usr/bin/hark run --config /etc/hark/hark.toml' "$tmp/root/$unit" ||
        problem "unit: unexpected ExecStart"
    grep -qxF 'WorkingDirectory=/usr/share/hark' "$tmp/root/$unit" ||
        problem "unit: WorkingDirectory is not /usr/share/hark"
fi
grep -qx 'model = "models/default.safetensors"' "$tmp/root/etc/hark/hark.toml" ||
    problem "packaged config: model is not models/default.safetensors"

hark="$tmp/root/usr/bin/hark"
version=$("$hark" --version) || problem "hark --version failed"
[ "$version" = "hark $(dpkg-deb -f "$deb" Version | sed 's/-[^-]*$//')" ] ||
    problem "hark --version says '$version', the package $(dpkg-deb -f "$deb" Version)"
if ! "$hark" devices >"$tmp/devices.out" 2>&1; then
    grep -q 'panicked' "$tmp/devices.out" && problem "hark devices panicked: $(cat "$tmp/devices.out")"
fi

# As the unit runs it: cwd /usr/share/hark, banks in $STATE_DIRECTORY.
mkdir -p "$tmp/state" "$tmp/clips"
python3 - "$tmp/clips/noise.wav" <<'PY'
import random, struct, sys, wave
random.seed(1)
with wave.open(sys.argv[1], "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000)
    w.writeframes(b"".join(struct.pack("<h", int(random.gauss(0, 1500))) for _ in range(16000 * 4)))
PY
(
    cd "$tmp/root/usr/share/hark"
    export STATE_DIRECTORY="$tmp/state"
    "$hark" enroll "$tmp/clips" --model models/default.safetensors \
        --out "$tmp/state/pump.bank.safetensors" >/dev/null &&
        "$hark" score "$tmp/clips/noise.wav" --config "$tmp/root/etc/hark/hark.toml" --json |
        head -1 | grep -q '"score"'
) || problem "the packaged config did not load its model from /usr/share/hark"

if [ "$problems" -gt 0 ]; then
    echo "check-deb: $deb: $problems problem(s)" >&2
    exit 1
fi
echo "check-deb: $deb: ok ($(wc -l <<<"$contents") entries; Depends: $depends)"
