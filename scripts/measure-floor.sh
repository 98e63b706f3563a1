#!/usr/bin/env bash
# The latency floor: one connection, one message in flight, TCP and UDP round-trip p50/p99
# with and without --spin (busy polling, on both ringecho and ringload), beside sockperf's
# own ping-pong pair (Debian's sockperf). Servers pinned to CPU 0, clients to CPU 1; runs
# interleaved, medians of RUNS, ratios to sockperf. sockperf reports one-way latency (half
# the round trip): its figures are doubled. Each process it starts is ended by its PID.
#
# usage: scripts/measure-floor.sh [RUNS] [SECONDS]   (defaults: 3 runs of 10 s)
#
# The work is done by scripts/lib/measure_floor.py with scripts/lib/ringbench.py.
set -euo pipefail
. "$(dirname "$0")/lib/exec-python.sh" measure_floor.py "$@"
