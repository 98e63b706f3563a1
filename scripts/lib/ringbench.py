"""The procedures the measurement scripts share (bench, capacity, measure-server,
measure-client, measure-throughput, measure-floor, soak), each written once: start and stop
a server, read a process's CPU, memory and descriptors from /proc (and the CPU of reaped
children), pick a free loopback port, take medians, hold N idle connections, run a load
client and read its result.

Invariants: every process a script starts goes through `Child`, which remembers it by
PID; `main` ends each one still running (SIGTERM, a bounded wait, then SIGKILL) on every
exit path, Ctrl-C and SIGTERM included, and signals no process it did not start;
`check_ended` lets a section check, by PID, that every process it started has been
reaped. Every wait here is bounded in time.

Python 3.11 standard library only. The scripts in this directory import it by name: a
script's own directory is the first entry of `sys.path`.
"""

import argparse
import json
import os
import re
import resource
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

#: The workspace root; scripts run from there so that relative paths mean what they did.
REPO = Path(__file__).resolve().parents[2]
#: Where `cargo build --release` puts the binaries.
DEFAULT_BIN_DIR = "target/release"

_TICK = os.sysconf("SC_CLK_TCK")


class ScriptError(Exception):
    """A failure the script reports as `error: ...`, exiting 2."""


class LoadError(ScriptError):
    """A load client that produced no result; the message is the start of its stderr."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived. A BaseException, so `except Exception` cannot swallow it."""


# ---------------------------------------------------------------------------------------
# Running a script

def main(run):
    """Runs `run()`, which returns the exit code, and exits with it.

    SIGINT and SIGTERM interrupt it (exit 130); a ScriptError prints `error: ...` (exit
    2). On every path, each child still running is ended by PID before exiting.
    """

    def on_signal(signum, _frame):
        # Cleanup that follows must not be interrupted in turn.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Interrupted(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 2
    try:
        code = run()
    except Interrupted:
        print("interrupted", file=sys.stderr)
        code = 130
    except ScriptError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
    finally:
        left = end_all()
        if left:
            print(f"error: still running after SIGKILL: {left}", file=sys.stderr)
            code = code or 2
    sys.exit(code)


def cargo_build(*packages):
    """`cargo build --release -q` of the given packages, in the workspace."""
    cmd = ["cargo", "build", "--release", "-q"] + [a for p in packages for a in ("-p", p)]
    try:
        r = subprocess.run(cmd, cwd=REPO, timeout=3600)
    except FileNotFoundError as e:
        raise ScriptError(f"cannot run cargo: {e}") from None
    except subprocess.TimeoutExpired:
        raise ScriptError("cargo build took more than an hour") from None
    if r.returncode != 0:
        raise ScriptError(f"{' '.join(cmd)} failed (exit {r.returncode})")


def check_binaries(bin_dir, *names):
    """Fails at once, naming the file, unless each of `names` is an executable in `bin_dir`."""
    for name in names:
        path = Path(bin_dir) / name
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ScriptError(f"{path}: no such executable")


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_duration(text):
    """Seconds in a duration as ringload and epoll-client take it (`500ms`, `5s`, `10m`,
    `1m30s`), or in a bare number of seconds."""
    text = text.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    if not re.fullmatch(f"(?:{_DURATION_PART.pattern})+", text):
        raise ScriptError(f"bad duration {text!r} (e.g. 500ms, 5s, 10m)")
    unit = {"ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * unit[u] for n, u in _DURATION_PART.findall(text))


_RATE = re.compile(r"(\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\s*([kKMG]?)")


def parse_rate(text):
    """Messages per second as ringload takes them (`20000`, `50k`, `1.5M`), as a float."""
    m = _RATE.fullmatch(text.strip())
    if not m or float(m[1]) <= 0:
        raise ScriptError(f"bad rate {text!r} (e.g. 20000, 50k, 1.5M)")
    return float(m[1]) * {"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}[m[2]]


def rate_arg(rate):
    """A rate as a command-line argument: `50000`, not `50000.0` or `5e+04`."""
    return str(int(rate)) if rate == int(rate) else repr(rate)


def at_least(minimum, kind=int):
    """An argparse type: a number of `kind` no smaller than `minimum`."""

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}: {text!r}")
        return value

    return parse


def cpu_model():
    """The first `model name` in /proc/cpuinfo, whitespace collapsed."""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return " ".join(line.split(":", 1)[1].split())
    return "unknown CPU"


# ---------------------------------------------------------------------------------------
# Child processes

_children = []
# Every child ever started, so that a section can check by PID that each one it started
# has been reaped (`check_ended`).
_started = []


class Child:
    """A process this script started, pinned with taskset when `cpu` is given.

    Stdout is a pipe (`stdout_pipe`) or a temporary file, stderr a temporary file, so a
    child never blocks on output nobody reads yet; both are read after it exits.
    """

    def __init__(self, cmd, *, cpu=None, stdout_pipe=False):
        cmd = [str(a) for a in cmd]
        self.program = os.path.basename(cmd[0])
        self.cmd = (["taskset", "-c", str(cpu)] if cpu is not None else []) + cmd
        self.err = tempfile.TemporaryFile()
        self.out = subprocess.PIPE if stdout_pipe else tempfile.TemporaryFile()
        try:
            # taskset execs the command, so the PID is the command's.
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self.out, stderr=self.err)
        except OSError as e:
            self.release()
            raise ScriptError(f"cannot start {cmd[0]}: {e}") from None
        _children.append(self)
        _started.append(self)

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc.poll() is None

    def stderr_text(self):
        self.err.seek(0)
        return self.err.read().decode(errors="replace")

    def stdout_text(self):
        """What it wrote, when stdout is a file."""
        self.out.seek(0)
        return self.out.read().decode(errors="replace")

    def end(self, timeout=10.0):
        """SIGTERM, up to `timeout` s for it to exit, then SIGKILL; returns once reaped.

        Popen signals only a child it has not reaped yet, so a PID the kernel has since
        given to another process is never signalled.
        """
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self):
        self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            raise ScriptError(f"{self.program} (pid {self.pid}) still present 5 s after SIGKILL") from None

    def release(self):
        """Closes its output files; an exited child is forgotten."""
        for f in (getattr(self, "out", None), self.err):
            if f is not None and f is not subprocess.PIPE:
                f.close()
        if self in _children and not self.running():
            _children.remove(self)


def started_mark():
    """A mark for `check_ended`: how many children have been started so far."""
    return len(_started)


def check_ended(mark):
    """Fails, naming each by program and PID, unless every child started since `mark` has
    exited and been reaped (its status collected, so its PID is no longer ours)."""
    left = [f"{c.program} pid {c.pid}" for c in _started[mark:] if c.proc.poll() is None]
    if left:
        raise ScriptError(f"still running: {', '.join(left)}")
    return [c.pid for c in _started[mark:]]


def end_all(timeout=10.0):
    """Ends every child still running: SIGTERM to all, then each gets what is left of
    `timeout`, then SIGKILL. Returns a description of any still present afterwards."""
    live = [c for c in _children if c.running()]
    for c in live:
        c.proc.terminate()
    deadline = time.monotonic() + timeout
    left = []
    for c in live:
        try:
            c.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                c.kill()
            except ScriptError:
                left.append(f"{c.program} pid {c.pid}")
    return ", ".join(left)


# ---------------------------------------------------------------------------------------
# Servers

@dataclass
class Server:
    """A started server and the addresses it printed, in order: (transport, address)."""

    child: Child
    listeners: list
    unread: bytes = b""

    @property
    def pid(self):
        return self.child.pid

    def addr(self, transport):
        for t, a in self.listeners:
            if t == transport:
                return a
        raise ScriptError(f"{self.child.program} printed no `listening {transport}` line")

    def gone(self):
        """True once the process has exited and been reaped."""
        return not self.child.running()


def start_server(cmd, *, cpu=None, listeners=1, timeout=10.0):
    """Starts a server and reads its `listening <transport> <addr>` lines, one per listener.

    Fails (and ends the process) if it exits, prints anything else first, or has not
    printed `listeners` lines within `timeout` s.
    """
    child = Child(cmd, cpu=cpu, stdout_pipe=True)
    fd = child.proc.stdout.fileno()
    buf, found = b"", []
    deadline = time.monotonic() + timeout
    try:
        while True:
            while b"\n" in buf and len(found) < listeners:
                raw, buf = buf.split(b"\n", 1)
                line = raw.decode(errors="replace")
                parts = line.split()
                if len(parts) < 3 or parts[0] != "listening":
                    raise ScriptError(f"{child.program} printed {line!r} where `listening <transport> <addr>` was expected")
                found.append((parts[1], parts[2]))
            if len(found) == listeners:
                return Server(child, found, buf)
            left = deadline - time.monotonic()
            if left <= 0:
                raise ScriptError(f"{child.program} printed {len(found)} of {listeners} listening line(s) within {timeout:g} s")
            if not select.select([fd], [], [], left)[0]:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                child.end(timeout=5)
                raise ScriptError(f"{child.program} exited (status {child.proc.returncode}) after {len(found)} of "
                                  f"{listeners} listening line(s); stderr: {child.stderr_text().strip()[-500:]!r}")
            buf += chunk
    except BaseException:
        child.end(timeout=5)
        child.release()
        raise


def stop_server(server, *, timeout=15.0):
    """SIGTERM, up to `timeout` s to drain and exit, then SIGKILL. Returns the counters of
    its last `totals:` line (name -> value, as text), empty if it printed none. Returns
    only once the process is reaped."""
    p = server.child.proc
    p.terminate()
    try:
        rest, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        try:
            rest, _ = p.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            raise ScriptError(f"{server.child.program} (pid {p.pid}) still present 5 s after SIGKILL") from None
    server.child.release()
    text = (server.unread + (rest or b"")).decode(errors="replace")
    totals = [line for line in text.splitlines() if line.startswith("totals:")]
    return parse_pairs(totals[-1][len("totals:"):]) if totals else {}


def parse_pairs(text):
    """`name=value name=value ...` -> {name: value}, values as text."""
    return dict(kv.split("=", 1) for kv in text.split() if "=" in kv)


# ---------------------------------------------------------------------------------------
# /proc

def _read_proc(pid, name):
    try:
        with open(f"/proc/{pid}/{name}") as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError):
        raise ScriptError(f"process {pid} is gone (reading /proc/{pid}/{name})") from None


def cpu_seconds(pid):
    """utime + stime of `pid`, in seconds, from /proc/PID/stat. Fields are counted after
    the last `)`: the command name before it may hold spaces and parentheses."""
    fields = _read_proc(pid, "stat").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _status_kib(pid, key):
    for line in _read_proc(pid, "status").splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0  # absent, as in a zombie


def rss_kib(pid):
    """Resident set size (VmRSS), KiB."""
    return _status_kib(pid, "VmRSS")


def peak_rss_kib(pid):
    """Peak resident set size (VmHWM), KiB."""
    return _status_kib(pid, "VmHWM")


def child_cpu():
    """CPU seconds (utime + stime) of this script's children reaped so far. A script that
    reaps each client before starting the next gets one client's whole-process CPU as the
    difference of two readings."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def open_fds(pid):
    """Descriptors open in `pid`."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        raise ScriptError(f"process {pid} is gone (reading /proc/{pid}/fd)") from None


def free_port():
    """A loopback port nothing listens on now: a TCP port bound and released at once, free
    for UDP too in practice. Racy by nature; for programs that cannot be given port 0."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------
# Figures

def median(values):
    """The median; with an even count, the mean of the middle two."""
    return statistics.median(list(values))


def median_run(runs, key):
    """The run in the middle when sorted by `key` (the upper middle of an even count): a
    whole run, so its figures belong together."""
    ranked = sorted(runs, key=key)
    return ranked[len(ranked) // 2]


# ---------------------------------------------------------------------------------------
# Idle connections

def idle_connections(server, addr, *, count=10_000, sample_every, settle_s=0.0, timeout=120.0):
    """The server's RSS (KiB) before and while `count` idle TCP connections to `addr` are
    open: raises RLIMIT_NOFILE, opens them, echoes one byte on every `sample_every`-th,
    waits `settle_s`, reads the RSS, closes them. Returns (before, with)."""
    host, port = addr.rsplit(":", 1)
    host = host.strip("[]")
    before = rss_kib(server.pid)
    # Soft and hard both set to 2 × count, as the scripts always did: children started
    # afterwards inherit it, and ringecho sizes its descriptor table by it.
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (2 * count, 2 * count))
    except (ValueError, OSError) as e:
        raise ScriptError(f"cannot set RLIMIT_NOFILE to {2 * count} (hard limit "
                          f"{resource.getrlimit(resource.RLIMIT_NOFILE)[1]}): {e}") from None
    deadline = time.monotonic() + timeout
    socks = []
    try:
        for _ in range(count):
            left = deadline - time.monotonic()
            if left <= 0:
                raise ScriptError(f"opened {len(socks)} of {count} connections to {addr} within {timeout:g} s")
            socks.append(socket.create_connection((host, int(port)), timeout=min(left, 5.0)))
        for s in socks[::sample_every]:
            s.sendall(b"x")
            if s.recv(1) != b"x":
                raise ScriptError(f"an idle connection to {addr} was not echoed")
        time.sleep(settle_s)
        return before, rss_kib(server.pid)
    except OSError as e:
        raise ScriptError(f"idle connections to {addr}: {e}") from None
    finally:
        for s in socks:
            s.close()


# ---------------------------------------------------------------------------------------
# Load clients

def start_ringload(bin_dir, target, args, *, cpu=None):
    """Starts ringload against `target` with `args`, JSON to stdout, no progress; pinned
    (taskset and `--cpus`) to `cpu` when given. `finish_ringload` reads the result."""
    cmd = [f"{bin_dir}/ringload", target, *args, "--no-progress", "--json", "-"]
    if cpu is not None:
        cmd += ["--cpus", str(cpu)]
    return Child(cmd, cpu=cpu)


def finish_ringload(load, *, timeout, check=False):
    """Waits up to `timeout` s for a started ringload and returns its parsed JSON
    document. LoadError (its stderr) when it printed none, did not finish in time, or,
    with `check`, exited non-zero."""
    try:
        try:
            load.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            load.end(timeout=5)
            raise LoadError(f"ringload did not finish within {timeout:g} s") from None
        out, err = load.stdout_text(), load.stderr_text().strip()
        if check and load.proc.returncode != 0:
            raise LoadError(f"ringload exited {load.proc.returncode}: {err[:300]}")
        if not out.strip():
            raise LoadError(err[:300])
        try:
            return json.loads(out)
        except ValueError as e:
            raise LoadError(f"ringload printed no JSON document ({e}): {err[:300]}") from None
    finally:
        load.release()


def ringload(bin_dir, target, args, *, cpu=None, timeout, check=False):
    """Runs ringload to the end (`start_ringload` + `finish_ringload`)."""
    return finish_ringload(start_ringload(bin_dir, target, args, cpu=cpu), timeout=timeout, check=check)


def failed(doc):
    """Messages of a ringload run that failed, each counted once: the document's `failed`."""
    if "failed" in doc:
        return int(doc["failed"])
    # Mirrors `Counters::failed()` in loadgen/src/counters.rs; used only for documents
    # from a ringload older than the top-level `failed` field.
    c = doc["counters"]
    return c["failed_messages"] + c["mismatched_messages"] + c["lost"] + c["unanswered_at_end"] + c["backlog_overflow"]


def kv_client(program, cmd, *, timeout, cpu=None):
    """Runs a comparison client of benches (`program`: its path) with `cmd` as arguments to
    the end, given up after `timeout` s, and returns its `name=value` result line (numbers
    as floats, anything else as text). ScriptError (its stderr) when it exits non-zero."""
    name = os.path.basename(program)
    child = Child([program, *cmd], cpu=cpu)
    try:
        try:
            child.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.end(timeout=5)
            raise ScriptError(f"{name} did not finish within {timeout:g} s") from None
        if child.proc.returncode != 0:
            raise ScriptError(f"{name} exited {child.proc.returncode}: {child.stderr_text().strip()[:300]}")
        pairs = parse_pairs(child.stdout_text())
    finally:
        child.release()

    def value(v):
        try:
            return float(v)
        except ValueError:
            return v

    return {k: value(v) for k, v in pairs.items()}


def epoll_client(bin_dir, addr, *, conns, size, duration, warmup="1s", cpu=None, udp=False):
    """Runs benches' epoll-client (`--udp` for datagrams) and returns its `name=value`
    result line as numbers; it runs for `duration` + `warmup`, given up 60 s after that."""
    timeout = parse_duration(duration) + parse_duration(warmup) + 60
    return kv_client(f"{bin_dir}/epoll-client", [*(["--udp"] if udp else []), addr, "-c", conns, "-s", size,
                                                 "-d", duration, "--warmup", warmup], timeout=timeout, cpu=cpu)


def epoll_open_loop(bin_dir, addr, *, rate, conns, size, duration, warmup="1s", drain="1s", cpu=None, udp=False):
    """Runs benches' epoll-open-loop (the plain open-loop client) at `rate` msg/s and
    returns its `name=value` result line; it runs for `warmup` + `duration` + at most
    `drain`, given up 60 s after that."""
    timeout = parse_duration(duration) + parse_duration(warmup) + parse_duration(drain) + 60
    return kv_client(f"{bin_dir}/epoll-open-loop", [*(["--udp"] if udp else []), addr, "-r", rate_arg(rate),
                                                    "-c", conns, "-s", size, "-d", duration, "--warmup", warmup,
                                                    "--drain", drain], timeout=timeout, cpu=cpu)
