#!/usr/bin/env python3
"""Creates the container refuses, seen by a program through the mount.

Usage: refused.py DIR ERRNO-NAME [CREATED]

In DIR (through the mount, listed before so that creates may be answered
on the host and sent behind), three files are created with O_EXCL (then
CREATED is made, if given), then written: c1 is closed, c2 fsynced then
closed, c3 written twice then closed. Then DIR is fsynced twice. Prints one line per file with the step
that failed first and its errno ("c1 close EACCES"; "ok" when nothing
failed), then "dir <first fsync> <second fsync>", then "names" and the
names of DIR that exist. Exit status 0 when every file failed with
ERRNO-NAME at some step (never silently), 1 otherwise.

With REFUSED_CLOSE_BEHIND=1 (a mount with --close-behind, whose close
may return before the container refused), a file whose close succeeded
is opened again by its name, for writing ("reopen"): that reports the refusal.
"""
import errno
import os
import sys


def name(e):
    return errno.errorcode.get(e, str(e))


def main():
    d, want = sys.argv[1], sys.argv[2]
    good = True
    plan = (("c1", ["write", "close"]),
            ("c2", ["write", "fsync", "close"]),
            ("c3", ["write", "write", "close"]))
    # All three created first: with the names known absent, each is
    # answered on the host and the three are in flight together.
    reopen = os.environ.get("REFUSED_CLOSE_BEHIND") == "1"
    if reopen:
        plan = tuple((f, steps + ["reopen"]) for f, steps in plan)
    fds, failed = {}, {}
    for f, _ in plan:
        try:
            fds[f] = os.open(os.path.join(d, f), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except OSError as e:
            failed[f] = ("create", e.errno)
    if len(sys.argv) > 3:
        open(sys.argv[3], "w").close()
    for f, steps in plan:
        for step in steps if f in fds else []:
            try:
                if step == "write":
                    os.write(fds[f], b"x" * 1000)
                elif step == "fsync":
                    os.fsync(fds[f])
                elif step == "reopen":
                    os.close(os.open(os.path.join(d, f), os.O_WRONLY))
                else:
                    os.close(fds[f])
            except OSError as e:
                failed.setdefault(f, (step, e.errno))
                if step == "close":
                    break
        if f in failed:
            print(f, failed[f][0], name(failed[f][1]))
            good = good and name(failed[f][1]) == want
        else:
            print(f, "ok")
            good = False
    syncs = []
    for _ in range(2):
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
            syncs.append("ok")
        except OSError as e:
            syncs.append(name(e.errno))
        finally:
            os.close(dfd)
    print("dir", *syncs)
    print("names", *sorted(n for n in os.listdir(d) if n in ("c1", "c2", "c3")))
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
