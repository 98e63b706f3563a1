"""The benchmark matrix behind scripts/bench.sh (see its header for what it measures).

Writes results/<timestamp>/*.json (ringload's JSON plus a "server" section per cell) and
results/<timestamp>/summary.md.
"""

import argparse
import json
import os
import shlex
import time
from pathlib import Path

import ringbench as rb

USAGE = "scripts/bench.sh [--quick] [--seconds N] [--runs N] [--bin-dir DIR] [--only SECTION] [--rates LIST]"
SECTIONS = ("matrix", "idle", "zerocopy", "udp-batching", "ab", "openloop-cost")

BACKENDS = ["uring", "epoll", "tokio-uring", "threads"]
# The matrix has always run with 66 KiB stream buffers (datagrams no longer need them:
# they have their own buffers); kept so that results compare across versions.
BIG_BUFFERS = ("--buffer-size", "66KiB")

# UDP batching cells: (flows, datagrams in flight per flow, size).
BATCH_CELLS = [(8, 16, 64), (8, 16, 1200), (8, 1, 64)]
# The cell `ringload ab` compares the uring and epoll backends in (section `ab`):
# (transport, connections, size), the same as the matrix's row for it.
AB_CELL = ("tcp", 50, 64)
# Section `openloop-cost` (issue 25): ringload's open loop against the plain one
# (benches' epoll-open-loop) in this cell, at each of --rates.
OPENLOOP_CELL = (50, 64)
OPENLOOP_RATES = "10k,50k,100k"
# ringload-window's --send-window: messages go at most this early, a wake-up a quarter of
# it ahead of the next due time; about 300 µs of the schedule per wake-up.
OPENLOOP_WINDOW = "400us"
# A client keeps to its schedule when it achieves this share of the offered rate and its
# send lag p99 is at most LAG_LIMIT_US (ringload's `capacity::MIN_ACHIEVED` and
# `slo::LAG_LIMIT`).
ON_SCHEDULE_ACHIEVED = 0.97
LAG_LIMIT_US = 100.0

# Server and client set-ups compared in each batching cell, interleaved run by run.
BATCH_SETUPS = [
    ("uring", "gso"), ("uring --no-gro", "gso"), ("epoll", "gso"), ("floor", "gso"),
    ("uring", "no-gso"), ("floor", "no-gso"),
]


def parse_args():
    ap = argparse.ArgumentParser(prog="scripts/bench.sh", usage=USAGE, description=(
        "The benchmark matrix: backends × transports × connections × sizes, a fresh ringecho "
        "per run, ringload as the client, pinned when there are two CPUs or more."))
    ap.add_argument("--quick", action="store_true", help="a subset that takes a few minutes")
    ap.add_argument("--seconds", type=rb.at_least(0.001, float), metavar="N", help="seconds per cell (default 2 with --quick, 5 without)")
    ap.add_argument("--runs", type=rb.at_least(1), metavar="N", help="runs per cell (backends interleaved), the median by msg/s "
                                                           "is reported (default 1 with --quick, 3 without)")
    ap.add_argument("--bin-dir", metavar="DIR", help="take ringecho and ringload from DIR instead of building "
                                                     f"{rb.DEFAULT_BIN_DIR}, e.g. to compare two versions")
    ap.add_argument("--only", choices=SECTIONS, action="append", metavar="SECTION",
                    help=f"run only this section (repeatable): {', '.join(SECTIONS)}")
    ap.add_argument("--rates", default=OPENLOOP_RATES, metavar="LIST",
                    help=f"openloop-cost: offered rates in msg/s, comma-separated (default {OPENLOOP_RATES})")
    a = ap.parse_args()
    try:
        a.rates = [rb.parse_rate(r) for r in a.rates.split(",")]
    except rb.ScriptError as e:
        ap.error(f"--rates: {e}")
    a.only = set(a.only or SECTIONS)
    # Relative to where the user ran the script, before we move to the workspace root.
    a.bin_dir = str(Path(a.bin_dir).resolve()) if a.bin_dir else None
    return a


def run():
    args = parse_args()
    os.chdir(rb.REPO)
    # The comparison clients and floors of benches are not versions under test: always
    # today's build. One cargo invocation, so that every binary shares one build of the
    # dependencies (features are unified over the packages built together).
    benches = ["ringecho-benches"] if args.only & {"udp-batching", "openloop-cost"} else []
    if args.bin_dir:
        rb.check_binaries(args.bin_dir, "ringecho", "ringload")
        if benches:
            rb.cargo_build(*benches)
    else:
        rb.cargo_build("ringecho", "ringload", *benches)
    b = args.bin_dir or rb.DEFAULT_BIN_DIR
    quick = args.quick
    secs = args.seconds if args.seconds is not None else (2.0 if quick else 5.0)
    runs = args.runs if args.runs is not None else (1 if quick else 3)
    out = f"results/{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    os.makedirs(out, exist_ok=True)

    cpus = sorted(os.sched_getaffinity(0))
    pin = len(cpus) >= 2
    server_cpu, client_cpu = (str(cpus[0]), str(cpus[1])) if pin else (None, None)

    if quick:
        tcp_cells = [(1, 64), (50, 64), (500, 512), (5000, 512), (50, 4096)]
        udp_cells = [(8, 64), (8, 1400)]
    else:
        tcp_cells = [(c, s) for c in (1, 50, 500, 5000) for s in (64, 512, 4096, 65536)]
        udp_cells = [(c, s) for c in (1, 50, 500) for s in (64, 512, 4096, 65000)]

    def start_server(backend, extra):
        return rb.start_server([f"{b}/ringecho", "--backend", backend, "--tcp", "127.0.0.1:0", "--udp", "127.0.0.1:0",
                                "--workers", "1", "--max-conns", "20000", *extra], cpu=server_cpu, listeners=2)

    def run_cell(backend, transport, conns, size, extra=BIG_BUFFERS):
        server = start_server(backend, extra)
        try:
            cpu0 = rb.cpu_seconds(server.pid)
            try:
                d = rb.ringload(b, f"{transport}://{server.addr(transport)}",
                                ["-c", conns, "-s", size, "-d", f"{secs}s", "-w", "500ms", "--connect-timeout", "5s"],
                                cpu=client_cpu, timeout=secs + 60)
            except rb.LoadError as e:
                d = {"error": str(e)}
            cpu1 = rb.cpu_seconds(server.pid)
            hwm = rb.peak_rss_kib(server.pid)
        finally:
            totals = rb.stop_server(server)
        if "error" in d:
            return d
        msgs = d["counters"]["completed"] + d["counters"]["warmup_completed"]
        d["server"] = {"backend": backend, "cpu_s": cpu1 - cpu0, "cpu_us_per_msg": (cpu1 - cpu0) / max(msgs, 1) * 1e6,
                       "peak_rss_kib": hwm, "args": list(extra), "totals": totals}
        return d

    rows = []
    print(f"{len(cpus)} CPUs, kernel {os.uname().release}; server CPU {server_cpu}, ringload CPU {client_cpu}; "
          f"{secs}s per cell (+0.5s warm-up)", flush=True)
    print(f"{runs} run(s) per cell, backends interleaved; the median run by msg/s is kept", flush=True)
    if args.bin_dir:
        print(f"binaries from {args.bin_dir}", flush=True)
    matrix = (("tcp", tcp_cells), ("udp", udp_cells)) if "matrix" in args.only else ()
    for transport, cells in matrix:
        for conns, size in cells:
            tries = {backend: [] for backend in BACKENDS}
            for _ in range(runs):
                for backend in BACKENDS:
                    tries[backend].append(run_cell(backend, transport, conns, size))
            for backend in BACKENDS:
                ok = [d for d in tries[backend] if "error" not in d]
                d = rb.median_run(ok, key=lambda d: d["throughput"]["msgs_per_s"]) if ok else tries[backend][0]
                d["runs_msgs_per_s"] = [t["throughput"]["msgs_per_s"] for t in ok]
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
                           failed=rb.failed(d), warnings=[w["code"] for w in d["warnings"]])
                rows.append((transport, conns, size, backend, row))
                print(f"{name:<28} {row['rate']:>10.0f} msg/s  p99 {row['p99']:>8.1f} µs  server {row['cpu']:.2f} µs/msg",
                      flush=True)

    # Idle connections: RSS with 10,000 open, default buffer size.
    idle = {}
    for backend in BACKENDS if "idle" in args.only else ():
        server = start_server(backend, ())
        try:
            # settle_s: let a polling backend publish; RSS is read from /proc, not stats.
            before, with_conns = rb.idle_connections(server, server.addr("tcp"), count=10_000, sample_every=500,
                                                     settle_s=0.5)
            idle[backend] = (before / 1024, with_conns / 1024)
        finally:
            rb.stop_server(server)
        print(f"idle {backend}: {idle[backend][0]:.1f} MiB -> {idle[backend][1]:.1f} MiB with 10,000 connections",
              flush=True)

    # SEND_ZC on and off (uring), large messages.
    zc = {}
    zc_labels = (("copy", ()), ("zerocopy", ("--zc-threshold", "16KiB"))) if "zerocopy" in args.only else ()
    for label, extra in zc_labels:
        d = run_cell("uring", "tcp", 50, 65536, BIG_BUFFERS + extra)
        zc[label] = d
        if "error" not in d:
            t = d["server"]["totals"]
            print(f"SEND_ZC {label}: {d['throughput']['msgs_per_s']:.0f} msg/s, server {d['server']['cpu_us_per_msg']:.2f} "
                  f"µs/msg, zc_sends={t.get('zc_sends')} zc_copied={t.get('zc_copied')}", flush=True)

    batching = udp_batching(b, secs, runs, server_cpu, client_cpu) if "udp-batching" in args.only else {}
    ab = ab_section(b, out, secs, runs, server_cpu, client_cpu) if "ab" in args.only else None
    openloop = (openloop_cost(b, out, secs, runs, server_cpu, client_cpu, args.rates)
                if "openloop-cost" in args.only else None)

    write_summary(out, rows, idle, zc, batching, ab, openloop, cpus=cpus, server_cpu=server_cpu, client_cpu=client_cpu, secs=secs,
                  runs=runs, bin_dir=args.bin_dir)
    print(f"\nwrote {out}/summary.md")
    return 0


def udp_batching(b, secs, runs, server_cpu, client_cpu):
    """UDP_GRO/UDP_SEGMENT on both sides against the same without, and against a blocking
    recvfrom/sendto loop: datagrams per server CPU-second and per client CPU-second, the
    median of `runs` interleaved runs per set-up."""
    floor = f"{rb.DEFAULT_BIN_DIR}/udp-echo-floor"
    results = {}
    for flows, depth, size in BATCH_CELLS:
        tries = {setup: [] for setup in BATCH_SETUPS}
        for _ in range(runs):
            for server_kind, client_kind in BATCH_SETUPS:
                if server_kind == "floor":
                    cmd = [floor, "127.0.0.1:0"]
                else:
                    backend, *extra = server_kind.split()
                    cmd = [f"{b}/ringecho", "--backend", backend, "--udp", "127.0.0.1:0", "--workers", "1", *extra]
                server = rb.start_server(cmd, cpu=server_cpu)
                try:
                    cpu0 = rb.cpu_seconds(server.pid)
                    args = ["-c", flows, "--depth", depth, "-s", size, "-d", f"{secs}s", "-w", "500ms"]
                    if client_kind == "no-gso":
                        args.append("--no-gso")
                    try:
                        d = rb.ringload(b, f"udp://{server.addr('udp')}", args, cpu=client_cpu, timeout=secs + 60)
                    except rb.LoadError as e:
                        d = {"error": str(e)}
                    cpu1 = rb.cpu_seconds(server.pid)
                finally:
                    rb.stop_server(server)
                if "error" in d:
                    print(f"udp batching {flows}x{depth}x{size}B {server_kind}/{client_kind}: ERROR {d['error']}",
                          flush=True)
                    continue
                msgs = d["counters"]["completed"] + d["counters"]["warmup_completed"]
                tries[(server_kind, client_kind)].append(dict(
                    rate=d["throughput"]["msgs_per_s"], p50=d["latency"]["corrected"]["p50"] / 1e3,
                    p99=d["latency"]["corrected"]["p99"] / 1e3,
                    server_per_cpu_s=msgs / max(cpu1 - cpu0, 1e-9), client_per_cpu_s=msgs / max(d["load_cpu_s"], 1e-9),
                    failed=rb.failed(d), runs=None))
        for setup, ok in tries.items():
            if not ok:
                continue
            row = {k: rb.median([t[k] for t in ok]) for k in ("rate", "p50", "p99", "server_per_cpu_s", "client_per_cpu_s")}
            row["failed"] = max(t["failed"] for t in ok)
            row["runs"] = [round(t["rate"]) for t in ok]
            results[(flows, depth, size, *setup)] = row
            print(f"udp batching {flows}x{depth}x{size}B server {setup[0]:<15} client {setup[1]:<7} "
                  f"{row['rate']:>10.0f} dgram/s  server {row['server_per_cpu_s']:>10.0f} dgram/CPU-s  "
                  f"client {row['client_per_cpu_s']:>10.0f} dgram/CPU-s  p50 {row['p50']:.1f} µs", flush=True)
    return results


def ab_section(b, out, secs, runs, server_cpu, client_cpu):
    """`ringload ab` of the uring backend (A) against epoll (B) in AB_CELL: the servers
    started exactly as the matrix starts them (less the UDP listener), the same load, the
    same pinning, `runs` interleaved runs per side. Returns ringload ab's document (its
    text report is printed); writes it to OUT/ab-uring-vs-epoll-<cell>.json."""
    transport, conns, size = AB_CELL

    def server(backend):
        return shlex.join([f"{b}/ringecho", "--backend", backend, "--tcp", "127.0.0.1:0", "--workers", "1",
                           "--max-conns", "20000", *BIG_BUFFERS])

    cmd = [f"{b}/ringload", "ab", "--server-a", server("uring"), "--server-b", server("epoll"), "-c", conns, "-s", size,
           "-d", f"{secs}s", "-w", "500ms", "--connect-timeout", "5s", "--runs", runs, "--no-progress", "--json", "-"]
    if server_cpu is not None:
        cmd += ["--server-cpus", server_cpu, "--cpus", client_cpu]
    print(f"\nringload ab (uring = A, epoll = B), {transport} {conns} x {size} B, {runs} interleaved run(s) per side:\n"
          f"  {shlex.join(str(a) for a in cmd)}", flush=True)
    child = rb.Child(cmd)
    timeout = runs * 2 * (secs + 0.5 + 30) + 60
    try:
        try:
            child.proc.wait(timeout=timeout)
        except rb.subprocess.TimeoutExpired:
            child.end(timeout=30)
            raise rb.ScriptError(f"ringload ab did not finish within {timeout:g} s") from None
        if child.proc.returncode not in (0, 1):
            raise rb.ScriptError(f"ringload ab exited {child.proc.returncode}: {child.stderr_text().strip()[-600:]}")
        doc = json.loads(child.stdout_text())
    finally:
        child.release()
    with open(f"{out}/ab-uring-vs-epoll-{transport}-{conns}x{size}.json", "w") as f:
        json.dump(doc, f, indent=1)
    c = doc.get("comparison") or {}
    for key in ("msgs_per_s", "p50", "p99", "server_cpu_per_msg"):
        if key in c:
            print(f"  {c[key]['verdict']}", flush=True)
    return doc


def openloop_cost(b, out, secs, runs, server_cpu, client_cpu, rates):
    """Issue 25: what ringload's open loop costs per message against the plain way
    (benches' epoll-open-loop: epoll, one absolute timerfd, every due message sent at
    once), in OPENLOOP_CELL at each offered rate. Per rate, `runs` pairs interleaved (A B,
    B A, ...), each client against a fresh ringecho (uring backend) pinned to the server's
    CPU, the client pinned to its own. Returns the runs and, per rate, each client's
    medians and the ratio ringload/plain; writes OUT/openloop-cost.json."""
    conns, size = OPENLOOP_CELL
    warmup = "1s"
    mark = rb.started_mark()

    def run_one(client, rate):
        server = rb.start_server([f"{b}/ringecho", "--backend", "uring", "--tcp", "127.0.0.1:0", "--workers", "1",
                                  "--max-conns", "20000"], cpu=server_cpu)
        addr = server.addr("tcp")
        try:
            s0, c0 = rb.cpu_seconds(server.pid), rb.child_cpu()
            if client.startswith("ringload"):
                # ringload: replies timed by the kernel's receive stamps and taken in
                # batches at the due times; ringload-window: the same, handing out at each
                # wake-up every message due within OPENLOOP_WINDOW (--send-window: early
                # sends, in bursts); ringload-user: the old loop (--user-timestamps), which
                # wakes for each reply and each send's completion.
                user = {"ringload-user": ["--user-timestamps"],
                        "ringload-window": ["--send-window", OPENLOOP_WINDOW]}.get(client, [])
                d = rb.ringload(b, f"tcp://{addr}", ["-r", rb.rate_arg(rate), "-c", conns, "-s", size, "-d", f"{secs}s",
                                                     "-w", warmup, "--connect-timeout", "5s", *user],
                                cpu=client_cpu, timeout=secs + 60)
                k, lat, views = d["counters"], d["latency"], d.get("views") or {}
                row = dict(
                    rate=d["throughput"]["msgs_per_s"], msgs=k["completed"], total_msgs=k["completed"] + k["warmup_completed"],
                    # The window's CPU: ringload's worker threads between the end of the
                    # warm-up and the end of the window (its sampler and main thread aside).
                    window_cpu_s=views["client"]["cpu_s"] if "client" in views else None,
                    p50=lat["corrected"]["p50"] / 1e3, p99=lat["corrected"]["p99"] / 1e3,
                    lag_p99=lat["send_lag"]["p99"] / 1e3 if "send_lag" in lat else None, late_sends=None,
                    failed=rb.failed(d), warnings=[w["code"] for w in d["warnings"]])
            else:
                r = rb.epoll_open_loop(rb.DEFAULT_BIN_DIR, addr, rate=rate, conns=conns, size=size,
                                       duration=f"{secs}s", warmup=warmup, cpu=client_cpu)
                row = dict(rate=r["rate"], msgs=int(r["msgs"]), total_msgs=int(r["total_msgs"]), window_cpu_s=r["cpu_s"],
                           p50=r["p50_ns"] / 1e3, p99=r["p99_ns"] / 1e3, lag_p99=r["lag_p99_ns"] / 1e3,
                           late_sends=int(r["late_sends"]), failed=int(r["lost"] + r["unanswered"]), warnings=[])
            # The whole process, connecting and warm-up included: it has been reaped.
            row["process_cpu_s"] = rb.child_cpu() - c0
            row["server_cpu_s"] = rb.cpu_seconds(server.pid) - s0
        finally:
            rb.stop_server(server)
        row.update(client=client, offered=rate)
        row["cpu_us_per_msg"] = row["window_cpu_s"] / row["msgs"] * 1e6 if row["window_cpu_s"] is not None and row["msgs"] else None
        row["process_us_per_msg"] = row["process_cpu_s"] / max(row["total_msgs"], 1) * 1e6
        row["server_us_per_msg"] = row["server_cpu_s"] / max(row["total_msgs"], 1) * 1e6
        row["on_schedule"] = on_schedule(row)
        return row

    clients = ("ringload", "ringload-window", "ringload-user", "plain")
    print(f"\nopen-loop client cost (issue 25): ringload -r RATE against epoll-open-loop, tcp {conns} x {size} B, "
          f"ringecho uring on CPU {server_cpu}, clients on CPU {client_cpu}, {runs} interleaved pair(s) per rate, "
          f"{secs:g} s + {warmup} warm-up each", flush=True)
    all_runs, by_rate = [], {}
    for rate in rates:
        tries = {c: [] for c in clients}
        for i in range(runs):
            for client in clients if i % 2 == 0 else reversed(clients):
                try:
                    row = run_one(client, rate)
                except (rb.LoadError, rb.ScriptError) as e:
                    row = dict(client=client, offered=rate, error=str(e))
                    print(f"  {rb.rate_arg(rate):>7} msg/s {client:<13} ERROR {e}", flush=True)
                else:
                    tries[client].append(row)
                    print(f"  {rb.rate_arg(rate):>7} msg/s {client:<13} achieved {row['rate']:>9.0f}  "
                          f"client {fmt_num(row['cpu_us_per_msg'], '.2f')} µs/msg (process "
                          f"{row['process_us_per_msg']:.2f})  p99 {row['p99']:.1f} µs  send lag p99 "
                          f"{fmt_num(row['lag_p99'], '.1f')} µs" + (f"  late {row['late_sends']}"
                                                                   if row["late_sends"] is not None else "")
                          + (f"  warnings {','.join(row['warnings'])}" if row["warnings"] else ""), flush=True)
                all_runs.append(row)
        cell = {c: openloop_medians(tries[c]) for c in clients}
        # Each ringload loop's medians over the plain client's, side by side in one run.
        ratios = {}
        for c in clients[:-1]:
            ratio = {}
            for key in ("cpu_us_per_msg", "process_us_per_msg"):
                a, p = (cell[x][key] if cell[x] else None for x in (c, "plain"))
                ratio[key] = a / p if a is not None and p else None
            ratios[c] = ratio
            print(f"  {rb.rate_arg(rate):>7} msg/s median client µs/msg {c}/plain: "
                  f"{fmt_num(ratio['cpu_us_per_msg'], '.2f')} (window), {fmt_num(ratio['process_us_per_msg'], '.2f')} "
                  f"(whole process)", flush=True)
        by_rate[rb.rate_arg(rate)] = dict(offered=rate, **cell, ratio=ratios)
    highest = {c: max((v["offered"] for v in by_rate.values() if v[c] and v[c]["on_schedule"]), default=None)
               for c in clients}
    pids = rb.check_ended(mark)
    doc = dict(section="openloop-cost", connections=conns, size=size, seconds=secs, warmup_s=rb.parse_duration(warmup),
               runs_per_client=runs, server_cpu=server_cpu, client_cpu=client_cpu,
               on_schedule_rule=dict(min_achieved=ON_SCHEDULE_ACHIEVED, max_send_lag_p99_us=LAG_LIMIT_US),
               rates=by_rate, highest_on_schedule=highest, runs=all_runs, pids_reaped=pids)
    with open(f"{out}/openloop-cost.json", "w") as f:
        json.dump(doc, f, indent=1)
    print("  highest rate kept on schedule (of those run): "
          + ", ".join(f"{c} {fmt_num(highest[c], '.0f')}" for c in clients)
          + f"; all {len(pids)} processes started here reaped", flush=True)
    return doc


def on_schedule(row):
    """Whether a run kept to its schedule: ON_SCHEDULE_ACHIEVED of the offered rate, send
    lag p99 within LAG_LIMIT_US, nothing failed."""
    return (row["rate"] >= ON_SCHEDULE_ACHIEVED * row["offered"] and row["lag_p99"] is not None
            and row["lag_p99"] <= LAG_LIMIT_US and row["failed"] == 0)


def openloop_medians(rows):
    """Each figure's median over one client's runs at one rate; None without runs."""
    if not rows:
        return None
    m = {}
    for key in ("rate", "cpu_us_per_msg", "process_us_per_msg", "server_us_per_msg", "p50", "p99", "lag_p99",
                "late_sends"):
        values = [r[key] for r in rows if r[key] is not None]
        m[key] = rb.median(values) if values else None
    m["failed"] = max(r["failed"] for r in rows)
    m["runs"] = len(rows)
    m["warnings"] = sorted({w for r in rows for w in r["warnings"]})
    # On schedule at the medians, as the capacity search judges a step.
    m["on_schedule"] = on_schedule(dict(m, offered=rows[0]["offered"]))
    return m


def fmt_num(v, spec):
    return "—" if v is None else format(v, spec)


def write_summary(out, rows, idle, zc, batching, ab, openloop, *, cpus, server_cpu, client_cpu, secs, runs, bin_dir):
    def fmt(v, spec):
        return "—" if v is None else format(v, spec)

    md = []
    md.append(f"# ringecho benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    # The matrix's set-up is said only when the matrix ran; each other section says its own.
    md.append(f"Machine: {len(cpus)} CPUs ({rb.cpu_model()}), "
              f"Linux {os.uname().release}. Server on CPU {server_cpu}, ringload on CPU {client_cpu}"
              + (f"; {secs:g} s per cell after 0.5 s warm-up, median of {runs} interleaved run(s); closed loop, depth 1; "
                 f"a fresh server per run, `--workers 1 --buffer-size 66KiB`. "
                 f"Ratios are against the epoll backend in the same run." if rows else ".")
              + (f" Binaries from `{bin_dir}`." if bin_dir else "") + "\n")
    if rows:
        md.append("| transport | conns × size | backend | msg/s | × epoll | p50 µs | p99 µs | p99.9 µs | server µs/msg | × epoll | peak RSS MiB |")
        md.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    by_cell = {}
    for t, c, s, b, row in rows:
        by_cell.setdefault((t, c, s), {})[b] = row
    for (t, c, s), cell in by_cell.items():
        base = cell.get("epoll")
        for b in BACKENDS:
            row = cell.get(b)
            if row is None:
                md.append(f"| {t} | {c} × {s} B | {b} | failed | | | | | | | |")
                continue
            rr = row["rate"] / base["rate"] if base and base["rate"] else None
            cr = row["cpu"] / base["cpu"] if base and base["cpu"] else None
            md.append(f"| {t} | {c} × {s} B | {b} | {row['rate']:.0f} | {fmt(rr, '.2f')} | {row['p50']:.1f} | {row['p99']:.1f} | "
                      f"{row['p999']:.1f} | {row['cpu']:.2f} | {fmt(cr, '.2f')} | {row['rss']:.1f} |")
    if idle:
        md.append("\n## Idle connections\n")
        md.append("| backend | RSS idle MiB | RSS with 10,000 connections MiB | per connection KiB |")
        md.append("|---|---:|---:|---:|")
    for b, (a, z) in idle.items():
        md.append(f"| {b} | {a:.1f} | {z:.1f} | {(z - a) * 1024 / 10000:.2f} |")
    if zc:
        md.append("\n## SEND_ZC (uring, TCP, 50 × 65,536 B)\n")
    for label, d in zc.items():
        if "error" in d:
            md.append(f"- {label}: failed: {d['error']}")
        else:
            t = d["server"]["totals"]
            md.append(f"- {label}: {d['throughput']['msgs_per_s']:.0f} msg/s, server {d['server']['cpu_us_per_msg']:.2f} µs/msg; "
                      f"SEND_ZC sends {t.get('zc_sends', '?')}, of which the kernel reported copying {t.get('zc_copied', '?')}")
    if zc:
        md.append("\nOn loopback the kernel copies SEND_ZC data anyway (there is no NIC to DMA from; it says so in each "
                  "notification, counted as `zc_copied`), so zero-copy only adds the notification's cost here; measure it "
                  "on a real NIC.")
    if batching:
        md.append("\n## UDP batching (UDP_GRO and UDP_SEGMENT)\n")
        md.append("Datagrams per CPU-second of the server (utime+stime from /proc) and of ringload (its own CPU time), "
                  "median of the interleaved runs; `floor` is a blocking recvfrom/sendto loop (benches' udp-echo-floor); "
                  "`gso` is ringload's default, `no-gso` is `--no-gso`. Ratios are against the floor with the same client.\n")
        md.append("| flows × depth × size | server | client | dgram/s | p50 µs | p99 µs | server dgram/CPU-s | × floor | "
                  "client dgram/CPU-s | failed |")
        md.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for (flows, depth, size, server, client), row in batching.items():
            base = batching.get((flows, depth, size, "floor", client))
            ratio = row["server_per_cpu_s"] / base["server_per_cpu_s"] if base else None
            md.append(f"| {flows} × {depth} × {size} B | {server} | {client} | {row['rate']:.0f} | {row['p50']:.1f} | "
                      f"{row['p99']:.1f} | {row['server_per_cpu_s']:.0f} | {fmt(ratio, '.2f')} | "
                      f"{row['client_per_cpu_s']:.0f} | {row['failed']} |")
    if ab is not None:
        transport, conns, size = AB_CELL
        md.append(f"\n## ringload ab: uring (A) against epoll (B), {transport} {conns} × {size} B\n")
        md.append(f"`ringload ab`, {ab['runs_planned']} run(s) per side interleaved A B, B A, …, a fresh server each run, "
                  "started and pinned as in the matrix. Each figure is its median over the runs (min–max); the matrix "
                  "row for the same cell keeps instead the one run with the median msg/s, so its figures may differ "
                  "from these by the spread shown here. Server CPU per message is the same reading in both "
                  "(utime+stime over the load, warm-up included, per answered message).\n")
        md.append("| figure | uring (A) | epoll (B) | B/A | run pairs B/A | verdict |")
        md.append("|---|---:|---:|---:|---:|---|")
        sa, sb, c = ab["a"]["summary"], ab["b"]["summary"], ab.get("comparison") or {}
        for name, key, ckey, scale, spec in (("msg/s", "msgs_per_s", "msgs_per_s", 1, ".0f"),
                                             ("p50 µs", "p50_ns", "p50", 1e-3, ".1f"),
                                             ("p99 µs", "p99_ns", "p99", 1e-3, ".1f"),
                                             ("server µs/msg", "server_cpu_us_per_msg", "server_cpu_per_msg", 1, ".2f")):
            def cell(s):
                v = s[key]
                return f"{v['median'] * scale:{spec}} ({v['min'] * scale:{spec}}–{v['max'] * scale:{spec}})"
            r = c.get(ckey)
            ratio = f"{r['ratio']:.3f}" if r and r["ratio"] is not None else "—"
            pairs = f"{r['pairs_min']:.3f}–{r['pairs_max']:.3f}" if r and r["pairs_min"] is not None else "—"
            verdict = ("beyond the spread: " + (r["better"] or "") + " better") if r and r["beyond_spread"] else "within the spread"
            md.append(f"| {name} | {cell(sa)} | {cell(sb)} | {ratio} | {pairs} | {verdict} |")
        for side, s in (("uring", sa), ("epoll", sb)):
            if s["client_saturated_runs"]:
                md.append(f"\nThe client saturated in {s['client_saturated_runs']} of {s['runs']} {side} runs: those "
                          "figures are bounded by the client.")
    if openloop is not None:
        md.extend(openloop_summary(openloop))
    with open(f"{out}/summary.md", "w") as f:
        f.write("\n".join(md) + "\n")


def openloop_summary(doc):
    """summary.md's section for openloop-cost: per rate, each client's medians and the
    ratio ringload/plain of CPU per message."""
    md = [f"\n## Open-loop client cost: ringload against the plain open loop, tcp {doc['connections']} × {doc['size']} B\n"]
    md.append(f"Issue 25. At each offered rate, ringload `-r RATE` (replies timed by the kernel's receive stamps and "
              f"taken in batches at the due times), ringload `--send-window {OPENLOOP_WINDOW}` (**ringload-window**: "
              f"at each wake-up every message due within the window goes, early ones early, in bursts; its early "
              f"messages have no send lag by construction and their latency leaves out the client's wake-up "
              f"lateness, so its lag and latency columns are not like-for-like with the plain loop's), "
              f"ringload `--user-timestamps` (**ringload-user**: the loop that "
              f"wakes for each reply and send completion) and benches' `epoll-open-loop` (the plain way: one "
              f"epoll set, one absolute timerfd re-armed to the next due time, every due message its own write, "
              f"replies read on wake), {doc['runs_per_client']} run(s) each interleaved A B, B A, …, each against a "
              f"fresh ringecho (uring, `--workers 1`) on CPU {doc['server_cpu']}, the client on CPU "
              f"{doc['client_cpu']}; {doc['seconds']:g} s after {doc['warmup_s']:g} s warm-up; medians. **Client µs/msg** "
              "is the client's CPU (utime+stime) over the measured window per answered measured message (ringload: "
              "its worker threads, `views.client.cpu_s`; plain: the process); **process** is the whole process "
              "from start to exit (connecting, warm-up and drain included) per answered message. Latency is from "
              "each message's intended send time. Send lag: how late each message was handed out; **late** counts "
              f"the plain client's sends more than {LAG_LIMIT_US:g} µs late. On schedule: at least "
              f"{ON_SCHEDULE_ACHIEVED:.0%} of the offered rate, send lag p99 ≤ {LAG_LIMIT_US:g} µs, nothing failed.\n")
    md.append("| offered msg/s | client | achieved msg/s | client µs/msg | × plain | process µs/msg | × plain | "
              "server µs/msg | p50 µs | p99 µs | send lag p99 µs | late sends | failed | on schedule |")
    md.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    clients = ("ringload", "ringload-window", "ringload-user", "plain")
    for key, cell in doc["rates"].items():
        for client in clients:
            m = cell.get(client)
            if m is None:
                md.append(f"| {key} | {client} | failed | | | | | | | | | | | |")
                continue
            ratio = cell["ratio"].get(client, {})
            md.append(f"| {key} | {client} | {m['rate']:.0f} | {fmt_num(m['cpu_us_per_msg'], '.2f')} | "
                      f"{fmt_num(ratio.get('cpu_us_per_msg'), '.2f')} | {m['process_us_per_msg']:.2f} | "
                      f"{fmt_num(ratio.get('process_us_per_msg'), '.2f')} | {m['server_us_per_msg']:.2f} | "
                      f"{m['p50']:.1f} | {m['p99']:.1f} | {fmt_num(m['lag_p99'], '.1f')} | "
                      f"{fmt_num(m['late_sends'], '.0f')} | {m['failed']} | {'yes' if m['on_schedule'] else 'no'}"
                      + (f" ({', '.join(m['warnings'])})" if m["warnings"] else "") + " |")
    hi = doc["highest_on_schedule"]
    md.append("\nHighest offered rate kept on schedule, of those run: "
              + ", ".join(f"{c} {fmt_num(hi.get(c), '.0f')}" for c in clients)
              + f" msg/s. Every process this section started was reaped ({len(doc['pids_reaped'])}).")
    return md


if __name__ == "__main__":
    rb.main(run)
