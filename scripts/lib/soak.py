"""The soak behind scripts/soak.sh (see its header). Exit 0 passed, 1 a check failed, 2
usage or runtime error, 130 interrupted; the server and the loads are ended on every path."""

import argparse
import os
import sys
import tempfile
import time

import ringbench as rb

SAMPLE_EVERY_S = 10
WARMUP_S = 20  # samples up to here set the baseline
LOADS_GRACE_S = 60  # after the last sample, for the loads to finish and report


def run():
    ap = argparse.ArgumentParser(prog="scripts/soak.sh", description=(
        "ringload at a steady rate against one ringecho over TCP, UDP and a Unix socket; "
        "fails on RSS growth, a descriptor leak, or a failed load."))
    ap.add_argument("duration", nargs="?", default="60s", metavar="DURATION", help="e.g. 60s, 10m (default 60s)")
    args = ap.parse_args()
    secs = rb.parse_duration(args.duration)
    if secs < WARMUP_S:
        print(f"soak: DURATION must be at least {WARMUP_S}s", file=sys.stderr)
        return 2
    os.chdir(rb.REPO)
    rb.cargo_build("ringecho", "ringload")
    b = rb.DEFAULT_BIN_DIR
    with tempfile.TemporaryDirectory() as work:
        return soak(b, secs, work)


def soak(b, secs, work):
    sock = f"{work}/echo.sock"
    # One-page buffers: the whole pool is touched within the warm-up, so RSS after it
    # measures leaks, not a lazily faulted pool.
    server = rb.start_server([f"{b}/ringecho", "--tcp", "127.0.0.1:0", "--udp", "127.0.0.1:0", "--unix", sock,
                              "--idle-timeout", "30s", "--buffers", "512", "--buffer-size", "4KiB",
                              "--max-conn-buffer", "64KiB"], listeners=3)
    tcp, udp = server.addr("tcp"), server.addr("udp")
    duration = f"{int(secs)}s" if secs == int(secs) else f"{secs}s"
    print(f"soak: ringecho pid {server.pid} (tcp {tcp}, udp {udp}, unix {sock}) for {duration}", flush=True)

    common = ["-d", duration, "-w", "0s", "--verify"]
    loads = {
        "tcp": rb.start_ringload(b, f"tcp://{tcp}", ["-c", "50", "--rate", "5000", "--size", "64..2048", *common]),
        "udp": rb.start_ringload(b, f"udp://{udp}", ["-c", "8", "--rate", "3000", "--size", "64..1400",
                                                     "--udp-timeout", "500ms", *common]),
        "unix": rb.start_ringload(b, f"unix://{sock}", ["-c", "10", "--rate", "2000", "--size", "512", *common]),
    }
    started = time.monotonic()

    print(f"{'t_s':>6} {'rss_kib':>10} {'fds':>6}", flush=True)
    base_rss = base_fds = None
    fail = False
    t = 0
    while t < secs:
        t += SAMPLE_EVERY_S
        time.sleep(max(0.0, started + t - time.monotonic()))
        if server.gone():
            break  # reported below, after the loads' results
        rss, fds = rb.rss_kib(server.pid), rb.open_fds(server.pid)
        print(f"{t:>6d} {rss:>10d} {fds:>6d}", flush=True)
        if t <= WARMUP_S:
            base_rss, base_fds = rss, fds
            continue
        if rss > base_rss + base_rss // 20:
            print(f"soak: RSS grew more than 5% ({base_rss} -> {rss} KiB)")
            fail = True

    deadline = time.monotonic() + LOADS_GRACE_S
    docs = {}
    for name, load in loads.items():
        try:
            docs[name] = rb.finish_ringload(load, timeout=max(0.0, deadline - time.monotonic()))
        except rb.LoadError as e:
            docs[name] = e
        code = load.proc.returncode
        if code != 0:
            print(f"soak: a load run failed (exit {code})")
            fail = True
    for name, d in docs.items():
        if isinstance(d, rb.LoadError):
            print(f"soak: {name:>4}: no result: {d}")
            fail = True
            continue
        c, failed = d["counters"], rb.failed(d)
        print(f"soak: {name:>4}: {c['completed']} answered, {d['throughput']['msgs_per_s']:.0f} msg/s, "
              f"p99 {d['latency']['corrected']['p99'] / 1e3:.1f} µs, mismatched {c['mismatched_messages']}, "
              f"lost {c['lost']}, failed {failed}")
        if failed > 0:
            print(f"soak: {name:>4}: {failed} message(s) failed")
            fail = True

    if server.gone():
        print(f"soak: ringecho exited during the soak (status {server.child.proc.returncode})")
        fail = True
    else:
        rss, fds = rb.rss_kib(server.pid), rb.open_fds(server.pid)
        if fds > base_fds:
            print(f"soak: descriptors leaked ({base_fds} -> {fds} after the load ended)")
            fail = True
    rb.stop_server(server)
    if not server.gone():
        print(f"soak: ringecho pid {server.pid} is still running")
        fail = True
    if not fail:
        print(f"soak: passed (RSS {base_rss} -> {rss} KiB, descriptors {base_fds} -> {fds})")
    return 1 if fail else 0


if __name__ == "__main__":
    rb.main(run)
