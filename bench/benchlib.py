"""What the bench scripts share: processes stopped by PID, /proc readings, the machine's
description, the release build, and writing one script's section of BENCHMARKS.md."""

import os
import platform
import signal
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS_MD = os.path.join(REPO, "BENCHMARKS.md")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Fatal(Exception):
    """A step failed; the message says which and where its log is."""


class Processes:
    """Every process a script starts, stopped by PID (SIGTERM, then SIGKILL)."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.procs = []  # (name, Popen, log path)

    def start(self, name, argv, env=None):
        path = os.path.join(self.workdir, f"{name}.log")
        out = open(path, "wb")
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=env,
        )
        out.close()
        self.procs.append((name, proc, path))
        return proc, path

    def check_alive(self, proc=None):
        """Fatal if `proc` (or, without it, any process started here) has exited."""
        for name, p, path in self.procs:
            if (proc is None or p is proc) and p.poll() is not None:
                raise Fatal(f"{name} (pid {p.pid}) exited with {p.returncode}; see {tail(path)}")

    def stop(self, procs):
        """Stops `procs` (Popen objects started here): SIGTERM, SIGKILL after 10 s."""
        for proc in procs:
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                name = next((n for n, p, _ in self.procs if p is proc), "?")
                log(f"{name} (pid {proc.pid}) ignored SIGTERM; killing it")
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        self.procs = [entry for entry in self.procs if entry[1] not in procs]

    def stop_all(self):
        self.stop([p for _, p, _ in self.procs])


def tail(path, lines=15):
    """The last lines of a log, for error messages."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace").splitlines()[-lines:]
    except OSError:
        return path
    return path + ":\n    " + "\n    ".join(text)


def status_kb(pid, key):
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM, Threads...)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    """utime + stime of a process, all threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def machine():
    model = "unknown CPU"
    mem_kb = 0
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return f"{os.cpu_count()} CPUs ({model}), {mem_kb / 1048576:.1f} GiB RAM, Linux {platform.release()}"


class RssSampler(threading.Thread):
    """Samples VmRSS of some PIDs every `period` seconds; keeps the maximum per PID."""

    def __init__(self, pids, period):
        super().__init__(daemon=True)
        self.period = period
        self.max_kb = {pid: 0 for pid in pids}
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            for pid in self.max_kb:
                try:
                    self.max_kb[pid] = max(self.max_kb[pid], status_kb(pid, "VmRSS"))
                except OSError:
                    pass
            self.stop.wait(self.period)


def git_describe():
    out = subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def build(skip):
    """The release `siteward` (built first unless `skip`)."""
    target_dir = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
    binary = os.path.join(target_dir, "release", "siteward")
    if not skip:
        log("building siteward (cargo build --release -p siteward)")
        subprocess.run(["cargo", "build", "--release", "-p", "siteward"], cwd=REPO, check=True)
    if not os.access(binary, os.X_OK):
        raise Fatal(f"{binary} is missing (set CARGO_TARGET_DIR or drop --skip-build)")
    return binary


def write_section(begin, end, body):
    """Puts `body` between the `begin` and `end` markers of BENCHMARKS.md, replacing what
    was there, or appends it with its markers; the other sections stay as they are."""
    section = f"{begin}\n{body.strip()}\n{end}"
    try:
        with open(BENCHMARKS_MD) as f:
            text = f.read()
    except FileNotFoundError:
        text = "# Benchmarks\n\nRe-run a section with the command it shows (add `--write` to update this file).\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    with open(BENCHMARKS_MD, "w") as f:
        f.write(text)
    log(f"wrote {BENCHMARKS_MD}")
