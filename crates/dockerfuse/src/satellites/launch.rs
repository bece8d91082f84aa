//! Getting a satellite running in the container.
//!
//! The satellite has to become a file the container can execute. Two ways:
//!
//! * **archive upload** (the Engine API's `PUT /archive`): no shell needed,
//!   but it writes into the container's rootfs only. It is refused on a
//!   `--read-only` rootfs, and for a directory that is a tmpfs mount in
//!   the container (`--tmpfs /tmp`, and `/dev`, `/dev/shm` in every
//!   container) it "succeeds" into the rootfs directory *beneath* the
//!   mount, where the container never sees the file and from where nothing
//!   can remove it (`docker diff` would show it forever). Such directories
//!   are never used for an upload.
//! * **through a shell**: `/bin/sh -c 'head -c N > FILE ...'` with the
//!   binary on the exec's stdin, into a tmpfs the container sees (its
//!   `--tmpfs` mounts, then `/dev/shm`, then `/dev`: a tmpfs in every
//!   container, writable by root and, unlike `/dev/shm` and a default
//!   `--tmpfs`, not `noexec`). `head -c` stops at the size, so the end of
//!   the binary does not depend on half-closing the hijacked connection.
//!   The script refuses a `noexec` place itself (`test -x` is false there)
//!   and removes what it wrote.
//!
//! Each place is proved by starting the satellite from it (exec attached,
//! no TTY) and waiting for its hello. A place can refuse the upload or the
//! write, refuse to execute (`noexec`, a 0700 directory of another user:
//! exit 126/127), or the binary can be of the wrong architecture (exec
//! format error: the next architecture is tried). Every failure is kept and
//! the final error lists them all. The satellite deletes its own file once
//! it runs; files of failed attempts are removed by the satellite that
//! finally starts (or by `rm` when none does), so nothing stays behind.
//!
//! Files are uploaded owned by the `--user` the satellite runs as (when it
//! is numeric): a satellite of uid 1000 could not delete a root-owned file
//! from the sticky `/tmp`.

use std::collections::HashSet;
use std::time::Duration;

use dockerfuse_proto::{
    HostHello, Request, SatelliteHello, HELLO_ID, MAX_IO, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};
use futures_util::{AsyncWriteExt, StreamExt};
use tracing::{debug, info};

use crate::engine::api::{Container, Engine};
use crate::error::{Error, Result};
use crate::satellites::embedded::Arch;
use crate::satellites::tarball;
use crate::transport::rpc::{Rpc, Started, Transport};

/// Directories tried for the upload, in order. /dev/shm is not among
/// them: the archive API writes beneath a tmpfs mount, into the hidden
/// directory of the image, where the container cannot see the file.
pub(crate) const UPLOAD_DIRS: &[&str] = &["/tmp", "/run", "/var/tmp", "/"];

/// Mounts every Docker container has that are not the rootfs: never a
/// target for the archive upload.
const NOT_ROOTFS: &[&str] = &["/dev", "/proc", "/sys"];

/// Tmpfs places every container has, tried (through a shell) after the
/// container's own tmpfs mounts.
const STREAM_DIRS: &[&str] = &["/dev/shm", "/dev"];

/// Writes stdin (exactly `$3` bytes) to `$2` in directory `$1`, makes it
/// executable for its owner and proves the place allows execution.
/// A mount point listed `noexec` in /proc/self/mounts is refused before
/// anything is written (shell builtins only: `test -x` does not see
/// `noexec` in busybox).
const STREAM_SCRIPT: &str = r#"d=$1 f=$2 n=$3
[ -d "$d" ] || { echo "no directory $d" >&2; exit 3; }
if [ -r /proc/self/mounts ]; then
  while read -r _ m _ o _; do
    [ "$m" = "$d" ] || continue
    case ",$o," in *,noexec,*) echo "$d is mounted noexec" >&2; exit 6;; esac
  done </proc/self/mounts
fi
umask 077
if command -v head >/dev/null 2>&1; then head -c "$n"; else dd bs=1 count="$n" 2>/dev/null; fi >"$f" || { rm -f "$f"; exit 4; }
chmod 700 "$f" || { rm -f "$f"; exit 5; }
[ -x "$f" ] || { rm -f "$f"; echo "$d does not allow execution (mounted noexec)" >&2; exit 6; }
"#;

pub(crate) struct Launch<'a> {
    pub engine: &'a Engine,
    pub container: &'a str,
    pub archs: Vec<Arch>,
    pub dirs: Vec<String>,
    pub user: &'a str,
    pub root: &'a str,
    pub timeout: Duration,
    /// How long requests may wait on a silent satellite.
    pub stall: Duration,
    /// Most inotify watches the change feed may hold (`--max-watches`).
    pub max_watches: Option<u32>,
}

/// A running satellite.
pub(crate) struct Running {
    pub rpc: Rpc,
    /// The exec the satellite runs in.
    pub exec_id: String,
    pub hello: SatelliteHello,
    pub closed: smol::channel::Receiver<String>,
    pub arch: Arch,
    pub path: String,
}

enum Attempt {
    Up(Running),
    /// Try the next directory.
    NextDir(String),
    /// Wrong architecture: try the next one.
    NextArch(String),
}

/// One way to put the satellite somewhere.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Place {
    Upload(String),
    Shell(String),
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Upload(d) => write!(f, "upload to {d}"),
            Place::Shell(d) => write!(f, "write to {d} through /bin/sh"),
        }
    }
}

/// The mount (of `mounts`) that `dir` is in or under, if any.
fn mount_holding<'m>(dir: &str, mounts: &'m [String]) -> Option<&'m str> {
    let dir = dir.trim_end_matches('/');
    mounts
        .iter()
        .map(|m| m.trim_end_matches('/'))
        .filter(|m| !m.is_empty())
        .filter(|m| dir == *m || dir.strip_prefix(m).is_some_and(|r| r.starts_with('/')))
        .max_by_key(|m| m.len())
}

/// The places to try, in order, and the upload directories left out
/// (with why). `explicit`: the user named the directory (`--satellite-dir`).
fn plan(dirs: &[String], tmpfs: &[String], explicit: bool) -> (Vec<Place>, Vec<String>) {
    let mut places = Vec::new();
    let mut skipped = Vec::new();
    let not_rootfs: Vec<String> = NOT_ROOTFS.iter().map(|s| s.to_string()).collect();
    for d in dirs {
        if let Some(m) = mount_holding(d, tmpfs) {
            skipped.push(format!(
                "upload to {d}: not tried, {m} is a tmpfs mount (the archive API would write beneath it, out of the container's sight)"
            ));
        } else if let Some(m) = mount_holding(d, &not_rootfs) {
            skipped.push(format!(
                "upload to {d}: not tried, {m} is not on the container's rootfs"
            ));
        } else {
            places.push(Place::Upload(d.clone()));
        }
    }
    let mut shell: Vec<String> = Vec::new();
    if explicit {
        shell.extend(
            dirs.iter()
                .filter(|d| {
                    mount_holding(d, tmpfs).is_some() || mount_holding(d, &not_rootfs).is_some()
                })
                .cloned(),
        );
    } else {
        // The candidates that are tmpfs mounts first (in their order), then
        // the container's other tmpfs mounts, then those of every container.
        shell.extend(
            dirs.iter()
                .filter(|d| mount_holding(d, tmpfs).is_some())
                .cloned(),
        );
        shell.extend(tmpfs.iter().cloned());
        shell.extend(STREAM_DIRS.iter().map(|s| s.to_string()));
    }
    let mut seen = HashSet::new();
    for d in shell {
        if seen.insert(d.clone()) {
            places.push(Place::Shell(d));
        }
    }
    (places, skipped)
}

/// The owner to give an uploaded file: `--user` as numbers, names looked
/// up in the container's /etc/passwd and /etc/group (`passwd`, `group`:
/// their contents, when readable). A uid without a group takes its
/// primary group from passwd, else 0, as `docker exec` does. `None` when a
/// name is unknown.
fn owner_of(user: &str, passwd: &str, group: &str) -> Option<(u32, u32)> {
    let field = |db: &str, name: &str, at: usize| -> Option<u32> {
        db.lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.first() == Some(&name))
            .and_then(|f| f.get(at)?.parse().ok())
    };
    let mut it = user.splitn(2, ':');
    let u = it.next()?;
    let uid = match u.parse() {
        Ok(n) => n,
        Err(_) => field(passwd, u, 2)?,
    };
    let gid = match it.next() {
        Some(g) => match g.parse() {
            Ok(n) => n,
            Err(_) => field(group, g, 2)?,
        },
        None => passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.get(2).and_then(|x| x.parse::<u32>().ok()) == Some(uid))
            .and_then(|f| f.get(3)?.parse().ok())
            .unwrap_or(0),
    };
    Some((uid, gid))
}

/// What a command run to its end said.
struct Outcome {
    code: Option<i64>,
    text: String,
}

/// True when the exec could not start `/bin/sh` at all.
fn no_shell(o: &Outcome) -> bool {
    let t = o.text.to_ascii_lowercase();
    matches!(o.code, Some(126) | Some(127) | None)
        && t.contains("/bin/sh")
        && (t.contains("no such file") || t.contains("not found"))
}

/// What the attempts so far have learnt, carried from one to the next.
#[derive(Default)]
struct Tries {
    /// One line per refusal or failure, for the final error.
    tried: Vec<String>,
    /// Places that refused the file: not tried again for another arch.
    dead: HashSet<Place>,
    /// The container has no `/bin/sh`: no shell place can work.
    shell_missing: bool,
    /// Files of failed attempts, removed once a satellite runs.
    leftovers: Vec<String>,
}

impl Launch<'_> {
    /// Starts a satellite, after asking the engine about the container.
    pub(crate) async fn run(&self) -> Result<Running> {
        let facts = self.engine.inspect(self.container).await?;
        self.run_with(&facts).await
    }

    /// Starts a satellite in the container the engine just described as
    /// `facts`.
    pub(crate) async fn run_with(&self, facts: &Container) -> Result<Running> {
        let (places, skipped) = plan(&self.dirs, &facts.tmpfs, self.dirs_are_explicit());
        let owner = self.owner().await;
        let mut tries = Tries {
            tried: skipped,
            ..Tries::default()
        };
        for &arch in &self.archs {
            if let Some(r) = self.try_arch(arch, &places, owner, &mut tries).await? {
                return Ok(r);
            }
        }
        if !tries.leftovers.is_empty() {
            self.remove(&tries.leftovers).await;
        }
        Err(self.failure(facts, &places, &tries))
    }

    /// True when `--satellite-dir` named the directory.
    fn dirs_are_explicit(&self) -> bool {
        self.dirs
            .iter()
            .map(String::as_str)
            .ne(UPLOAD_DIRS.iter().copied())
    }

    /// Tries the `arch` satellite in each place in turn; `None` when none
    /// worked (or the binary is of the wrong architecture).
    async fn try_arch(
        &self,
        arch: Arch,
        places: &[Place],
        owner: (u32, u32),
        tries: &mut Tries,
    ) -> Result<Option<Running>> {
        let Some(bin) = arch.binary() else {
            tries
                .tried
                .push(format!("{arch} satellite: not in this build"));
            return Ok(None);
        };
        for place in places {
            if tries.dead.contains(place)
                || (tries.shell_missing && matches!(place, Place::Shell(_)))
            {
                continue;
            }
            let (Place::Upload(dir) | Place::Shell(dir)) = place;
            let name = format!(".dockerfuse-satellite-{}-{}", std::process::id(), nonce());
            let path = format!("{}/{}", dir.trim_end_matches('/'), name);
            // The exec is created while the file is put in place (an exec
            // names a program that need not exist until it starts): one
            // round trip fewer on a remote engine. An exec never started
            // is dropped by the engine.
            let (put, exec) = smol::future::zip(
                self.put(place, &name, &path, bin, owner, tries),
                self.engine
                    .create_exec(self.container, self.command(&path), self.user),
            )
            .await;
            if !put {
                continue;
            }
            match self.attempt(arch, &path, exec?).await? {
                Attempt::Up(r) => {
                    self.adopt(&r, &tries.leftovers);
                    info!(arch = %arch, path = %path, how = %place, satellite = %r.hello.version, uid = r.hello.uid, "satellite started");
                    return Ok(Some(r));
                }
                Attempt::NextDir(why) => {
                    tries
                        .tried
                        .push(format!("{place}, {arch} satellite: {why}"));
                    tries.leftovers.push(path);
                }
                Attempt::NextArch(why) => {
                    tries
                        .tried
                        .push(format!("{place}, {arch} satellite: {why}"));
                    tries.leftovers.push(path);
                    return Ok(None);
                }
            }
        }
        Ok(None)
    }

    /// Puts the satellite `bin` into `place`; its path there, or `None`
    /// (with the reason recorded in `tries`) when the place refused it.
    async fn put(
        &self,
        place: &Place,
        name: &str,
        path: &str,
        bin: &[u8],
        (uid, gid): (u32, u32),
        tries: &mut Tries,
    ) -> bool {
        let (Place::Upload(dir) | Place::Shell(dir)) = place;
        let put = match place {
            Place::Upload(_) => {
                let tar = tarball::single_file(name, bin, 0o755, uid, gid);
                let r = self.engine.upload(self.container, dir, tar).await;
                r.map_err(|e| e.message)
            }
            Place::Shell(_) => match self.write_through_shell(dir, path, bin).await {
                Ok(()) => Ok(()),
                Err(Refusal::NoShell(why)) => {
                    tries.shell_missing = true;
                    tries
                        .tried
                        .push(format!("{place}: the container has no shell ({why})"));
                    return false;
                }
                Err(Refusal::Place(why)) => Err(why),
            },
        };
        match put {
            Ok(()) => true,
            Err(why) => {
                debug!(%place, %why, "refused");
                tries.tried.push(format!("{place}: {why}"));
                tries.dead.insert(place.clone());
                false
            }
        }
    }

    /// Has the satellite that started remove the files of failed attempts.
    fn adopt(&self, r: &Running, leftovers: &[String]) {
        if !leftovers.is_empty() {
            let paths = leftovers.iter().map(|p| p.as_bytes().into()).collect();
            r.rpc
                .call(&Request::RemovePaths { paths }, Box::new(|_| {}));
        }
    }

    /// The error when no satellite started: every attempt, and a hint for
    /// a read-only rootfs.
    fn failure(&self, facts: &Container, places: &[Place], tries: &Tries) -> Error {
        let mut hint = String::new();
        if facts.read_only
            && (tries.shell_missing || places.iter().all(|p| matches!(p, Place::Upload(_))))
        {
            hint = "\nthe container's root filesystem is read-only: give it a writable place that allows execution (e.g. --tmpfs /run:exec, a volume) and, when it has no shell, name it with --satellite-dir".into();
        }
        Error::setup(format!(
            "could not start a satellite in container {} as user {}; tried:\n  {}{hint}",
            if facts.name.is_empty() {
                self.container
            } else {
                &facts.name
            },
            self.user,
            tries.tried.join("\n  ")
        ))
    }

    /// Who the satellite runs as, in numbers: the owner its uploaded file
    /// must have so that it can remove it from a sticky directory.
    async fn owner(&self) -> (u32, u32) {
        if matches!(self.user, "0" | "0:0" | "root") {
            return (0, 0);
        }
        let numeric = self
            .user
            .split(':')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        let (mut passwd, mut group) = (String::new(), String::new());
        if !numeric || !self.user.contains(':') {
            let read = |p| self.engine.read_small_file(self.container, p, 1 << 20);
            passwd = String::from_utf8_lossy(&read("/etc/passwd").await.unwrap_or_default())
                .into_owned();
            if !numeric {
                group = String::from_utf8_lossy(&read("/etc/group").await.unwrap_or_default())
                    .into_owned();
            }
        }
        owner_of(self.user, &passwd, &group).unwrap_or_else(|| {
            debug!(
                user = self.user,
                "user not found in /etc/passwd or /etc/group: uploading as root"
            );
            (0, 0)
        })
    }

    /// Runs `cmd` in the container as the satellite's user, feeds it
    /// `stdin`, and waits (bounded) for its end.
    async fn run_to_end(&self, cmd: Vec<String>, stdin: &[u8]) -> Result<Outcome> {
        let (exec_id, mut output, input) = self
            .engine
            .exec_attached(self.container, cmd, self.user)
            .await?;
        let mut input = async_compat::Compat::new(input);
        let write = async {
            if !stdin.is_empty() {
                let _ = input.write_all(stdin).await;
                let _ = input.flush().await;
            }
            // Keep the connection open until the command ends.
            std::future::pending::<()>().await
        };
        let mut text = String::new();
        let read = async {
            while let Some(chunk) = output.next().await {
                let Ok(chunk) = chunk else { break };
                if text.len() < 8192 {
                    text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
                }
            }
        };
        let timer = async {
            smol::Timer::after(self.timeout).await;
            false
        };
        let ended = smol::future::or(
            async {
                smol::future::or(read, write).await;
                true
            },
            timer,
        )
        .await;
        drop(input);
        let mut code = None;
        for _ in 0..40 {
            code = self.engine.exec_exit_code(&exec_id).await;
            if code.is_some() || !ended {
                break;
            }
            smol::Timer::after(Duration::from_millis(25)).await;
        }
        if !ended {
            text.push_str(&format!(" (no end within {:?})", self.timeout));
        }
        Ok(Outcome {
            code,
            text: text.trim().to_owned(),
        })
    }

    /// Writes the satellite to `path` through `/bin/sh` in the container.
    async fn write_through_shell(
        &self,
        dir: &str,
        path: &str,
        bin: &[u8],
    ) -> std::result::Result<(), Refusal> {
        let cmd = [
            "/bin/sh",
            "-c",
            STREAM_SCRIPT,
            "sh",
            dir,
            path,
            &bin.len().to_string(),
        ]
        .map(str::to_owned)
        .to_vec();
        let o = self
            .run_to_end(cmd, bin)
            .await
            .map_err(|e| Refusal::Place(e.message))?;
        if o.code == Some(0) {
            return Ok(());
        }
        let why = format!(
            "{}{}",
            if o.text.is_empty() { "failed" } else { &o.text },
            o.code.map(|c| format!(" (exit {c})")).unwrap_or_default()
        );
        Err(if no_shell(&o) {
            Refusal::NoShell(why)
        } else {
            Refusal::Place(why)
        })
    }

    /// Removes files of failed attempts (best effort: `rm` may be missing).
    async fn remove(&self, paths: &[String]) {
        let mut cmd = vec!["rm".to_owned(), "-f".to_owned()];
        cmd.extend(paths.iter().cloned());
        match self.run_to_end(cmd, &[]).await {
            Ok(o) if o.code == Some(0) => {}
            Ok(o) => {
                debug!(code = ?o.code, text = %o.text, "could not remove the failed attempts' files")
            }
            Err(e) => debug!(error = %e, "could not remove the failed attempts' files"),
        }
    }

    /// Starts the satellite at `path` (the exec `exec_id` made for it)
    /// and waits for its hello.
    async fn attempt(&self, arch: Arch, path: &str, exec_id: String) -> Result<Attempt> {
        let started = self.start_exec(&exec_id).await?;
        let Started {
            rpc,
            hello,
            closed,
            early_stderr,
            ..
        } = started;
        let Some(h) = self.wait_for_hello(&exec_id, &hello).await else {
            rpc.close("start failed".into());
            let code = self.engine.exec_exit_code(&exec_id).await;
            let stderr = early_stderr
                .lock()
                .map(|s| s.trim().to_owned())
                .unwrap_or_default();
            return Ok(why_not_started(
                code,
                closed.try_recv().ok(),
                &stderr,
                self.timeout,
            ));
        };
        self.greet(&rpc, &h, arch)?;
        Ok(Attempt::Up(Running {
            rpc,
            exec_id,
            hello: h,
            closed,
            arch,
            path: path.to_owned(),
        }))
    }

    /// The satellite's command line, started from `path`.
    fn command(&self, path: &str) -> Vec<String> {
        let mut cmd = vec![
            path.to_owned(),
            "--delete-self".into(),
            "--root".into(),
            self.root.to_owned(),
        ];
        if let Some(n) = self.max_watches {
            cmd.extend(["--max-watches".into(), n.to_string()]);
        }
        cmd
    }

    /// Starts the satellite's exec attached and its rpc on a thread of its
    /// own (the tasks are taken out of the returned [`Started`]).
    async fn start_exec(&self, exec_id: &str) -> Result<Started> {
        let (output, input) = self.engine.start_attached(exec_id).await?;
        let mut started = Rpc::start(output, input, self.stall);
        let tasks = std::mem::replace(&mut started.tasks, Box::pin(async {}));
        std::thread::Builder::new()
            .name("rpc".into())
            .spawn(move || smol::block_on(async_compat::Compat::new(tasks)))
            .map_err(|e| Error::setup(format!("cannot start the rpc thread: {e}")))?;
        Ok(started)
    }

    /// The satellite's hello. Gives up at the timeout, or as soon as the
    /// engine says the exec ended (an exec the runtime cannot start may
    /// keep its stream open while stdin is attached).
    async fn wait_for_hello(
        &self,
        exec_id: &str,
        hello: &smol::channel::Receiver<SatelliteHello>,
    ) -> Option<SatelliteHello> {
        let deadline = std::time::Instant::now() + self.timeout;
        let ended = async {
            let mut pause = Duration::from_millis(50);
            loop {
                smol::Timer::after(pause).await;
                pause = (pause * 2).min(Duration::from_millis(400));
                if std::time::Instant::now() >= deadline
                    || self.engine.exec_exit_code(exec_id).await.is_some()
                {
                    return None;
                }
            }
        };
        smol::future::or(async { hello.recv().await.ok() }, ended).await
    }

    /// Checks the satellite's hello and answers with ours.
    fn greet(&self, rpc: &Rpc, h: &SatelliteHello, arch: Arch) -> Result<()> {
        if let Err(e) = check_hello(h) {
            rpc.close("bad hello".into());
            return Err(e);
        }
        if h.arch != arch.rust_name() {
            debug!(expected = arch.rust_name(), got = %h.arch, "satellite reports another arch");
        }
        rpc.send_frame(
            HELLO_ID,
            &Request::Hello(HostHello {
                // The lower of the two: an older satellite is spoken to in
                // its own version (without the change feed).
                protocol: h.protocol.min(PROTOCOL_VERSION),
                version: env!("CARGO_PKG_VERSION").into(),
                max_io: MAX_IO,
            }),
        )
        .map_err(|e| Error::setup(format!("cannot talk to the satellite: {e}")))
    }
}

/// Why a satellite sent no hello, from the exec's exit `code`, what the
/// connection said when it closed and the satellite's early stderr; and
/// what to try next: another architecture after an exec format error or
/// a crash on an illegal instruction, else another place.
fn why_not_started(
    code: Option<i64>,
    said: Option<String>,
    stderr: &str,
    timeout: Duration,
) -> Attempt {
    let reason = match (code, said) {
        // The runtime's own words, when they came through.
        (_, Some(why)) if why.starts_with("the exec failed") => why,
        // Otherwise say what these codes mean.
        (Some(126), _) => "the runtime could not execute it (exit 126: a noexec mount, a directory the user cannot enter, or the wrong architecture)".to_owned(),
        (Some(127), _) => "the runtime did not find it (exit 127: the file is not visible in the container)".to_owned(),
        (Some(_), Some(why)) => why,
        (Some(_), None) => "it exited before its hello".to_owned(),
        (None, _) => format!("no hello within {timeout:?}"),
    };
    let why = format!(
        "{reason}{}{}",
        code.map(|c| format!(" (exit {c})")).unwrap_or_default(),
        if stderr.is_empty() {
            String::new()
        } else {
            format!(": {stderr}")
        }
    );
    let text = why.to_ascii_lowercase();
    if text.contains("exec format") || code == Some(139) || code == Some(132) {
        Attempt::NextArch(why)
    } else {
        Attempt::NextDir(why)
    }
}

/// Refuses a hello this client cannot work with.
pub(crate) fn check_hello(h: &SatelliteHello) -> Result<()> {
    if h.protocol < MIN_PROTOCOL_VERSION {
        return Err(Error::setup(format!(
            "the satellite speaks protocol {}, this dockerfuse {MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION} (satellite {})",
            h.protocol,
            h.version.chars().take(64).collect::<String>()
        ))
        .with_errno(libc::EPROTO));
    }
    if h.max_io < 4096 {
        return Err(Error::setup(format!(
            "the satellite offers I/O of {} bytes, too small",
            h.max_io
        ))
        .with_errno(libc::EPROTO));
    }
    Ok(())
}

enum Refusal {
    /// There is no `/bin/sh`: no place can be written this way.
    NoShell(String),
    /// This place cannot be used.
    Place(String),
}

/// A short random suffix for upload names (no rand crate for this).
fn nonce() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut x = (t as u64) ^ ((std::process::id() as u64) << 32);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51afd7ed558ccd);
    x ^= x >> 33;
    format!("{:08x}", x as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(protocol: u32, max_io: u32) -> SatelliteHello {
        SatelliteHello {
            protocol,
            version: "v".repeat(10_000),
            arch: "x86_64".into(),
            uid: 0,
            gid: 0,
            pid: 1,
            max_io,
        }
    }

    #[test]
    fn a_lying_hello_is_refused_with_a_short_message() {
        let e = check_hello(&hello(MIN_PROTOCOL_VERSION - 1, MAX_IO)).unwrap_err();
        assert!(e.message.contains("protocol"), "{}", e.message);
        assert!(check_hello(&hello(MIN_PROTOCOL_VERSION, MAX_IO)).is_ok());
        assert!(
            check_hello(&hello(PROTOCOL_VERSION + 1, MAX_IO)).is_ok(),
            "a newer satellite is spoken to in this host's version"
        );
        assert!(e.message.len() < 200, "the satellite's text is cut");
        assert!(check_hello(&hello(PROTOCOL_VERSION, 0)).is_err());
        assert!(check_hello(&hello(PROTOCOL_VERSION, MAX_IO)).is_ok());
    }

    fn v(x: &[&str]) -> Vec<String> {
        x.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tmpfs_dirs_are_never_upload_targets() {
        let dirs = v(UPLOAD_DIRS);
        let (places, skipped) = plan(&dirs, &v(&["/tmp", "/srv/scratch"]), false);
        assert_eq!(
            places,
            vec![
                Place::Upload("/run".into()),
                Place::Upload("/var/tmp".into()),
                Place::Upload("/".into()),
                Place::Shell("/tmp".into()),
                Place::Shell("/srv/scratch".into()),
                Place::Shell("/dev/shm".into()),
                Place::Shell("/dev".into()),
            ]
        );
        assert_eq!(skipped.len(), 1);
        assert!(
            skipped[0].contains("/tmp is a tmpfs mount"),
            "{}",
            skipped[0]
        );
    }

    #[test]
    fn no_tmpfs_still_ends_with_the_dev_tmpfs() {
        let (places, skipped) = plan(&v(UPLOAD_DIRS), &[], false);
        assert!(skipped.is_empty());
        assert_eq!(places.len(), 6);
        assert_eq!(places[4], Place::Shell("/dev/shm".into()));
        assert_eq!(places[5], Place::Shell("/dev".into()));
    }

    #[test]
    fn an_explicit_dir_is_used_the_one_way_that_can_work() {
        let (p, _) = plan(&v(&["/opt/x"]), &v(&["/tmp"]), true);
        assert_eq!(p, vec![Place::Upload("/opt/x".into())]);
        let (p, s) = plan(&v(&["/tmp/sub"]), &v(&["/tmp"]), true);
        assert_eq!(p, vec![Place::Shell("/tmp/sub".into())]);
        assert_eq!(s.len(), 1);
        let (p, _) = plan(&v(&["/dev"]), &[], true);
        assert_eq!(p, vec![Place::Shell("/dev".into())]);
    }

    #[test]
    fn mount_holding_matches_whole_components() {
        let m = v(&["/tmp", "/run/x/"]);
        assert_eq!(mount_holding("/tmp", &m), Some("/tmp"));
        assert_eq!(mount_holding("/tmp/a", &m), Some("/tmp"));
        assert_eq!(mount_holding("/tmpx", &m), None);
        assert_eq!(mount_holding("/run/x", &m), Some("/run/x"));
        assert_eq!(mount_holding("/", &m), None);
    }

    #[test]
    fn owners() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65533:nobody:/:/sbin/nologin\napp:x:1000:1001::/home/app:/bin/sh\n";
        let group = "root:x:0:\nstaff:x:50:\nnogroup:x:65533:\n";
        assert_eq!(owner_of("0", "", ""), Some((0, 0)));
        assert_eq!(owner_of("1000:1000", "", ""), Some((1000, 1000)));
        assert_eq!(owner_of("1000", "", ""), Some((1000, 0)));
        assert_eq!(owner_of("1000", passwd, group), Some((1000, 1001)));
        assert_eq!(owner_of("nobody", passwd, group), Some((65534, 65533)));
        assert_eq!(owner_of("app:staff", passwd, group), Some((1000, 50)));
        assert_eq!(owner_of("1000:staff", passwd, group), Some((1000, 50)));
        assert_eq!(owner_of("ghost", passwd, group), None);
        assert_eq!(owner_of("app:ghosts", passwd, group), None);
    }

    #[test]
    fn an_exec_format_error_moves_to_the_next_arch() {
        let t = Duration::from_secs(1);
        let said = Some("the exec failed: exec format error".to_owned());
        assert!(matches!(
            why_not_started(Some(126), said, "", t),
            Attempt::NextArch(_)
        ));
        let stderr = "exec /tmp/x: exec format error";
        assert!(matches!(
            why_not_started(Some(1), None, stderr, t),
            Attempt::NextArch(_)
        ));
        // SIGILL: a v7 satellite on a v6 CPU.
        assert!(matches!(
            why_not_started(Some(132), None, "", t),
            Attempt::NextArch(_)
        ));
        match why_not_started(Some(126), None, "", t) {
            Attempt::NextDir(why) => assert!(why.contains("exit 126"), "{why}"),
            _ => panic!("a noexec place is a place problem"),
        }
        match why_not_started(None, None, "", t) {
            Attempt::NextDir(why) => assert!(why.contains("no hello within"), "{why}"),
            _ => panic!("a timeout is a place problem"),
        }
    }

    #[test]
    fn a_missing_shell_is_recognised() {
        let o = Outcome {
            code: Some(126),
            text: r#"OCI runtime exec failed: exec failed: container_linux.go:380: starting container process caused: exec: "/bin/sh": stat /bin/sh: no such file or directory: unknown"#.into(),
        };
        assert!(no_shell(&o));
        let o = Outcome {
            code: Some(4),
            text: "/bin/sh: can't create /dev/x: Permission denied".into(),
        };
        assert!(!no_shell(&o));
    }
}
