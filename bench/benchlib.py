"""What the bench scripts share: processes stopped by PID, /proc readings, the machine's
description, the release build, writing one script's section of BENCHMARKS.md, and for the
tunnel benchmarks two network namespaces on a veth pair with ping and iperf3 between them."""

import json
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


# ---------------------------------------------------------------- commands and waiting


def run(argv, timeout=30):
    """Runs a command to completion; Fatal with its stderr if it fails."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Fatal(f"{' '.join(argv)} did not finish within {timeout}s") from None
    if out.returncode != 0:
        raise Fatal(f"{' '.join(argv)} failed ({out.returncode}): {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout


def wait_for(what, predicate, timeout, step=0.05, alive=None):
    """Bounded poll: the first truthy value of predicate(), or Fatal after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        if alive:
            alive()
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise Fatal(f"{what}: not within {timeout}s")
        time.sleep(step)


def tool_version(argv):
    out = subprocess.run(argv, capture_output=True, text=True)
    return (out.stdout + out.stderr).strip().splitlines()[0] if (out.stdout + out.stderr).strip() else "unknown"


def write_private(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    os.chmod(path, 0o600)


# ---------------------------------------------------------------- two namespaces


def peer_side(side):
    return "b" if side == "a" else "a"


class Network:
    """Namespaces A and B (`{ns_prefix}{pid}-a`, `-b`) on one veth pair
    (`{veth_prefix}{pid:x}va`, `vb`) with `underlay[side]`/24 on each end, named after this
    process; deleted by close()."""

    def __init__(self, underlay, ns_prefix, veth_prefix):
        pid = os.getpid()
        self.underlay = underlay
        self.ns = {"a": f"{ns_prefix}{pid}-a", "b": f"{ns_prefix}{pid}-b"}
        self.veth = {"a": f"{veth_prefix}{pid:x}va", "b": f"{veth_prefix}{pid:x}vb"}
        self.created = []

    def setup(self):
        """Creates both namespaces and the pair (close() undoes what got done if it fails)."""
        for side in "ab":
            run(["ip", "netns", "add", self.ns[side]])
            self.created.append(self.ns[side])
            run(["ip", "-n", self.ns[side], "link", "set", "lo", "up"])
        run([
            "ip", "link", "add", self.veth["a"], "netns", self.ns["a"], "type", "veth",
            "peer", "name", self.veth["b"], "netns", self.ns["b"],
        ])
        for side in "ab":
            run(["ip", "-n", self.ns[side], "addr", "add", f"{self.underlay[side]}/24", "dev", self.veth[side]])
            run(["ip", "-n", self.ns[side], "link", "set", self.veth[side], "up"])

    def exec(self, side, argv):
        return ["ip", "netns", "exec", self.ns[side]] + argv

    def ip(self, side, args):
        return run(["ip", "-n", self.ns[side]] + args)

    def close(self):
        for name in self.created:
            out = subprocess.run(["ip", "netns", "del", name], capture_output=True, text=True)
            if out.returncode != 0:
                log(f"warning: deleting namespace {name}: {out.stderr.strip()}")
        self.created.clear()


# ---------------------------------------------------------------- ping and iperf3

IPERF_PORT = 5201


def ping_once(net, side, target, source=None):
    bind = ["-I", source] if source else []
    out = subprocess.run(
        net.exec(side, ["ping", "-n", "-q", "-c", "1", "-W", "1"] + bind + [target]),
        capture_output=True, text=True,
    )
    return out.returncode == 0


def ping_stats(net, side, target, count, interval, source=None):
    """avg, p99 (nearest rank), mdev in ms, and the loss in %, from iputils ping."""
    deadline = int(count * interval) + 10
    bind = ["-I", source] if source else []
    out = subprocess.run(
        net.exec(side, ["ping", "-n", "-c", str(count), "-i", f"{interval:.3f}", "-W", "1", "-w", str(deadline)]
                 + bind + [target]),
        capture_output=True, text=True, timeout=deadline + 10,
    )
    rtts, sent, received, mdev = [], None, None, None
    for line in out.stdout.splitlines():
        words = line.split()
        for w in words:
            if w.startswith("time="):
                rtts.append(float(w[5:]))
        if "packets transmitted" in line:
            parts = line.split(",")
            sent, received = int(parts[0].split()[0]), int(parts[1].split()[0])
        if line.startswith("rtt min/avg/max/mdev = "):
            mdev = float(line.split("=", 1)[1].split()[0].split("/")[3])
    if sent is None or not rtts:
        raise Fatal(f"ping {target} from {side.upper()} got no reply:\n{out.stdout}{out.stderr}")
    rtts_sorted = sorted(rtts)
    rank = max(1, -(-99 * len(rtts_sorted) // 100))
    return {
        "avg": sum(rtts) / len(rtts),
        "p99": rtts_sorted[rank - 1],
        "mdev": mdev,
        "loss": 100.0 * (sent - received) / sent,
        "n": len(rtts),
    }


def wait_listening_tcp(net, side, port, proc, procs, timeout=20):
    def listening():
        out = subprocess.run(net.exec(side, ["ss", "-Hltn", f"sport = :{port}"]), capture_output=True, text=True)
        return out.returncode == 0 and out.stdout.strip() != ""

    wait_for(f"iperf3 server listening on port {port}", listening, timeout, alive=lambda: procs.check_alive(proc))


def iperf(net, target, streams, duration, bind=None):
    """Throughput (bits/s, as received by the server) and retransmits of one iperf3 run from
    A (from address `bind` if given) to the server on IPERF_PORT at `target`."""
    argv = net.exec("a", [
        "iperf3", "-c", target, "-p", str(IPERF_PORT), "-t", str(duration), "-O", "1",
        "-P", str(streams), "-J", "--connect-timeout", "5000",
    ] + (["-B", bind] if bind else []))
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 40)
    except subprocess.TimeoutExpired:
        raise Fatal(f"iperf3 -P {streams} to {target} did not finish within {duration + 40}s") from None
    try:
        data = json.loads(out.stdout)
    except ValueError:
        raise Fatal(f"iperf3 -P {streams} to {target}: no JSON ({out.returncode}): {out.stderr.strip()}") from None
    if "error" in data:
        raise Fatal(f"iperf3 -P {streams} to {target}: {data['error']}")
    end = data["end"]
    return {
        "bps": end["sum_received"]["bits_per_second"],
        "retransmits": end["sum_sent"].get("retransmits", 0),
    }


# ---------------------------------------------------------------- report units


def gbps(bps):
    return f"{bps / 1e9:.2f}"


def mb(kb):
    return kb / 1024
