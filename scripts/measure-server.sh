#!/usr/bin/env bash
# Side-by-side server figures, pinned (servers on CPU 0, client on CPU 1), with the
# minimal epoll client as load: round trips/s and server CPU-µs per echoed message
# (utime+stime from /proc/PID/stat ÷ messages), median of N runs per cell, runs of the
# servers interleaved so drift hits both alike; then RSS with 10,000 idle connections.
#
# usage: scripts/measure-server.sh [RUNS] [DURATION]   (defaults: 3 runs of 5s)
#        TRANSPORT=udp scripts/measure-server.sh ...
# TCP servers: ringecho (uring) and benches' epoll-server (a minimal single-threaded mio loop).
# UDP servers: ringecho --udp and benches' udp-echo-floor (a blocking recvfrom/sendto loop);
# the client then uses 8 connected UDP sockets, one datagram in flight each.
#
# The work is done by scripts/lib/measure_server.py, with the procedures the scripts share in
# scripts/lib/ringbench.py.
set -euo pipefail
. "$(dirname "$0")/lib/exec-python.sh" measure_server.py "$@"
