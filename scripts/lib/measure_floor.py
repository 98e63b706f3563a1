"""The latency floor, behind scripts/measure-floor.sh (see its header)."""

import argparse
import os
import re
import shutil
import socket
import time

import ringbench as rb


def sockperf_pair(udp, secs):
    """sockperf's own ping-pong: server on CPU 0, client on CPU 1; RTT p50/p99 in µs
    (sockperf reports one-way latency, half the round trip: doubled here)."""
    port = rb.free_port()
    proto = [] if udp else ["--tcp"]
    server = rb.Child(["sockperf", "server", *proto, "-i", "127.0.0.1", "-p", port], cpu=0)
    try:
        deadline = time.monotonic() + 10
        while not udp:  # TCP: wait until it accepts
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or not server.running():
                    raise rb.ScriptError(f"sockperf server did not listen: {server.stderr_text()[-300:]!r}")
                time.sleep(0.05)
        if udp:
            time.sleep(0.3)  # nothing to connect to: give it a moment to bind
        client = rb.Child(["sockperf", "ping-pong", *proto, "-i", "127.0.0.1", "-p", port, "-t", secs], cpu=1)
        try:
            client.proc.wait(timeout=secs + 30)
        except Exception:
            client.end(timeout=5)
            raise rb.LoadError("sockperf ping-pong did not finish") from None
        text = client.stdout_text() + client.stderr_text()
        client.release()
    finally:
        server.end(timeout=5)
        server.release()
    pct = {}
    for m in re.finditer(r"percentile\s+([0-9.]+)\s*=\s*([0-9.]+)", text):
        pct[float(m.group(1))] = float(m.group(2))
    if 50.0 not in pct or 99.0 not in pct:
        raise rb.LoadError(f"sockperf printed no percentiles: {text[-300:]!r}")
    return 2 * pct[50.0], 2 * pct[99.0]


def run():
    ap = argparse.ArgumentParser(prog="scripts/measure-floor.sh", description=(
        "1-connection RTT p50/p99 with and without --spin (both sides) beside sockperf's ping-pong."))
    ap.add_argument("runs", nargs="?", type=rb.at_least(1), default=3, metavar="RUNS", help="runs per cell (default 3)")
    ap.add_argument("secs", nargs="?", type=rb.at_least(1), default=10, metavar="SECONDS", help="per run (default 10)")
    args = ap.parse_args()
    runs, secs = args.runs, args.secs
    os.chdir(rb.REPO)
    rb.cargo_build("ringecho", "ringload")
    b = rb.DEFAULT_BIN_DIR
    if shutil.which("sockperf") is None:
        raise rb.ScriptError("sockperf: not found (Debian: apt-get install sockperf)")

    def ringecho_pair(udp, spin):
        flag = ["--spin"] if spin else []
        listen = ["--udp", "127.0.0.1:0"] if udp else ["--tcp", "127.0.0.1:0"]
        srv = rb.start_server([f"{b}/ringecho", *listen, "--cpus", "0", *flag], cpu=0)
        try:
            scheme = "udp" if udp else "tcp"
            d = rb.ringload(b, f"{scheme}://{srv.addr(scheme)}", ["-c", "1", "--depth", "1", "-d", f"{secs}s", "-w", "1s", *flag],
                            cpu=1, timeout=secs + 60, check=True)
        finally:
            rb.stop_server(srv)
        lat = d["latency"]["corrected"]
        return lat["p50"] / 1e3, lat["p99"] / 1e3

    cells = {
        "ringecho": lambda udp: ringecho_pair(udp, False),
        "ringecho --spin": lambda udp: ringecho_pair(udp, True),
        "sockperf": lambda udp: sockperf_pair(udp, secs),
    }
    print(f"kernel {os.uname().release}, {os.cpu_count()} CPUs; servers on CPU 0, clients on CPU 1; 1 connection, "
          f"1 message in flight; {runs} interleaved runs of {secs}s; RTT in µs (sockperf's one-way figures doubled)")
    print(f"{'transport':<10} {'pair':<16} {'p50 µs':>8} {'p99 µs':>8}   runs (p50)", flush=True)
    for udp in (False, True):
        res = {k: [] for k in cells}
        for _ in range(runs):
            for name, f in cells.items():
                res[name].append(f(udp))
        med = {k: (rb.median(r[0] for r in v), rb.median(r[1] for r in v)) for k, v in res.items()}
        for name, rows in res.items():
            print(f"{'udp' if udp else 'tcp':<10} {name:<16} {med[name][0]:>8.1f} {med[name][1]:>8.1f}   "
                  f"{','.join(f'{r[0]:.1f}' for r in rows)}")
        base = med["sockperf"]
        for name in ("ringecho", "ringecho --spin"):
            print(f"{'':<10} ratio {name}/sockperf: p50 {med[name][0] / base[0]:.2f}, p99 {med[name][1] / base[1]:.2f}")
        print(flush=True)
    return 0


if __name__ == "__main__":
    rb.main(run)
