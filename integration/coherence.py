#!/usr/bin/env python3
"""Coherence test: changes made inside the container must show on the host.

A shell inside the container (one `docker exec -i`, kept open) makes a
change; the host, which holds the directory listed, the names looked up
(absent ones too, in directories it listed whole) and a file open, polls the same directory both through
the mount and directly (/proc/<pid>/root of the container) until each
shows the change. The delay between the two is the change -> visible
latency. Each change must show within --bound seconds and stay visible (no
stale data afterwards). A second file, rewritten in place along with the
first and read by nothing else, is held open read-only through the mount
from before its first rewrite (as `exec 3< file` does): each rewrite must
show through that descriptor too, within the same bound (its contents may
have come with the open and must not outlive a change). Prints one line
per failure and a summary line:

    coherence: N changes, p50 X ms, p99 Y ms, max Z ms, R reads through a
    held descriptor, F failures

Exit status 0 when every change showed in time, 1 otherwise, 2 on misuse.
"""

import argparse
import calendar
import os
import stat
import subprocess
import sys
import threading
import time


class Shell:
    """A shell in the container that runs one line at a time."""

    def __init__(self, container):
        self.p = subprocess.Popen(
            ["docker", "exec", "-i", container, "sh"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def start(self, cmd):
        """Starts cmd; `wait` collects its end."""
        self.p.stdin.write(f"{{ {cmd}; }} >/dev/null 2>&1; echo __done__\n")
        self.p.stdin.flush()

    def wait(self):
        while True:
            line = self.p.stdout.readline()
            if not line:
                raise RuntimeError("the container shell ended")
            if line.startswith("__done__"):
                return

    def close(self):
        try:
            self.p.stdin.close()
            self.p.wait(timeout=10)
        except Exception:
            self.p.kill()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def exists(path):
    return os.path.lexists(path)


def listed(path):
    """Lists path to its end (as `ls` does), so the mount has all its names."""
    os.listdir(path)
    return True


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def attempt(pred):
    try:
        return bool(pred())
    except OSError:
        return False


class Holder(threading.Thread):
    """Keeps the kernel's caches busy: lists, stats and reads in a loop."""

    def __init__(self, root):
        super().__init__(daemon=True)
        self.root = root
        self.stop = False

    def run(self):
        while not self.stop:
            try:
                for name in os.listdir(self.root):
                    p = os.path.join(self.root, name)
                    st = os.lstat(p)
                    if stat.S_ISREG(st.st_mode):
                        read(p)
                    elif stat.S_ISDIR(st.st_mode):
                        os.listdir(p)
            except OSError:
                pass
            time.sleep(0.002)


def steps(c, r):
    """(description, container command, predicate on a base dir, alone) of
    round r.

    c: the test directory in the container; the predicates are evaluated
    through the mount and directly. alone: what the held descriptor of
    k{r}/x must read after the change (None: not checked).
    """
    cf, cg, cd, ck = f"{c}/f{r}", f"{c}/g{r}", f"{c}/d{r}", f"{c}/k{r}/x"

    def on(pred):
        def at(h):
            f, g, d = f"{h}/f{r}", f"{h}/g{r}", f"{h}/d{r}"  # noqa: F841
            return pred(f, g, d)

        return at

    return [
        ("create a file", f"printf one > {cf} && mkdir {c}/k{r} && printf one > {ck}",
         on(lambda f, g, d: read(f) == b"one"), b"one"),
        ("rewrite it, same size", f"printf two > {cf} && printf two > {ck}",
         on(lambda f, g, d: read(f) == b"two"), b"two"),
        ("append to it", f"printf more >> {cf} && printf more >> {ck}",
         on(lambda f, g, d: read(f) == b"twomore"), b"twomore"),
        ("truncate it", f"truncate -s 2 {cf} && truncate -s 2 {ck}",
         on(lambda f, g, d: read(f) == b"tw"), b"tw"),
        ("chmod it", f"chmod 600 {cf}", on(lambda f, g, d: mode(f) == 0o600)),
        ("set its mtime", f"touch -d '2001-02-03 04:05:06' {cf}",
         on(lambda f, g, d: int(os.stat(f).st_mtime) == calendar.timegm((2001, 2, 3, 4, 5, 6, 0, 0, 0)))),
        ("rename it", f"mv {cf} {cg}", on(lambda f, g, d: exists(g) and not exists(f))),
        ("replace it by a rename", f"printf new > {cf}.tmp && mv {cf}.tmp {cg}",
         on(lambda f, g, d: read(g) == b"new")),
        ("make a directory with a file", f"mkdir {cd} && printf x > {cd}/x",
         on(lambda f, g, d: os.listdir(d) == ["x"])),
        # Listed first (a complete listing answers lookups of absent names
        # on the host): the new name must still show.
        ("create a file in a listed directory", f"printf y > {cd}/y",
         on(lambda f, g, d: listed(d) and read(f"{d}/y") == b"y")),
        ("add a symlink", f"ln -s target {cd}/l", on(lambda f, g, d: os.readlink(f"{d}/l") == "target")),
        ("add a hard link", f"ln {cg} {cd}/hard", on(lambda f, g, d: os.stat(g).st_nlink == 2)),
        ("remove a file", f"rm {cg}", on(lambda f, g, d: not exists(g) and os.stat(f"{d}/hard").st_nlink == 1)),
        ("remove the directory", f"rm -r {cd} {c}/k{r}", on(lambda f, g, d: not exists(d))),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--container", required=True)
    ap.add_argument("--mount-dir", required=True, help="the test directory through the mount")
    ap.add_argument("--container-dir", required=True, help="the same directory in the container")
    ap.add_argument("--direct-dir", required=True, help="the same directory through /proc/<pid>/root")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--bound", type=float, default=0.5, help="seconds a change may take to show")
    args = ap.parse_args()
    h, d = args.mount_dir, args.direct_dir
    if not os.path.isdir(h):
        print(f"coherence: {h} is not a directory", file=sys.stderr)
        return 2

    sh = Shell(args.container)
    holder = Holder(h)
    holder.start()
    lat, failures, alone_reads = [], 0, 0
    held = alone = None
    try:
        for r in range(args.rounds):
            for desc, cmd, pred, *want in steps(args.container_dir, r):
                want = want[0] if want else None
                # Prime the caches with the state before the change: the
                # predicate is false now (absent names become negative
                # entries, attributes and pages get cached).
                for _ in range(3):
                    attempt(lambda: pred(h))
                    os.listdir(h)
                if held is None and exists(f"{h}/f{r}"):
                    held = open(f"{h}/f{r}", "rb")
                if alone is None and exists(f"{h}/k{r}/x"):
                    alone = os.open(f"{h}/k{r}/x", os.O_RDONLY)
                if alone is not None:
                    attempt(lambda: os.pread(alone, 64, 0))
                check_alone = want is not None and alone is not None
                sh.start(cmd)
                direct = seen = alone_seen = alone_last = None
                deadline = time.time() + args.bound + 10
                while time.time() < deadline and (seen is None or (check_alone and alone_seen is None)):
                    now = time.time()
                    if direct is None and attempt(lambda: pred(d)):
                        direct = now
                    if seen is None and attempt(lambda: pred(h)):
                        seen = time.time()
                    if check_alone and alone_seen is None:
                        try:
                            alone_last = os.pread(alone, 64, 0)
                        except OSError as e:
                            alone_last = e
                        if alone_last == want:
                            alone_seen = time.time()
                    if held is not None:
                        try:
                            os.pread(held.fileno(), 16, 0)
                        except OSError:
                            pass
                    time.sleep(0.0002)
                sh.wait()
                if direct is None and attempt(lambda: pred(d)):
                    direct = time.time()
                if direct is None:
                    failures += 1
                    print(f"round {r}: {desc}: the change did not happen in the container")
                    continue
                if seen is None:
                    failures += 1
                    print(f"round {r}: {desc}: not visible through the mount after {args.bound + 10:.0f} s")
                    continue
                delay = max(0.0, seen - direct)
                lat.append(delay)
                if delay > args.bound:
                    failures += 1
                    print(f"round {r}: {desc}: visible after {delay * 1000:.0f} ms (bound {args.bound * 1000:.0f} ms)")
                if check_alone:
                    if alone_seen is None:
                        failures += 1
                        print(f"round {r}: {desc}: the descriptor held open still reads {alone_last!r}, not {want!r}")
                    elif alone_seen - direct > args.bound:
                        failures += 1
                        print(f"round {r}: {desc}: the descriptor held open read the change after "
                              f"{(alone_seen - direct) * 1000:.0f} ms (bound {args.bound * 1000:.0f} ms)")
                    else:
                        alone_reads += 1
                # No stale data afterwards.
                for _ in range(20):
                    if not attempt(lambda: pred(h)):
                        failures += 1
                        print(f"round {r}: {desc}: seen, then stale again")
                        break
                    time.sleep(0.002)
            if held is not None:
                held.close()
                held = None
            if alone is not None:
                os.close(alone)
                alone = None
    finally:
        holder.stop = True
        sh.close()
    lat.sort()

    def pct(p):
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

    print(
        f"coherence: {len(lat)} changes, p50 {pct(0.5):.1f} ms, p99 {pct(0.99):.1f} ms, "
        f"max {pct(1.0):.1f} ms, {alone_reads} reads through a held descriptor, {failures} failures"
    )
    # Each round rewrites the held file three times.
    if alone_reads < 3 * args.rounds and not failures:
        print(f"coherence: only {alone_reads} of {3 * args.rounds} rewrites were read through a held descriptor")
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
