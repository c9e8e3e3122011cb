# Helpers shared by the measure-*.sh scripts (sourced, not run).

# A TCP port on loopback that nothing listens on right now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits (up to 5 s) until something accepts connections on 127.0.0.1:$1.
wait_port() { python3 -c 'import socket,sys,time
for _ in range(100):
    try: socket.create_connection(("127.0.0.1",int(sys.argv[1])),0.1); sys.exit(0)
    except OSError: time.sleep(0.05)
sys.exit(1)' "$1"; }
