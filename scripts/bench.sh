#!/usr/bin/env bash
# The benchmark matrix: backends × transports × connections × sizes, each cell against a
# fresh ringecho, ringload as the client, pinned (server CPU 0, ringload CPU 1) when
# there are two CPUs or more. Per cell: msg/s, MB/s, p50/p99/p99.9, the server's CPU-µs
# per message (utime+stime from /proc/PID/stat) and its peak RSS. Then RSS with 10,000
# idle connections per backend, SEND_ZC on/off for large messages, and UDP batching
# (UDP_GRO/UDP_SEGMENT on both sides, 8 flows × depth 16 × 64 B and 1,200 B, 8 × 1 × 64 B)
# against the same without and against a blocking recvfrom/sendto loop, in datagrams per
# server and per client CPU-second.
#
# Writes results/<timestamp>/*.json (ringload's JSON plus a "server" section per cell)
# and results/<timestamp>/summary.md, with ratios against the epoll backend measured in
# the same run.
#
# usage: scripts/bench.sh [--quick] [--seconds N] [--runs N] [--bin-dir DIR] [--only SECTION] [--rates LIST]
#   --quick: a subset that takes a few minutes.
#   --seconds N: seconds per cell (default 2 with --quick, 5 without).
#   --runs N: runs per cell (backends interleaved), the median by msg/s is reported
#             (default 1 with --quick, 3 without).
#   --bin-dir DIR: run the ringecho and ringload in DIR (relative to the current
#             directory) instead of building target/release; e.g. build an older commit
#             elsewhere and run the script once with each DIR to compare two versions.
#   --only SECTION: matrix, idle, zerocopy, udp-batching, ab or openloop-cost (repeatable);
#             default all.
#   --rates LIST: openloop-cost's offered rates, msg/s, comma-separated (default
#             10k,50k,100k).
#
# Section `ab`: `ringload ab` of the uring backend (A) against epoll (B) in the matrix's
# "tcp 50 connections × 64 B" cell, the servers started and pinned as in the matrix,
# --runs interleaved runs per side: medians with min–max, B/A ratios and whether each is
# beyond the spread of the runs (results/<timestamp>/ab-uring-vs-epoll-tcp-50x64.json and
# a section of summary.md). The matrix's row for that cell is the one run with the median
# msg/s; `ab` gives each figure's median and the spread, so `--only matrix --only ab`
# puts both side by side.
#
# Section `openloop-cost` (issue 25): ringload's open loop (`-r RATE`; also with
# `--send-window 400us`, and with `--user-timestamps`) against the plain
# one (benches' epoll-open-loop: one epoll set, one absolute timerfd re-armed to the next
# due time, each due message its own write) in "tcp 50 connections × 64 B", at each of
# --rates; per rate --runs pairs interleaved A B, B A, each client against a fresh ringecho
# (uring) pinned as in the matrix. Per rate: each client's median CPU per message (over
# the measured window, and over the whole process), the ratio ringload/plain, achieved
# msg/s, p50/p99, send lag p99 and the plain client's late sends, and which rates each kept
# on schedule (results/<timestamp>/openloop-cost.json and a section of summary.md). The
# comparison clients are always today's build of benches, also with --bin-dir.
#
# The work is done by scripts/lib/bench.py, with the procedures the scripts share in
# scripts/lib/ringbench.py.
set -euo pipefail
. "$(dirname "$0")/lib/exec-python.sh" bench.py "$@"
