"""ringload against the minimal epoll client, behind scripts/measure-client.sh (see its header)."""

import argparse
import os

import ringbench as rb


def run():
    ap = argparse.ArgumentParser(prog="scripts/measure-client.sh", description=(
        "ringload and the minimal epoll client against one ringecho, pinned, interleaved, medians."))
    ap.add_argument("runs", nargs="?", type=rb.at_least(1), default=3, metavar="RUNS", help="runs per cell (default 3)")
    ap.add_argument("secs", nargs="?", type=rb.at_least(1), default=5, metavar="SECONDS", help="per run (default 5)")
    args = ap.parse_args()
    runs, secs = args.runs, args.secs
    os.chdir(rb.REPO)
    rb.cargo_build("ringecho", "ringload", "ringecho-benches")
    b = rb.DEFAULT_BIN_DIR

    srv = rb.start_server([f"{b}/ringecho", "--tcp", "127.0.0.1:0", "--max-conns", "20000"], cpu="0")
    addr = srv.addr("tcp")

    def ringload(c, s):
        d = rb.ringload(b, f"tcp://{addr}", ["-c", c, "-s", s, "-d", f"{secs}s", "-w", "1s"], cpu="1",
                        timeout=secs + 60, check=True)
        k = d["counters"]
        return d["throughput"]["msgs_per_s"], k["completed"] + k["warmup_completed"], \
            d["latency"]["corrected"]["p50"] / 1e3, d["latency"]["corrected"]["p99"] / 1e3

    def epoll(c, s):
        r = rb.epoll_client(b, addr, conns=c, size=s, duration=f"{secs}s", warmup="1s", cpu="1")
        return r["rate"], r["total_msgs"], r["p50_us"], r["p99_us"]

    clients = {"ringload": ringload, "epoll": epoll}
    print(f"kernel {os.uname().release}, {os.cpu_count()} CPUs; ringecho on CPU 0, client on CPU 1; "
          f"{runs} interleaved runs of {secs}s (+1s warm-up)")
    print(f"{'cell':<10} {'client':<9} {'msg/s':>10} {'client µs/msg':>14} {'server µs/msg':>14} {'p50 µs':>8} {'p99 µs':>8}",
          flush=True)
    for c, s in [(1, 64), (50, 64), (500, 512)]:
        res = {k: [] for k in clients}
        for _ in range(runs):
            for name, f in clients.items():
                c0, s0 = rb.child_cpu(), rb.cpu_seconds(srv.pid)
                rate, msgs, p50, p99 = f(c, s)
                res[name].append((rate, (rb.child_cpu() - c0) / msgs * 1e6, (rb.cpu_seconds(srv.pid) - s0) / msgs * 1e6,
                                  p50, p99))
        for name, rows in res.items():
            med = [rb.median(col) for col in zip(*rows)]
            print(f"{f'{c}x{s}B':<10} {name:<9} {med[0]:>10.0f} {med[1]:>14.2f} {med[2]:>14.2f} {med[3]:>8.1f} {med[4]:>8.1f}"
                  f"   runs: {','.join(f'{r[0]:.0f}' for r in rows)}")
        a, b_ = (rb.median(r[0] for r in res[k]) for k in ("ringload", "epoll"))
        ca, cb = (rb.median(r[1] for r in res[k]) for k in ("ringload", "epoll"))
        print(f"{'':<10} ratio ringload/epoll: msg/s {a / b_:.2f}, client CPU per message {ca / cb:.2f}", flush=True)
    rb.stop_server(srv)
    return 0


if __name__ == "__main__":
    rb.main(run)
