#!/usr/bin/env bash
# Capacity: the highest open-loop rate ringecho sustains under an SLO, per backend.
# Builds release, then for each run (backends interleaved: uring, epoll, uring, epoll, …)
# starts a fresh ringecho pinned to CPU 0 (`--cpus 0 --workers 1`) and runs
#   ringload --cpus 1 --find-max-rate --slo SLO
# against it (pinned with taskset too), saving each search's JSON and plot SVG. Prints
# each backend's answers, their median, and the ratio uring ÷ epoll; a run whose answer
# is a lower bound (the client fell behind its schedule) or that found none is said so.
#
# usage: scripts/capacity.sh [--runs N] [--slo SLO] [--step-duration D] [--warmup D]
#                            [--start-rate R] [--precision P] [--connections N] [--repeat N]
#                            [--max-duration D] [--bin-dir DIR] [--out DIR]
#   defaults: 2 runs per backend, --slo 'p99<1ms', steps of 3s after 1s warm-up, from 10k,
#   precision 5%, 50 connections, 10m per search, results in results/capacity-<timestamp>/.
#
# Every server it starts is ended by PID (SIGTERM, then SIGKILL) and checked gone, on
# every exit path, Ctrl-C included. The work is done by scripts/lib/capacity.py, with the
# procedures the scripts share in scripts/lib/ringbench.py.
set -euo pipefail
. "$(dirname "$0")/lib/exec-python.sh" capacity.py "$@"
