#!/usr/bin/env bash
# Side-by-side server figures, pinned (servers on CPU 0, client on CPU 1), with the
# minimal epoll client as load: round trips/s and server CPU-µs per echoed message
# (utime+stime from /proc/PID/stat ÷ messages), median of N runs per cell, runs of the
# servers interleaved so drift hits both alike; then RSS with 10,000 idle connections.
#
# usage: scripts/measure-server.sh [RUNS] [DURATION]   (defaults: 3 runs of 5s)
#        TRANSPORT=udp scripts/measure-server.sh ...
# TCP servers: ringecho (uring) and benches' epoll-server (a minimal single-threaded mio loop).
# UDP servers: ringecho --udp and benches' udp-echo-floor (a blocking recvfrom/sendto loop);
# the client then uses 8 connected UDP sockets, one datagram in flight each.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
DUR=${2:-5s}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

cargo build --release -q -p ringecho -p ringecho-benches
BIN=target/release
TICK=$(getconf CLK_TCK)
out=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$out"
}
trap cleanup EXIT

declare -A ADDR PID
start() { # name, command...
    local name=$1; shift
    taskset -c "$SERVER_CPU" "$@" >"$out/$name.out" 2>"$out/$name.err" &
    PID[$name]=$!
    PIDS+=("$!")
    for _ in $(seq 100); do grep -q '^listening' "$out/$name.out" && break; sleep 0.05; done
    ADDR[$name]=$(awk '/^listening/ {print $3; exit}' "$out/$name.out")
}
TRANSPORT=${TRANSPORT:-tcp}
if [ "$TRANSPORT" = udp ]; then
    start uring "$BIN/ringecho" --udp 127.0.0.1:0
    start floor "$BIN/udp-echo-floor" 127.0.0.1:0
    SERVERS=(uring floor)
    CELLS=("8 64" "8 1400")
    CLIENT_FLAGS=(--udp)
else
    start uring "$BIN/ringecho" --tcp 127.0.0.1:0 --max-conns 20000
    start epoll "$BIN/epoll-server" 127.0.0.1:0
    SERVERS=(uring epoll)
    CELLS=("1 64" "50 64" "500 512")
    CLIENT_FLAGS=()
fi

echo "kernel $(uname -r), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
echo "servers on CPU $SERVER_CPU, epoll-client on CPU $CLIENT_CPU, $RUNS interleaved runs of $DUR (+1s warm-up)"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { sed -E "s/.* $1=([0-9.]+).*/\\1/" <<<"$2"; }

printf '%-10s %-6s %10s %12s %9s %9s   %s\n' cell server "msg/s" "cpu-µs/msg" "p50 µs" "p99 µs" "runs (msg/s)"
for cell in "${CELLS[@]}"; do
    read -r conns size <<<"$cell"
    for s in "${SERVERS[@]}"; do : >"$out/$s.rate"; : >"$out/$s.cpu"; : >"$out/$s.p50"; : >"$out/$s.p99"; done
    for _ in $(seq "$RUNS"); do
        for s in "${SERVERS[@]}"; do
            before=$(cpu_ticks "${PID[$s]}")
            line=" $(taskset -c "$CLIENT_CPU" "$BIN/epoll-client" "${CLIENT_FLAGS[@]}" "${ADDR[$s]}" -c "$conns" -s "$size" -d "$DUR" --warmup 1s)"
            after=$(cpu_ticks "${PID[$s]}")
            field rate "$line" >>"$out/$s.rate"
            field p50_us "$line" >>"$out/$s.p50"
            field p99_us "$line" >>"$out/$s.p99"
            awk -v d=$((after - before)) -v t="$TICK" -v n="$(field total_msgs "$line")" \
                'BEGIN {printf "%.3f\n", d / t / n * 1e6}' >>"$out/$s.cpu"
        done
    done
    for s in "${SERVERS[@]}"; do
        printf '%-10s %-6s %10s %12s %9s %9s   %s\n' "${conns}x${size}B" "$s" "$(median <"$out/$s.rate")" \
            "$(median <"$out/$s.cpu")" "$(median <"$out/$s.p50")" "$(median <"$out/$s.p99")" "$(paste -sd, "$out/$s.rate")"
    done
done

[ "$TRANSPORT" = udp ] && exit 0
for s in "${SERVERS[@]}"; do
    python3 - "${ADDR[$s]}" "${PID[$s]}" "$s" <<'PY'
import socket, sys, resource
host, port = sys.argv[1].rsplit(":", 1)
pid = sys.argv[2]
def rss():
    return int([l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")][0].split()[1])
resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
before = rss()
conns = [socket.create_connection((host, int(port))) for _ in range(10000)]
for c in conns[::100]:
    c.sendall(b"x"); assert c.recv(1) == b"x"
print(f"{sys.argv[3]}: RSS {before/1024:.1f} MiB idle, {rss()/1024:.1f} MiB with 10,000 idle connections", flush=True)
for c in conns:
    c.close()
PY
done
