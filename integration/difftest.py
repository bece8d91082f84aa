#!/usr/bin/env python3
"""Randomized differential test: the mount against direct access.

Two twin directories live in the same container: one is reached through the
dockerfuse mount (MOUNT_DIR), the other directly through the container's
root from the host (DIRECT_DIR, i.e. /proc/<pid>/root/...). A seeded
generator produces a sequence of operations over a small universe of names
(so that many of them collide: EEXIST, ENOENT, ENOTEMPTY, EISDIR... are
exercised as much as the successes). Each operation is applied to both
twins in lockstep and the results (return value or errno, plus whatever the
operation reads back) must be identical. At the end of a sequence the two
whole trees are compared: types, modes, sizes, contents, owners, nlink, the
hard-link partition (which names share an inode), symlink targets, user.*
xattrs and explicitly set mtimes.

With --third-party-dir (the mount's twin reached directly, not through the
mount) and --third-party-every N, every N operations one more random
operation is made by a third party: applied directly to both twins, so the
mount's twin changes behind the mount's back (as a process in the
container would change it). After --settle seconds the sequence goes on
through the mount, which must then see the change: a stale cache shows as
a divergence. With --race-every N, every N operations a third party makes a
name right after the mount's create of it returned (see race()).

On a divergence the sequence is replayed from empty twins and shrunk with
delta debugging (ddmin) to the shortest list of operations that still
diverges; that list is printed with the seed, as Python-like calls, and
can be replayed with --replay FILE.

Runs on the host as root (it needs /proc/<pid>/root). python3 stdlib only.

Identities (--as-user UID:GID:G1,G2,...; the mount made with --allow-other):
operations run as that user, with those supplementary groups, on both twins
alike (the process switches its effective ids and groups around each
operation, so the FUSE requests come from a caller with exactly these
credentials), mixed with operations run as root (marked "@root": setuid and
setgid files, group-owned setgid directories, files of other users). Both
twins are then reached through descriptors opened as root
(/proc/self/fd/N/...), so the user needs no rights on the paths leading to
them, as with a helper process holding the container's root open.

Usage:
  difftest.py --mount-dir M --direct-dir D [--seed S] [--ops N]
              [--seq-len L] [--shrink-budget SECONDS] [--replay FILE]
              [--as-user UID:GID:G1,G2,...]
Exit status: 0 no divergence, 1 divergence(s) found, 2 usage/setup error.
The last line is "difftest: ops=N sequences=K divergences=J seed=S".
"""

import argparse
import ctypes
import ctypes.util
import errno
import hashlib
import json
import mmap
import os
import random
import shutil
import stat
import sys
import time

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
FALLOC_FL_KEEP_SIZE = 1
FALLOC_FL_PUNCH_HOLE = 2
FALLOC_FL_ZERO_RANGE = 0x10
SEEK_DATA = 3
SEEK_HOLE = 4


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
libc.utimensat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(Timespec), ctypes.c_int]
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
libc.getxattr.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
libc.getxattr.restype = ctypes.c_ssize_t
libc.listxattr.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
libc.listxattr.restype = ctypes.c_ssize_t


def _check(ret):
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return ret


# --- the operation universe ----------------------------------------------------

DIRS = ["", "", "d1", "d1/d2"]
NAMES = ["a", "b", "c", "d1", "d2", "x"]
XNAMES = ["user.a", "user.b", "user.long"]
# Targets never leave the twin: no "..", and the only absolute one names
# nothing (followed through the mount, an absolute link points into the
# HOST's tree, and the test runs as root).
SYMLINK_TARGETS = ["a", "b", "d1/b", "nowhere", "d2", "d1", "/nonexistent-dfdiff/x"]
assert all(".." not in t and (not t.startswith("/") or t.startswith("/nonexistent-dfdiff/")) for t in SYMLINK_TARGETS)
OLD = 1_500_000_000  # explicit timestamps are below this; "now" never is


def rand_path(r):
    d = r.choice(DIRS)
    n = r.choice(NAMES)
    return f"{d}/{n}" if d else n


def rand_data(r):
    k = r.random()
    if k < 0.3:
        return bytes([r.randrange(256)]) * r.randrange(1, 64)
    if k < 0.9:
        return r.randbytes(r.randrange(1, 5000))
    return r.randbytes(r.randrange(60000, 200000))


def rand_time(r):
    k = r.random()
    if k < 0.2:
        return "now"
    if k < 0.4:
        return "omit"
    return (r.randrange(1, OLD), r.randrange(0, 1_000_000_000))


# --- identities (--as-user) ------------------------------------------------------------

# The user the operations run as, or None (everything as root).
USER = None  # (uid, gid, [groups])
FOREIGN = 4000  # a uid and gid the user has nothing to do with


def parse_user(spec):
    uid, gid, groups = spec.split(":")
    return int(uid), int(gid), [int(g) for g in groups.split(",") if g]


class As:
    """Runs a block with the effective ids and groups of USER (root keeps
    its real and saved uid 0, so it can come back)."""

    def __init__(self, who):
        self.who = who

    def __enter__(self):
        if self.who is not None:
            uid, gid, groups = self.who
            os.setgroups(groups)
            os.setegid(gid)
            os.seteuid(uid)

    def __exit__(self, *exc):
        if self.who is not None:
            os.seteuid(0)
            os.setegid(0)
            os.setgroups([])


def gen_id_op(r, known):
    """With --as-user: an operation as the user (drawn as usual, with chown
    among the user's own and foreign ids) or, one time in four, one as root
    that makes something the user meets: setuid/setgid files, group-owned
    setgid directories, files of other users."""
    uid, gid, groups = USER
    pick = lambda: r.choice(sorted(known)) if known and r.random() < 0.8 else rand_path(r)  # noqa: E731
    ids = [uid, -1, 0, FOREIGN]
    gids = [gid, -1, FOREIGN, 0] + groups * 2
    if r.random() < 0.25:
        k = r.choice(["create", "chmod", "chmod", "chown", "chown", "mkdir", "write"])
        p = pick()
        if k == "create":
            return ["@root", k, rand_path(r) if r.random() < 0.6 else p,
                    r.choice([0o4777, 0o2777, 0o6777, 0o2767, 0o6766, 0o666, 0o644]), r.choice(["", "trunc"])]
        if k == "chmod":
            return ["@root", k, p, r.choice([0o4777, 0o2777, 0o6777, 0o2767, 0o6755, 0o2775, 0o777, 0o1777, 0o700, 0o750])]
        if k == "chown":
            return ["@root", k, p, r.choice([uid, uid, FOREIGN, 0]), r.choice(gids[2:] + [gid]), r.random() < 0.2]
        if k == "mkdir":
            return ["@root", k, rand_path(r), r.choice([0o2775, 0o2777, 0o1777, 0o777, 0o755])]
        return ["@root", k, p, 0, rand_data(r).hex()]
    op = gen_op(r, known)
    if op[0] == "chown":
        op = ["chown", op[1], r.choice(ids), r.choice(gids), op[4]]
        if op[2] == op[3] == -1:
            # Known, documented: chown(f, -1, -1) of a setuid/setgid file the
            # user does not own succeeds without effect through the mount
            # (EPERM on Linux); see docs/SEMANTICS.md, Identity.
            op[3] = gid
    elif op[0] == "chmod" and r.random() < 0.5:
        op = ["chmod", op[1], r.choice([0o6777, 0o2777, 0o4755, 0o2775, 0o2767, 0o777])]
    elif op[0] in ("mkdir", "create") and r.random() < 0.3:
        op[2] = r.choice([0o2775, 0o6777, 0o2767, 0o777])
    return op


def gen_seq(r, n):
    """n random operations. Paths are drawn mostly from the names earlier
    operations probably created (a guess of the generator, not an oracle),
    so that most operations meet something and succeed."""
    known = set()
    ops = [["mkdir", "d1", 0o755], ["mkdir", "d1/d2", 0o755], ["create", "a", 0o644, ""]]
    known.update(["d1", "d1/d2", "a"])
    if USER is not None:
        # Shared directories the user may write in: setgid and owned by
        # one of its supplementary groups, and sticky.
        ops = [["@root", "mkdir", "d1", 0o2777], ["@root", "chown", "d1", 0, USER[2][0], False],
               ["@root", "mkdir", "d1/d2", 0o1777], ["create", "a", 0o644, ""]]
    while len(ops) < n:
        op = gen_id_op(r, known) if USER is not None else gen_op(r, known)
        k = op[1] if op[0] == "@root" else op[0]
        body = op[1:] if op[0] == "@root" else op
        op, full = body, op
        if k in ("create", "mkdir", "mkfifo") and not isinstance(op[1], int):
            known.add(op[1])
        elif k == "symlink":
            known.add(op[2])
        elif k == "link":
            known.add(op[2])
        elif k == "rename":
            known.add(op[2])
            if op[3] != RENAME_EXCHANGE:
                known.discard(op[1])
        elif k in ("unlink", "rmdir"):
            known.discard(op[1])
        ops.append(full)
    return ops[:n]


def gen_op(r, known=()):
    """One random operation as a JSON-able list [name, args...]."""
    k = r.choice(OPS_WEIGHTED)
    pick = lambda: r.choice(sorted(known)) if known and r.random() < 0.75 else rand_path(r)  # noqa: E731
    p, q = pick(), pick()
    if k in ("create", "mkdir", "mkfifo", "symlink", "owur") and r.random() < 0.7:
        p = rand_path(r)
    if k in ("symlink", "link") and r.random() < 0.7:
        q = rand_path(r)
    if k == "create":
        return [k, p, r.choice([0o644, 0o600, 0o755, 0o4755, 0o2750, 0o1777]), r.choice(["", "excl", "trunc"])]
    if k == "write":
        return [k, p, r.choice([0, 0, r.randrange(0, 300000)]), rand_data(r).hex()]
    if k == "append":
        return [k, p, rand_data(r).hex()]
    if k == "dwrite":
        # O_DIRECT: block-aligned offset, length and (mmap) buffer, which
        # direct access needs too
        return [k, p, 4096 * r.choice([0, 0, r.randrange(0, 40)]), r.randrange(1, 5), r.randrange(256)]
    if k == "dread":
        return [k, p, 4096 * r.choice([0, 0, r.randrange(0, 40)]), 4096 * r.randrange(1, 9)]
    if k == "truncate":
        return [k, p, r.choice([0, 1, r.randrange(0, 300000)])]
    if k == "otrunc":
        return [k, p, rand_data(r).hex()]
    if k == "rename":
        return [k, p, q, r.choice([0, 0, RENAME_NOREPLACE, RENAME_EXCHANGE])]
    if k in ("link",):
        return [k, p, q]
    if k == "symlink":
        return [k, r.choice(SYMLINK_TARGETS), q]
    if k == "mkdir":
        return [k, p, r.choice([0o755, 0o700, 0o1777, 0o2755])]
    if k == "chmod":
        return [k, p, r.choice([0o644, 0o600, 0o755, 0o4755, 0o2711, 0o1777, 0o000, 0o6755])]
    if k == "chown":
        return [k, p, r.choice([0, 1000, 65534, -1]), r.choice([0, 1000, 65534, -1]), r.random() < 0.3]
    if k == "utimens":
        return [k, p, rand_time(r), rand_time(r), r.random() < 0.2]
    if k == "setxattr":
        return [k, p, r.choice(XNAMES), r.randbytes(r.choice([0, 1, 10, 300])).hex(), r.choice([0, 0, 1, 2])]
    if k in ("removexattr", "getxattr"):
        return [k, p, r.choice(XNAMES)]
    if k == "fallocate":
        mode = r.choice([0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, FALLOC_FL_ZERO_RANGE])
        return [k, p, mode, r.randrange(0, 200000), r.randrange(1, 100000)]
    if k == "seek":
        return [k, p, r.choice([SEEK_DATA, SEEK_HOLE]), r.randrange(0, 300000)]
    if k == "copy_range":
        return [k, p, q, r.randrange(0, 5000), r.randrange(0, 5000), r.randrange(1, 100000)]
    if k == "owur":
        return [k, p, rand_data(r).hex()]
    if k == "mkfifo":
        return [k, p, r.choice([0o644, 0o600])]
    if k == "mknod":
        return [k, p, r.choice(["chr", "sock", "fifo"]), r.choice([0o644, 0o600, 0o666])]
    if k == "lxattr":
        # (not trusted.*: that needs CAP_SYS_ADMIN, which root in a Docker
        # container lacks; see docs/SEMANTICS.md)
        return [k, p, r.choice(["user.a", "user.b"]), r.randbytes(r.choice([1, 20])).hex(), r.choice(["set", "get", "list", "remove"])]
    # unlink, rmdir, read, stat, listdir, readlink, listxattr, fsync
    return [k, p]


OPS_WEIGHTED = (
    ["create"] * 8 + ["write"] * 8 + ["append"] * 5 + ["truncate"] * 4 + ["otrunc"] * 3
    + ["rename"] * 8 + ["link"] * 4 + ["unlink"] * 5 + ["mkdir"] * 5 + ["rmdir"] * 3
    + ["symlink"] * 3 + ["chmod"] * 4 + ["chown"] * 3 + ["utimens"] * 4
    + ["setxattr"] * 4 + ["removexattr"] * 2 + ["getxattr"] * 3 + ["listxattr"] * 2
    + ["fallocate"] * 3 + ["seek"] * 2 + ["copy_range"] * 2 + ["owur"] * 2 + ["mkfifo"] * 1
    + ["mknod"] * 1 + ["lxattr"] * 3 + ["statfs"] * 1
    + ["dwrite"] * 2 + ["dread"] * 2
    + ["read"] * 5 + ["stat"] * 5 + ["listdir"] * 3 + ["readlink"] * 1 + ["fsync"] * 2
)


# --- applying an operation to one twin ----------------------------------------------


def digest(b):
    return hashlib.sha256(b).hexdigest()[:16]


def statsig(st):
    """What must match in a stat (inode numbers and times are compared elsewhere)."""
    return [stat.S_IFMT(st.st_mode), oct(stat.S_IMODE(st.st_mode)), st.st_size, st.st_nlink, st.st_uid, st.st_gid]


def ts_arg(t):
    if t == "now":
        return (0, UTIME_NOW)
    if t == "omit":
        return (0, UTIME_OMIT)
    return (t[0], t[1])


def read_all(fd):
    out = []
    while True:
        b = os.read(fd, 1 << 20)
        if not b:
            return b"".join(out)
        out.append(b)


def apply(root, op):
    """Runs op under root, as USER unless marked "@root"; returns a
    JSON-able result ([ok, ...] or [errno name])."""
    who = USER
    if op[0] == "@root":
        who, op = None, op[1:]
    try:
        with As(who):
            return ["ok", _apply(root, op)]
    except OSError as e:
        return [errno.errorcode.get(e.errno, str(e.errno))]


def _apply(root, op):
    k, args = op[0], op[1:]
    P = lambda rel: os.path.join(root, rel)  # noqa: E731
    if k == "create":
        p, mode, how = args
        flags = os.O_CREAT | os.O_WRONLY | os.O_NONBLOCK | {"": 0, "excl": os.O_EXCL, "trunc": os.O_TRUNC}[how]
        fd = os.open(P(p), flags, mode)
        try:
            return statsig(os.fstat(fd))
        finally:
            os.close(fd)
    if k == "write":
        p, off, data = args
        fd = os.open(P(p), os.O_WRONLY | os.O_NONBLOCK)
        try:
            n = os.pwrite(fd, bytes.fromhex(data), off)
            st = os.fstat(fd)
            return [n, st.st_size, oct(st.st_mode)]
        finally:
            os.close(fd)
    if k == "append":
        p, data = args
        fd = os.open(P(p), os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)
        try:
            n = os.write(fd, bytes.fromhex(data))
            st = os.fstat(fd)
            return [n, os.lseek(fd, 0, os.SEEK_CUR), st.st_size, oct(st.st_mode)]
        finally:
            os.close(fd)
    if k == "dwrite":
        p, off, blocks, first = args
        buf = mmap.mmap(-1, 4096 * blocks)
        buf.write(bytes((first + i) % 251 for i in range(4096 * blocks)))
        fd = os.open(P(p), os.O_WRONLY | os.O_DIRECT | os.O_NONBLOCK)
        try:
            n = os.pwrite(fd, buf, off)
            st = os.fstat(fd)
            return [n, st.st_size, oct(st.st_mode)]
        finally:
            os.close(fd)
    if k == "dread":
        p, off, size = args
        buf = mmap.mmap(-1, size)
        fd = os.open(P(p), os.O_RDONLY | os.O_DIRECT | os.O_NONBLOCK)
        try:
            n = os.preadv(fd, [buf], off)
            return [n, digest(buf[:n])]
        finally:
            os.close(fd)
    if k == "otrunc":
        p, data = args
        fd = os.open(P(p), os.O_WRONLY | os.O_TRUNC | os.O_NONBLOCK)
        try:
            n = os.write(fd, bytes.fromhex(data))
            st = os.fstat(fd)
            return [n, st.st_size, oct(st.st_mode)]
        finally:
            os.close(fd)
    if k == "truncate":
        os.truncate(P(args[0]), args[1])
        st = os.stat(P(args[0]))
        return [st.st_size, oct(st.st_mode)]
    if k == "rename":
        p, q, flags = args
        _check(libc.renameat2(AT_FDCWD, P(p).encode(), AT_FDCWD, P(q).encode(), flags))
        return None
    if k == "link":
        os.link(P(args[0]), P(args[1]), follow_symlinks=False)
        return os.lstat(P(args[1])).st_nlink
    if k == "unlink":
        os.unlink(P(args[0]))
        return None
    if k == "rmdir":
        os.rmdir(P(args[0]))
        return None
    if k == "mkdir":
        os.mkdir(P(args[0]), args[1])
        return statsig(os.lstat(P(args[0])))
    if k == "symlink":
        os.symlink(args[0], P(args[1]))
        return statsig(os.lstat(P(args[1])))[:1] + [os.readlink(P(args[1]))]
    if k == "mkfifo":
        os.mkfifo(P(args[0]), args[1])
        return statsig(os.lstat(P(args[0])))
    if k == "chmod":
        os.chmod(P(args[0]), args[1])
        return statsig(os.stat(P(args[0])))
    if k == "chown":
        p, uid, gid, nofollow = args
        os.chown(P(p), uid, gid, follow_symlinks=not nofollow)
        return statsig(os.stat(P(p), follow_symlinks=not nofollow))
    if k == "utimens":
        p, at, mt, nofollow = args
        flags = AT_SYMLINK_NOFOLLOW if nofollow else 0
        before = os.stat(P(p), follow_symlinks=not nofollow)
        t0 = time.time()
        ts = (Timespec * 2)(Timespec(*ts_arg(at)), Timespec(*ts_arg(mt)))
        _check(libc.utimensat(AT_FDCWD, P(p).encode(), ts, flags))
        t1 = time.time()
        after = os.stat(P(p), follow_symlinks=not nofollow)
        out = []
        for want, b, a in ((at, before.st_atime_ns, after.st_atime_ns), (mt, before.st_mtime_ns, after.st_mtime_ns)):
            if want == "omit":
                out.append(a == b)
            elif want == "now":
                out.append(t0 - 2 <= a / 1e9 <= t1 + 2)
            else:
                out.append(a)
        return out
    if k == "setxattr":
        p, name, value, flags = args
        os.setxattr(P(p), name, bytes.fromhex(value), flags)
        return None
    if k == "removexattr":
        os.removexattr(P(args[0]), args[1])
        return None
    if k == "getxattr":
        p, name = args
        need = _check(libc.getxattr(P(p).encode(), name.encode(), None, 0))
        buf = ctypes.create_string_buffer(max(need, 1))
        out = [need]
        if need > 0:  # one byte short: ERANGE
            r = libc.getxattr(P(p).encode(), name.encode(), buf, need - 1)
            out.append(errno.errorcode.get(ctypes.get_errno(), "?") if r < 0 else r)
        n = _check(libc.getxattr(P(p).encode(), name.encode(), buf, need))
        return out + [buf.raw[:n].hex()]
    if k == "listxattr":
        need = _check(libc.listxattr(P(args[0]).encode(), None, 0))
        names = sorted(os.listxattr(P(args[0])))
        return [need, names]
    if k == "fallocate":
        p, mode, off, ln = args
        fd = os.open(P(p), os.O_RDWR | os.O_NONBLOCK)
        try:
            _check(libc.fallocate(fd, mode, off, ln))
            data = read_all(fd)
            return [os.fstat(fd).st_size, digest(data)]
        finally:
            os.close(fd)
    if k == "seek":
        p, whence, off = args
        fd = os.open(P(p), os.O_RDONLY | os.O_NONBLOCK)
        try:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                # Known, documented: the FUSE kernel module answers lseek on
                # a directory itself (generic_file_llseek), never asking
                # the filesystem; SEEK_DATA/SEEK_HOLE there differ.
                return "directory"
            return os.lseek(fd, off, whence)
        finally:
            os.close(fd)
    if k == "copy_range":
        p, q, off_in, off_out, ln = args
        a = os.open(P(p), os.O_RDONLY | os.O_NONBLOCK)
        try:
            b = os.open(P(q), os.O_WRONLY | os.O_NONBLOCK)
            try:
                n = os.copy_file_range(a, b, ln, off_in, off_out)
                return [n, os.fstat(b).st_size]
            finally:
                os.close(b)
        finally:
            os.close(a)
    if k == "owur":  # open, write, unlink, read back through the open file
        p, data = args
        fd = os.open(P(p), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, bytes.fromhex(data))
            os.unlink(P(p))
            st = os.fstat(fd)
            os.ftruncate(fd, st.st_size + 7)
            got = os.pread(fd, 1 << 20, 0)
            return [st.st_nlink, os.fstat(fd).st_size, digest(got)]
        finally:
            os.close(fd)
    if k == "read":
        p = P(args[0])
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                return digest(read_all(fd))
            return "not-a-file"
        finally:
            os.close(fd)
    if k == "fsync":
        fd = os.open(P(args[0]), os.O_RDONLY | os.O_NONBLOCK)
        try:
            os.fsync(fd)
            os.fdatasync(fd)
            return None
        finally:
            os.close(fd)
    if k == "stat":
        return statsig(os.lstat(P(args[0])))
    if k == "statfs":
        sv = os.statvfs(P(args[0]))
        return [sv.f_bsize, sv.f_frsize, sv.f_blocks, sv.f_files, sv.f_namemax]
    if k == "mknod":
        p, kind, mode = args
        bits = {"chr": stat.S_IFCHR, "sock": stat.S_IFSOCK, "fifo": stat.S_IFIFO}[kind]
        os.mknod(P(p), bits | mode, os.makedev(1, 3) if kind == "chr" else 0)
        st = os.lstat(P(p))
        if kind == "chr":
            # FUSE mounts are nodev: opening a device node through the mount
            # is EACCES by design, so device nodes do not outlive this op.
            os.unlink(P(p))
        return statsig(st) + [st.st_rdev]
    if k == "lxattr":  # xattrs on the entry itself, symlinks included
        p, name, value, what = args
        if what == "set":
            os.setxattr(P(p), name, bytes.fromhex(value), follow_symlinks=False)
            return None
        if what == "get":
            return os.getxattr(P(p), name, follow_symlinks=False).hex()
        if what == "remove":
            os.removexattr(P(p), name, follow_symlinks=False)
            return None
        return sorted(os.listxattr(P(p), follow_symlinks=False))
    if k == "listdir":
        return sorted(os.listdir(P(args[0])))
    if k == "readlink":
        return os.readlink(P(args[0]))
    raise ValueError(f"unknown op {k}")


# --- whole-tree comparison -------------------------------------------------------------


def tree(root):
    """A description of everything below root, independent of inode numbers."""
    out = {}
    inodes = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            e = statsig(st)
            if stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    e.append(digest(f.read()))
            if stat.S_ISLNK(st.st_mode):
                e.append(os.readlink(full))
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                e.append(st.st_rdev)
            try:
                names = sorted(os.listxattr(full, follow_symlinks=False))
                e.append({n: os.getxattr(full, n, follow_symlinks=False).hex() for n in names
                          if n.startswith(("user.", "trusted."))})
            except OSError as ex:
                e.append(errno.errorcode.get(ex.errno))
            if not stat.S_ISLNK(st.st_mode) and (st.st_mtime_ns < OLD * 10**9):
                e.append(["mtime", st.st_mtime_ns])
            out[rel] = e
            if not stat.S_ISDIR(st.st_mode):
                inodes.setdefault(st.st_ino, []).append(rel)
    links = sorted(sorted(v) for v in inodes.values() if len(v) > 1)
    return {"entries": out, "hardlinks": links}


def tree_diff(a, b):
    lines = []
    for k in sorted(set(a["entries"]) | set(b["entries"])):
        x, y = a["entries"].get(k), b["entries"].get(k)
        if x != y:
            lines.append(f"  {k}: mount={x} direct={y}")
    if a["hardlinks"] != b["hardlinks"]:
        lines.append(f"  hard links: mount={a['hardlinks']} direct={b['hardlinks']}")
    # Recheck mtimes here: a tree listing itself does not change them.
    return lines


# --- running sequences ------------------------------------------------------------------


def clear(root):
    for name in os.listdir(root):
        p = os.path.join(root, name)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        else:
            os.unlink(p)


STATS = {}
# Third-party mode: the mount's twin reached directly, and the time given
# to the mount to see a change made there.
THIRD = {"dir": None, "settle": 0.1}


def _errname(e):
    return errno.errorcode.get(e.errno, str(e.errno))


def _make(path, as_dir, content):
    """A file holding content, or a directory, made exclusively at path."""
    if as_dir:
        os.mkdir(path, 0o755)
        return
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        os.write(fd, content)
    finally:
        os.close(fd)


def race(mnt, direct, op):
    """["race", path, mount_makes_dir, third_makes_dir]: the mount creates
    path (a file written and closed, or a directory), and a third party in
    the container makes the same name right after the mount's create
    returned, before it may have landed (the mount answers creates of names
    it knows absent at once and sends them behind). Exactly one wins: the
    third party's exclusive create succeeds only if the mount's had not
    landed, and then the mount's must fail with EEXIST at one of its steps
    (the create, the write, close, or the directory's fsync that follows);
    otherwise every step of the mount succeeds. The direct twin gets the
    winner's object. Returns (what the mount saw, what it should have)."""
    _, path, mdir, tdir = op
    parent = os.path.dirname(path)
    # Only a race when the name is free and its parent a directory.
    if os.path.lexists(os.path.join(direct, path)) or not os.path.isdir(os.path.join(direct, parent)):
        return ["skip"], ["skip"]
    seen = None
    fd = None
    try:
        if mdir:
            os.mkdir(os.path.join(mnt, path), 0o755)
        else:
            fd = os.open(os.path.join(mnt, path), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except OSError as e:
        seen = _errname(e)
    try:
        _make(os.path.join(THIRD["dir"], path), tdir, b"third party")
        third = "ok"
    except OSError as e:
        third = _errname(e)
    if fd is not None:
        for step in (lambda: os.write(fd, b"through the mount"), lambda: os.close(fd)):
            try:
                step()
            except OSError as e:
                seen = seen or _errname(e)
    dfd = os.open(os.path.join(mnt, parent), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    except OSError as e:
        seen = seen or _errname(e)
    finally:
        os.close(dfd)
    st = STATS.setdefault("race-won-by", {})
    if third == "ok":
        st["third-party"] = st.get("third-party", 0) + 1
        _make(os.path.join(direct, path), tdir, b"third party")
        want = "EEXIST"
    elif third == "EEXIST":
        st["mount"] = st.get("mount", 0) + 1
        _make(os.path.join(direct, path), mdir, b"through the mount")
        want = None
    else:
        want = third
    time.sleep(THIRD["settle"])
    return [seen or "ok"], [want or "ok"]


def run_seq(mnt, direct, ops, stop_at_first=True):
    """Applies ops to fresh twins; returns (index, detail) of the first divergence or None."""
    clear(mnt)
    clear(direct)
    for i, op in enumerate(ops):
        if op[0] == "race":
            a, b = race(mnt, direct, op)
        elif op[0] == "third":
            a = apply(THIRD["dir"], op[1])
            b = apply(direct, op[1])
            time.sleep(THIRD["settle"])
        else:
            a = apply(mnt, op)
            b = apply(direct, op)
        st = STATS.setdefault(op[0], {})
        st[a[0]] = st.get(a[0], 0) + 1
        if a != b:
            return (i, f"op {i} {fmt(op)}:\n  mount  -> {a}\n  direct -> {b}")
    ta, tb = tree(mnt), tree(direct)
    d = tree_diff(ta, tb)
    if d:
        return (len(ops), "final trees differ:\n" + "\n".join(d))
    return None


def fmt(op):
    if op[0] == "@root":
        return "@root " + fmt(op[1:])
    if op[0] == "third":
        return "third-party " + fmt(op[1])
    if op[0] == "race":
        kinds = ["file", "directory"]
        return f"race({op[1]!r}: the mount makes a {kinds[op[2]]}, a third party a {kinds[op[3]]})"
    args = []
    for a in op[1:]:
        if isinstance(a, str) and len(a) > 40:
            args.append(f"<{len(a) // 2} bytes>")
        else:
            args.append(repr(a))
    return f"{op[0]}({', '.join(args)})"


def ddmin(mnt, direct, ops, deadline):
    """Shortest sub-list of ops (1-minimal within the time budget) that still diverges."""

    def fails(c):
        return run_seq(mnt, direct, c) is not None

    n = 2
    while len(ops) >= 2 and time.time() < deadline:
        chunk = max(1, len(ops) // n)
        subsets = [ops[i:i + chunk] for i in range(0, len(ops), chunk)]
        reduced = False
        for i, s in enumerate(subsets):
            if time.time() >= deadline:
                break
            complement = [o for j, sub in enumerate(subsets) if j != i for o in sub]
            if fails(s):
                ops, n, reduced = s, 2, True
                break
            if len(subsets) > 2 and fails(complement):
                ops, n, reduced = complement, max(n - 1, 2), True
                break
        if not reduced:
            if n >= len(ops):
                break
            n = min(len(ops), 2 * n)
    return ops


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mount-dir", required=True)
    ap.add_argument("--direct-dir", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ops", type=int, default=2000, help="total operations")
    ap.add_argument("--seq-len", type=int, default=250, help="operations per sequence (fresh twins each)")
    ap.add_argument("--shrink-budget", type=float, default=60, help="seconds for shrinking each divergence")
    ap.add_argument("--max-divergences", type=int, default=3)
    ap.add_argument("--stats", action="store_true", help="print results per operation kind")
    ap.add_argument("--replay", help="JSON file with a list of ops to replay")
    ap.add_argument("--as-user", help="UID:GID:G1,G2,... to run the operations as (see above)")
    ap.add_argument("--third-party-dir", help="the mount's twin reached directly (third-party changes go there)")
    ap.add_argument("--third-party-every", type=int, default=0, help="a third-party change every N operations")
    ap.add_argument("--settle", type=float, default=0.1, help="seconds the mount gets to see a third-party change")
    ap.add_argument("--race-every", type=int, default=0,
                    help="every N operations a third party races a create of the mount (see race())")
    a = ap.parse_args()
    os.umask(0o022)
    for d in (a.mount_dir, a.direct_dir):
        if not os.path.isdir(d):
            print(f"difftest: {d} is not a directory", file=sys.stderr)
            return 2
    if a.as_user:
        global USER
        USER = parse_user(a.as_user)
        if os.geteuid() != 0 or USER[0] == 0:
            print("difftest: --as-user needs root and a user other than root", file=sys.stderr)
            return 2
        os.setgroups([])
        # Descriptors opened as root: the user reaches both twins through them.
        fds = [os.open(d, os.O_PATH | os.O_DIRECTORY) for d in (a.mount_dir, a.direct_dir)]
        a.mount_dir, a.direct_dir = (f"/proc/self/fd/{fd}" for fd in fds)
    THIRD["dir"], THIRD["settle"] = a.third_party_dir, a.settle
    if (a.third_party_every or a.race_every) and not (a.third_party_dir and os.path.isdir(a.third_party_dir)):
        print("difftest: --third-party-every and --race-every need --third-party-dir, a directory", file=sys.stderr)
        return 2
    if a.replay:
        with open(a.replay) as f:
            ops = json.load(f)
        r = run_seq(a.mount_dir, a.direct_dir, ops)
        print(r[1] if r else "replay: no divergence")
        return 1 if r else 0

    total, seqs, divs, seq_seed = 0, 0, 0, a.seed
    t0 = time.time()
    while total < a.ops and divs < a.max_divergences:
        r = random.Random(seq_seed)
        n = min(a.seq_len, a.ops - total)
        ops = gen_seq(r, n)
        if a.third_party_every:
            mixed = []
            for i, op in enumerate(ops):
                mixed.append(op)
                if i % a.third_party_every == a.third_party_every - 1:
                    mixed.append(["third", gen_op(r, [o[1] for o in ops[:i + 1] if isinstance(o[1], str)])])
            ops = mixed
        if a.race_every:
            mixed = []
            for i, op in enumerate(ops):
                mixed.append(op)
                if i % a.race_every == a.race_every - 1:
                    mixed.append(["race", rand_path(r), r.random() < 0.3, r.random() < 0.3])
            ops = mixed
        res = run_seq(a.mount_dir, a.direct_dir, ops)
        seqs += 1
        if res is None:
            total += n
        else:
            idx, detail = res
            total += idx + 1
            divs += 1
            print(f"DIVERGENCE seed={a.seed} sequence-seed={seq_seed} after {idx + 1} ops: {detail}")
            prefix = ops[: idx + 1]
            small = ddmin(a.mount_dir, a.direct_dir, prefix, time.time() + a.shrink_budget)
            again = run_seq(a.mount_dir, a.direct_dir, small)
            print(f"shortest failing sequence found ({len(small)} of {len(prefix)} ops):")
            for op in small:
                print(f"  {fmt(op)}")
            if again:
                print(f"  -> {again[1]}")
            print("replay: " + json.dumps(small)[:4000])
        seq_seed += 1
    clear(a.mount_dir)
    clear(a.direct_dir)
    dt = time.time() - t0
    if a.stats:
        for k in sorted(STATS):
            print(f"  {k:12} " + " ".join(f"{r}={n}" for r, n in sorted(STATS[k].items(), key=lambda x: -x[1])))
    who = f" as={a.as_user}" if a.as_user else ""
    print(f"difftest: ops={total} sequences={seqs} divergences={divs} seed={a.seed}{who} seconds={dt:.1f}")
    return 1 if divs else 0


if __name__ == "__main__":
    sys.exit(main())
