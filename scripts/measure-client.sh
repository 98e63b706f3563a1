#!/usr/bin/env bash
# ringload against the minimal epoll client, side by side, against one ringecho: pinned
# (server CPU 0, client CPU 1), runs interleaved, median of N. Per cell: msg/s, client
# CPU-µs per message (rusage of the client process ÷ messages it completed, warm-up
# included), server CPU-µs per message, p50/p99.
#
# usage: scripts/measure-client.sh [RUNS] [SECONDS]   (defaults: 3 runs of 5 s)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
SECS=${2:-5}
cargo build --release -q -p ringecho -p ringload -p ringecho-benches
exec python3 - "$RUNS" "$SECS" <<'PY'
import json, os, resource, statistics, subprocess, sys, time
runs, secs = int(sys.argv[1]), int(sys.argv[2])
B = "target/release"
srv = subprocess.Popen(["taskset", "-c", "0", f"{B}/ringecho", "--tcp", "127.0.0.1:0", "--max-conns", "20000"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
try:
    addr = srv.stdout.readline().split()[2]
    tick = os.sysconf("SC_CLK_TCK")
    def server_cpu():
        f = open(f"/proc/{srv.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / tick
    def child_cpu():
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime
    def ringload(c, s):
        out = subprocess.run(["taskset", "-c", "1", f"{B}/ringload", f"tcp://{addr}", "-c", str(c), "-s", str(s),
                              "-d", f"{secs}s", "-w", "1s", "--cpus", "1", "--no-progress", "--json", "-"],
                             check=True, capture_output=True, text=True).stdout
        d = json.loads(out)
        k = d["counters"]
        return d["throughput"]["msgs_per_s"], k["completed"] + k["warmup_completed"], \
            d["latency"]["corrected"]["p50"] / 1e3, d["latency"]["corrected"]["p99"] / 1e3
    def epoll(c, s):
        out = subprocess.run(["taskset", "-c", "1", f"{B}/epoll-client", addr, "-c", str(c), "-s", str(s),
                              "-d", f"{secs}s", "--warmup", "1s"], check=True, capture_output=True, text=True).stdout
        kv = dict(x.split("=") for x in out.split())
        return float(kv["rate"]), int(kv["total_msgs"]), float(kv["p50_us"]), float(kv["p99_us"])
    clients = {"ringload": ringload, "epoll": epoll}
    print(f"kernel {os.uname().release}, {os.cpu_count()} CPUs; ringecho on CPU 0, client on CPU 1; "
          f"{runs} interleaved runs of {secs}s (+1s warm-up)")
    print(f"{'cell':<10} {'client':<9} {'msg/s':>10} {'client µs/msg':>14} {'server µs/msg':>14} {'p50 µs':>8} {'p99 µs':>8}")
    for c, s in [(1, 64), (50, 64), (500, 512)]:
        res = {k: [] for k in clients}
        for _ in range(runs):
            for name, f in clients.items():
                c0, s0 = child_cpu(), server_cpu()
                rate, msgs, p50, p99 = f(c, s)
                res[name].append((rate, (child_cpu() - c0) / msgs * 1e6, (server_cpu() - s0) / msgs * 1e6, p50, p99))
        for name, rows in res.items():
            med = [statistics.median(col) for col in zip(*rows)]
            print(f"{f'{c}x{s}B':<10} {name:<9} {med[0]:>10.0f} {med[1]:>14.2f} {med[2]:>14.2f} {med[3]:>8.1f} {med[4]:>8.1f}"
                  f"   runs: {','.join(f'{r[0]:.0f}' for r in rows)}")
        a, b = (statistics.median(r[0] for r in res[k]) for k in ("ringload", "epoll"))
        ca, cb = (statistics.median(r[1] for r in res[k]) for k in ("ringload", "epoll"))
        print(f"{'':<10} ratio ringload/epoll: msg/s {a / b:.2f}, client CPU per message {ca / cb:.2f}")
finally:
    srv.terminate()
    srv.wait()
PY
