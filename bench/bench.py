#!/usr/bin/env python3
"""dockerfuse benchmark driver (stdlib only). Started by bench/run.sh, which
owns the container and the scratch directory and cleans up after us too.

Every workload runs through up to three kinds of path:
  dockerfuse  the FUSE mount of the container's root, once per transport
              asked for (--transports "exec local": paths dockerfuse-exec
              and dockerfuse-local, side by side)
  direct      /proc/<pid>/root of the container (the local physical limit)
  transport   what Docker itself offers without a mount: docker exec cat,
              docker exec -i sh -c 'cat > f', docker cp, docker exec tar...
Each path runs `warmup` unmeasured rounds then `repeats` measured ones; the
paths are interleaved round by round so background load hits all of them.
Samples are wall-clock seconds; the table shows medians and ratios of
medians, and compares them with the targets: the exec transport's
(dockerfuse-exec only), the local transport's (dockerfuse-local only) and
those of every mount (mount to ready, client RSS).

Next to each dockerfuse sample the mount's wait counts (`dockerfuse stats
--json` before and after): kernel requests, the waits among them (answered
only after a round trip to the satellite) and the satellite requests, per
kernel operation. Waits per file do not depend on the machine's load: they
are the primary figures. The "remote" group runs dockerfuse and the docker
CLI through delay_proxy.py (a TCP proxy in front of the engine's socket
that delays each direction by half the round-trip time).

--as-user NAME (bench/run.sh --as-user): the mounts are made by NAME and
everything that goes through them runs as NAME (root may not enter a
user's FUSE mount), with NAME's uid, gid and groups and a clean
environment; direct access and the docker CLI baselines stay root's.
"""

import argparse
import datetime
import errno
import grp
import hashlib
import io
import json
import os
import platform
import pwd
import random
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import threading
import time

MiB = 1 << 20
BIG_SIZE = 256 * MiB
TREE_DIRS = 100
TREE_FILES = 100  # per directory: 10,000 files
TREE_FILE_SIZE = 1000
CREATE_COUNT = 2000
CREATE_SIZE = 64
RAND_READS = 2048  # single thread; the 4-thread run does 4 x RAND_READS/4
RAND_EXEC_READS = 5  # docker exec dd per round (one exec per 4 KiB read)
RTT_OPS = 2000
ENV = dict(os.environ, LC_ALL="C")
DEVNULL = subprocess.DEVNULL
CLK_TCK = os.sysconf("SC_CLK_TCK")

GROUPS = ["ready", "walk", "tar", "read", "write", "dd", "create", "random", "rtt", "latency", "remote"]
USER_GROUPS = ["ready", "walk", "tar", "read", "write", "create"]  # those --as-user runs
REMOTE_DIRS, REMOTE_FILES = 50, 20  # 1,000 small files
REMOTE_CREATES, REMOTE_CREATE_SIZE = 200, 4096
REMOTE_BULK = 16 * MiB
GREP_PATTERN = "benchmark"  # in every file of the trees
DD_SIZE = 64 * MiB
LATENCY_CHANGES = 40  # per round


class BenchError(Exception):
    pass


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def run(argv, timeout=600, check=True, stdin=None, stdout=DEVNULL, env=None, **kw):
    try:
        r = subprocess.run(argv, stdin=stdin if stdin is not None else DEVNULL,
                           stdout=stdout, stderr=subprocess.PIPE,
                           timeout=timeout, env=env or ENV, **kw)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"timed out after {timeout}s: {shlex.join(argv)}") from e
    if check and r.returncode != 0:
        err = r.stderr.decode(errors="replace").strip()[-800:]
        raise BenchError(f"exit {r.returncode}: {shlex.join(argv)}\n{err}")
    return r


def out(argv, timeout=120):
    return run(argv, timeout=timeout, stdout=subprocess.PIPE).stdout.decode().strip()


def timed(argv, timeout=600, stdin=None, env=None, who=None):
    """Wall seconds of one command (output to /dev/null); `who`: a User
    to run it as (None: root, as started)."""
    kw = who.kw() if who else {}
    t0 = time.perf_counter()
    run(argv, timeout=timeout, stdin=stdin, env=env or (who.env if who else None), **kw)
    return time.perf_counter() - t0


class User:
    """The non-root user of --as-user: its ids, groups and a clean
    login-like environment. The mounts' runtime directory (state files of
    `dockerfuse list/stats`) is `home`/run, the user's own."""

    def __init__(self, name, home):
        pw = pwd.getpwnam(name)
        self.name, self.uid, self.gid, self.home = name, pw.pw_uid, pw.pw_gid, home
        self.groups = os.getgrouplist(name, pw.pw_gid)
        self.env = {"HOME": pw.pw_dir, "USER": name, "LOGNAME": name, "LC_ALL": "C",
                    "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
                    "DOCKERFUSE_RUNTIME_DIR": os.path.join(home, "run")}

    def kw(self):
        """subprocess arguments that run the child as the user (no extra
        process in between, so the timings are the workloads' own)."""
        return {"user": self.uid, "group": self.gid, "extra_groups": self.groups, "cwd": "/"}

    def describe(self):
        return {"name": self.name, "uid": self.uid, "gid": self.gid,
                "groups": sorted(grp.getgrgid(g).gr_name for g in self.groups)}


def bash(code):
    return ["bash", "-euo", "pipefail", "-c", code]


# --- processes: RSS and CPU -------------------------------------------------


def proc_status(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])  # kB
    except OSError:
        return None
    return None


def proc_cpu(pid):
    """(self, reaped children) CPU seconds of a process, or (0, 0)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return 0.0, 0.0
    fields = s[s.rindex(")") + 2:].split()
    ut, st, cut, cst = (int(x) for x in fields[11:15])
    return (ut + st) / CLK_TCK, (cut + cst) / CLK_TCK


def pidof(name):
    """The longest-running process of that name, as a list (empty if none):
    short-lived helpers of the same name come and go during a run."""
    best = None
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/comm") as f:
                if f.read().strip() != name:
                    continue
            with open(f"/proc/{p}/stat") as f:
                s = f.read()
            start = int(s[s.rindex(")") + 2:].split()[19])
        except (OSError, ValueError, IndexError):
            continue
        if best is None or start < best[0]:
            best = (start, int(p))
    return [best[1]] if best else []


def ppid(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    return int(s[s.rindex(")") + 2:].split()[1])


def find_satellite(container_id, path=None):
    """A satellite of the container (the one started from `path` if given)."""
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            # exe: a native satellite; cmdline: one run by qemu-user (binfmt)
            exe = os.readlink(f"/proc/{p}/exe")
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read()
            if ".dockerfuse-satellite-" not in exe and b"/.dockerfuse-satellite-" not in cmd:
                continue
            if path and path.encode() not in cmd:
                continue
            with open(f"/proc/{p}/cgroup") as f:
                if container_id in f.read():
                    return int(p)
        except OSError:
            pass
    return None


class Cpu:
    """CPU seconds used by the parties of a run, between start() and stop()."""

    def __init__(self, ctx, mount=None):
        self.pids = {"dockerd": pidof("dockerd"), "containerd": pidof("containerd"),
                     "shim": [ctx.shim_pid]}
        if mount is not None:
            self.pids["dockerfuse"] = [mount.pid]
            sat = find_satellite(ctx.container_id, mount.satellite_path())
            self.pids["satellite"] = [sat] if sat else []

    def snap(self):
        d = {}
        for k, pids in self.pids.items():
            # dockerd and containerd with the helpers they reaped (docker cp's tar)
            d[k] = sum(sum(proc_cpu(p)) if k in ("dockerd", "containerd") else proc_cpu(p)[0] for p in pids)
        # processes the shim reaped: runc and the tools a docker exec ran
        d["exec'd in container"] = proc_cpu(self.pids["shim"][0])[1]
        me = resource.getrusage(resource.RUSAGE_SELF)
        ch = resource.getrusage(resource.RUSAGE_CHILDREN)
        d["client tools"] = me.ru_utime + me.ru_stime + ch.ru_utime + ch.ru_stime
        return d

    def start(self):
        self.a = self.snap()
        return self

    def stop(self):
        b = self.snap()
        return {k: round(b[k] - self.a[k], 3) for k in b}


class Counting:
    """The wait counts of a mount between start() and stop() (None: no mount)."""

    def __init__(self, mt):
        self.mt = mt

    def start(self):
        self.a = self.mt.counts() if self.mt else None
        return self

    def stop(self):
        return diff_counts(self.a, self.mt.counts()) if self.mt else None


def diff_counts(a, b):
    """b - a: totals, {op: [requests, waits]}, {satellite request: sent}."""
    def ops(x):
        return {o["op"]: (o["requests"], o["waits"]) for o in x["ops"]}

    def sent(x):
        return {c["request"]: c["sent"] for c in x["sent"]}
    oa, ob, sa, sb = ops(a), ops(b), sent(a), sent(b)
    d_ops = {}
    for k, (r, w) in ob.items():
        r0, w0 = oa.get(k, (0, 0))
        if r - r0 or w - w0:
            d_ops[k] = [r - r0, w - w0]
    return {"requests": b["requests"] - a["requests"], "waits": b["waits"] - a["waits"],
            "sent": b["sent_total"] - a["sent_total"], "ops": d_ops,
            "sent_by": {k: v - sa.get(k, 0) for k, v in sb.items() if v - sa.get(k, 0)}}


class RssSampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.max_kb, self.stop_ev = pid, 0, threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            v = proc_status(self.pid, "VmRSS")
            if v:
                self.max_kb = max(self.max_kb, v)
            self.stop_ev.wait(0.01)

    def stop(self):
        self.stop_ev.set()
        self.join()
        return self.max_kb


# --- mounts --------------------------------------------------------------------


class Mount:
    live = []
    counter = 0

    def __init__(self, ctx, extra=(), transport="", env=None):
        Mount.counter += 1
        self.who = ctx.user
        self.env = env or (self.who.env if self.who else ENV)
        self.ctx = ctx
        top = self.who.home if self.who else ctx.work
        self.dir = os.path.join(top, f"mnt{Mount.counter}")
        os.makedirs(self.dir, exist_ok=True)
        if self.who:
            os.chown(self.dir, self.who.uid, self.who.gid)
        base = os.path.join(top, f"df{Mount.counter}")
        self.pidfile, self.logfile, self.outfile = base + ".pid", base + ".log", base + ".out"
        self.argv = [ctx.dockerfuse, "-id", ctx.container, "-mount", self.dir, "-daemonize",
                     "--pid-file", self.pidfile, "--log-file", self.logfile]
        if ctx.satellite_arch:
            self.argv += ["--satellite-arch", ctx.satellite_arch]
        if transport:
            self.argv += ["--transport", transport]
        self.argv += list(extra) + ctx.df_flags
        self.pid = None

    def start(self):
        """Mounts; returns the seconds from start to the command's exit 0."""
        Mount.live.append(self)
        with open(self.outfile, "w") as o:
            t0 = time.perf_counter()
            try:
                r = subprocess.run(self.argv, stdin=DEVNULL, stdout=o, stderr=o,
                                   timeout=180, env=self.env, **(self.who.kw() if self.who else {}))
            except subprocess.TimeoutExpired as e:
                raise BenchError(f"dockerfuse did not get ready in 180 s: {shlex.join(self.argv)}") from e
            dt = time.perf_counter() - t0
        if r.returncode != 0:
            raise BenchError(f"dockerfuse exit {r.returncode}: {shlex.join(self.argv)}\n"
                             + open(self.outfile).read()[-800:] + tail(self.logfile))
        with open(self.pidfile) as f:
            self.pid = int(f.read().strip())
        return dt

    def path(self, p):
        return self.dir + p

    def counts(self):
        """The mount's wait counts now (dockerfuse stats --json)."""
        argv = [self.ctx.dockerfuse, "stats", self.dir, "--json"]
        if not self.who:
            return json.loads(out(argv, timeout=30))
        r = run(argv, timeout=30, stdout=subprocess.PIPE, env=self.who.env, **self.who.kw())
        return json.loads(r.stdout.decode())

    def timed(self, argv, timeout=600):
        """Wall seconds of a command on this mount, as the mount's user."""
        return timed(argv, timeout=timeout, who=self.who)

    def satellite_path(self):
        m = re.search(r"satellite started arch=\w+ path=(\S+)", tail(self.logfile, 4000))
        return m.group(1) if m else None

    def satellite_arch(self):
        m = re.search(r"satellite started arch=(\w+)", tail(self.logfile, 4000))
        return m.group(1) if m else None

    def stop(self):
        if self not in Mount.live:
            return
        for _ in range(3):
            if not is_mounted(self.dir):
                break
            r = subprocess.run(["fusermount3", "-u", self.dir], stdout=DEVNULL, stderr=DEVNULL, timeout=30,
                               env=self.env, **(self.who.kw() if self.who else {}))
            if r.returncode != 0:
                time.sleep(0.5)
        if is_mounted(self.dir):
            subprocess.run(["fusermount3", "-uz", self.dir], stdout=DEVNULL, stderr=DEVNULL, timeout=30,
                           env=self.env, **(self.who.kw() if self.who else {}))
        if self.pid:
            for _ in range(100):
                if not pid_alive(self.pid):
                    break
                time.sleep(0.05)
            else:
                if is_ours(self.pid, self.dir):
                    os.kill(self.pid, signal.SIGTERM)
        Mount.live.remove(self)


def tail(path, n=800):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:]
    except OSError:
        return ""


def is_mounted(d):
    with open("/proc/mounts") as f:
        return any(line.split()[1] == d for line in f)


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def is_ours(pid, mnt):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return mnt.encode() in f.read()
    except OSError:
        return False


# --- results ---------------------------------------------------------------------


class Workload:
    """One row of the table. metric: 'MB/s' | 'IOPS' | 's' | 'us/op' | 'MB'.
    Each path: label, amount (bytes or ops per sample), samples (seconds,
    or MB for 'MB'), cpu (per sample dicts, optional)."""

    def __init__(self, key, title, metric, note="", per=None):
        self.key, self.title, self.metric, self.note = key, title, metric, note
        self.paths = {}
        self.checks = []
        # (unit, units per sample) of the waits column: ("file", 10000)
        self.per = per

    def path(self, name, label, amount=1):
        self.paths.setdefault(name, {"label": label, "amount": amount, "samples": [], "cpu": []})
        return self.paths[name]

    def add(self, name, label, value, amount=1, cpu=None, measured=True, counts=None):
        p = self.path(name, label, amount)
        if measured:
            p["samples"].append(round(value, 6))
            if cpu is not None:
                p["cpu"].append(cpu)
            if counts is not None:
                p.setdefault("counts", []).append(counts)

    def waits_per(self, name):
        """Median waits per unit (file) of a dockerfuse path, or None."""
        c = self.paths.get(name, {}).get("counts")
        if not c or not self.per:
            return None
        return statistics.median(x["waits"] for x in c) / self.per[1]

    def check(self, against, kind, limit, text, only=None):
        """A target; `only`: the transport it is for (default: every one).
        `against` may hold "{t}": the transport of the mount measured."""
        self.checks.append({"against": against, "kind": kind, "limit": limit, "target": text,
                            "only": only})

    def dfs(self):
        """The dockerfuse paths of this row (one per transport)."""
        return [n for n in self.paths if n.startswith("dockerfuse")]

    def median(self, name):
        s = self.paths[name]["samples"]
        return statistics.median(s) if s else None

    def value(self, name):
        """Median in the row's display unit."""
        m = self.median(name)
        if m is None:
            return None
        amt = self.paths[name]["amount"]
        return {"MB/s": lambda: amt / m / 1e6, "IOPS": lambda: amt / m,
                "s": lambda: m, "us/op": lambda: m / amt * 1e6, "MB": lambda: m}[self.metric]()

    def higher_is_better(self):
        return self.metric in ("MB/s", "IOPS")

    def ratio(self, other, df="dockerfuse"):
        """dockerfuse relative to another path: a fraction of its speed for
        speed metrics (1.0 = as fast), a multiple of its time otherwise."""
        if df not in self.paths or other not in self.paths:
            return None
        a, b = self.value(df), self.value(other)
        if a is None or b is None or b == 0 or a == 0:
            return None
        return a / b

    def evaluate(self):
        """Each check gets, per dockerfuse path it applies to, a value and
        whether it passes ("results": {path: {"value", "pass"}})."""
        for c in self.checks:
            c["results"] = {}
            for df in self.dfs():
                if c["only"] and df != "dockerfuse-" + c["only"]:
                    continue
                if c["kind"] == "abs":
                    s = self.paths[df]["samples"]
                    v = max(s) if s else None
                    ok = v is not None and v <= c["limit"]
                elif c["kind"] == "abs_us":
                    v = self.value(df)
                    ok = v is not None and v <= c["limit"]
                else:
                    v = self.ratio(c["against"].format(t=df[len("dockerfuse-"):]), df)
                    if v is None:
                        ok = None
                    elif c["kind"] == "speed":
                        ok = v >= c["limit"]
                    else:
                        ok = v <= c["limit"]
                c["results"][df] = {"value": v, "pass": ok}

    def to_json(self):
        d = {"title": self.title, "metric": self.metric, "note": self.note, "paths": {}}
        if self.per:
            d["per"] = {"unit": self.per[0], "units": self.per[1]}
        for name, p in self.paths.items():
            q = dict(p)
            q["median"] = self.median(name)
            q["median_" + self.metric] = self.value(name)
            if not name.startswith("dockerfuse") and self.dfs() and self.metric != "MB":
                # a "ref-<t>" path is a reference for the mount on transport t only
                q["dockerfuse_ratio"] = {df: self.ratio(name, df) for df in self.dfs()
                                         if not name.startswith("ref-") or df == df_name(name[4:])}
                q["ratio_meaning"] = ("dockerfuse speed / this path's speed" if self.higher_is_better()
                                      else "dockerfuse time / this path's time")
            if not q["cpu"]:
                del q["cpu"]
            wp = self.waits_per(name)
            if wp is not None:
                q["waits_per_" + self.per[0]] = round(wp, 4)
            d["paths"][name] = q
        d["checks"] = self.checks
        return d


def fmt_value(metric, v):
    if v is None:
        return "n/a"
    if metric == "MB/s":
        return f"{v:.0f} MB/s" if v >= 10 else f"{v:.1f} MB/s"
    if metric == "IOPS":
        return f"{v:.0f} IOPS" if v >= 10 else f"{v:.1f} IOPS"
    if metric == "s":
        return f"{v:.2f} s" if v >= 1 else f"{v * 1000:.0f} ms" if v >= 0.01 else f"{v * 1000:.1f} ms"
    if metric == "us/op":
        return f"{v:.0f} µs/op" if v < 10000 else f"{v / 1000:.0f} ms/op"
    if metric == "MB":
        return f"{v:.1f} MB"
    return str(v)


def fmt_waits(w, name):
    """Median waits per unit of a dockerfuse path: "1.80/file"."""
    v = w.waits_per(name)
    if v is None:
        return "–"
    return f"{v:.3g}/{w.per[0]}" if v < 100 else f"{v:.0f}/{w.per[0]}"


def fmt_ratio(w, r):
    if r is None:
        return "n/a"
    if w.higher_is_better():
        return f"{r * 100:.0f}%"
    if r >= 100:
        return f"{r:.0f}×"
    return f"{r:.2f}×" if r >= 0.1 else f"{r:.2g}×"


# --- the benchmark --------------------------------------------------------------


class Ctx:
    pass


def drop_caches(ctx):
    """Empty the page, dentry and inode caches (host and container share the
    kernel), then load the tools again so no path pays for reading them."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")
    run(["docker", "exec", ctx.container, "true"], timeout=120)
    run(bash("cat --version; ls --version; find --version; tar --version; " +
             ("fio --version" if ctx.fio else "true")))


def prepare(ctx):
    """Workload files, made on the host and sent with docker cp (fast for
    an emulated arm64 container too): /bench/big (256 MiB random),
    /bench/tree/dN/fM (100 x 100 files of 1000 bytes)."""
    log("preparing the workloads in the container (/bench)")
    ctx.src = os.path.join(ctx.work, "src")  # also the source of the write test
    with open(ctx.src, "wb") as f:
        for _ in range(BIG_SIZE // MiB):
            f.write(os.urandom(MiB))
    run(["docker", "exec", ctx.container, "rm", "-rf", "/bench"])
    p = subprocess.Popen(["docker", "cp", "-", f"{ctx.container}:/"], stdin=subprocess.PIPE,
                         stdout=DEVNULL, stderr=subprocess.PIPE, env=ENV)
    now = time.time()
    with tarfile.open(fileobj=p.stdin, mode="w|", format=tarfile.GNU_FORMAT) as t:
        def d(name):
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, now
            t.addfile(ti)
        d("bench")
        ti = tarfile.TarInfo("bench/big")
        ti.size, ti.mode, ti.mtime = BIG_SIZE, 0o644, now
        with open(ctx.src, "rb") as f:
            t.addfile(ti, f)
        d("bench/tree")
        line = (b"dockerfuse benchmark tree " * 40)[:TREE_FILE_SIZE - 1] + b"\n"
        for i in range(TREE_DIRS):
            d(f"bench/tree/d{i}")
            for j in range(TREE_FILES):
                ti = tarfile.TarInfo(f"bench/tree/d{i}/f{j}")
                ti.size, ti.mode, ti.mtime = len(line), 0o644, now
                t.addfile(ti, io.BytesIO(line))
    p.stdin.close()
    err = p.stderr.read().decode(errors="replace")
    if p.wait(timeout=600) != 0:
        raise BenchError(f"docker cp of the workload tree failed: {err}")
    got = out(["docker", "exec", ctx.container, "sh", "-c",
               "find /bench/tree -type f | wc -l; wc -c < /bench/big"]).split()
    if got != [str(TREE_DIRS * TREE_FILES), str(BIG_SIZE)]:
        raise BenchError(f"workload files not as expected in the container: {got}")
    # tar of CREATE_COUNT small files for the docker cp side of the create test
    ctx.create_tar = os.path.join(ctx.work, "create.tar")
    with tarfile.open(ctx.create_tar, "w", format=tarfile.GNU_FORMAT) as t:
        for j in range(CREATE_COUNT):
            ti = tarfile.TarInfo(f"f{j}")
            ti.size, ti.mode, ti.mtime = CREATE_SIZE, 0o644, now
            t.addfile(ti, io.BytesIO(b"x" * CREATE_SIZE))
    os.sync()


def df_name(t):
    """Path name of the mount on transport `t` ("" = dockerfuse's default)."""
    return f"dockerfuse-{t}" if t else "dockerfuse"


def df_label(t, what="dockerfuse mount"):
    return f"{what} ({t})" if t else what


def rounds(ctx):
    """(round index, measured?) for warm-up then measured rounds."""
    for i in range(ctx.warmup + ctx.repeats):
        yield i, i >= ctx.warmup


def w_ready(ctx, res):
    w = Workload("mount_ready", "mount to ready", "s",
                 "dockerfuse -daemonize until exit 0, vs one docker cp of a small file + one docker exec true")
    w.check("transport", "time", 2.0, "≤ 2× docker cp + exec")
    res.append(w)
    small = os.path.join(ctx.work, "hostname.copy")
    for i, m in rounds(ctx):
        for t in ctx.transports:
            mt = Mount(ctx, transport=t)
            w.add(df_name(t), df_label(t, "dockerfuse -daemonize"), mt.start(), measured=m)
            ctx.sat_arch = mt.satellite_arch() or ctx.sat_arch
            mt.stop()
        t0 = time.perf_counter()
        run(["docker", "cp", f"{ctx.container}:/etc/hostname", small])
        run(["docker", "exec", ctx.container, "true"])
        w.add("transport", "docker cp small file + docker exec true", time.perf_counter() - t0, measured=m)
        os.unlink(small)


def w_walk(ctx, res):
    tree = "/bench/tree"
    explicit = any(f.startswith("--ttl") for f in ctx.df_flags)
    ttl = [] if explicit or not ctx.walk_ttl else ["--ttl", ctx.walk_ttl]
    ttl_txt = ("ttl from BENCH_DF_FLAGS" if explicit else
               f"--ttl {ctx.walk_ttl}" if ttl else "default TTLs")
    files = ("file", TREE_DIRS * TREE_FILES)
    ls_c = Workload("ls_cold", "ls -lR 10k files, cold", "s",
                    f"fresh mount ({ttl_txt}) and caches dropped; direct/exec: caches dropped", per=files)
    ls_w = Workload("ls_warm", "ls -lR 10k files, warm", "s", "again right after the cold run (same mount)",
                    per=files)
    fd_c = Workload("find_cold", "find 10k files, cold", "s", ls_c.note, per=files)
    fd_w = Workload("find_warm", "find 10k files, warm", "s", ls_w.note, per=files)
    ls_c.check("direct", "time", 2.5, "exec: ≤ 2.5× direct", only="exec")
    ls_w.check("direct", "time", 1.3, "exec: ≤ 1.3× direct", only="exec")
    fd_c.check("transport", "time", 1.5, "exec: ≤ 1.5× docker exec find", only="exec")
    fd_w.check("direct", "time", 3.0, "exec: ≤ 3× direct", only="exec")
    ls_c.check("direct", "time", 1.5, "local: ≤ 1.5× direct", only="local")
    ls_w.check("direct", "time", 1.2, "local: ≤ 1.2× direct", only="local")
    idle = Workload("rss_idle", "client RSS idle", "MB", "VmRSS of the dockerfuse process 1 s after the mount is ready (max over rounds)")
    walk = Workload("rss_walk", "client RSS during the walk", "MB",
                    "VmHWM after a cold + warm ls -lR of 10k files, and the VmRSS sampled every 10 ms (max over rounds)")
    idle.check("dockerfuse", "abs", 15.0, "≤ 15 MB")
    walk.check("dockerfuse", "abs", 50.0, "≤ 50 MB")
    res += [ls_c, ls_w, fd_c, fd_w, idle, walk]
    for i, m in rounds(ctx):
        for tool, wc, ww in (("ls", ls_c, ls_w), ("find", fd_c, fd_w)):
            def cmd(p):
                return ["ls", "-lR", p] if tool == "ls" else ["find", p]
            for t in ctx.transports:
                # dockerfuse: fresh mount each time
                name, label = df_name(t), df_label(t)
                mt = Mount(ctx, ttl, transport=t)
                mt.start()
                if tool == "ls":
                    time.sleep(1)
                    idle.add(name, df_label(t, "VmRSS idle"), proc_status(mt.pid, "VmRSS") / 1000, measured=m)
                drop_caches(ctx)
                sampler = RssSampler(mt.pid)
                sampler.start()
                cpu, n = Cpu(ctx, mt).start(), Counting(mt).start()
                wc.add(name, label, mt.timed(cmd(mt.path(tree))), cpu=cpu.stop(), measured=m, counts=n.stop())
                cpu, n = Cpu(ctx, mt).start(), Counting(mt).start()
                ww.add(name, label, mt.timed(cmd(mt.path(tree))), cpu=cpu.stop(), measured=m, counts=n.stop())
                peak = sampler.stop()
                if tool == "ls":
                    hwm = proc_status(mt.pid, "VmHWM") or 0
                    walk.add(name, df_label(t, "VmHWM / max VmRSS"), max(hwm, peak) / 1000, measured=m)
                mt.stop()
            # direct
            drop_caches(ctx)
            wc.add("direct", "/proc/<pid>/root", timed(cmd(ctx.direct + tree)), measured=m)
            ww.add("direct", "/proc/<pid>/root", timed(cmd(ctx.direct + tree)), measured=m)
            # transport: the same tool inside the container (busybox)
            label = f"docker exec {'ls -lR' if tool == 'ls' else 'find'}"
            drop_caches(ctx)
            cpu = Cpu(ctx).start()
            wc.add("transport", label, timed(["docker", "exec", ctx.container] + cmd(tree)), cpu=cpu.stop(), measured=m)
            cpu = Cpu(ctx).start()
            ww.add("transport", label, timed(["docker", "exec", ctx.container] + cmd(tree)), cpu=cpu.stop(), measured=m)


def w_tar(ctx, res):
    files = ("file", TREE_DIRS * TREE_FILES)
    w = Workload("tar_cold", "tar c of the 10k-file tree, cold", "s",
                 "tar cf - | cat >/dev/null after dropping caches (dockerfuse: fresh mount); "
                 "vs docker cp C:/bench/tree - and docker exec tar cf -", per=files)
    ww = Workload("tar_warm", "tar c of the 10k-file tree, warm", "s",
                  "the same again at once (same mount, caches kept)", per=files)
    gc = Workload("grep_cold", "grep -r of the 10k-file tree, cold", "s",
                  f"grep -r {GREP_PATTERN} (matches every file) after dropping caches (dockerfuse: fresh mount); "
                  "vs docker exec grep -r", per=files)
    gw = Workload("grep_warm", "grep -r of the 10k-file tree, warm", "s",
                  "the same again at once (same mount, caches kept)", per=files)
    w.check("transport", "time", 2.0, "exec: ≤ 2× docker cp", only="exec")
    w.check("direct", "time", 1.5, "local: ≤ 1.5× direct", only="local")
    res += [w, ww, gc, gw]
    tar = "tar cf - -C {} tree | cat >/dev/null"
    grep = f"grep -r {GREP_PATTERN} {{}} >/dev/null"
    for i, m in rounds(ctx):
        for cold, warm, code, where in ((w, ww, tar, "/bench"), (gc, gw, grep, "/bench/tree")):
            for t in ctx.transports:
                mt = Mount(ctx, transport=t)
                mt.start()
                drop_caches(ctx)
                for row in (cold, warm):
                    cpu, n = Cpu(ctx, mt).start(), Counting(mt).start()
                    row.add(df_name(t), df_label(t), mt.timed(bash(code.format(shlex.quote(mt.path(where))))),
                            cpu=cpu.stop(), measured=m, counts=n.stop())
                mt.stop()
            drop_caches(ctx)
            for row in (cold, warm):
                row.add("direct", "/proc/<pid>/root", timed(bash(code.format(ctx.direct + where))), measured=m)
            drop_caches(ctx)
            for row in (cold, warm):
                cpu = Cpu(ctx).start()
                if code is tar:
                    argv, label = ["docker", "cp", f"{ctx.container}:/bench/tree", "-"], "docker cp C:/bench/tree -"
                else:
                    argv, label = (["docker", "exec", ctx.container, "grep", "-r", GREP_PATTERN, "/bench/tree"],
                                   "docker exec grep -r")
                row.add("transport", label, timed(argv), cpu=cpu.stop(), measured=m)
        drop_caches(ctx)
        cpu = Cpu(ctx).start()
        w.add("transport_exec", "docker exec tar cf -",
              timed(["docker", "exec", ctx.container, "tar", "cf", "-", "-C", "/bench", "tree"]),
              cpu=cpu.stop(), measured=m)


def w_read(ctx, res, mts):
    mib = ("MiB", BIG_SIZE // MiB)
    first = Workload("read_first", "seq read 256 MiB, first", "MB/s",
                     "cat FILE >/dev/null after dropping caches (host and container page cache)", per=mib)
    again = Workload("read_again", "seq read 256 MiB, re-read", "MB/s", "the same read again, caches warm", per=mib)
    first.check("transport", "speed", 0.95, "exec: ≥ 95% of docker exec cat", only="exec")
    again.check("direct", "speed", 0.8, "exec: ≥ 80% of direct", only="exec")
    first.check("direct", "speed", 0.8, "local: ≥ 80% of direct", only="local")
    again.check("direct", "speed", 0.9, "local: ≥ 90% of direct", only="local")
    res += [first, again]
    big = "/bench/big"
    paths = [(df_name(t), df_label(t), ["cat", mt.path(big)], mt) for t, mt in mts.items()]
    # (the mounts' rows run as the mount's user: Mount.timed)
    paths += [("direct", "/proc/<pid>/root", ["cat", ctx.direct + big], None),
             ("transport", "docker exec cat", ["docker", "exec", ctx.container, "cat", big], None)]
    for i, m in rounds(ctx):
        for name, label, argv, mnt in paths:
            drop_caches(ctx)
            for w in (first, again):
                # pages of the file in the host page cache before the run
                # (fincore; the re-read is slower when some were evicted)
                res_mb = resident_mb(mnt.path(big) if mnt else ctx.direct + big, mnt.who if mnt else None)
                cpu, n = Cpu(ctx, mnt).start(), Counting(mnt).start()
                t = mnt.timed(argv) if mnt else timed(argv)
                c = cpu.stop()
                if res_mb is not None:
                    c["resident MB before"] = res_mb
                w.add(name, label, t, amount=BIG_SIZE, cpu=c, measured=m, counts=n.stop())


def resident_mb(path, who=None):
    """MB of the file in the page cache (util-linux fincore), or None."""
    if not shutil.which("fincore"):
        return None
    r = run(["fincore", "-b", "-n", "-o", "RES", path], check=False, stdout=subprocess.PIPE,
            env=who.env if who else None, **(who.kw() if who else {}))
    try:
        return round(int(r.stdout.split()[0]) / 1e6, 1)
    except (IndexError, ValueError):
        return None


def w_write(ctx, res, mts):
    w = Workload("write", "seq write 256 MiB", "MB/s",
                 "cat SRC > FILE (new file, 128 KiB writes, no fsync; SRC in the host page cache)",
                 per=("MiB", BIG_SIZE // MiB))
    w.check("transport", "speed", 0.8, "exec: ≥ 80% of docker exec -i cat", only="exec")
    w.check("direct", "speed", 0.7, "local: ≥ 70% of direct", only="local")
    res.append(w)
    with open(ctx.src, "rb") as f:  # into the page cache
        while f.read(8 * MiB):
            pass

    def host_write(dst, rel, mt=None):
        # dst written (as the mount's user for a mount); removed and
        # measured through the direct path (root may not enter a user's mount)
        def go():
            return timed(bash(f"cat {shlex.quote(ctx.src)} > {shlex.quote(dst)}"), who=mt.who if mt else None)

        def rm():
            if os.path.exists(ctx.direct + rel):
                os.unlink(ctx.direct + rel)
        return go, rm, lambda: os.stat(ctx.direct + rel).st_size

    di_go, di_rm, di_size = host_write(ctx.direct + "/bench/w-direct", "/bench/w-direct")

    def tr_go():
        with open(ctx.src, "rb") as f:
            return timed(["docker", "exec", "-i", ctx.container, "sh", "-c", "cat > /bench/w-transport"], stdin=f)

    def tr_rm():
        run(["docker", "exec", ctx.container, "rm", "-f", "/bench/w-transport"])

    paths = [(df_name(t), df_label(t)) + host_write(mt.path(f"/bench/w-{df_name(t)}"), f"/bench/w-{df_name(t)}", mt)
             + (mt,) for t, mt in mts.items()]
    paths += [("direct", "/proc/<pid>/root", di_go, di_rm, di_size, None),
             ("transport", "docker exec -i sh -c 'cat > f'", tr_go, tr_rm,
              lambda: os.stat(ctx.direct + "/bench/w-transport").st_size, None)]
    for i, m in rounds(ctx):
        for name, label, go, rm, size, mnt in paths:
            rm()
            os.sync()
            cpu, n = Cpu(ctx, mnt).start(), Counting(mnt).start()
            t = go()
            w.add(name, label, t, amount=BIG_SIZE, cpu=cpu.stop(), measured=m, counts=n.stop())
            if size() != BIG_SIZE:
                raise BenchError(f"{name}: written file has {size()} bytes, not {BIG_SIZE}")
    for p in paths:
        p[3]()


def w_create(ctx, res, mts):
    w = Workload("create", f"create {CREATE_COUNT} small files", "s",
                 f"open/write {CREATE_SIZE} B/close, one after the other, in a new directory; "
                 "transport: docker cp - of a tar of the same files", per=("file", CREATE_COUNT))
    w.check("direct", "time", 3.0, "exec: ≤ 3× direct", only="exec")
    w.check("direct", "time", 2.0, "local: ≤ 2× direct", only="local")
    res.append(w)
    data = b"x" * CREATE_SIZE

    def py_create(d):
        # os.open/write/close: python's open() would add an isatty ioctl per file
        t0 = time.perf_counter()
        for j in range(CREATE_COUNT):
            fd = os.open(f"{d}/f{j}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, data)
            os.close(fd)
        return time.perf_counter() - t0

    def user_create(d, who):
        # the same loop in a python of the user's, timed inside it
        code = ("import os, sys, time\n"
                "d, n, data = sys.argv[1], int(sys.argv[2]), b'x' * int(sys.argv[3])\n"
                "t0 = time.perf_counter()\n"
                "for j in range(n):\n"
                "    fd = os.open(f'{d}/f{j}', os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)\n"
                "    os.write(fd, data)\n"
                "    os.close(fd)\n"
                "print(time.perf_counter() - t0)\n")
        # "python3" of the user's PATH: this one may be in a home closed to it
        r = run(["python3", "-c", code, d, str(CREATE_COUNT), str(CREATE_SIZE)], timeout=600,
                stdout=subprocess.PIPE, env=who.env, **who.kw())
        return float(r.stdout.decode().strip())

    n = 0
    for i, m in rounds(ctx):
        for name in [df_name(t) for t in mts] + ["direct", "transport"]:
            n += 1
            rel = f"/bench/create-{name}-{n}"
            os.mkdir(ctx.direct + rel)
            os.sync()
            if name.startswith("dockerfuse"):
                t = name[len("dockerfuse-"):]
                mt = mts[t]
                cpu, c = Cpu(ctx, mt).start(), Counting(mt).start()
                secs = user_create(mt.path(rel), mt.who) if mt.who else py_create(mt.path(rel))
                w.add(name, df_label(t), secs, cpu=cpu.stop(), measured=m, counts=c.stop())
            elif name == "direct":
                w.add(name, "/proc/<pid>/root", py_create(ctx.direct + rel), measured=m)
            else:
                cpu = Cpu(ctx).start()
                with open(ctx.create_tar, "rb") as f:
                    t = timed(["docker", "cp", "-", f"{ctx.container}:{rel}"], stdin=f)
                w.add(name, "docker cp - (tar of the files)", t, cpu=cpu.stop(), measured=m)
            got = len(os.listdir(ctx.direct + rel))
            if got != CREATE_COUNT:
                raise BenchError(f"{name}: {got} files created, not {CREATE_COUNT}")
            shutil.rmtree(ctx.direct + rel)

    # The same on mounts with --close-behind (opt-in): close does not wait
    # for the file's create and writes; the files land behind.
    wc = Workload("create_close_behind", f"create {CREATE_COUNT} small files (--close-behind)", "s",
                  "as create, on a mount with --close-behind (close returns before the container has "
                  "the file; the count is checked once all landed)", per=("file", CREATE_COUNT))
    res.append(wc)
    cbs = {t: Mount(ctx, extra=["--close-behind"], transport=t) for t in mts}
    try:
        for mt in cbs.values():
            mt.start()
        for i, m in rounds(ctx):
            for name in [df_name(t) for t in cbs] + ["direct"]:
                n += 1
                rel = f"/bench/create-cb-{name}-{n}"
                os.mkdir(ctx.direct + rel)
                os.sync()
                if name == "direct":
                    wc.add(name, "/proc/<pid>/root", py_create(ctx.direct + rel), measured=m)
                else:
                    t = name[len("dockerfuse-"):]
                    mt = cbs[t]
                    cpu, c = Cpu(ctx, mt).start(), Counting(mt).start()
                    secs = user_create(mt.path(rel), mt.who) if mt.who else py_create(mt.path(rel))
                    wc.add(name, df_label(t), secs, cpu=cpu.stop(), measured=m, counts=c.stop())
                deadline = time.monotonic() + 60
                while len(os.listdir(ctx.direct + rel)) < CREATE_COUNT and time.monotonic() < deadline:
                    time.sleep(0.05)
                got = len(os.listdir(ctx.direct + rel))
                if got != CREATE_COUNT:
                    raise BenchError(f"{name} (--close-behind): {got} files created, not {CREATE_COUNT}")
                shutil.rmtree(ctx.direct + rel)
    finally:
        for mt in cbs.values():
            mt.stop()


def rand_offsets(n, seed):
    r = random.Random(seed)
    return [r.randrange(BIG_SIZE // 4096) * 4096 for _ in range(n)]


def rand_read(ctx, path, threads, seed):
    """Seconds for RAND_READS random 4 KiB reads split over `threads`, and details."""
    if ctx.fio:
        per = RAND_READS // threads
        argv = ["fio", "--name=randread", f"--filename={path}", "--readonly", "--rw=randread",
                "--bs=4k", f"--size={BIG_SIZE}", f"--io_size={per * 4096}", "--ioengine=psync",
                "--iodepth=1", f"--numjobs={threads}", "--thread", "--group_reporting",
                "--randrepeat=0", f"--randseed={seed}", "--fadvise_hint=1", "--invalidate=1",
                "--output-format=json"]
        r = run(argv, timeout=600, stdout=subprocess.PIPE)
        j = json.loads(r.stdout.decode()[r.stdout.decode().index("{"):])["jobs"][0]["read"]
        if j["total_ios"] != per * threads or j["iops"] <= 0:
            raise BenchError(f"fio did {j['total_ios']} reads, not {per * threads}")
        pct = j["clat_ns"].get("percentile", {})
        return j["total_ios"] / j["iops"], {
            "clat_mean_us": round(j["clat_ns"]["mean"] / 1000, 1),
            "clat_p99_us": round(pct.get("99.000000", 0) / 1000, 1)}
    offs = rand_offsets(RAND_READS, seed)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        chunks = [offs[k::threads] for k in range(threads)]

        def work(c):
            for o in c:
                os.pread(fd, 4096, o)
        ts = [threading.Thread(target=work, args=(c,)) for c in chunks]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return time.perf_counter() - t0, {}
    finally:
        os.close(fd)


def w_random(ctx, res, mts):
    tool = "fio psync" if ctx.fio else "python os.pread"
    ws = []
    for threads in (1, 4):
        w = Workload(f"randread_{threads}t", f"random 4 KiB reads, {threads} thread{'s' if threads > 1 else ''}",
                     "IOPS", f"{RAND_READS} reads of 4 KiB at random offsets of the 256 MiB file, caches dropped "
                     f"first, {tool}, POSIX_FADV_RANDOM; transport: one docker exec dd per read",
                     per=("read", RAND_READS))
        w.check("direct", "speed", 0.6, "local: ≥ 60% of direct", only="local")
        res.append(w)
        ws.append((threads, w))
    seed = 0
    for i, m in rounds(ctx):
        for threads, w in ws:
            paths = [(df_name(t), df_label(t), mt.path("/bench/big"), mt) for t, mt in mts.items()]
            paths.append(("direct", "/proc/<pid>/root", ctx.direct + "/bench/big", None))
            for name, label, path, mnt in paths:
                seed += 1
                drop_caches(ctx)
                cpu, n = Cpu(ctx, mnt).start(), Counting(mnt).start()
                t, det = rand_read(ctx, path, threads, seed)
                c = cpu.stop()
                c.update(det)
                w.add(name, label, t, amount=RAND_READS, cpu=c, measured=m, counts=n.stop())
            if threads == 1:  # one exec per read: the same figure for any thread count
                drop_caches(ctx)
                offs = rand_offsets(RAND_EXEC_READS, seed)
                t0 = time.perf_counter()
                for o in offs:
                    run(["docker", "exec", ctx.container, "dd", "if=/bench/big", "of=/dev/null",
                         "bs=4096", "count=1", f"skip={o // 4096}"])
                w.add("transport", "docker exec dd (one exec per read)", (time.perf_counter() - t0) / RAND_EXEC_READS,
                      amount=1, measured=m)


def w_rtt(ctx, res, mts):
    w = Workload("rtt", "getxattr, no such attr (answered on the host)", "us/op",
                 f"{RTT_OPS} getxattr(user.dfbench) on /bench/big (ENODATA: never cached by the kernel, "
                 "answered by dockerfuse from its no-xattrs note); transport: one docker exec true",
                 per=("op", RTT_OPS))
    res.append(w)

    def gx(path):
        t0 = time.perf_counter()
        for _ in range(RTT_OPS):
            try:
                os.getxattr(path, "user.dfbench")
            except OSError as e:
                if e.errno != errno.ENODATA:
                    raise BenchError(f"getxattr on {path}: {e} (expected ENODATA)") from e
        return time.perf_counter() - t0

    # A real round trip: stat of a name never asked before is one LOOKUP
    # to the container (ENOENT), whatever the TTLs.
    fresh = Workload("rtt_lookup", "one real round trip (stat of a fresh name)", "us/op",
                     f"{RTT_OPS} stat() of names never asked before (ENOENT): one LOOKUP each, nothing cached; "
                     "transport: one docker exec true", per=("op", RTT_OPS))
    res.append(fresh)
    serial = [0]

    def st(base):
        t0 = time.perf_counter()
        for _ in range(RTT_OPS):
            serial[0] += 1
            try:
                os.stat(f"{base}/bench/fresh-{os.getpid()}-{serial[0]}")
            except FileNotFoundError:
                pass
            else:
                raise BenchError(f"{base}/bench/fresh-{os.getpid()}-{serial[0]} exists")
        return time.perf_counter() - t0

    # An uncached metadata round trip: fstat of an open directory on a
    # mount with --ttl 0 is one GETATTR each time (getxattr above is now
    # answered on the host for files without xattrs).
    u = Workload("rtt_getattr", "one uncached round trip (fstat, --ttl 0)", "us/op",
                 f"{RTT_OPS} fstat() of an open directory on a --ttl 0 mount (one GETATTR each); "
                 "transport: one docker exec true", per=("op", RTT_OPS))
    u.check("direct", "abs_us", 40.0, "local: ≤ 40 µs/op", only="local")
    res.append(u)
    zero = {t: Mount(ctx, ["--ttl", "0"], transport=t) for t in mts}
    for mt in zero.values():
        mt.start()

    def fs(path):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            t0 = time.perf_counter()
            for _ in range(RTT_OPS):
                os.fstat(fd)
            return time.perf_counter() - t0
        finally:
            os.close(fd)

    for i, m in rounds(ctx):
        for t, mt in mts.items():
            cpu, n = Cpu(ctx, mt).start(), Counting(mt).start()
            w.add(df_name(t), df_label(t), gx(mt.path("/bench/big")), amount=RTT_OPS, cpu=cpu.stop(), measured=m,
                  counts=n.stop())
        w.add("direct", "/proc/<pid>/root", gx(ctx.direct + "/bench/big"), amount=RTT_OPS, measured=m)
        tr = timed(["docker", "exec", ctx.container, "true"])
        w.add("transport", "docker exec true", tr, amount=1, measured=m)
        for t, mt in mts.items():
            cpu, n = Cpu(ctx, mt).start(), Counting(mt).start()
            fresh.add(df_name(t), df_label(t), st(mt.path("")), amount=RTT_OPS, cpu=cpu.stop(), measured=m,
                      counts=n.stop())
        fresh.add("direct", "/proc/<pid>/root", st(ctx.direct), amount=RTT_OPS, measured=m)
        fresh.add("transport", "docker exec true", tr, amount=1, measured=m)
        for t, mt in zero.items():
            cpu, n = Cpu(ctx, mt).start(), Counting(mt).start()
            u.add(df_name(t), df_label(t, "dockerfuse mount --ttl 0"), fs(mt.path("/bench")), amount=RTT_OPS,
                  cpu=cpu.stop(), measured=m, counts=n.stop())
        u.add("direct", "/proc/<pid>/root", fs(ctx.direct + "/bench"), amount=RTT_OPS, measured=m)
        u.add("transport", "docker exec true", tr, amount=1, measured=m)
    for mt in zero.values():
        mt.stop()


def w_dd(ctx, res, mts):
    w = Workload("dd4k", f"dd bs=4k write {DD_SIZE // MiB} MiB", "MB/s",
                 "dd if=SRC of=FILE bs=4k (new file, no fsync); vs the same with bs=1M through the same mount",
                 per=("MiB", DD_SIZE // MiB))
    w.check("ref-{t}", "speed", 0.5, "exec: ≥ 50% of dd bs=1M", only="exec")
    res.append(w)
    count4k, count1m = DD_SIZE // 4096, DD_SIZE // MiB

    def dd(dst, bs, count):
        if os.path.exists(dst):
            os.unlink(dst)
        os.sync()
        t = timed(["dd", f"if={ctx.src}", f"of={dst}", f"bs={bs}", f"count={count}", "status=none"])
        if os.stat(dst).st_size != DD_SIZE:
            raise BenchError(f"dd to {dst}: {os.stat(dst).st_size} bytes, not {DD_SIZE}")
        os.unlink(dst)
        return t

    for i, m in rounds(ctx):
        for t, mt in mts.items():
            cpu, n = Cpu(ctx, mt).start(), Counting(mt).start()
            w.add(df_name(t), df_label(t, "dockerfuse mount, bs=4k"), dd(mt.path("/bench/dd4k"), 4096, count4k),
                  amount=DD_SIZE, cpu=cpu.stop(), measured=m, counts=n.stop())
            cpu = Cpu(ctx, mt).start()
            w.add(f"ref-{t}", f"dd bs=1M, {t or 'dockerfuse'}", dd(mt.path("/bench/dd1m"), "1M", count1m),
                  amount=DD_SIZE, cpu=cpu.stop(), measured=m)
        w.add("direct", "/proc/<pid>/root, bs=4k", dd(ctx.direct + "/bench/dd4k", 4096, count4k),
              amount=DD_SIZE, measured=m)


def w_latency(ctx, res, mts):
    """Change -> visible: a shell in the container rewrites a file the host
    holds cached; the host polls the file directly and through each mount
    and takes the time between direct access and the mount seeing the new
    contents."""
    p50 = Workload("visible_p50", "change in the container → visible, p50", "s",
                   f"{LATENCY_CHANGES} rewrites per round by a shell in the container; the host polls each mount "
                   "and /proc/<pid>/root; time from direct to mount seeing it (median of the rounds' p50)")
    p99 = Workload("visible_p99", "change in the container → visible, p99", "s",
                   "as above, the rounds' p99 (median of the rounds)")
    res += [p50, p99]
    rel = "/bench/visible"

    def read(path):
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError:
            return None

    sh = subprocess.Popen(["docker", "exec", "-i", ctx.container, "sh"], stdin=subprocess.PIPE,
                          stdout=DEVNULL, stderr=DEVNULL, text=True, bufsize=1)
    try:
        sh.stdin.write(f"printf start > {rel}\n")
        sh.stdin.flush()
        order = list(mts.items())
        for i, m in rounds(ctx):
            lat = {t: [] for t in mts}
            for j in range(LATENCY_CHANGES):
                want = f"r{i}-c{j}".encode()
                for _ in range(3):  # cached as it is before the change
                    for mt in mts.values():
                        read(mt.path(rel))
                order.reverse()  # neither mount always polled first
                sh.stdin.write(f"printf {want.decode()} > {rel}\n")
                sh.stdin.flush()
                direct, seen = None, {t: None for t in mts}
                deadline = time.time() + 10
                while None in seen.values() and time.time() < deadline:
                    now = time.time()
                    if direct is None and read(ctx.direct + rel) == want:
                        direct = now
                    for t, mt in order:
                        if seen[t] is None and read(mt.path(rel)) == want:
                            seen[t] = time.time()
                    time.sleep(0.0002)
                for t, at in seen.items():
                    if at is None:
                        raise BenchError(f"a change in the container did not show through the {t or 'default'} "
                                         f"mount in 10 s ({want!r})")
                    lat[t].append(max(0.0, at - (direct or at)))
            for t, ls in lat.items():
                ls.sort()
                p50.add(df_name(t), df_label(t), ls[len(ls) // 2], measured=m)
                p99.add(df_name(t), df_label(t), ls[min(len(ls) - 1, int(len(ls) * 0.99))], measured=m)
    finally:
        sh.stdin.close()
        sh.wait(timeout=30)


# --- a remote engine: through delay_proxy.py -------------------------------------------


def prepare_remote(ctx):
    """/bench/rtree (REMOTE_DIRS x REMOTE_FILES files of 1000 bytes) and
    /bench/r16 (16 MiB) in the container; on the host the REMOTE_CREATES
    files of 4 KiB to copy in, their tar, and 16 MiB to write."""
    log("preparing the remote workloads (/bench/rtree, /bench/r16)")
    p = subprocess.Popen(["docker", "cp", "-", f"{ctx.container}:/bench"], stdin=subprocess.PIPE,
                         stdout=DEVNULL, stderr=subprocess.PIPE, env=ENV)
    now = time.time()
    line = (b"dockerfuse benchmark tree " * 40)[:TREE_FILE_SIZE - 1] + b"\n"
    with tarfile.open(fileobj=p.stdin, mode="w|", format=tarfile.GNU_FORMAT) as t:
        def d(name):
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, now
            t.addfile(ti)
        d("rtree")
        for i in range(REMOTE_DIRS):
            d(f"rtree/d{i}")
            for j in range(REMOTE_FILES):
                ti = tarfile.TarInfo(f"rtree/d{i}/f{j}")
                ti.size, ti.mode, ti.mtime = len(line), 0o644, now
                t.addfile(ti, io.BytesIO(line))
        ti = tarfile.TarInfo("r16")
        ti.size, ti.mode, ti.mtime = REMOTE_BULK, 0o644, now
        with open(ctx.src, "rb") as f:
            t.addfile(ti, io.BytesIO(f.read(REMOTE_BULK)))
    p.stdin.close()
    err = p.stderr.read().decode(errors="replace")
    if p.wait(timeout=600) != 0:
        raise BenchError(f"docker cp of the remote workloads failed: {err}")
    ctx.rsrc = os.path.join(ctx.work, "c200")
    os.makedirs(ctx.rsrc, exist_ok=True)
    ctx.rtar = os.path.join(ctx.work, "c200.tar")
    with tarfile.open(ctx.rtar, "w", format=tarfile.GNU_FORMAT) as t:
        for j in range(REMOTE_CREATES):
            name = os.path.join(ctx.rsrc, f"f{j}")
            with open(name, "wb") as f:
                f.write(os.urandom(REMOTE_CREATE_SIZE))
            t.add(name, arcname=f"f{j}")
    ctx.rsrc16 = os.path.join(ctx.work, "w16")
    with open(ctx.src, "rb") as f, open(ctx.rsrc16, "wb") as g:
        g.write(f.read(REMOTE_BULK))


class Proxy:
    """delay_proxy.py on a free port of 127.0.0.1 (its pid in WORK/proxy.pid
    for run.sh's cleanup)."""

    def __init__(self, ctx, rtt_ms):
        here = os.path.dirname(os.path.abspath(__file__))
        self.log = open(os.path.join(ctx.work, "proxy.log"), "w")
        self.p = subprocess.Popen([sys.executable, os.path.join(here, "delay_proxy.py"), "--port", "0",
                                   "--rtt-ms", str(rtt_ms)], stdin=DEVNULL, stdout=subprocess.PIPE,
                                  stderr=self.log, text=True)
        with open(os.path.join(ctx.work, "proxy.pid"), "w") as f:
            f.write(f"{self.p.pid}\n")
        first = self.p.stdout.readline().split()
        if len(first) != 2 or first[0] != "listening":
            self.stop()
            raise BenchError(f"delay_proxy.py did not start: {tail(self.log.name)}")
        self.host = f"tcp://127.0.0.1:{first[1]}"

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()


def w_remote(ctx, res):
    """The issue's remote-engine rows: dockerfuse (exec transport) with
    DOCKER_HOST through the proxy, against the docker CLI through the same
    proxy; no caches dropped (both sides read from the container's page
    cache), "cold" = a fresh mount."""
    rtt = ctx.remote_rtt_ms
    prepare_remote(ctx)
    proxy = Proxy(ctx, rtt)
    env = dict(ENV, DOCKER_HOST=proxy.host)
    n_files = REMOTE_DIRS * REMOTE_FILES
    files = ("file", n_files)
    C = ctx.container
    rows = {}

    def row(key, title, metric, note, per=None, target=None):
        w = Workload("remote_" + key, f"{title} ({rtt:g} ms RTT)", metric, note, per=per)
        if target:
            w.check("transport", *target)
        res.append(w)
        rows[key] = w
        return w

    row("ready", "mount to ready", "s", "dockerfuse -daemonize until exit 0 vs docker exec true",
        target=("time", 2.0, "≤ 2× docker exec true"))
    for kind, what in (("ls", "ls -lR"), ("tar", "tar c"), ("grep", "grep -r")):
        ref = {"ls": "docker exec ls -lR", "tar": "docker cp C:/bench/rtree -", "grep": "docker exec grep -r"}[kind]
        row(kind + "_cold", f"{what} of 1,000 files, fresh mount", "s", f"vs {ref}", per=files,
            target=("time", 3.0, f"≤ 3× {ref}"))
        row(kind + "_warm", f"{what} of 1,000 files, again", "s", "the same again on the same mount", per=files,
            target=("time", 0.2, f"≤ 0.2× {ref}"))
    row("create", f"cp of {REMOTE_CREATES} × 4 KiB files in", "s", "cp FILES DIR/ vs docker cp - of their tar",
        per=("file", REMOTE_CREATES), target=("time", 3.0, "≤ 3× docker cp -"))
    row("create_close_behind", f"cp of {REMOTE_CREATES} × 4 KiB files in (--close-behind)", "s",
        "the same on a mount with --close-behind (the unmount waits for what is behind)",
        per=("file", REMOTE_CREATES), target=("time", 3.0, "≤ 3× docker cp -"))
    row("read", "read 16 MiB", "MB/s", "cat of a file the mount never read vs docker exec cat",
        per=("MiB", REMOTE_BULK // MiB), target=("speed", 0.9, "≥ 90% of docker exec cat"))
    row("write", "write 16 MiB", "MB/s", "cat SRC > new file vs docker exec -i sh -c 'cat > f'",
        per=("MiB", REMOTE_BULK // MiB), target=("speed", 0.9, "≥ 90% of docker exec -i cat"))
    name, label = "dockerfuse-remote", "dockerfuse (exec, through the proxy)"

    def df(key, mt, argv, amount=1):
        n = Counting(mt).start()
        rows[key].add(name, label, timed(argv), amount=amount, measured=True, counts=n.stop())

    def cli(key, argv, label, amount=1, stdin=None):
        rows[key].add("transport", label, timed(argv, env=env, stdin=stdin), amount=amount)

    try:
        for i in range(ctx.remote_repeats):
            log(f"remote round {i + 1}/{ctx.remote_repeats}")
            mt = Mount(ctx, transport="exec", env=env)
            rows["ready"].add(name, label, mt.start())
            cli("ready", ["docker", "exec", C, "true"], "docker exec true")
            tree = mt.path("/bench/rtree")
            df("ls_cold", mt, ["ls", "-lR", tree])
            df("ls_warm", mt, ["ls", "-lR", tree])
            mt.stop()
            for key in ("ls_cold", "ls_warm"):
                cli(key, ["docker", "exec", C, "ls", "-lR", "/bench/rtree"], "docker exec ls -lR")

            mt = Mount(ctx, transport="exec", env=env)
            mt.start()
            for key in ("tar_cold", "tar_warm"):
                df(key, mt, bash(f"tar cf - -C {shlex.quote(mt.path('/bench'))} rtree | cat >/dev/null"))
            mt.stop()
            for key in ("tar_cold", "tar_warm"):
                cli(key, ["docker", "cp", f"{C}:/bench/rtree", "-"], "docker cp C:/bench/rtree -")

            mt = Mount(ctx, transport="exec", env=env)
            mt.start()
            for key in ("grep_cold", "grep_warm"):
                df(key, mt, bash(f"grep -r {GREP_PATTERN} {shlex.quote(mt.path('/bench/rtree'))} >/dev/null"))
            df("read", mt, ["cat", mt.path("/bench/r16")], amount=REMOTE_BULK)
            dst = mt.path(f"/bench/rw-{i}")
            df("write", mt, bash(f"cat {shlex.quote(ctx.rsrc16)} > {shlex.quote(dst)}"), amount=REMOTE_BULK)
            # Through the mount: a directory made in the container shows
            # once the change feed reports it, a network trip later here.
            os.mkdir(mt.path(f"/bench/rc-df-{i}"))
            df("create", mt, bash(f"cp {shlex.quote(ctx.rsrc)}/* {shlex.quote(mt.path(f'/bench/rc-df-{i}'))}/"))
            mt.stop()
            mt = Mount(ctx, extra=["--close-behind"], transport="exec", env=env)
            mt.start()
            os.mkdir(mt.path(f"/bench/rc-cb-{i}"))
            df("create_close_behind", mt,
               bash(f"cp {shlex.quote(ctx.rsrc)}/* {shlex.quote(mt.path(f'/bench/rc-cb-{i}'))}/"))
            mt.stop()
            for key in ("grep_cold", "grep_warm"):
                cli(key, ["docker", "exec", C, "grep", "-r", GREP_PATTERN, "/bench/rtree"], "docker exec grep -r")
            cli("read", ["docker", "exec", C, "cat", "/bench/r16"], "docker exec cat", amount=REMOTE_BULK)
            with open(ctx.rsrc16, "rb") as f:
                cli("write", ["docker", "exec", "-i", C, "sh", "-c", f"cat > /bench/rw-cli-{i}"],
                    "docker exec -i sh -c 'cat > f'", amount=REMOTE_BULK, stdin=f)
            os.mkdir(ctx.direct + f"/bench/rc-cli-{i}")
            with open(ctx.rtar, "rb") as f:
                cli("create", ["docker", "cp", "-", f"{C}:/bench/rc-cli-{i}"], "docker cp - (tar of the files)",
                    stdin=f)
            os.mkdir(ctx.direct + f"/bench/rc-cli-cb-{i}")
            with open(ctx.rtar, "rb") as f:
                cli("create_close_behind", ["docker", "cp", "-", f"{C}:/bench/rc-cli-cb-{i}"],
                    "docker cp - (tar of the files)", stdin=f)
            for who in ("df", "cli", "cb", "cli-cb"):
                got = len(os.listdir(ctx.direct + f"/bench/rc-{who}-{i}"))
                if got != REMOTE_CREATES:
                    raise BenchError(f"remote create ({who}): {got} files, not {REMOTE_CREATES}")
            for p in (f"/bench/rw-{i}", f"/bench/rw-cli-{i}"):
                if os.stat(ctx.direct + p).st_size != REMOTE_BULK:
                    raise BenchError(f"remote write: {p} is not {REMOTE_BULK} bytes")
    finally:
        proxy.stop()


def waits_table(results):
    """Per row and dockerfuse path: the waits per unit by kernel operation
    (median sample by waits), and the satellite requests per unit."""
    rows = [["workload / path", "waits per unit", "kernel requests per unit", "waits by kernel op, per unit",
             "satellite requests by kind, per unit"]]
    for w in results:
        for name, p in w.paths.items():
            cs = p.get("counts")
            if not cs or not w.per:
                continue
            c = sorted(cs, key=lambda x: x["waits"])[len(cs) // 2]
            u, k = w.per

            def f(v):
                return f"{v / k:.3g}"
            ops = ", ".join(f"{op} {f(rw[1])}" for op, rw in sorted(c["ops"].items(), key=lambda x: -x[1][1])
                            if rw[1])
            sent = ", ".join(f"{r} {f(n)}" for r, n in sorted(c["sent_by"].items(), key=lambda x: -x[1]))
            rows.append([f"{w.title} / {name}", f"{f(c['waits'])}/{u}", f(c["requests"]), ops or "–",
                         sent or "–"])
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    lines = []
    for n, r in enumerate(rows):
        lines.append("| " + " | ".join(c.ljust(widths[k]) for k, c in enumerate(r)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (wd + 2) for wd in widths) + "|")
    return "\n".join(lines)


# --- report -------------------------------------------------------------------------


def table(results, transports):
    """Markdown table of medians, ratios and targets, the dockerfuse paths
    (one per transport) side by side."""
    dfs = [df_name(t) for t in transports]
    short = {df_name(t): (t or "dockerfuse") for t in transports}
    rows = [["workload"] + [f"waits {short[d]}" for d in dfs]
            + [f"dockerfuse {t}".strip() for t in transports] + ["direct", "transport ceiling"]
            + [f"{short[d]} vs direct" for d in dfs] + [f"{short[d]} vs transport" for d in dfs]
            + ["target", "result"]]
    for w in results:
        vals = [fmt_value(w.metric, w.value(d)) if d in w.paths else "–" for d in dfs]
        di = fmt_value(w.metric, w.value("direct")) if "direct" in w.paths else "–"
        trs = [n for n in w.paths if n.startswith("transport")]
        # "ref-<t>": a reference measured through the mount on transport t (dd bs=1M)
        refs = [n for n in w.paths if n.startswith("ref-")]
        tr = "; ".join(f"{fmt_value(w.metric, w.value(n))} ({w.paths[n]['label']})" for n in trs + refs) or "–"
        vd = [fmt_ratio(w, w.ratio("direct", d)) if "direct" in w.paths and d in w.paths else "–" for d in dfs]
        vt = ["; ".join(fmt_ratio(w, w.ratio(n, d)) for n in trs + [r for r in refs if df_name(r[4:]) == d])
              or "–" if d in w.paths else "–" for d in dfs]
        if w.metric == "MB":
            vd = vt = ["–" for _ in dfs]
        tg = "; ".join(c["target"] for c in w.checks) or "–"
        rs = []
        for c in w.checks:
            for d, r in c.get("results", {}).items():
                who = f"{short[d]}: " if len(dfs) > 1 or c["only"] else ""
                if c["only"]:  # the local transport's own target
                    who = f"{short[d]} {c['target'].split(': ', 1)[-1]}: "
                if r["pass"] is None:
                    rs.append(f"{who}n/a")
                elif c["kind"] == "abs":
                    rs.append(f"{who}{'PASS' if r['pass'] else 'MISS'} (max {r['value']:.1f} MB)")
                elif c["kind"] == "abs_us":
                    rs.append(f"{who}{'PASS' if r['pass'] else 'MISS'} ({r['value']:.0f} µs)")
                else:
                    rs.append(f"{who}{'PASS' if r['pass'] else 'MISS'} ({fmt_ratio(w, r['value'])})")
        rows.append([w.title] + [fmt_waits(w, d) for d in dfs] + vals + [di, tr] + vd + vt
                    + [tg, "; ".join(rs) or "–"])
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    lines = []
    for n, r in enumerate(rows):
        lines.append("| " + " | ".join(c.ljust(widths[k]) for k, c in enumerate(r)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (wd + 2) for wd in widths) + "|")
    return "\n".join(lines)


def cpu_table(results):
    """Median CPU seconds per run of each party, for the rows that have them
    (dockerd/containerd include the helpers they reaped; "exec'd in
    container": runc and the tools of docker exec, reaped by the shim), and
    for the reads the MB of the file already in the page cache."""
    parties = ["client tools", "dockerfuse", "satellite", "dockerd", "containerd", "shim", "exec'd in container",
               "resident MB before"]
    rows = [["workload / path", "wall"] + parties]
    for w in results:
        for name, p in w.paths.items():
            if not p["cpu"]:
                continue
            cells = [f"{w.title} / {p['label']}", fmt_value("s", w.median(name))]
            for k in parties:
                vals = [c.get(k) for c in p["cpu"] if c.get(k) is not None]
                cells.append(f"{statistics.median(vals):.2f}" if vals and k in p["cpu"][0] else "–")
            rows.append(cells)
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    lines = []
    for n, r in enumerate(rows):
        lines.append("| " + " | ".join(c.ljust(widths[k]) for k, c in enumerate(r)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (wd + 2) for wd in widths) + "|")
    return "\n".join(lines)


def machine(ctx):
    def first(path, key):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(key):
                        return line.split(":", 1)[1].strip()
        except OSError:
            return None
    m = {"nproc": os.cpu_count(), "cpu": first("/proc/cpuinfo", "model name"),
         "memory": first("/proc/meminfo", "MemTotal"), "kernel": platform.release(),
         "docker": out(["docker", "version", "--format", "client {{.Client.Version}}, server {{.Server.Version}}"]),
         "storage_driver": out(["docker", "info", "--format", "{{.Driver}}"]),
         "python": platform.python_version(),
         "fio": out(["fio", "--version"]) if ctx.fio else None}
    return m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--container", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--dockerfuse", required=True)
    ap.add_argument("--arch", required=True)
    ap.add_argument("--satellite-arch", default="")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--df-flags", default="")
    ap.add_argument("--transports", default="",
                    help="transports to run side by side, e.g. 'exec local' (default: dockerfuse's own choice)")
    ap.add_argument("--walk-ttl", default="", help="--ttl of the walk mounts (default: dockerfuse's own TTLs)")
    ap.add_argument("--only", default="")
    ap.add_argument("--remote-rtt-ms", type=float, default=20.0)
    ap.add_argument("--remote-repeats", type=int, default=1)
    ap.add_argument("--as-user", default="", help="make the mounts and run their workloads as this user")
    ap.add_argument("--user-home", default="", help="the user's scratch directory (mounts, logs, runtime dir)")
    ap.add_argument("--fuse-dev", default="", help="how /dev/fuse was opened to the user (for the report)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--table-out", required=True)
    a = ap.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))

    ctx = Ctx()
    ctx.container, ctx.work, ctx.dockerfuse = a.container, a.work, a.dockerfuse
    ctx.satellite_arch, ctx.repeats, ctx.warmup = a.satellite_arch, a.repeats, a.warmup
    ctx.df_flags = shlex.split(a.df_flags)
    ctx.walk_ttl = a.walk_ttl
    ctx.remote_rtt_ms, ctx.remote_repeats = a.remote_rtt_ms, a.remote_repeats
    if not 0 <= ctx.remote_rtt_ms <= 10_000 or ctx.remote_repeats < 1:
        raise BenchError("--remote-rtt-ms must be 0..10000 and --remote-repeats at least 1")
    ctx.transports = [t for t in re.split(r"[ ,]+", a.transports) if t] or [""]
    for t in ctx.transports:
        if t not in ("auto", "exec", "local"):
            raise BenchError(f"unknown transport {t!r} (auto, exec, local)")
    ctx.fio = shutil.which("fio") is not None
    ctx.user = User(a.as_user, a.user_home) if a.as_user else None
    ctx.sat_arch = None
    only = [g for g in re.split(r"[ ,]+", a.only) if g] or GROUPS
    for g in only:
        if g not in GROUPS:
            raise BenchError(f"unknown workload group {g!r} (known: {' '.join(GROUPS)})")
        if ctx.user and g not in USER_GROUPS:
            raise BenchError(f"workload group {g!r} is not run as a user (--as-user: {' '.join(USER_GROUPS)})")
    if ctx.user and not a.only:
        only = USER_GROUPS
    info = json.loads(out(["docker", "inspect", "--format", "{{json .}}", ctx.container]))
    ctx.container_id = info["Id"]
    ctx.cpid = info["State"]["Pid"]
    ctx.shim_pid = ppid(ctx.cpid)
    ctx.direct = f"/proc/{ctx.cpid}/root"

    started = datetime.datetime.now(datetime.timezone.utc)
    load0 = open("/proc/loadavg").read().split()[:3]
    t_start = time.perf_counter()
    results, remote = [], []
    try:
        prepare(ctx)
        for g in [g for g in GROUPS if g in only and g in ("ready", "walk", "tar")]:
            log(f"workload group: {g}")
            {"ready": w_ready, "walk": w_walk, "tar": w_tar}[g](ctx, results)
        rest = [g for g in GROUPS if g in only and g not in ("ready", "walk", "tar", "remote")]
        if rest:
            # one mount per transport for the data workloads, default TTL
            mts = {t: Mount(ctx, transport=t) for t in ctx.transports}
            for mt in mts.values():
                mt.start()
                ctx.sat_arch = mt.satellite_arch() or ctx.sat_arch
            for g in rest:
                log(f"workload group: {g}")
                {"read": w_read, "write": w_write, "dd": w_dd, "create": w_create, "random": w_random,
                 "rtt": w_rtt, "latency": w_latency}[g](ctx, results, mts)
            for mt in mts.values():
                mt.stop()
        if "remote" in only:
            log("workload group: remote")
            w_remote(ctx, remote)
    finally:
        for mt in list(Mount.live):
            try:
                mt.stop()
            except Exception as e:  # keep cleaning up
                log(f"unmounting {mt.dir}: {e}")

    for w in results + remote:
        w.evaluate()
    version = out([ctx.dockerfuse, "-version"])
    doc = {
        "date": started.isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - t_start, 1),
        "machine": machine(ctx),
        "load_average": {"start": load0, "end": open("/proc/loadavg").read().split()[:3]},
        "dockerfuse": {"version": version, "binary": ctx.dockerfuse,
                       "sha256": hashlib.sha256(open(ctx.dockerfuse, "rb").read()).hexdigest(),
                       "binary_mtime": datetime.datetime.fromtimestamp(
                           os.stat(ctx.dockerfuse).st_mtime, datetime.timezone.utc).isoformat(timespec="seconds"),
                       "flags": ctx.df_flags, "walk_ttl": ctx.walk_ttl,
                       "transports": ctx.transports,
                       "satellite_arch": ctx.sat_arch},
        "container": {"image": info["Config"]["Image"], "arch": a.arch},
        "repeats": ctx.repeats, "warmup": ctx.warmup,
        "random_read_tool": "fio" if ctx.fio else "python",
        "as_user": dict(ctx.user.describe(), fuse_dev=a.fuse_dev) if ctx.user else None,
        "workloads": {w.key: w.to_json() for w in results + remote},
    }
    if remote:
        doc["remote"] = {"rtt_ms": ctx.remote_rtt_ms, "repeats": ctx.remote_repeats, "warmup": 0,
                         "proxy": "bench/delay_proxy.py", "transport": "exec"}
    git = subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(__file__)), "describe", "--always", "--dirty"],
                         stdout=subprocess.PIPE, stderr=DEVNULL)
    if git.returncode == 0:  # the work tree's HEAD now: the binary may be older (binary_mtime)
        doc["dockerfuse"]["git"] = git.stdout.decode().strip()

    head = (f"dockerfuse benchmark — {doc['date']} — {a.arch} container, satellite {ctx.sat_arch}, "
            f"flags: {' '.join(ctx.df_flags) or '(none)'}, transports: {' '.join(t or 'default' for t in ctx.transports)} — {version} ({doc['dockerfuse'].get('git', '?')})\n"
            f"machine: {doc['machine']['nproc']} CPUs, {doc['machine']['memory']}, kernel {doc['machine']['kernel']}, "
            f"docker {doc['machine']['docker']}; load avg {' '.join(load0)} → {' '.join(doc['load_average']['end'])}\n"
            + (f"as user {ctx.user.name} (uid {ctx.user.uid}, groups {' '.join(ctx.user.describe()['groups'])}): "
               f"the mounts and the workloads through them; direct and docker CLI rows as root; "
               f"/dev/fuse: {a.fuse_dev or 'as the machine has it'}\n" if ctx.user else "")
            + f"medians of {ctx.repeats} runs after {ctx.warmup} warm-up; ratios: % = dockerfuse speed as a share "
            f"of the other path's, × = dockerfuse time as a multiple of the other path's\n")
    text = head + "\n" + table(results, ctx.transports) if results else head
    if remote:
        text += (f"\n\nRemote engine: {ctx.remote_rtt_ms:g} ms round trip through bench/delay_proxy.py, "
                 f"dockerfuse on the exec transport and the docker CLI both with DOCKER_HOST through it; "
                 f"{ctx.remote_repeats} round(s), no warm-up:\n\n" + table(remote, ["remote"]))
    text += ("\n\nWaits (kernel requests answered only after a round trip to the satellite) per unit, "
             "by kernel operation; satellite requests by kind:\n\n" + waits_table(results + remote))
    if results:
        text += "\n\nCPU seconds per run (median):\n\n" + cpu_table(results)
    text += "\n"
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")
    with open(a.table_out, "w") as f:
        f.write(text)
    log(f"wrote {a.out} and {a.table_out} ({doc['duration_s']} s)")


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        log(f"ERROR: {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
