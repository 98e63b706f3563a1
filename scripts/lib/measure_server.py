"""Side-by-side server figures behind scripts/measure-server.sh (see its header)."""

import argparse
import os

import ringbench as rb


def run():
    ap = argparse.ArgumentParser(prog="scripts/measure-server.sh", description=(
        "ringecho against a minimal comparison server, pinned, runs interleaved, medians; "
        "TRANSPORT=udp for datagrams, SERVER_CPU and CLIENT_CPU to pick the CPUs."))
    ap.add_argument("runs", nargs="?", type=rb.at_least(1), default=3, metavar="RUNS", help="runs per cell (default 3)")
    ap.add_argument("duration", nargs="?", default="5s", metavar="DURATION", help="per run (default 5s)")
    args = ap.parse_args()
    rb.parse_duration(args.duration)  # a bad one fails before the build
    server_cpu = os.environ.get("SERVER_CPU", "0")
    client_cpu = os.environ.get("CLIENT_CPU", "1")
    transport = os.environ.get("TRANSPORT", "tcp")
    os.chdir(rb.REPO)
    rb.cargo_build("ringecho", "ringecho-benches")
    b = rb.DEFAULT_BIN_DIR

    udp = transport == "udp"
    if udp:
        commands = {"uring": [f"{b}/ringecho", "--udp", "127.0.0.1:0"],
                    "floor": [f"{b}/udp-echo-floor", "127.0.0.1:0"]}
        cells = [(8, 64), (8, 1400)]
    else:
        commands = {"uring": [f"{b}/ringecho", "--tcp", "127.0.0.1:0", "--max-conns", "20000"],
                    "epoll": [f"{b}/epoll-server", "127.0.0.1:0"]}
        cells = [(1, 64), (50, 64), (500, 512)]
    servers = {}
    for name, cmd in commands.items():
        servers[name] = rb.start_server(cmd, cpu=server_cpu)

    print(f"kernel {os.uname().release}, {len(os.sched_getaffinity(0))} CPUs ({rb.cpu_model()})")
    print(f"servers on CPU {server_cpu}, epoll-client on CPU {client_cpu}, {args.runs} interleaved runs of "
          f"{args.duration} (+1s warm-up)", flush=True)
    row = "{:<10} {:<6} {:>10} {:>12} {:>9} {:>9}   {}"
    print(row.format("cell", "server", "msg/s", "cpu-µs/msg", "p50 µs", "p99 µs", "runs (msg/s)"), flush=True)
    for conns, size in cells:
        res = {name: [] for name in servers}
        for _ in range(args.runs):
            for name, server in servers.items():
                before = rb.cpu_seconds(server.pid)
                r = rb.epoll_client(b, server.listeners[0][1], conns=conns, size=size, duration=args.duration,
                                    warmup="1s", cpu=client_cpu, udp=udp)
                cpu = rb.cpu_seconds(server.pid) - before
                res[name].append((r["rate"], cpu / r["total_msgs"] * 1e6, r["p50_us"], r["p99_us"]))
        for name, runs in res.items():
            rate, cpu, p50, p99 = (rb.median(col) for col in zip(*runs))
            print(row.format(f"{conns}x{size}B", name, f"{rate:.0f}", f"{cpu:.3f}", f"{p50:.1f}", f"{p99:.1f}",
                             ",".join(f"{r[0]:.0f}" for r in runs)), flush=True)

    if not udp:
        for name, server in servers.items():
            before, with_conns = rb.idle_connections(server, server.addr("tcp"), count=10_000, sample_every=100)
            print(f"{name}: RSS {before / 1024:.1f} MiB idle, {with_conns / 1024:.1f} MiB with 10,000 idle connections",
                  flush=True)
    for server in servers.values():
        rb.stop_server(server)
    return 0


if __name__ == "__main__":
    rb.main(run)
