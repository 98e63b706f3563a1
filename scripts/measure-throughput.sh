#!/usr/bin/env bash
# One-way TCP throughput, ringload beside iperf3, pinned (servers on CPU 0, clients on
# CPU 1): ringecho (`--buffer-size 64KiB --buffers 64`, as iperf3 moves 64 KiB pieces) with
# `discard@` and `source@` listeners against `ringload --mode send`
# and `--mode receive`, and `iperf3 -s -A 0` against `iperf3 -c ... -A 1` (and `-R` for
# the receive direction); 1 and 8 connections, 64 KiB writes, runs interleaved, median of
# RUNS per cell. Prints Gbit/s of each, the ratio ringload/iperf3, and each client's CPU per
# byte: utime+stime of the client process (as /proc/PID/stat counts it, read from its
# rusage when it is reaped) over every byte it moved, warm-up included; beside it
# ringload's own window figure and iperf3's cpu_utilization_percent over its bytes.
#
# usage: scripts/measure-throughput.sh [RUNS] [SECONDS] [--only send|receive]   (defaults: 3 runs of 10s, +1 s warm-up)
#
# Needs iperf3 (Debian's package). Ends only the processes it started, by PID.
# The work is done by scripts/lib/measure_throughput.py, with the procedures the scripts
# share in scripts/lib/ringbench.py.
set -euo pipefail
. "$(dirname "$0")/lib/exec-python.sh" measure_throughput.py "$@"
