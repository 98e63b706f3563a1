"""The capacity search behind scripts/capacity.sh (see its header): ringload
--find-max-rate against a fresh ringecho per run, backends interleaved. Exit 0 when
every search found an answer, 1 when one found none, 2 usage or runtime error, 130
interrupted; every server is ended by PID and checked gone on every path."""

import argparse
import json
import os
import sys
import time

import ringbench as rb

BACKENDS = ("uring", "epoll")
SERVER_CPU, LOAD_CPU = 0, 1


def run():
    ap = argparse.ArgumentParser(prog="scripts/capacity.sh", description=(
        "The highest rate ringecho sustains under an SLO, per backend (ringload --find-max-rate)."))
    ap.add_argument("--runs", type=rb.at_least(1), default=2, help="searches per backend (default 2)")
    ap.add_argument("--slo", default="p99<1ms", help="the objective (default p99<1ms)")
    ap.add_argument("--step-duration", default="3s", help="measured time per step (default 3s)")
    ap.add_argument("--warmup", default="1s", help="warm-up per step (default 1s)")
    ap.add_argument("--start-rate", default="10k", help="the first rate tried (default 10k)")
    ap.add_argument("--precision", default="5%", help="bisection precision (default 5%%)")
    ap.add_argument("--connections", type=rb.at_least(1), default=50, help="connections (default 50)")
    ap.add_argument("--repeat", type=rb.at_least(1), default=1,
                    help="runs per step, judged on their medians (default 1)")
    ap.add_argument("--max-duration", default="10m", help="bound of each search (default 10m)")
    ap.add_argument("--bin-dir", help="run the ringecho and ringload in DIR instead of building")
    ap.add_argument("--out", help="directory for the JSON and SVG files (default results/capacity-<timestamp>)")
    args = ap.parse_args()
    budget = rb.parse_duration(args.max_duration)
    if os.cpu_count() < 2:
        raise rb.ScriptError("needs two CPUs: the server on CPU 0, ringload on CPU 1")
    os.chdir(rb.REPO)
    if args.bin_dir:
        b = args.bin_dir
        rb.check_binaries(b, "ringecho", "ringload")
    else:
        rb.cargo_build("ringecho", "ringload")
        b = rb.DEFAULT_BIN_DIR
    out = args.out or f"results/capacity-{time.strftime('%Y%m%d-%H%M%S')}"
    os.makedirs(out, exist_ok=True)

    answers = {backend: [] for backend in BACKENDS}
    for i in range(args.runs):
        for backend in BACKENDS:
            answers[backend].append(search(b, backend, i + 1, args, budget, out))

    print(f"\ncapacity under SLO {args.slo} (ringecho on CPU {SERVER_CPU}, ringload on CPU {LOAD_CPU}, "
          f"{args.connections} connections × 64 B), {args.runs} search(es) per backend:")
    medians = {}
    for backend in BACKENDS:
        found = [a for a, _ in answers[backend] if a is not None]
        shown = ", ".join(describe(a, lower) for a, lower in answers[backend])
        medians[backend] = rb.median(found) if found else None
        med = f"median {medians[backend]:,.0f} msg/s" if found else "no answer"
        print(f"  {backend:<6} {shown}   ({med})")
    if medians["uring"] and medians["epoll"]:
        print(f"  uring ÷ epoll: {medians['uring'] / medians['epoll']:.3f}")
    print(f"results in {out}/")
    return 0 if all(a is not None for runs in answers.values() for a, _ in runs) else 1


def describe(answer, lower):
    if answer is None:
        return "none"
    return f"{'≥ ' if lower else ''}{answer:,.0f} msg/s"


def search(b, backend, n, args, budget, out):
    """One search against a fresh, pinned ringecho; returns (answer or None, lower bound).
    The server is ended by PID and checked gone before this returns."""
    server = rb.start_server([f"{b}/ringecho", "--backend", backend, "--tcp", "127.0.0.1:0",
                              "--cpus", str(SERVER_CPU), "--workers", "1"], cpu=SERVER_CPU)
    name = f"{backend}-{n}"
    try:
        print(f"{name}: ringecho pid {server.pid} on {server.addr('tcp')}", flush=True)
        load = rb.start_ringload(b, f"tcp://{server.addr('tcp')}", [
            "--find-max-rate", "--slo", args.slo, "-c", str(args.connections),
            "--step-duration", args.step_duration, "-w", args.warmup, "--start-rate", args.start_rate,
            "--precision", args.precision, "--max-duration", args.max_duration, "--label", name,
            "--repeat", str(args.repeat),
            "--server-pid", str(server.pid)], cpu=LOAD_CPU)
        # The search is bounded by --max-duration; a last step may run past it.
        doc = rb.finish_ringload(load, timeout=budget + 120)
    finally:
        pid = server.pid
        rb.stop_server(server)
        if not server.gone() or (os.path.exists(f"/proc/{pid}/stat") and _same_process(pid)):
            raise rb.ScriptError(f"ringecho pid {pid} still present after it was stopped")
    with open(f"{out}/{name}.json", "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    svg = f"{out}/{name}.svg"
    plot = rb.Child([f"{b}/ringload", "plot", f"{out}/{name}.json", "-o", svg])
    plot.proc.wait(timeout=60)
    if plot.proc.returncode != 0:
        print(f"warning: {name}: no plot: {plot.stderr_text().strip()[:200]}", file=sys.stderr)
    plot.release()
    s = doc.get("search") or {}
    answer, lower = s.get("answer"), bool(s.get("lower_bound"))
    print(f"{name}: {describe(answer, lower)}{' (lower bound: the client fell behind its schedule)' if lower else ''}, "
          f"{len(s.get('steps', []))} steps{', stopped: ' + s['stopped'] if s.get('stopped') else ''}", flush=True)
    return answer, lower


def _same_process(pid):
    """Whether /proc/PID is still a ringecho (a reused PID is someone else's)."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip() == "ringecho"
    except OSError:
        return False


if __name__ == "__main__":
    rb.main(run)
