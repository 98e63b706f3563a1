#!/usr/bin/env bash
# Soak: ringload at a steady, moderate rate against one ringecho over TCP, UDP and a Unix
# socket at once, for DURATION, sampling the server's RSS and open descriptors every
# 10 s. Fails if RSS grows more than 5% after the warm-up sample, if descriptors leak, or
# if any load run fails.
#
# usage: scripts/soak.sh [DURATION]      (default 60s; e.g. 10m)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-60s}
secs=$(python3 -c "import re,sys; m=re.fullmatch(r'(\d+)(s|m|h)?','$DURATION'); sys.exit('bad duration') if not m else print(int(m[1])*{'s':1,'m':60,'h':3600,None:1}[m[2]])")
[ "$secs" -ge 20 ] || { echo "soak: DURATION must be at least 20s" >&2; exit 2; }
cargo build --release -q -p ringecho -p ringload
B=target/release
work=$(mktemp -d)
SERVER=
LOADS=()
cleanup() {
    for pid in "${LOADS[@]}" $SERVER; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# One-page buffers: the whole pool is touched within the warm-up, so RSS after it measures
# leaks, not a lazily faulted pool.
"$B/ringecho" --tcp 127.0.0.1:0 --udp 127.0.0.1:0 --unix "$work/echo.sock" --idle-timeout 30s \
    --buffers 512 --buffer-size 4KiB --max-conn-buffer 64KiB >"$work/server.out" 2>"$work/server.err" &
SERVER=$!
for _ in $(seq 100); do [ "$(grep -c ^listening "$work/server.out")" -ge 3 ] && break; sleep 0.05; done
TCP=$(awk '$2 == "tcp" {print $3}' "$work/server.out")
UDP=$(awk '$2 == "udp" {print $3}' "$work/server.out")
echo "soak: ringecho pid $SERVER (tcp $TCP, udp $UDP, unix $work/echo.sock) for ${secs}s"

run_load() { # name, args... (in this shell, so that `wait` can reap it)
    local name=$1; shift
    "$B/ringload" "$@" -d "${secs}s" -w 0s --no-progress --verify --json "$work/$name.json" >"$work/$name.out" 2>&1 &
    LOADS+=("$!")
}
run_load tcp "tcp://$TCP" -c 50 --rate 5000 --size 64..2048
run_load udp "udp://$UDP" -c 8 --rate 3000 --size 64..1400 --udp-timeout 500ms
run_load unix "unix://$work/echo.sock" -c 10 --rate 2000 --size 512

sample() {
    local rss fds
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$SERVER/status")
    fds=$(ls "/proc/$SERVER/fd" | wc -l)
    echo "$rss $fds"
}
printf '%6s %10s %6s\n' t_s rss_kib fds
base_rss=; base_fds=; t=0; fail=0
while [ $t -lt "$secs" ]; do
    sleep 10; t=$((t + 10))
    read -r rss fds < <(sample)
    printf '%6d %10d %6d\n' "$t" "$rss" "$fds"
    if [ $t -le 20 ]; then base_rss=$rss; base_fds=$fds; continue; fi  # warm-up: the first 20 s
    if [ "$rss" -gt $((base_rss + base_rss / 20)) ]; then echo "soak: RSS grew more than 5% ($base_rss -> $rss KiB)"; fail=1; fi
done
for pid in "${LOADS[@]}"; do
    code=0; wait "$pid" || code=$?
    [ $code = 0 ] || { echo "soak: a load run failed (exit $code)"; fail=1; }
done
for name in tcp udp unix; do
    python3 - "$work/$name.json" "$name" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); c = d["counters"]
print(f"soak: {sys.argv[2]:>4}: {c['completed']} answered, {d['throughput']['msgs_per_s']:.0f} msg/s, "
      f"p99 {d['latency']['corrected']['p99']/1e3:.1f} µs, mismatched {c['mismatched_messages']}, lost {c['lost']}, "
      f"failed {c['failed_messages']}")
PY
done
read -r rss fds < <(sample)
if [ "$fds" -gt "$base_fds" ]; then echo "soak: descriptors leaked ($base_fds -> $fds after the load ended)"; fail=1; fi
[ $fail = 0 ] && echo "soak: passed (RSS $base_rss -> $rss KiB, descriptors $base_fds -> $fds)"
exit $fail
