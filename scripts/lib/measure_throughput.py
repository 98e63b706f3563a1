"""ringload's one-way throughput beside iperf3's, behind scripts/measure-throughput.sh (see
its header)."""

import argparse
import json
import os
import select
import shutil
import subprocess
import time

import ringbench as rb

#: The write size of both clients.
WRITE = "64K"


def seconds(text):
    """Whole seconds (`10` or `10s`): iperf3 takes whole seconds."""
    try:
        secs = rb.parse_duration(text)
    except rb.ScriptError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if secs < 1 or secs != int(secs):
        raise argparse.ArgumentTypeError(f"whole seconds, at least 1: {text!r}")
    return int(secs)


def start_iperf3_server(port, timeout=10.0):
    """`iperf3 -s -1 -A 0` on `port` (one test, then it exits); returns once it says it
    listens (bounded). A fresh server per test: a long-lived one was seen to hang in the
    second `-R -P 8` test here."""
    child = rb.Child(["iperf3", "-s", "-1", "-A", "0", "-p", port, "--forceflush"], stdout_pipe=True)
    fd = child.proc.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    while b"Server listening" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or not child.running():
            child.end(timeout=5)
            raise rb.ScriptError(f"iperf3 -s did not start listening on port {port}: {child.stderr_text()[:300]!r}")
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                continue
            buf += chunk
    return child


def iperf3(conns, secs, reverse):
    """One iperf3 client run against a fresh server: (Gbit/s, whole-process CPU ns per
    byte, its own CPU ns per byte)."""
    port = str(rb.free_port())
    server = start_iperf3_server(port)
    try:
        return iperf3_client(port, conns, secs, reverse)
    finally:
        server.end(timeout=5)
        server.release()


def iperf3_client(port, conns, secs, reverse):
    cmd = ["iperf3", "-c", "127.0.0.1", "-p", port, "-A", "1", "-P", conns, "-l", WRITE, "-t", secs, "-O", "1",
           "--json"] + (["-R"] if reverse else [])
    c0 = rb.child_cpu()
    child = rb.Child(cmd)
    try:
        try:
            child.proc.wait(timeout=secs + 60)
        except subprocess.TimeoutExpired:
            child.end(timeout=5)
            raise rb.ScriptError(f"iperf3 did not finish within {secs + 60} s") from None
        cpu = rb.child_cpu() - c0
        out = child.stdout_text()
        try:
            doc = json.loads(out)
        except ValueError:
            raise rb.ScriptError(f"iperf3 printed no JSON: {child.stderr_text()[:300]!r} {out[:300]!r}") from None
        if child.proc.returncode != 0 or "error" in doc:
            raise rb.ScriptError(f"iperf3 exited {child.proc.returncode}: {doc.get('error', '')}")
    finally:
        child.release()
    end = doc["end"]
    # What the client moved: sent in the normal direction, received with -R.
    summary = end["sum_received"] if reverse else end["sum_sent"]
    moved_all = sum(i["sum"]["bytes"] for i in doc["intervals"])  # the omitted second included
    own = end["cpu_utilization_percent"]["host_total"] / 100 * summary["seconds"] / max(summary["bytes"], 1)
    return summary["bits_per_second"] / 1e9, cpu / max(moved_all, 1) * 1e9, own * 1e9


def ringload(bin_dir, target, mode, conns, secs):
    """One ringload run: (Gbit/s, whole-process CPU ns per byte, its window figure)."""
    c0 = rb.child_cpu()
    doc = rb.ringload(bin_dir, f"tcp://{target}", ["--mode", mode, "-c", conns, "--write-size", "64KiB",
                                                   "-d", f"{secs}s", "-w", "1s"],
                      cpu="1", timeout=secs + 60, check=True)
    cpu = rb.child_cpu() - c0
    k, b = doc["counters"], doc["bulk"]
    moved_all = k["bytes_sent"] + k["bytes_received"]
    return b["gbit_per_s"], cpu / max(moved_all, 1) * 1e9, b["cpu_ns_per_byte"]


def run():
    ap = argparse.ArgumentParser(prog="scripts/measure-throughput.sh", description=(
        "ringload --mode send/receive against ringecho discard@/source@, beside iperf3, pinned, interleaved, medians."))
    ap.add_argument("runs", nargs="?", type=rb.at_least(1), default=3, metavar="RUNS", help="runs per cell (default 3)")
    ap.add_argument("secs", nargs="?", type=seconds, default=10, metavar="SECONDS",
                    help="measured seconds per run, after 1 s of warm-up (default 10s)")
    ap.add_argument("--only", choices=["send", "receive"], help="measure one direction only")
    args = ap.parse_args()
    runs, secs = args.runs, args.secs
    if shutil.which("iperf3") is None:
        raise rb.ScriptError("iperf3 is not installed (apt-get install iperf3)")
    os.chdir(rb.REPO)
    rb.cargo_build("ringecho", "ringload")
    b = rb.DEFAULT_BIN_DIR
    rb.check_binaries(b, "ringecho", "ringload")

    # iperf3 moves 64 KiB per write and per read (-l 64K) through one buffer; ringecho's
    # source writes --buffer-size pieces (16 KiB by default) and its discard receives into
    # a ring of --buffers of them, all cycling through the cache. Matching iperf3: 64 KiB
    # pieces from a pool of 64 (a few connections need no more). Measured here: the
    # defaults give 0.6-0.75x iperf3's Gbit/s, these 0.85-1.1x.
    srv = rb.start_server([f"{b}/ringecho", "--buffer-size", "64KiB", "--buffers", "64",
                           "--tcp", "discard@127.0.0.1:0", "--tcp", "source@127.0.0.1:0"],
                          cpu="0", listeners=2)
    discard, source = srv.listeners[0][1], srv.listeners[1][1]

    print(f"kernel {os.uname().release}, {os.cpu_count()} CPUs ({rb.cpu_model()}); servers on CPU 0, clients on CPU 1; "
          f"{runs} interleaved runs of {secs}s (+1s warm-up / -O 1), {WRITE} writes")
    print(f"{'cell':<14} {'client':<9} {'Gbit/s':>8} {'CPU ns/B':>9} {'own ns/B':>9}   runs (Gbit/s)", flush=True)
    for direction, mode, target, reverse in [("send", "send", discard, False), ("receive", "receive", source, True)]:
        if args.only not in (None, direction):
            continue
        for conns in (1, 8):
            res = {"ringload": [], "iperf3": []}
            for _ in range(runs):
                res["ringload"].append(ringload(b, target, mode, conns, secs))
                res["iperf3"].append(iperf3(conns, secs, reverse))
            for name, rows in res.items():
                med = [rb.median(col) for col in zip(*rows)]
                print(f"{f'{direction} x{conns}':<14} {name:<9} {med[0]:>8.2f} {med[1]:>9.3f} {med[2]:>9.3f}   "
                      f"{','.join(f'{r[0]:.2f}' for r in rows)}")
            g = [rb.median(r[0] for r in res[k]) for k in ("ringload", "iperf3")]
            c = [rb.median(r[1] for r in res[k]) for k in ("ringload", "iperf3")]
            print(f"{'':<14} ratio ringload/iperf3: Gbit/s {g[0] / g[1]:.2f}, client CPU per byte {c[0] / c[1]:.2f}",
                  flush=True)
    print("CPU ns/B: the client process's utime+stime over every byte it moved (warm-up included); own ns/B:\n"
          "ringload's load CPU per byte over its measured window, iperf3's cpu_utilization_percent.host_total.")
    rb.stop_server(srv)
    return 0


if __name__ == "__main__":
    rb.main(run)
