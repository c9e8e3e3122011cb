# Helpers shared by the measure-*.sh scripts (sourced, not run).

# A TCP port on loopback that nothing listens on right now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits (up to 5 s) until something accepts connections on 127.0.0.1:$1.
wait_port() { python3 -c 'import socket,sys,time
for _ in range(100):
    try: socket.create_connection(("127.0.0.1",int(sys.argv[1])),0.1); sys.exit(0)
    except OSError: time.sleep(0.05)
sys.exit(1)' "$1"; }

# Starts mosquitto on a free loopback port (sets PORT) and a subscriber to 'hark/#'
# that stamps each message '%U %t %p' into $TMP/sub.txt; returns once the subscriber
# has seen a probe. Appends both pids to PIDS (the caller's cleanup kills them).
start_broker_and_subscriber() {
    PORT=$(free_port)
    printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$PORT" >"$TMP/mosquitto.conf"
    mosquitto -c "$TMP/mosquitto.conf" >"$TMP/mosquitto.log" 2>&1 & PIDS+=($!)
    wait_port "$PORT"
    : >"$TMP/sub.txt"
    mosquitto_sub -h 127.0.0.1 -p "$PORT" -t 'hark/#' -t probe -F '%U %t %p' >"$TMP/sub.txt" & PIDS+=($!)
    for ((i = 0; i < 50; i++)); do
        grep -q ' probe ' "$TMP/sub.txt" && break
        mosquitto_pub -h 127.0.0.1 -p "$PORT" -t probe -m x; sleep 0.1
    done
}
