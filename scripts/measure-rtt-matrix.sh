#!/usr/bin/env bash
# Where a ping-pong round trip's time goes: 1 flow, one 64 B UDP datagram in flight, p50 and
# p99 RTT for each load side {ringload, benches' epoll-client} against each server
# {ringecho uring, ringecho epoll, benches' udp-echo-floor (a blocking recvfrom/sendto
# loop)}, and sockperf's own ping-pong pair (--full-rtt). The same client against two
# servers tells the servers apart; the same server under two clients tells the clients
# apart. (sockperf's client cannot measure a plain echo server: it waits for its own
# server's reply flag.) Servers on CPU 0, clients on CPU 1, every cell interleaved, RUNS
# runs of SECONDS, medians.
#
# usage: scripts/measure-rtt-matrix.sh [RUNS] [SECONDS]   (defaults: 3 runs of 5 s)
#   SPIN="--spin" passes --spin to ringecho (and ringload) as well.
#
# Needs sockperf (Debian's package) for the last row; ends only what it started, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
SECS=${2:-5}
SPIN=${SPIN:-}
B=target/release
cargo build --release --quiet -p ringecho -p ringload -p ringecho-benches
out=$(mktemp -d)
SPID=
cleanup() {
    if [ -n "$SPID" ] && kill -0 "$SPID" 2>/dev/null; then kill "$SPID"; wait "$SPID" 2>/dev/null || true; fi
    rm -rf "$out"
}
trap cleanup EXIT
start_server() { # name -> SPID, PORT
    PORT=$((20000 + RANDOM % 20000))
    case $1 in
        uring | epoll) taskset -c 0 "$B/ringecho" --backend "$1" --cpus 0 --udp "127.0.0.1:$PORT" $SPIN >"$out/srv.log" 2>&1 & ;;
        floor) taskset -c 0 "$B/udp-echo-floor" "127.0.0.1:$PORT" >"$out/srv.log" 2>&1 & ;;
        sockperf) taskset -c 0 sockperf server -i 127.0.0.1 -p "$PORT" >"$out/srv.log" 2>&1 & ;;
    esac
    SPID=$!
    for _ in $(seq 50); do
        grep -qiE "listening|waiting|running" "$out/srv.log" 2>/dev/null && break
        sleep 0.1
    done
}
stop_server() {
    kill "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    if kill -0 "$SPID" 2>/dev/null; then echo "error: server $SPID still running" >&2; exit 2; fi
    SPID=
}
for r in $(seq "$RUNS"); do
    for cell in ringload:uring ringload:epoll ringload:floor epoll-client:uring epoll-client:floor sockperf:sockperf; do
        client=${cell%%:*}
        server=${cell##*:}
        start_server "$server"
        case $client in
            ringload) res=$(taskset -c 1 "$B/ringload" "udp://127.0.0.1:$PORT" -c 1 --cpus 1 -d "${SECS}s" -w 1s $SPIN \
                --no-progress --json - 2>/dev/null |
                python3 -c "import json,sys; l=json.load(sys.stdin)['latency']['corrected']; print(l['p50']/1e3, l['p99']/1e3)") ;;
            epoll-client) res=$(taskset -c 1 "$B/epoll-client" "127.0.0.1:$PORT" --udp -c 1 -s 64 -d "${SECS}s" |
                sed -E 's/.*p50_us=([0-9.]+) p99_us=([0-9.]+).*/\1 \2/') ;;
            sockperf) res=$(taskset -c 1 sockperf ping-pong -i 127.0.0.1 -p "$PORT" -t "$SECS" -m 64 --full-rtt 2>&1 |
                awk '/percentile 50.000/{p50=$NF} /percentile 99.000/{p99=$NF} END{print p50, p99}') ;;
        esac
        stop_server
        echo "$r $client $server $res" >>"$out/results"
    done
done
python3 - "$out/results" <<'PY'
import collections, statistics as st, sys
cells = collections.defaultdict(list)
for line in open(sys.argv[1]):
    p = line.split()
    if len(p) == 5:
        cells[(p[1], p[2])].append((float(p[3]), float(p[4])))
print("1 flow, 64 B UDP ping-pong RTT (µs), medians; server CPU 0, client CPU 1")
for (client, server), v in cells.items():
    print(f"{client:<13} -> {server:<9} p50 {st.median(x[0] for x in v):7.2f}  p99 {st.median(x[1] for x in v):7.2f}"
          f"   runs (p50): {' '.join(f'{x[0]:.1f}' for x in v)}")
PY
