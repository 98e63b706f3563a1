#!/usr/bin/env bash
# The benchmark matrix: backends × transports × connections × sizes, each cell against a
# fresh ringecho, ringload as the client, pinned (server CPU 0, ringload CPU 1) when
# there are two CPUs or more. Per cell: msg/s, MB/s, p50/p99/p99.9, the server's CPU-µs
# per message (utime+stime from /proc/PID/stat) and its peak RSS. Then RSS with 10,000
# idle connections per backend, and SEND_ZC on/off for large messages.
#
# Writes results/<timestamp>/*.json (ringload's JSON plus a "server" section per cell)
# and results/<timestamp>/summary.md, with ratios against the epoll backend measured in
# the same run.
#
# usage: scripts/bench.sh [--quick] [--seconds N] [--runs N]
#   --quick: a subset that takes a few minutes.
#   --runs N: runs per cell (backends interleaved), the median by msg/s is reported
#             (default 1 with --quick, 3 without).
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=0
SECONDS_PER_CELL=
RUNS=
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --seconds) SECONDS_PER_CELL=$2; shift ;;
        --runs) RUNS=$2; shift ;;
        *) echo "usage: $0 [--quick] [--seconds N] [--runs N]" >&2; exit 2 ;;
    esac
    shift
done
cargo build --release -q -p ringecho -p ringload
OUT="results/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
exec python3 - "$OUT" "$QUICK" "$SECONDS_PER_CELL" "$RUNS" <<'PY'
import json, os, resource, statistics, subprocess, sys, time
out, quick, secs, runs = sys.argv[1], sys.argv[2] == "1", sys.argv[3], sys.argv[4]
secs = float(secs) if secs else (2.0 if quick else 5.0)
runs = int(runs) if runs else (1 if quick else 3)
B = "target/release"
cpus = sorted(os.sched_getaffinity(0))
pin = len(cpus) >= 2
server_cpu, client_cpu = (str(cpus[0]), str(cpus[1])) if pin else (None, None)
tick = os.sysconf("SC_CLK_TCK")

backends = ["uring", "epoll", "tokio-uring", "threads"]
if quick:
    tcp_cells = [(1, 64), (50, 64), (500, 512), (5000, 512), (50, 4096)]
    udp_cells = [(8, 64), (8, 1400)]
else:
    tcp_cells = [(c, s) for c in (1, 50, 500, 5000) for s in (64, 512, 4096, 65536)]
    udp_cells = [(c, s) for c in (1, 50, 500) for s in (64, 512, 4096, 65000)]

def taskset(cpu):
    return ["taskset", "-c", cpu] if cpu is not None else []

# Large enough for the largest UDP cell's datagrams (and their recvmsg header).
BIG_BUFFERS = ("--buffer-size", "66KiB")

def start_server(backend, extra=BIG_BUFFERS):
    cmd = taskset(server_cpu) + [f"{B}/ringecho", "--backend", backend, "--tcp", "127.0.0.1:0",
                                 "--udp", "127.0.0.1:0", "--workers", "1", "--max-conns", "20000", *extra]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    addrs = {}
    for _ in range(2):
        parts = p.stdout.readline().split()
        addrs[parts[1]] = parts[2]
    return p, addrs

def stop_server(p):
    """Stops the server; returns its totals line's counters (name -> value)."""
    p.terminate()
    try:
        rest, _ = p.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()
        rest, _ = p.communicate()
    totals = [l for l in rest.splitlines() if l.startswith("totals:")]
    return dict(kv.split("=") for kv in totals[-1].split()[1:]) if totals else {}

def proc_cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick

def proc_status(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0

def run_cell(backend, transport, conns, size, extra=BIG_BUFFERS):
    p, addrs = start_server(backend, extra)
    try:
        cpu0 = proc_cpu(p.pid)
        cmd = taskset(client_cpu) + [f"{B}/ringload", f"{transport}://{addrs[transport]}", "-c", str(conns),
                                     "-s", str(size), "-d", f"{secs}s", "-w", "500ms", "--no-progress",
                                     "--json", "-", "--connect-timeout", "5s"]
        if client_cpu is not None:
            cmd += ["--cpus", client_cpu]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 60)
        cpu1 = proc_cpu(p.pid)
        hwm = proc_status(p.pid, "VmHWM")
    finally:
        totals = stop_server(p)
    if not r.stdout.strip():
        return {"error": r.stderr.strip()[:300]}
    d = json.loads(r.stdout)
    msgs = d["counters"]["completed"] + d["counters"]["warmup_completed"]
    d["server"] = {"backend": backend, "cpu_s": cpu1 - cpu0, "cpu_us_per_msg": (cpu1 - cpu0) / max(msgs, 1) * 1e6,
                   "peak_rss_kib": hwm, "args": list(extra), "totals": totals}
    return d

rows = []
print(f"{len(cpus)} CPUs, kernel {os.uname().release}; server CPU {server_cpu}, ringload CPU {client_cpu}; "
      f"{secs}s per cell (+0.5s warm-up)", flush=True)
print(f"{runs} run(s) per cell, backends interleaved; the median run by msg/s is kept", flush=True)
for transport, cells in (("tcp", tcp_cells), ("udp", udp_cells)):
    for conns, size in cells:
        tries = {b: [] for b in backends}
        for _ in range(runs):
            for backend in backends:
                tries[backend].append(run_cell(backend, transport, conns, size))
        for backend in backends:
            ok = sorted((d for d in tries[backend] if "error" not in d), key=lambda d: d["throughput"]["msgs_per_s"])
            d = ok[len(ok) // 2] if ok else tries[backend][0]
            d["runs_msgs_per_s"] = [t["throughput"]["msgs_per_s"] for t in tries[backend] if "error" not in t]
            name = f"{backend}-{transport}-{conns}x{size}"
            with open(f"{out}/{name}.json", "w") as f:
                json.dump(d, f, indent=1)
            if "error" in d:
                print(f"{name}: ERROR {d['error']}", flush=True)
                rows.append((transport, conns, size, backend, None))
                continue
            lat = d["latency"]["corrected"]
            row = dict(rate=d["throughput"]["msgs_per_s"], mbps=d["throughput"]["bytes_per_s_each_way"] / 1e6,
                       p50=lat["p50"] / 1e3, p99=lat["p99"] / 1e3, p999=lat["p999"] / 1e3,
                       cpu=d["server"]["cpu_us_per_msg"], rss=d["server"]["peak_rss_kib"] / 1024,
                       failed=d["counters"]["failed_messages"] + d["counters"]["lost"],
                       warnings=[w["code"] for w in d["warnings"]])
            rows.append((transport, conns, size, backend, row))
            print(f"{name:<28} {row['rate']:>10.0f} msg/s  p99 {row['p99']:>8.1f} µs  server {row['cpu']:.2f} µs/msg", flush=True)

# Idle connections: RSS with 10,000 open, default buffer size.
idle = {}
for backend in backends:
    p, addrs = start_server(backend, ())
    try:
        host, port = addrs["tcp"].rsplit(":", 1)
        before = proc_status(p.pid, "VmRSS")
        resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
        import socket
        socks = [socket.create_connection((host, int(port))) for _ in range(10000)]
        for s in socks[::500]:
            s.sendall(b"x")
            assert s.recv(1) == b"x"
        time.sleep(0.5)  # let a polling backend publish; RSS is read from /proc, not stats
        idle[backend] = (before / 1024, proc_status(p.pid, "VmRSS") / 1024)
        for s in socks:
            s.close()
    finally:
        stop_server(p)
    print(f"idle {backend}: {idle[backend][0]:.1f} MiB -> {idle[backend][1]:.1f} MiB with 10,000 connections", flush=True)

# SEND_ZC on and off (uring), large messages.
zc = {}
for label, extra in (("copy", ()), ("zerocopy", ("--zc-threshold", "16KiB"))):
    extra = BIG_BUFFERS + extra
    d = run_cell("uring", "tcp", 50, 65536, extra)
    zc[label] = d
    if "error" not in d:
        t = d["server"]["totals"]
        print(f"SEND_ZC {label}: {d['throughput']['msgs_per_s']:.0f} msg/s, server {d['server']['cpu_us_per_msg']:.2f} µs/msg, "
              f"zc_sends={t.get('zc_sends')} zc_copied={t.get('zc_copied')}", flush=True)

# Summary.
def fmt(v, spec):
    return "—" if v is None else format(v, spec)
md = []
md.append(f"# ringecho benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
md.append(f"Machine: {len(cpus)} CPUs ({open('/proc/cpuinfo').read().split('model name')[1].split(':')[1].splitlines()[0].strip()}), "
          f"Linux {os.uname().release}. Server on CPU {server_cpu}, ringload on CPU {client_cpu}; "
          f"{secs:g} s per cell after 0.5 s warm-up, median of {runs} interleaved run(s); closed loop, depth 1; "
          f"a fresh server per run, `--workers 1 --buffer-size 66KiB`. "
          f"Ratios are against the epoll backend in the same run.\n")
md.append("| transport | conns × size | backend | msg/s | × epoll | p50 µs | p99 µs | p99.9 µs | server µs/msg | × epoll | peak RSS MiB |")
md.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
by_cell = {}
for t, c, s, b, row in rows:
    by_cell.setdefault((t, c, s), {})[b] = row
for (t, c, s), cell in by_cell.items():
    base = cell.get("epoll")
    for b in backends:
        row = cell.get(b)
        if row is None:
            md.append(f"| {t} | {c} × {s} B | {b} | failed | | | | | | | |")
            continue
        rr = row["rate"] / base["rate"] if base and base["rate"] else None
        cr = row["cpu"] / base["cpu"] if base and base["cpu"] else None
        md.append(f"| {t} | {c} × {s} B | {b} | {row['rate']:.0f} | {fmt(rr, '.2f')} | {row['p50']:.1f} | {row['p99']:.1f} | "
                  f"{row['p999']:.1f} | {row['cpu']:.2f} | {fmt(cr, '.2f')} | {row['rss']:.1f} |")
md.append("\n## Idle connections\n")
md.append("| backend | RSS idle MiB | RSS with 10,000 connections MiB | per connection KiB |")
md.append("|---|---:|---:|---:|")
for b, (a, z) in idle.items():
    md.append(f"| {b} | {a:.1f} | {z:.1f} | {(z - a) * 1024 / 10000:.2f} |")
md.append("\n## SEND_ZC (uring, TCP, 50 × 65,536 B)\n")
for label, d in zc.items():
    if "error" in d:
        md.append(f"- {label}: failed: {d['error']}")
    else:
        t = d["server"]["totals"]
        md.append(f"- {label}: {d['throughput']['msgs_per_s']:.0f} msg/s, server {d['server']['cpu_us_per_msg']:.2f} µs/msg; "
                  f"SEND_ZC sends {t.get('zc_sends', '?')}, of which the kernel reported copying {t.get('zc_copied', '?')}")
md.append("\nOn loopback the kernel copies SEND_ZC data anyway (there is no NIC to DMA from; it says so in each "
          "notification, counted as `zc_copied`), so zero-copy only adds the notification's cost here; measure it on a real NIC.")
open(f"{out}/summary.md", "w").write("\n".join(md) + "\n")
print(f"\nwrote {out}/summary.md")
PY
