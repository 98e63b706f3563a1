#!/usr/bin/env bash
# Soak: ringload at a steady, moderate rate against one ringecho over TCP, UDP and a Unix
# socket at once, for DURATION, sampling the server's RSS and open descriptors every
# 10 s. Fails if RSS grows more than 5% after the warm-up sample, if descriptors leak, if
# any load run fails, or if any message of a load failed (ringload's `failed`). Ends the
# server and the loads it started, by PID, on every exit path, Ctrl-C included.
#
# usage: scripts/soak.sh [DURATION]      (default 60s; e.g. 10m)
#
# The work is done by scripts/lib/soak.py, with the procedures the scripts share in
# scripts/lib/ringbench.py.
set -euo pipefail
. "$(dirname "$0")/lib/exec-python.sh" soak.py "$@"
