#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2317 # quoted code runs in a child shell; helpers run via check
# Identity scenario: with --allow-other, what an unprivileged host user does
# through the mount reads like direct access (the container's root through
# /proc/<pid>/root, reached with the same credentials):
#   - supplementary groups: group rights, chgrp/lchgrp of its own files to
#     one of its groups (and EPERM for a foreign group);
#   - setuid/setgid cleared, never EPERM, when it writes, truncates or
#     O_TRUNC-opens a file of someone else that it may write;
#   - chown of its own setuid/setgid files clears the bits by Linux's rules
#     (setgid only when group-executable; directories keep them);
#   - search permission on the directories above a name is checked also
#     while the names below are cached; a readable, unsearchable directory
#     lists its names;
#   - what the mount's own operations change on the side shows at once
#     (the feed does not echo it): setuid/setgid cleared by a write,
#     append, O_TRUNC open or fallocate, a directory's mtime after a
#     creation or removal, a link count after link and unlink;
#   - with --writeback-cache too, a non-owner's write, touch and truncate
#     work and an explicit time stays refused; a file the user may write
#     but not read (0222) opens write-only and takes a write in the middle
#     of a page, as directly, and still cannot be opened for reading; a
#     0444 file stays refused.
#
# Environment (required): DOCKERFUSE, CONTAINER, SATELLITE_ARCH, WORKDIR.
# Runs as root (setpriv for the user). Writes only below
# /tmp/dfit-ident-<pid> in the container.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_env DOCKERFUSE CONTAINER SATELLITE_ARCH WORKDIR
running='' cpid='' got='' want='' # set by cap

# The user must reach the mount point: WORKDIR's parents may be 0700.
MNT_BASE=$(mktemp -d "${TMPDIR:-/tmp}/dfit-ident-mnt.XXXXXX")
chmod 755 "$MNT_BASE"
on_exit "$(printf 'rm -f %q/table.py; rmdir %q/mnt %q' "$MNT_BASE" "$MNT_BASE" "$MNT_BASE")"
MNT=$MNT_BASE/mnt
T=/tmp/dfit-ident-$$
U=3000 G=3000 GROUPS_OF_U=2000,2001 # a user in groups 2000 and 2001, not 2002
mkdir -p "$MNT"

[ "$(id -u)" -eq 0 ] || abort "must run as root"
for c in setpriv python3; do
	command -v "$c" >/dev/null 2>&1 || abort "$c not found on the host"
done
cap running docker inspect -f '{{.State.Running}}' "$CONTAINER"
[ "$running" = true ] || abort "container $CONTAINER is not running ($running)"
cap cpid docker inspect -f '{{.State.Pid}}' "$CONTAINER"
log "container $CONTAINER, satellite $SATELLITE_ARCH"
as_user() { timeout -k 5 "$DFIT_OP_TIMEOUT" setpriv --reuid="$U" --regid="$G" --groups="$GROUPS_OF_U" "$@"; }
# A python3 the user may run (root's may be a shim below /root).
PY=''
for p in /usr/bin/python3 /usr/local/bin/python3 "$(command -v python3)"; do
	if [ -x "$p" ] && as_user "$p" -c pass 2>/dev/null; then
		PY=$p
		break
	fi
done
[ -n "$PY" ] || abort "no python3 that uid $U may run"

# The same files in two twins: m (used through the mount) and d (directly).
SETUP='set -e
d=$1; mkdir -p "$d"; chmod 777 "$d"; cd "$d"
for n in w4777:4777 w2777:2777 w6777:6777 w2767:2767 w6766:6766 t4777:4777 t2777:2777 o4777:4777 o2777:2777; do
	echo data >"${n%%:*}"; chmod "${n#*:}" "${n%%:*}"
done
chown 0:2000 w2767
for n in own1 own2; do echo x >$n; ln -s $n ${n}l; chown -h 3000:3000 $n ${n}l; done
for n in s6755:6755 s6745:6745 s2745:2745 s2745b:2745 s4755:4755 s2755:2755; do
	echo x >"${n%%:*}"; chown 3000:3000 "${n%%:*}"; chmod "${n#*:}" "${n%%:*}"
done
mkdir d2775; chown 3000:3000 d2775; chmod 2775 d2775
echo g >g2001; chown 0:2001 g2001; chmod 640 g2001
echo g >g2002; chown 0:2002 g2002; chmod 640 g2002'
on_exit "$(printf 'dx rm -rf %q >/dev/null 2>&1' "$T")"
check "twins with root's setuid/setgid files and the user's files" dx sh -c "$SETUP" sh "$T/m"
check "the same, directly" dx sh -c "$SETUP" sh "$T/d"

# What the user does, one line per operation: "what: result -> mode".
TABLE=$MNT_BASE/table.py # where the user may read it
cat >"$TABLE" <<'EOF'
import errno, os, sys
base = sys.argv[1]
def res(f):
    try:
        f()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
def mode(p):
    st = os.lstat(p)
    return f"{st.st_mode & 0o7777:o} gid {st.st_gid}"
def write(p):
    fd = os.open(p, os.O_WRONLY)
    try:
        os.write(fd, b"z")
    finally:
        os.close(fd)
def otrunc(p):
    os.close(os.open(p, os.O_WRONLY | os.O_TRUNC))
def read(p):
    with open(p, "rb") as f:
        f.read()
P = lambda n: os.path.join(base, n)
rows = []
for n in ["w4777", "w2777", "w6777", "w2767", "w6766"]:
    rows.append((f"write {n}", res(lambda: write(P(n))), mode(P(n))))
for n in ["t4777", "t2777"]:
    rows.append((f"truncate {n}", res(lambda: os.truncate(P(n), 0)), mode(P(n))))
for n in ["o4777", "o2777"]:
    rows.append((f"open O_TRUNC {n}", res(lambda: otrunc(P(n))), mode(P(n))))
for n, g in [("own1", 2001), ("own2", 2002)]:
    rows.append((f"chown {n} -1:{g}", res(lambda: os.chown(P(n), -1, g)), mode(P(n))))
    rows.append((f"lchown {n}l -1:{g}", res(lambda: os.lchown(P(n + "l"), -1, g)), mode(P(n + "l"))))
for n, g in [("s6755", 2001), ("s6745", 2001), ("s2745", 2001), ("s2745b", 2002), ("s2755", 3000),
             ("s4755", -1), ("d2775", 2001)]:
    rows.append((f"chown {n} -1:{g}", res(lambda: os.chown(P(n), -1, g)), mode(P(n))))
for n in ["g2001", "g2002"]:
    rows.append((f"read {n}", res(lambda: read(P(n))), mode(P(n))))
for r in rows:
    print(f"{r[0]}: {r[1]} -> {r[2]}")
EOF

mount_daemon "$MNT" --allow-other
if [ "$DF_STATUS" -ne 0 ] || ! is_fuse_mounted "$MNT"; then
	fail "dockerfuse -daemonize --allow-other mounts (exit $DF_STATUS)"
	show_file "dockerfuse output" "$DF_OUT"
	show_file "dockerfuse log" "$DF_LOG"
	stop_here
fi
pass "dockerfuse -daemonize --allow-other mounts"

# The user reaches the direct twin through a descriptor opened by root.
exec {direct_fd}<"/proc/$cpid/root$T/d"
cap got as_user "$PY" "$TABLE" "/proc/self/fd/$direct_fd"
direct=$got
exec {direct_fd}<&-
cap got as_user "$PY" "$TABLE" "$MNT$T/m"
mounted=$got

# Each row through the mount as directly, and directly as Linux documents
# it (the write to w6766, a setgid file of a group the user is not in,
# depends on the kernel version: compared with direct access only).
EXPECTED='write w4777: ok -> 777 gid 0
write w2777: ok -> 777 gid 0
write w6777: ok -> 777 gid 0
write w2767: ok -> 2767 gid 2000
truncate t4777: ok -> 777 gid 0
truncate t2777: ok -> 777 gid 0
open O_TRUNC o4777: ok -> 777 gid 0
open O_TRUNC o2777: ok -> 777 gid 0
chown own1 -1:2001: ok -> 644 gid 2001
lchown own1l -1:2001: ok -> 777 gid 2001
chown own2 -1:2002: EPERM -> 644 gid 3000
lchown own2l -1:2002: EPERM -> 777 gid 3000
chown s6755 -1:2001: ok -> 755 gid 2001
chown s6745 -1:2001: ok -> 2745 gid 2001
chown s2745 -1:2001: ok -> 2745 gid 2001
chown s2745b -1:2002: EPERM -> 2745 gid 3000
chown s2755 -1:3000: ok -> 755 gid 3000
chown s4755 -1:-1: ok -> 755 gid 3000
chown d2775 -1:2001: ok -> 2775 gid 2001
read g2001: ok -> 640 gid 2001
read g2002: EACCES -> 640 gid 2002'
while IFS= read -r want; do
	what=${want%%: *}
	d=$(grep -F -- "$what: " <<<"$direct" || true)
	assert_eq "direct access: $what" "$want" "$d"
done <<<"$EXPECTED"
while IFS= read -r d; do
	what=${d%%: *}
	m=$(grep -F -- "$what: " <<<"$mounted" || true)
	assert_eq "through the mount as directly: $what" "$d" "$m"
done <<<"$direct"

# --- search permission above cached names ---------------------------------------------------
H=$MNT$T
check "a directory with a file below, readable by all" run_sh "mkdir -p '$H/sp/sub' && echo hi >'$H/sp/sub/f' && chmod 755 '$H/sp' '$H/sp/sub'"
check "the user reads it (its names are now cached)" as_user cat "$H/sp/sub/f"
check "root takes search permission away (through the mount)" chmod 700 "$H/sp"
check_not "the user no longer reaches the cached name below it" as_user cat "$H/sp/sub/f"
check_not "nor stats it" as_user stat "$H/sp/sub/f"
check "root reads it (caching it again), then gives x to group 2001 only" run_sh "cat '$H/sp/sub/f' >/dev/null && chgrp 2001 '$H/sp' && chmod 710 '$H/sp'"
check "the user reaches it through its supplementary group" as_user cat "$H/sp/sub/f"
check_not "but cannot list the directory (no r)" as_user ls "$H/sp"
check "the directory moves to group 2002" chgrp 2002 "$H/sp"
check_not "the user no longer reaches the name below" as_user cat "$H/sp/sub/f"
check "root leaves it readable but not searchable (0754)" chmod 754 "$H/sp"
cap got as_user ls "$H/sp"
assert_eq "the user lists its names (r without x), as directly" "sub" "$got"
check_not "but cannot stat them" as_user stat "$H/sp/sub"

# --- side effects the change feed does not echo -----------------------------------------------
# The mount's own operations change more than what they name: a write,
# append, O_TRUNC open or fallocate by a user without CAP_FSETID clears
# setuid/setgid; a creation or removal moves its directory's mtime; a link
# or unlink moves the file's link count. The feed drops the echo of the
# mount's own changes, side effects included. Each field is read right
# after the operation, before any TTL ends, with a statx that asks for it
# alone (stat -c: the kernel then uses whatever else it holds), through
# the mount and directly (/proc/<pid>/root).
R=/proc/$cpid/root$T
SE='set -e; mkdir -p "$1"; chmod 1777 "$1"; cd "$1"
for n in w4777:4777 w6777:6777 a4777:4777 t4777:4777 f4777:4777; do
	echo data >"${n%%:*}"; chmod "${n#*:}" "${n%%:*}"
done'
check "root's setuid/setgid files in a sticky directory everyone may write" dx sh -c "$SE" sh "$T/se"
for n in w4777 w6777 a4777 t4777 f4777; do
	cap got stat -c %a "$H/se/$n"
	assert_match "the mount shows $n's mode (now cached)" '^[46]777$' "$got"
done
check "the user writes into w4777" as_user sh -c "printf z 1<>'$H/se/w4777'"
check "the user writes into w6777" as_user sh -c "printf z 1<>'$H/se/w6777'"
check "the user appends to a4777" as_user sh -c "echo z >>'$H/se/a4777'"
check "the user truncates t4777 with an O_TRUNC open" as_user sh -c ": >'$H/se/t4777'"
check "the user fallocates f4777" as_user "$PY" -c "import os, sys; fd = os.open(sys.argv[1], os.O_WRONLY); os.posix_fallocate(fd, 0, 8192)" "$H/se/f4777"
for n in w4777 w6777 a4777 t4777 f4777; do
	cap want stat -c %a "$R/se/$n"
	assert_eq "the container cleared the bits of $n" 777 "$want"
	cap got stat -c %a "$H/se/$n"
	assert_eq "the mount shows $n's new mode at once" "$want" "$got"
done
cap got stat -c %.9Y "$H/se"
check "the user creates a file" as_user touch "$H/se/new"
cap want stat -c %.9Y "$R/se"
cap got stat -c %.9Y "$H/se"
assert_eq "the directory's mtime after the creation, as directly" "$want" "$got"
check "the user links it" as_user ln "$H/se/new" "$H/se/new2"
cap want stat -c %h "$R/se/new"
cap got stat -c %h "$H/se/new"
assert_eq "its link count after the link, as directly (2)" "2 2" "$want $got"
check "the user unlinks the first name" as_user rm "$H/se/new"
cap want stat -c %.9Y "$R/se"
cap got stat -c %.9Y "$H/se"
assert_eq "the directory's mtime after the unlink, as directly" "$want" "$got"
cap want stat -c %h "$R/se/new2"
cap got stat -c %h "$H/se/new2"
assert_eq "the link count after the unlink, as directly (1)" "1 1" "$want $got"

check "fusermount3 -u" fusermount3 -u "$MNT"
check "dockerfuse exits after the unmount" wait_until 20 pid_gone "$DF_PID"

# --- with the writeback cache -------------------------------------------------------------
check "a root file everyone may write" dx sh -c "echo data >$T/wb && chmod 666 $T/wb"
check "root files everyone may write but not read, and read only" \
	dx sh -c "printf abcdefgh >$T/wo && chmod 222 $T/wo && printf abcdefgh >$T/ro && chmod 444 $T/ro"
mount_daemon "$MNT" --allow-other --writeback-cache
if [ "$DF_STATUS" -ne 0 ] || ! is_fuse_mounted "$MNT"; then
	fail "dockerfuse -daemonize --allow-other --writeback-cache mounts (exit $DF_STATUS)"
	show_file "dockerfuse output" "$DF_OUT"
	stop_here
fi
pass "dockerfuse -daemonize --allow-other --writeback-cache mounts"
check "the user writes it and closes it (the kernel's mtime is not refused)" as_user sh -c "echo more >>'$H/wb'"
check "the user touches it (write permission suffices for now)" as_user touch "$H/wb"
check "the user truncates it" as_user truncate -s 2 "$H/wb"
cap got dx sh -c "stat -c '%s %u' $T/wb"
assert_eq "the container has the truncated file, still root's" "2 0" "$got"
check_not "the user may not set an explicit time" as_user touch -d 2001-01-01 "$H/wb"
# The kernel reads back the rest of a page written partly, so the open is
# sent read-write: the read side is the satellite's, the write checked as
# the user's (docs/SEMANTICS.md).
PWRITE='import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
os.pwrite(fd, b"X", 2)
os.close(fd)'
check "the user opens a 0222 file write-only and writes a byte into it" as_user "$PY" -c "$PWRITE" "$H/wo"
cap got dx cat "$T/wo"
assert_eq "the container has that byte in place, the rest kept" abXdefgh "$got"
check_not "the user still cannot open it for reading" as_user cat "$H/wo"
check_not "nor write a 0444 file" as_user "$PY" -c "$PWRITE" "$H/ro"
cap got dx cat "$T/ro"
assert_eq "which is unchanged" abcdefgh "$got"
check "fusermount3 -u (writeback)" fusermount3 -u "$MNT"
check "dockerfuse exits after the unmount (writeback)" wait_until 20 pid_gone "$DF_PID"
finish
