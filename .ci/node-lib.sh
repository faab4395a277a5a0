# Shared by the CI scripts that start an `agora` node: free ports, and waiting until it is
# ready. Source it; the caller defines `fail MESSAGE` (prints the node's log and exits).

# Prints two free loopback ports (the kernel picks them; the node binds them a moment later).
free_ports() {
  python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))'
}

# Waits up to 60 s for the node with pid $1 to answer /readyz on admin port $2.
await_ready() {
  local pid=$1 admin_port=$2
  for _ in $(seq 240); do
    kill -0 "$pid" 2>/dev/null || fail "the node exited"
    if curl -sf "http://127.0.0.1:$admin_port/readyz" >/dev/null; then return 0; fi
    sleep 0.25
  done
  fail "the node was not ready within 60 s"
}
