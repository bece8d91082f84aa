#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2317 # quoted code runs in a child shell; helpers run via check/cap
# Core scenario: mount ONE already-running container with dockerfuse and
# check, against the container's own view (`docker exec`), that the mount
# reads, writes, renames, chmods, truncates, sets times, makes and removes
# directories, symlinks and hard links, moves 64 MiB both ways intact, takes
# a `cp -a` tree, unmounts cleanly with `fusermount3 -u`, and leaves nothing
# behind in the container (`docker diff`, no *dockerfuse* file, no extra
# process).
#
# Environment (all required):
#   DOCKERFUSE      the dockerfuse binary
#   CONTAINER       name of a running container (alpine or busybox based)
#   SATELLITE_ARCH  amd64|arm64, passed as --satellite-arch
#   WORKDIR         scratch directory on the host (the mount point goes there)
# Every write in the container goes under /tmp/dfit-core-<pid>, removed at
# the end. Prints one result line per assertion and "N passed, N failed".
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_env DOCKERFUSE CONTAINER SATELLITE_ARCH WORKDIR
want='' got='' i1='' i2='' running='' leftovers='' # set by cap

BIG_TIMEOUT=${DFIT_BIG_TIMEOUT:-300}
MNT=$WORKDIR/mnt-core
T=/tmp/dfit-core-$$ # the scenario's directory, as the container names it
H=$MNT$T            # the same directory through the mount
export MNT T H CONTAINER WORKDIR
mkdir -p "$MNT"

# manifest DIR (POSIX sh, run on the host and in the container alike):
# one line per entry below DIR with type, mode, size (files) and mtime
# (not for symlinks), or the symlink's target.
# shellcheck disable=SC2016
MANIFEST='cd "$1" && find . -mindepth 1 | LC_ALL=C sort | while IFS= read -r p; do
	if [ -L "$p" ]; then echo "$p -> $(readlink "$p")"
	elif [ -d "$p" ]; then echo "$p dir $(stat -c "%a %Y" "$p")"
	else echo "$p file $(stat -c "%a %s %Y" "$p")"; fi
done'
host_manifest() { timeout -k 5 "$DFIT_OP_TIMEOUT" sh -c "$MANIFEST" sh "$1"; }
ctr_manifest() { dx sh -c "$MANIFEST" sh "$1"; }
# sha256 of a file on the host side / in the container
hsha() { timeout -k 5 "$BIG_TIMEOUT" sha256sum "$1" | cut -d' ' -f1; }
csha() { DFIT_OP_TIMEOUT=$BIG_TIMEOUT dx sha256sum "$1" | cut -d' ' -f1; }
# sorted names in a directory, host side (through the mount) / container
hls() { timeout -k 5 "$DFIT_OP_TIMEOUT" ls -A1 "$1" | LC_ALL=C sort; }
cls() { dx ls -A1 "$1" | LC_ALL=C sort; }
# "name -> target" of the symlinks an `ls -la` shows
hls_links() { timeout -k 5 "$DFIT_OP_TIMEOUT" ls -la "$1" | awk '$(NF-1) == "->" { print $(NF-2), $NF }' | LC_ALL=C sort; }
cls_links() { dx ls -la "$1" | awk '$(NF-1) == "->" { print $(NF-2), $NF }' | LC_ALL=C sort; }
ctr_exists() { dx sh -c "test -e '$1' || test -L '$1'"; }
ctr_absent() { dx sh -c "! test -e '$1' && ! test -L '$1'"; }
# processes in the container other than its init
ctr_extra_procs() {
	local out
	if out=$(timeout 20 docker top "$CONTAINER" 2>&1); then
		tail -n +3 <<<"$out"
		return
	fi
	# docker top reads the container's cgroup, which rootless Docker on
	# cgroup v1 does not make: ask ps in the container (minus itself)
	dx ps -o pid,comm | awk 'NR > 1 && $1 != 1 && $2 != "ps"'
}
no_extra_procs() { [ -z "$(ctr_extra_procs)" ]; }

# --- preconditions -----------------------------------------------------------------
cap running docker inspect -f '{{.State.Running}}' "$CONTAINER"
if [ "$running" != true ]; then
	abort "container $CONTAINER is not running ($running)"
fi
log "container $CONTAINER ($(docker inspect -f '{{.Config.Image}}' "$CONTAINER")), satellite $SATELLITE_ARCH, mount $MNT"
cap DIFF_BEFORE docker diff "$CONTAINER"
on_exit "$(printf 'dx rm -rf %q >/dev/null 2>&1' "$T")"
check "test directory $T created in the container" dx mkdir -p "$T"

# --- mount ---------------------------------------------------------------------------
mount_daemon "$MNT"
if [ "$DF_STATUS" -ne 0 ]; then
	fail "dockerfuse -daemonize exits 0 (got $DF_STATUS)"
	show_file "dockerfuse output" "$DF_OUT"
	show_file "dockerfuse log" "$DF_LOG"
	stop_here
fi
pass "dockerfuse -daemonize exits 0"
if ! is_fuse_mounted "$MNT"; then
	fail "a FUSE mount is on $MNT as soon as -daemonize returns"
	show_file "dockerfuse log" "$DF_LOG"
	stop_here
fi
pass "a FUSE mount is on $MNT as soon as -daemonize returns"
check "the pid file names a live process ($DF_PID)" pid_alive "$DF_PID"

# --- reading: listings, attributes, contents ------------------------------------------
for d in / /etc /bin; do
	cap want cls "$d"
	cap got hls "$MNT$d"
	assert_eq "names in $d match the container's" "$want" "$got"
done
for d in /etc /bin; do
	cap want cls_links "$d"
	cap got hls_links "$MNT$d"
	assert_eq "symlinks shown by ls -la $d match the container's" "$want" "$got"
	cap want run_sh "docker exec '$CONTAINER' ls -la '$d' | wc -l"
	cap got run_sh "ls -la '$MNT$d' | wc -l"
	assert_eq "ls -la $d gives as many lines as in the container" "$want" "$got"
done

for p in /etc/passwd /etc/group /etc/hostname /etc/os-release /etc/shadow \
	/bin/busybox /bin/sh /bin /etc /tmp /usr/bin; do
	ctr_exists "$p" || continue
	cap want dx stat -c '%s %a %u %g %F' "$p"
	cap got stat -c '%s %a %u %g %F' "$MNT$p"
	assert_eq "stat $p (size mode uid gid type)" "$want" "$got"
done
for p in /etc/passwd /bin/busybox; do
	cap want dx stat -c '%Y %h' "$p"
	cap got stat -c '%Y %h' "$MNT$p"
	assert_eq "stat $p (mtime nlink)" "$want" "$got"
done
for p in /etc/passwd /etc/group /etc/hosts /etc/hostname /bin/busybox; do
	ctr_exists "$p" || continue
	cap want csha "$p"
	cap got hsha "$MNT$p"
	assert_eq "content of $p (sha256)" "$want" "$got"
done
cap want dx cat /etc/passwd
cap got cat "$MNT/etc/passwd"
assert_eq "cat /etc/passwd" "$want" "$got"
cap got readlink "$MNT/bin/sh"
cap want dx readlink /bin/sh
assert_eq "readlink /bin/sh" "$want" "$got"

# --- writing both ways ------------------------------------------------------------------
check "write a file through the mount" run_sh 'printf "from-host\n" >"$H/w1"'
cap got dx cat "$T/w1"
assert_eq "the container reads what the host wrote" from-host "$got"
check "write a file in the container" dsh "printf 'from-container\n' >$T/w2"
# A name made in the container shows once the change feed reports it, a
# moment after docker exec returns (SEMANTICS, "Caching").
check "the name shows through the mount within 5 s" wait_until 5 test -e "$H/w2"
cap got cat "$H/w2"
assert_eq "the mount reads what the container wrote" from-container "$got"

check "echo hello > f" run_sh 'echo hello >"$H/f"'
cap got dx cat "$T/f"
assert_eq "container: f after >" hello "$got"
check "echo more >> f" run_sh 'echo more >>"$H/f"'
cap got dx cat "$T/f"
assert_eq "container: f after >> (append)" $'hello\nmore' "$got"
cap got cat "$H/f"
assert_eq "mount: f after >>" $'hello\nmore' "$got"

check "mv f g" mv "$H/f" "$H/g"
check "container: f gone after mv" ctr_absent "$T/f"
cap got dx cat "$T/g"
assert_eq "container: g holds f's content" $'hello\nmore' "$got"
check_not "mount: f gone after mv" test -e "$H/f"

check "chmod 600 g" chmod 600 "$H/g"
cap got dx stat -c %a "$T/g"
assert_eq "container: mode after chmod 600" 600 "$got"
cap got stat -c %a "$H/g"
assert_eq "mount: mode after chmod 600" 600 "$got"

# setuid/setgid on write: root keeps them (CAP_FSETID); a writer without
# CAP_FSETID clears them, as on a local file system. (Run as a user other
# than root, users.sh and rootless-*.sh, the host writer is such a one.)
check "container: setuid files su1, su2 (mode 6755)" dx sh -c "echo a >$T/su1 && echo a >$T/su2 && chmod 6755 $T/su1 $T/su2"
if [ "$(id -u)" = 0 ]; then
	check "root appends to su1 through the mount" run_sh 'echo b >>"$H/su1"'
	cap got dx stat -c %a "$T/su1"
	assert_eq "container: root's write keeps setuid/setgid" 6755 "$got"
else
	check "user $(id -u) appends to su1 through the mount" run_sh 'echo b >>"$H/su1"'
	cap got dx stat -c %a "$T/su1"
	assert_eq "container: a user's write clears setuid/setgid" 755 "$got"
fi
check "a root without CAP_FSETID appends to su2" setpriv --inh-caps=-fsetid --bounding-set=-fsetid bash -c 'echo b >>"$1"' _ "$H/su2"
cap got dx stat -c '%a %s' "$T/su2"
assert_eq "container: that write cleared setuid/setgid and landed" "755 4" "$got"
check "cleanup su1 su2" rm -f "$H/su1" "$H/su2"

check "truncate -s 3 g" truncate -s 3 "$H/g"
cap got dx stat -c %s "$T/g"
assert_eq "container: size after truncate -s 3" 3 "$got"
cap got dx cat "$T/g"
assert_eq "container: content after truncate -s 3" hel "$got"
check "truncate -s 100000 g (extend)" truncate -s 100000 "$H/g"
cap got dx stat -c %s "$T/g"
assert_eq "container: size after truncate -s 100000" 100000 "$got"
cap want csha "$T/g"
cap got hsha "$H/g"
assert_eq "extended file reads the same both sides" "$want" "$got"

check "touch -d '2020-01-02 03:04:05' g" touch -d '2020-01-02 03:04:05' "$H/g"
want=$(date -d '2020-01-02 03:04:05' +%s)
cap got dx stat -c %Y "$T/g"
assert_eq "container: mtime after touch -d" "$want" "$got"
cap got stat -c %Y "$H/g"
assert_eq "mount: mtime after touch -d" "$want" "$got"
check "touch creates a new empty file" touch "$H/new"
cap got dx stat -c '%s %F' "$T/new"
assert_eq "container: the touched file" "0 regular empty file" "$got"

check "mkdir d" mkdir "$H/d"
check "container: d is a directory" dx test -d "$T/d"
check "rmdir d" rmdir "$H/d"
check "container: d gone" ctr_absent "$T/d"

check "ln -s target-name sl" ln -s target-name "$H/sl"
cap got readlink "$H/sl"
assert_eq "mount: readlink sl" target-name "$got"
cap got dx readlink "$T/sl"
assert_eq "container: readlink sl" target-name "$got"
check "ln -s /etc/passwd abs" ln -s /etc/passwd "$H/abs"
cap got readlink "$H/abs"
assert_eq "mount: an absolute symlink is shown as-is" /etc/passwd "$got"
check "container: ln -s ../up sl2" dx ln -s ../up "$T/sl2"
cap got readlink "$H/sl2"
assert_eq "mount: readlink of a symlink the container made" ../up "$got"

check "write h1" run_sh 'echo x >"$H/h1"'
check "ln h1 h2 (hard link)" ln "$H/h1" "$H/h2"
cap i1 stat -c %i "$H/h1"
cap i2 stat -c %i "$H/h2"
assert_eq "mount: h1 and h2 have the same inode number" "$i1" "$i2"
cap got stat -c %h "$H/h1"
assert_eq "mount: nlink of h1 is 2" 2 "$got"
cap i1 dx stat -c %i "$T/h1"
cap i2 dx stat -c %i "$T/h2"
assert_eq "container: h1 and h2 are one inode" "$i1" "$i2"
cap got dx stat -c %h "$T/h1"
assert_eq "container: nlink of h1 is 2" 2 "$got"
check "append through h2" run_sh 'echo y >>"$H/h2"'
cap got cat "$H/h1"
assert_eq "mount: h1 shows what was appended through h2" $'x\ny' "$got"

check "mkdir -p + files (tree made through the mount)" run_sh '
	mkdir -p "$H/tree/a/b/c" "$H/tree/e"
	for i in 1 2 3; do echo "$i" >"$H/tree/a/f$i"; echo "$i" >"$H/tree/a/b/c/g$i"; done
	ln -s ../a "$H/tree/e/link"'
check "rm -r tree" rm -r "$H/tree"
# A directory made through the mount and entered at once stays the
# process's working directory (the change feed must not invalidate a name
# the mount itself created: getcwd would fail with ENOENT).
check "mkdir, cd into it, getcwd still works a moment later" run_sh '
	mkdir "$H/cwd" && cd "$H/cwd" && sleep 0.3 && /bin/pwd >/dev/null && : >here && ls here >/dev/null'
check "rm -r the working-directory test" rm -r "$H/cwd"
check "container: tree gone" ctr_absent "$T/tree"
check "container: make a tree" dsh "mkdir -p $T/ctree/x/y && touch $T/ctree/x/y/z $T/ctree/x/w && ln -s y $T/ctree/x/l"
check "the container's tree shows through the mount within 5 s" wait_until 5 test -e "$H/ctree/x/w"
check "rm -r of a tree the container made" rm -r "$H/ctree"
check "container: that tree gone" ctr_absent "$T/ctree"

# --- 64 MiB both ways -------------------------------------------------------------------
check "make 64 MiB of random data on the host" run_sh 'head -c 64M /dev/urandom >"$WORKDIR/big.src"'
want=$(sha256sum "$WORKDIR/big.src" | cut -d' ' -f1)
DFIT_OP_TIMEOUT=$BIG_TIMEOUT check "cp 64 MiB into the mount" cp "$WORKDIR/big.src" "$H/big1"
rm -f "$WORKDIR/big.src"
cap got csha "$T/big1"
assert_eq "container: sha256 of the 64 MiB copied in" "$want" "$got"
DFIT_OP_TIMEOUT=$BIG_TIMEOUT check "container: dd 64 MiB from /dev/urandom" \
	dx dd if=/dev/urandom of="$T/big2" bs=1048576 count=64
cap want csha "$T/big2"
cap got hsha "$H/big2"
assert_eq "mount: sha256 of the 64 MiB the container wrote" "$want" "$got"
cap got stat -c %s "$H/big2"
assert_eq "mount: size of that file" 67108864 "$got"
check "rm the big files" rm -f "$H/big1" "$H/big2"

# --- cp -a of a small tree ---------------------------------------------------------------
SRC=$WORKDIR/cptree
check "make a small tree on the host" run_sh '
	src=$WORKDIR/cptree
	mkdir -p "$src/sub/deeper" "$src/empty" "$src/private"
	: >"$src/zero"
	printf x >"$src/one"
	head -c 100000 /dev/urandom >"$src/sub/100k"
	head -c 1048577 /dev/urandom >"$src/sub/deeper/1M+1"
	printf "#!/bin/sh\necho hi\n" >"$src/sub/script"
	chmod 755 "$src/sub/script"
	echo secret >"$src/private/key"
	chmod 640 "$src/private/key"
	chmod 700 "$src/private"
	ln -s sub/100k "$src/rel-link"
	ln -s ../one "$src/sub/up-link"
	touch -d "2021-06-07 08:09:10" "$src/one" "$src/sub"'
check "cp -a into the mount" cp -a "$SRC" "$H/cptree"
check "diff -r host tree vs mount" diff -r "$SRC" "$H/cptree"
cap want host_manifest "$SRC"
cap got host_manifest "$H/cptree"
assert_eq "types, modes, sizes, mtimes, link targets: host vs mount" "$want" "$got"
cap got ctr_manifest "$T/cptree"
assert_eq "types, modes, sizes, mtimes, link targets: host vs container" "$want" "$got"

# --- the directory's listing agrees, then it goes ------------------------------------
cap want cls "$T"
cap got hls "$H"
assert_eq "final listing of the test directory matches the container's" "$want" "$got"
check "rm -rf the test directory through the mount" rm -rf "$H"
check "container: test directory gone" ctr_absent "$T"

# --- unmount -------------------------------------------------------------------------------
check "fusermount3 -u" fusermount3 -u "$MNT"
check "dockerfuse (pid $DF_PID) exits within 5 s of the unmount" wait_until 5 pid_gone "$DF_PID"
check "$MNT is no longer in /proc/mounts" not_mounted "$MNT"
cap got ls -A "$MNT"
assert_eq "the mount point is left empty" "" "$got"
check "the mount point is reusable" run_sh 'touch "$MNT/probe" && rm "$MNT/probe"'
check_not "the log file reports no panic" grep -qi panic "$DF_LOG"

# --- a second mount: absolute symlinks rewritten (opt-in), both ways ------------------
mount_daemon "$MNT" --rewrite-absolute-links
assert_eq "mounts again with --rewrite-absolute-links" 0 "$DF_STATUS"
cap want dx readlink /bin/sh
case "$want" in
/*) cap got readlink "$MNT/bin/sh"
	assert_eq "an absolute symlink is shown under the mount point" "$MNT$want" "$got" ;;
*) pass "(/bin/sh -> $want is relative; nothing to rewrite)" ;;
esac
cap got readlink "$MNT/etc/passwd"
assert_match "a regular file is not a link" "exit" "$got"
L=/tmp/dfit-links-$$
check "mkdir for links through the mount" mkdir "$MNT$L"
check "ln -s to a target under the mount point" ln -s "$MNT/etc/hostname" "$MNT$L/in"
check "ln -s to a target outside the mount point" ln -s /nonexistent/x "$MNT$L/out"
check "ln -s to a relative target" ln -s ../etc/hostname "$MNT$L/rel"
cap got dx readlink "$L/in"
assert_eq "container: a link made to a path under the mount point is stored in its terms" "/etc/hostname" "$got"
cap got readlink "$MNT$L/in"
assert_eq "host: the same link is shown under the mount point" "$MNT/etc/hostname" "$got"
cap got dx readlink "$L/out"
assert_eq "container: a target outside the mount point is stored as given" "/nonexistent/x" "$got"
cap got dx readlink "$L/rel"
assert_eq "container: a relative target is stored as given" "../etc/hostname" "$got"
cap want dx cat /etc/hostname
cap got cat "$MNT$L/in"
assert_eq "host: following the rewritten link reads the container's file" "$want" "$got"
check "rm -rf the links through the mount" rm -rf "$MNT$L"
check "fusermount3 -u (link-rewriting mount)" fusermount3 -u "$MNT"
check "dockerfuse exits after that unmount" wait_until 5 pid_gone "$DF_PID"

# --- a third mount: read-only ----------------------------------------------------------
mount_daemon "$MNT" --read-only
assert_eq "mounts again with --read-only" 0 "$DF_STATUS"
check_not "writing to a read-only mount fails" run_sh 'echo x >"$MNT/tmp/dfit-ro"'
check "fusermount3 -u (read-only mount)" fusermount3 -u "$MNT"
check "dockerfuse exits after the read-only unmount" wait_until 5 pid_gone "$DF_PID"

# --- nothing left in the container ---------------------------------------------------
check "no process left in the container besides its init (within 5 s)" wait_until 5 no_extra_procs
if ! no_extra_procs; then ctr_extra_procs | detail; fi
cap leftovers dsh 'for d in / /tmp /dev/shm /run /var/tmp; do [ -d "$d" ] && find "$d" -xdev -iname "*dockerfuse*"; done | sort -u'
assert_eq "no *dockerfuse* file anywhere in the container" "" "$leftovers"
cap DIFF_AFTER docker diff "$CONTAINER"
# Allowed: what the scenario itself wrote (gone now) and the directories
# that a write below them marks changed (C) for good in overlayfs.
new=$(comm -13 <(printf '%s\n' "$DIFF_BEFORE" | LC_ALL=C sort) <(printf '%s\n' "$DIFF_AFTER" | LC_ALL=C sort) |
	grep -Ev '^[ACD] (/tmp|/root)/dfit-|^C (/tmp|/root|/run|/var|/var/tmp|/dev|/dev/shm)$|^$' || true)
assert_eq "docker diff: nothing added or changed by dockerfuse" "" "$new"

finish
