#!/usr/bin/env bash
# ringload against the minimal epoll client, side by side, against one ringecho: pinned
# (server CPU 0, client CPU 1), runs interleaved, median of N. Per cell: msg/s, client
# CPU-µs per message (rusage of the client process ÷ messages it completed, warm-up
# included), server CPU-µs per message, p50/p99.
#
# usage: scripts/measure-client.sh [RUNS] [SECONDS]   (defaults: 3 runs of 5 s)
#
# The work is done by scripts/lib/measure_client.py, with the procedures the scripts share in
# scripts/lib/ringbench.py.
set -euo pipefail
. "$(dirname "$0")/lib/exec-python.sh" measure_client.py "$@"
