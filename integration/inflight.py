#!/usr/bin/env python3
"""Creates and writes sent behind when the container goes away.

  inflight.py write DIR LOG   mkdir DIR (through the mount: its names are
      then known absent, so creates are answered on the host), then create
      files f00000, f00001... there with O_EXCL, one write of SIZE bytes
      each, keeping up to OPEN of them open (the oldest is closed when a
      new one would pass that); every 7th file is fsynced. All through a
      descriptor of DIR, so that after the mount is gone the next call
      reaches the dead connection (not the empty mount point). Appends
      "fsynced NAME" or "closed NAME" to LOG once that returned, and ends
      with "error STEP NAME ERRNO" at the first failure (exit 0), or
      "done" after MAX files (exit 1: the container outlived the run).
  inflight.py check COPY LOG [KEPT]  COPY is the container's DIR copied out
      after the container was started again: every file LOG says was
      fsynced or closed (KEPT "fsynced": only fsynced, as with
      --close-behind) holds all its bytes; every other file holds a prefix of its
      bytes, holes (zeros) allowed, never a wrong byte, never more. Exit 1
      when not.
"""
import errno
import os
import sys

SIZE = 8192
OPEN = 32
MAX = 20000


def data(i):
    unit = ("%05d:" % i).encode()
    return (unit * (SIZE // len(unit) + 1))[:SIZE]


def write(d, log):
    out = open(log, "a", buffering=1)
    os.mkdir(d)
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    held = []

    def failed(step, name, e):
        out.write("error %s %s %s\n" % (step, name, errno.errorcode.get(e.errno, str(e.errno))))
        return 0

    for i in range(MAX):
        name = "f%05d" % i
        if len(held) >= OPEN:
            old, fd = held.pop(0)
            try:
                os.close(fd)
            except OSError as e:
                return failed("close", old, e)
            out.write("closed %s\n" % old)
        try:
            fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644, dir_fd=dfd)
        except OSError as e:
            return failed("create", name, e)
        held.append((name, fd))
        try:
            os.write(fd, data(i))
        except OSError as e:
            return failed("write", name, e)
        if i % 7 == 6:
            try:
                os.fsync(fd)
            except OSError as e:
                return failed("fsync", name, e)
            out.write("fsynced %s\n" % name)
    out.write("done\n")
    return 1


def check(copy, log, only="closed"):
    kept = set()
    steps = ("fsynced",) if only == "fsynced" else ("fsynced", "closed")
    for line in open(log):
        w = line.split()
        if w and w[0] in steps:
            kept.add(w[1])
    bad, present, whole = [], 0, 0
    for name in sorted(os.listdir(copy)):
        want = data(int(name[1:]))
        got = open(os.path.join(copy, name), "rb").read()
        present += 1
        if len(got) > len(want) or any(g != w and g != 0 for g, w in zip(got, want)):
            bad.append("%s holds bytes it was never given" % name)
        elif got == want:
            whole += 1
    missing = [n for n in sorted(kept) if not os.path.exists(os.path.join(copy, n))]
    short = [n for n in sorted(kept) if n not in missing
             and open(os.path.join(copy, n), "rb").read() != data(int(n[1:]))]
    print("files in the container: %d (%d whole); %s: %d, of which missing %d, incomplete %d"
          % (present, whole, " or ".join(steps), len(kept), len(missing), len(short)))
    for b in bad + ["%s was fsynced or closed but is missing" % n for n in missing] + \
            ["%s was fsynced or closed but is incomplete" % n for n in short]:
        print(b)
    return 1 if bad or missing or short else 0


if __name__ == "__main__":
    cmd, a, b = sys.argv[1:4]
    sys.exit(write(a, b) if cmd == "write" else check(a, b, *sys.argv[4:5]))
