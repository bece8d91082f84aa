//! The life of one mount: checks, satellite, FUSE session, and the end.
//!
//! The mount is announced ready only after the satellite's hello. It ends
//! in one of three ways: a signal (we unmount), an unmount from outside
//! (`fusermount3 -u`, `umount`), or the loss of the satellite connection
//! (container stopped, satellite killed, engine gone). In the last case
//! every pending and later operation has already failed with EIO (the RPC
//! client does that as soon as the stream ends); we unmount and report the
//! cause with a non-zero exit status. With `--reconnect` the loss is
//! waited out instead ([`reconnect`](crate::transport::reconnect)): the mount stays,
//! and a new satellite takes over once the container runs again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use fuser::{Config, MountOption, SessionACL};
use tracing::{debug, info, warn};

use crate::cli::flags::{Cli, Target};
use crate::engine::api::{Container, Engine};
use crate::engine::endpoint::EngineFlags;
use crate::error::{Error, Result};
use crate::fs::{Core, LinkRewrite, Options};
use crate::kernel::fuse::FuseFs;
use crate::kernel::mountinfo;
use crate::kernel::sys_mount;
use crate::mount::daemon::Notifier;
use crate::mount::state;
use crate::satellites::embedded::{self, Arch};
use crate::satellites::launch::{Launch, Running, UPLOAD_DIRS};
use crate::transport::reconnect::{self, Outcome};
use crate::transport::relink::{Conn, Relink};

enum Event {
    Signal(i32),
    Unmounted,
    Lost(String),
}

/// True when `path` is itself a mount point (per /proc/self/mountinfo).
fn is_mount_point(path: &Path) -> bool {
    mountinfo::find(path).is_some()
}

/// Checks what can be checked before talking to the engine.
pub(crate) fn preflight(mount: &Path, allow_other: bool) -> Result<PathBuf> {
    if !Path::new("/dev/fuse").exists() {
        return Err(Error::setup("no /dev/fuse on this host")
            .with_errno(libc::ENODEV)
            .with_hint(
                "load the fuse module (modprobe fuse), or in a container pass --device /dev/fuse",
            ));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        user_helper()?;
    }
    if allow_other && !root && !fuse_conf_allows_other(FUSE_CONF) {
        return Err(Error::setup(format!(
            "--allow-other is refused to users other than root: {FUSE_CONF} does not set user_allow_other"
        ))
        .with_errno(libc::EPERM)
        .with_hint(format!(
            "add a line user_allow_other to {FUSE_CONF} (as root), or mount without --allow-other"
        )));
    }
    if !root {
        user_may_open_fuse()?;
    }
    let canon = mount.canonicalize().map_err(|e| {
        let err = Error::setup(format!(
            "mount point {} is not usable: {e}",
            mount.display()
        ))
        .with_errno(e.raw_os_error().unwrap_or(libc::ENOENT));
        if e.kind() == std::io::ErrorKind::NotFound {
            err.with_hint(format!("create it first: mkdir -p {}", mount.display()))
        } else {
            err
        }
    })?;
    if !canon.is_dir() {
        return Err(Error::setup(format!(
            "mount point {} is not a directory",
            mount.display()
        ))
        .with_errno(libc::ENOTDIR));
    }
    if !root && !writable(&canon) {
        return Err(Error::setup(format!(
            "mount point {} is not writable by you: as a user other than root, \
             fusermount3 mounts only on a directory you may write to",
            canon.display()
        ))
        .with_errno(libc::EACCES)
        .with_hint("mount on a directory of your own, e.g. mkdir -p ~/mnt"));
    }
    if is_mount_point(&canon) {
        return Err(Error::setup(format!(
            "mount point {} is already a mount (busy)",
            canon.display()
        ))
        .with_errno(libc::EBUSY)
        .with_hint(format!(
            "unmount it first: dockerfuse unmount {0} (or fusermount3 -u {0})",
            canon.display()
        )));
    }
    Ok(canon)
}

const FUSE_CONF: &str = "/etc/fuse.conf";

/// True when the FUSE configuration file has a `user_allow_other` line.
fn fuse_conf_allows_other(path: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| {
        t.lines()
            .any(|l| l.split('#').next().unwrap_or("").trim() == "user_allow_other")
    })
}

/// The setuid helper a user mounts through, or why there is none usable.
fn user_helper() -> Result<PathBuf> {
    let helper = crate::kernel::fusermount::find().ok_or_else(|| {
        Error::setup(
            "fusermount3 not found (a user other than root mounts through it: \
             /dev/fuse and mount(2) are root's)",
        )
        .with_errno(libc::ENOENT)
        .with_hint("install fuse3 (apt-get install fuse3, dnf install fuse3), or mount as root")
    })?;
    if let Some(why) = crate::kernel::fusermount::not_setuid(&helper) {
        return Err(
            Error::setup(format!("cannot mount as a user other than root: {why}"))
                .with_errno(libc::EPERM)
                .with_hint(format!(
                    "as root: chown root {0} && chmod u+s {0} (fuse3's package installs it so)",
                    helper.display()
                )),
        );
    }
    Ok(helper)
}

/// fusermount3 opens `/dev/fuse` with the user's own rights (it drops
/// root's before the open: the device's mode is how an administrator says
/// who may use FUSE), so a user who may not open it cannot mount at all.
fn user_may_open_fuse() -> Result<()> {
    // SAFETY: a NUL-terminated literal.
    if unsafe { libc::access(c"/dev/fuse".as_ptr(), libc::R_OK | libc::W_OK) } == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    use std::os::unix::fs::MetadataExt;
    let mode = std::fs::metadata("/dev/fuse")
        .map(|m| {
            format!(
                "mode {:o}, owner uid {}, group gid {}",
                m.mode() & 0o7777,
                m.uid(),
                m.gid()
            )
        })
        .unwrap_or_default();
    Err(Error::setup(format!(
        "cannot mount as a user other than root: /dev/fuse ({mode}) is not open to you ({e}), \
         and fusermount3 opens it with your rights"
    ))
    .with_errno(e.raw_os_error().unwrap_or(libc::EACCES))
    .with_hint(
        "as root: chmod 0666 /dev/fuse (most distributions' default; a udev rule \
         KERNEL==\"fuse\", MODE=\"0666\" keeps it), or mount as root",
    ))
}

/// True when this process may write to `dir` (what fusermount3 asks of
/// a mount point; a sticky directory must also be the user's own).
fn writable(dir: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: a NUL-terminated path that outlives the call.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK) } != 0 {
        return false;
    }
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).is_ok_and(|m| {
        // SAFETY: getuid has no preconditions and cannot fail.
        m.mode() & libc::S_ISVTX == 0 || m.uid() == unsafe { libc::getuid() }
    })
}

type MountSession = fuser::Session<FuseFs<Conn<crate::transport::local::Peer>>>;

/// The engine side of a mount: the container and its running satellite.
struct Remote {
    engine: Engine,
    container: Container,
    running: Running,
    /// How the core reaches the satellite: the exec stream or the local
    /// channel.
    link: crate::transport::local::Link,
    /// The container's name, for messages.
    name: String,
}

/// Mounts, serves until the end, and says how it ended.
pub(crate) fn run(
    cli: &Cli,
    target: &Target,
    engine: &EngineFlags,
    notifier: &mut Notifier,
) -> Result<()> {
    let (tx, events) = mpsc::channel::<Event>();
    let mounted = Arc::new(AtomicBool::new(false));
    take_signals(tx.clone(), mounted.clone())?;
    let mountpoint = preflight(&target.mountpoint, cli.allow_other)?;
    let remote = smol::block_on(async_compat::Compat::new(start_satellite(
        cli, target, engine,
    )))?;
    let relink = cli.reconnect.then(|| {
        Relink::new(
            remote.link.peer.clone(),
            Duration::from_secs_f64(cli.op_timeout),
        )
    });
    let (session, mut unmounter, feed) =
        mount_session(cli, target, &remote, &mountpoint, relink.clone())?;
    // From here a signal unmounts instead of ending the process.
    mounted.store(true, Ordering::SeqCst);
    raise_readahead(&mountpoint);
    limit_dirty(&mountpoint);
    let tx_again = tx.clone();
    serve(session, &remote, tx)?;
    if let Some(p) = &cli.pid_file {
        if let Err(e) = std::fs::write(p, format!("{}\n", std::process::id())) {
            warn!(file = %p.display(), error = %e, "cannot write the pid file");
        }
    }
    let _registration = state::Registration::new(&state::Record {
        container: remote.name.clone(),
        container_id: remote.container.id.clone(),
        path: target.path.clone(),
        mountpoint: mountpoint.clone(),
        pid: std::process::id(),
        transport: remote.link.transport_name().into(),
        since: state::now(),
    });
    let _stats = crate::mount::stats::Server::start();
    info!(container = %remote.name, mountpoint = %mountpoint.display(), satellite = %remote.running.arch, "mounted");
    notifier.ready();
    let mut remote = remote;
    let outcome = loop {
        let event = events.recv();
        let (Some(relink), Ok(Event::Lost(why))) = (&relink, &event) else {
            break end(event, &remote, &mut unmounter, &mountpoint, &events);
        };
        warn!(reason = %why, "lost the satellite; --reconnect: waiting for the container");
        let limit = Duration::from_secs_f64(cli.reconnect_timeout);
        let (engine, id) = (&remote.engine, remote.container.id.as_str());
        let start = || {
            let started = block_on(restart_satellite(cli, target, &remote))?;
            let peer = started.1.peer.clone();
            // The new feed starts before any request reaches the new
            // satellite; what the gap hid is invalidated.
            if let Some(feed) = &feed {
                let translate = translate(relink, relink.next_epoch());
                feed.resume(peer.rpc(), &peer, Some(translate));
            }
            Ok((started, peer))
        };
        match reconnect::come_back(relink, limit, engine, id, start, |d| {
            events.recv_timeout(d).ok()
        }) {
            Outcome::Back((running, link)) => {
                wait_closed(link.closed.clone(), tx_again.clone())?;
                remote.running = running;
                remote.link = link;
            }
            Outcome::Interrupted(e) => {
                relink.give_up();
                break end(Ok(e), &remote, &mut unmounter, &mountpoint, &events);
            }
            Outcome::TimedOut => {
                break end(event, &remote, &mut unmounter, &mountpoint, &events);
            }
        }
    };
    let counts = crate::mount::waits::counters().snapshot();
    debug!(
        waits = counts.waits,
        requests = counts.requests,
        "{}",
        counts.line()
    );
    finish(&remote, cli.pid_file.as_deref());
    outcome
}

/// Takes SIGINT, SIGTERM and SIGHUP (blocked since main started) in a
/// thread: before the mount exists they end the process at once (an
/// engine or satellite that does not answer must not make Ctrl-C useless;
/// the satellite sees its stream close and exits); once `mounted` is set
/// they become events, and the mount is taken down.
fn take_signals(tx: mpsc::Sender<Event>, mounted: Arc<AtomicBool>) -> Result<()> {
    let (sig_tx, sig_rx) = mpsc::channel::<i32>();
    crate::mount::signals::forward(sig_tx);
    std::thread::Builder::new()
        .name("signal-events".into())
        .spawn(move || {
            for sig in sig_rx {
                if !mounted.load(Ordering::SeqCst) {
                    crate::report::print(&interrupted(sig));
                    std::process::exit(crate::error::EXIT_SETUP);
                }
                if tx.send(Event::Signal(sig)).is_err() {
                    return;
                }
            }
        })
        .map(|_| ())
        .map_err(|e| Error::setup(format!("cannot start a thread: {e}")))
}

fn interrupted(sig: i32) -> Error {
    Error::setup(format!(
        "interrupted by {} before the mount was ready",
        crate::mount::signals::name(sig)
    ))
}

/// Connects to the engine, checks the container, uploads and starts the
/// satellite.
async fn start_satellite(cli: &Cli, target: &Target, flags: &EngineFlags) -> Result<Remote> {
    let id = target.container.as_str();
    let engine = Engine::connect(flags).await?;
    let container = engine.inspect(id).await?;
    if !container.running {
        return Err(Error::setup(format!(
            "container {id} is not running (status: {})",
            container.status
        ))
        .with_hint(format!("start it first: docker start {id}")));
    }
    let native = engine.native_arch().await;
    if let Some(note) = container.pid.and_then(crate::mount::idmap::describe) {
        info!("{note}");
    }
    let image = container
        .image_arch
        .as_deref()
        .and_then(|a| Arch::parse_with_variant(a, container.image_variant.as_deref()));
    let archs = embedded::candidates(cli.satellite_arch, native, image).map_err(|why| {
        Error::setup(format!(
            "{why} (image architecture: {})",
            container.image_arch.as_deref().unwrap_or("unknown")
        ))
        .with_hint("force one that can run in the container with --satellite-arch")
    })?;
    let launch = launch(cli, target, &engine, &container.id, archs);
    let running = launch.run().await?;
    let link = crate::transport::local::connect(&engine, &running, &want(cli, &launch)).await?;
    let name = if container.name.is_empty() {
        id.to_owned()
    } else {
        container.name.clone()
    };
    Ok(Remote {
        engine,
        container,
        running,
        link,
        name,
    })
}

/// How to start the satellite in the container.
fn launch<'a>(
    cli: &'a Cli,
    target: &'a Target,
    engine: &'a Engine,
    id: &'a str,
    archs: Vec<Arch>,
) -> Launch<'a> {
    let dirs = match &cli.satellite_dir {
        Some(d) => vec![d.clone()],
        None => UPLOAD_DIRS.iter().map(|s| s.to_string()).collect(),
    };
    Launch {
        engine,
        container: id,
        archs,
        dirs,
        user: &cli.user,
        root: &target.path,
        timeout: Duration::from_secs_f64(cli.start_timeout.max(1.0)),
        stall: Duration::from_secs_f64(cli.op_timeout.max(0.2)),
        max_watches: cli.max_watches,
    }
}

/// How to reach the satellite once it runs.
fn want(cli: &Cli, launch: &Launch<'_>) -> crate::transport::local::Want {
    crate::transport::local::Want {
        choice: cli.transport,
        no_passthrough: cli.no_passthrough,
        writeback: cli.writeback_cache,
        per_caller: cli.allow_other,
        stall: launch.stall,
        timeout: launch.timeout,
    }
}

/// Starts the satellite again (`--reconnect`), with the architecture that
/// worked, and reaches it the way the flags say.
async fn restart_satellite(
    cli: &Cli,
    target: &Target,
    remote: &Remote,
) -> Result<(Running, crate::transport::local::Link)> {
    let (engine, id) = (&remote.engine, remote.container.id.as_str());
    let launch = launch(cli, target, engine, id, vec![remote.running.arch]);
    let running = launch.run().await?;
    let link = crate::transport::local::connect(engine, &running, &want(cli, &launch)).await?;
    Ok((running, link))
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    smol::block_on(async_compat::Compat::new(f))
}

/// The FUSE mount options for these flags.
fn fuse_config(cli: &Cli, name: &str) -> Config {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(format!("dockerfuse:{name}")),
        MountOption::Subtype("dockerfuse".into()),
    ];
    if cli.read_only {
        config.mount_options.push(MountOption::RO);
    }
    if cli.allow_other {
        // Other users' requests are checked by the kernel against the modes
        // the container reports.
        config.mount_options.push(MountOption::DefaultPermissions);
        config.acl = SessionACL::All;
    }
    config
}

/// Mounts the filesystem (the kernel starts sending requests once the
/// session runs).
fn mount_session(
    cli: &Cli,
    target: &Target,
    remote: &Remote,
    mountpoint: &Path,
    relink: Option<Relink<crate::transport::local::Peer>>,
) -> Result<(
    MountSession,
    Unmounter,
    Option<Arc<crate::kernel::feed::Feed>>,
)> {
    let links = cli.rewrite_absolute_links.then(|| LinkRewrite {
        root: target.path.as_bytes().to_vec(),
        mountpoint: mountpoint.as_os_str().as_encoded_bytes().to_vec(),
    });
    // The change feed came with protocol 4; an older satellite has none.
    let feed_wanted = !cli.no_change_feed && remote.running.hello.protocol >= 4;
    let opts = Options {
        ttl: Duration::from_secs_f64(cli.ttl.unwrap_or(1.0)),
        fixed_ttl: cli.ttl.is_some(),
        writeback: cli.writeback_cache,
        links,
        per_caller: cli.allow_other,
        // Opens that bring small files' contents came with protocol 5.
        open_small: remote.running.hello.protocol >= 5,
        write_behind: !cli.no_write_behind,
        host_attrs: !cli.no_host_attrs,
        // A satellite that is not root could be refused an open the host
        // would already have answered.
        lazy_open: !cli.no_lazy_open && remote.running.hello.uid == 0,
        // Directories opened with their first read came with protocol 7.
        open_read_dir: remote.running.hello.protocol >= 7,
        // Subtree streaming came with protocol 8.
        stream: !cli.no_stream && remote.running.hello.protocol >= 8,
        // Creates with the host's ids came with protocol 8; the kernel's
        // node ids are the satellite's only without --reconnect; the
        // container must decide as the kernel did (a root satellite; a
        // mount per caller has no write-behind anyway).
        pipeline: !cli.sync_metadata
            && !cli.no_write_behind
            && !cli.reconnect
            && remote.running.hello.protocol >= 8
            && remote.running.hello.uid == 0,
        // Symlinks with the host's ids came with protocol 9.
        symlink_new: remote.running.hello.protocol >= 9,
        // Before protocol 6 open flags travelled in the satellite's own
        // numbers.
        legacy_flags: (remote.running.hello.protocol < 6)
            .then(|| dockerfuse_proto::Abi::of_arch(&remote.running.hello.arch)),
        // FUSE_POSIX_ACL turns on the kernel's own permission check, on
        // anyway with --allow-other. Elsewhere it would refuse a mounting
        // user who is not root what the satellite allows, and, for root,
        // make every create or open in a directory whose attributes the
        // feed dropped wait for them (a create sent behind would wait).
        // Its ACL cache is kept coherent by the feed's invalidations.
        kernel_acls: feed_wanted && cli.allow_other,
    };
    // The feed names the satellite's node ids; with --reconnect the kernel
    // holds ids of our own, which the relink table translates them into.
    let translated = relink.as_ref().map(|r| translate(r, r.epoch()));
    let conn = match relink {
        Some(r) => Conn::Relink(r),
        None => Conn::Plain(remote.link.peer.clone()),
    };
    let core = Core::new(conn, opts);
    if let Conn::Relink(r) = core.transport() {
        let coherence = core.coherence();
        r.on_unwatched(Box::new(move |node| {
            coherence.apply(&[dockerfuse_proto::Change::Unwatched { node }]);
        }));
    }
    let feed = feed_wanted
        .then(|| crate::kernel::feed::Feed::enable_on(&core, remote.link.peer.rpc(), translated))
        .flatten();
    if cli.idmap {
        let hello = &remote.running.hello;
        // SAFETY: getuid/getgid have no preconditions and cannot fail.
        let ours = unsafe { (libc::getuid(), libc::getgid()) };
        crate::mount::idmap::enable(crate::mount::idmap::Swap {
            theirs: (hello.uid, hello.gid),
            ours,
        });
        info!(
            "--idmap: the container's uid {} and gid {} are shown as {} and {}",
            hello.uid, hello.gid, ours.0, ours.1
        );
    }
    let coherence = core.coherence();
    let fs = FuseFs::new(core, remote.link.passthrough.is_ok());
    let config = fuse_config(cli, &remote.name);
    let fsname = format!("dockerfuse:{}", remote.name);
    let req = sys_mount::Request {
        mountpoint,
        fsname: &fsname,
        read_only: cli.read_only,
        allow_other: cli.allow_other,
    };
    let made = sys_mount::mount_any(&req).and_then(|(fd, how)| {
        tracing::debug!(how, "mounted");
        fuser::Session::from_fd(fs, fd, config.acl, config.clone()).inspect_err(|_| {
            let _ = sys_mount::unmount(mountpoint);
        })
    });
    let session = made.map_err(|e| {
        remote.link.shutdown();
        let errno = crate::kernel::fusermount::errno_of(&e).unwrap_or(libc::EIO);
        let err = Error::setup(format!("cannot mount on {}: {e}", mountpoint.display()))
            .with_errno(errno);
        if cli.allow_other {
            err.with_hint(format!(
                "--allow-other needs root or user_allow_other in {FUSE_CONF}"
            ))
        } else {
            err
        }
    })?;
    let unmounter = Unmounter(mountpoint.to_path_buf());
    // Side effects of the mount's own operations that neither their
    // replies nor the feed tell the kernel (see fs::coherence), with or
    // without the feed.
    let notifier = session.notifier();
    coherence.set_expire_attrs(Box::new(move |node| {
        let _ = crate::kernel::feed::Kernel::inval_inode(&notifier, node, -1, 0);
    }));
    let notifier = session.notifier();
    coherence.set_forget_name(Box::new(move |parent, name| {
        // Not on the transport's thread: the kernel may hold the
        // directory's lock for a request waiting on it.
        let (notifier, name) = (notifier.clone(), name.to_vec());
        let _ = std::thread::Builder::new()
            .name("forget-name".into())
            .spawn(move || {
                let _ = crate::kernel::feed::Kernel::inval_entry(&notifier, parent, &name);
            });
    }));
    if let Some(feed) = &feed {
        if let Err(e) = feed.start(session.notifier()) {
            warn!(error = %e, "cannot start the notification thread");
        }
    }
    Ok((session, unmounter, feed))
}

/// Translates the changes of the satellite of `epoch` into the ids the
/// kernel holds under `--reconnect`.
fn translate(
    relink: &Relink<crate::transport::local::Peer>,
    epoch: u64,
) -> crate::kernel::feed::Translate {
    let relink = relink.clone();
    Box::new(move |changes: &mut Vec<dockerfuse_proto::Change<'_>>| relink.changes(epoch, changes))
}

/// How to take the mount down: umount2 as root, fusermount3 -u otherwise
/// (see [`sys_mount::unmount`]).
struct Unmounter(PathBuf);

/// Runs the session and watches the satellite, each in its own thread;
/// both end up as events on `tx` (where the signals arrive too).
fn serve(session: MountSession, remote: &Remote, tx: mpsc::Sender<Event>) -> Result<()> {
    let tx_session = tx.clone();
    std::thread::Builder::new()
        .name("fuse".into())
        .spawn(move || {
            if let Err(e) = session.run() {
                warn!(error = %e, "FUSE session ended with an error");
            }
            let _ = tx_session.send(Event::Unmounted);
        })
        .map_err(|e| Error::setup(format!("cannot start the FUSE thread: {e}")))?;
    wait_closed(remote.link.closed.clone(), tx)
}

/// Turns the end of a satellite connection into an event.
fn wait_closed(closed: smol::channel::Receiver<String>, tx: mpsc::Sender<Event>) -> Result<()> {
    std::thread::Builder::new()
        .name("closed".into())
        .spawn(move || {
            if let Ok(why) = closed.recv_blocking() {
                let _ = tx.send(Event::Lost(why));
            }
        })
        .map(|_| ())
        .map_err(|e| Error::setup(format!("cannot start a thread: {e}")))
}

/// Ends the mount after `event`: unmounts if the kernel has not already.
fn end(
    event: std::result::Result<Event, mpsc::RecvError>,
    remote: &Remote,
    unmounter: &mut Unmounter,
    mountpoint: &Path,
    events: &mpsc::Receiver<Event>,
) -> Result<()> {
    match event {
        Ok(Event::Signal(sig)) => {
            info!(signal = crate::mount::signals::name(sig), "unmounting");
            unmount(unmounter, mountpoint);
            wait_unmounted(events, Duration::from_secs(10));
            Ok(())
        }
        Ok(Event::Unmounted) | Err(_) => {
            info!("unmounted");
            Ok(())
        }
        Ok(Event::Lost(why)) => {
            let cause = smol::block_on(async_compat::Compat::new(lost_cause(remote, &why)));
            warn!(%cause, "unmounting");
            unmount(unmounter, mountpoint);
            wait_unmounted(events, Duration::from_secs(5));
            Err(Error::lost(cause))
        }
    }
}

/// Why the satellite went away, in words: the engine may need a moment to
/// see the container's end, so ask it a few times.
async fn lost_cause(remote: &Remote, why: &str) -> String {
    let (engine, id, name) = (&remote.engine, &remote.container.id, &remote.name);
    let mut last = engine.inspect(id).await;
    for _ in 0..5 {
        match &last {
            Ok(c) if c.running => {
                smol::Timer::after(Duration::from_millis(100)).await;
                last = engine.inspect(id).await;
            }
            _ => break,
        }
    }
    match last {
        Ok(c) if !c.running => format!("container {name} stopped (status: {})", c.status),
        Ok(_) => format!("lost the satellite in container {name}: {why}"),
        Err(e) => format!("lost container {name}: {e}"),
    }
}

/// Tells the satellite to exit and removes the pid file.
fn finish(remote: &Remote, pid_file: Option<&Path>) {
    remote.link.shutdown();
    // The shutdown frame is queued, not yet written: give the writer
    // thread a moment to deliver it before the process exits.
    std::thread::sleep(Duration::from_millis(50));
    if let Some(p) = pid_file {
        let _ = std::fs::remove_file(p);
    }
}

/// The kernel gives a FUSE mount 128 KiB of readahead whatever the
/// filesystem asks for at init; 1 MiB keeps several large reads in flight
/// (measured: 78-87 -> 106-112 MB/s for a first read). Needs root; a
/// failure only costs speed.
fn raise_readahead(mountpoint: &Path) {
    // The device number comes from mountinfo: a stat of the mount point
    // would be a FUSE request, and the session loop is not running yet.
    let Some(dev) = mount_device(mountpoint) else {
        return;
    };
    let knob = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    let kb = (dockerfuse_proto::MAX_IO / 1024).to_string();
    if let Err(e) = std::fs::write(&knob, kb) {
        tracing::debug!(%knob, error = %e, "readahead left as the kernel set it");
    }
}

/// Most bytes the kernel may hold written and not yet sent for one mount
/// (its page cache with `--writeback-cache`, shared mappings otherwise):
/// what a crash of dockerfuse may lose of them (docs/SEMANTICS.md).
const DIRTY_LIMIT: u64 = 24 << 20;

/// The kernel lets a FUSE mount hold 1% of the machine's dirty limit
/// (strictly: a writer waits past it), 45 MiB on a 24 GiB machine and
/// more on larger ones; this lowers it to [`DIRTY_LIMIT`], never raises
/// it. Needs root (and kernel 6.2); otherwise the kernel's share stays the
/// bound.
fn limit_dirty(mountpoint: &Path) {
    let Some(dev) = mount_device(mountpoint) else {
        return;
    };
    let knob = format!("/sys/class/bdi/{dev}/max_bytes");
    let now = std::fs::read_to_string(&knob)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    match now {
        Some(n) if n <= DIRTY_LIMIT => {}
        _ => match std::fs::write(&knob, DIRTY_LIMIT.to_string()) {
            Ok(()) => {
                tracing::debug!(%knob, bytes = DIRTY_LIMIT, "dirty data of the mount bounded")
            }
            Err(e) => {
                tracing::debug!(%knob, error = %e, "dirty data bounded by the kernel's share only")
            }
        },
    }
}

/// `major:minor` of the filesystem mounted on `path` (the last such mount).
fn mount_device(path: &Path) -> Option<String> {
    mountinfo::find(path).map(|e| e.device)
}

fn unmount(unmounter: &mut Unmounter, mountpoint: &Path) {
    if let Err(e) = sys_mount::unmount(&unmounter.0) {
        warn!(error = %e, mountpoint = %mountpoint.display(), "cannot unmount");
    }
}

fn wait_unmounted(rx: &mpsc::Receiver<Event>, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(Event::Unmounted) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_a_mount_point_and_a_fresh_dir_is_not() {
        assert!(is_mount_point(Path::new("/")));
        let d = tempfile::tempdir().unwrap();
        assert!(!is_mount_point(&d.path().canonicalize().unwrap()));
    }

    #[test]
    fn the_root_mount_has_a_device_number() {
        let dev = mount_device(Path::new("/")).expect("/ is mounted");
        assert!(dev.contains(':'), "{dev}");
    }

    #[test]
    fn preflight_names_a_missing_mount_point() {
        let e = preflight(Path::new("/nonexistent/dockerfuse-test"), false).unwrap_err();
        assert!(e.message.contains("mount point"), "{}", e.message);
        assert!(e.hint.unwrap_or_default().contains("mkdir"));
    }

    #[test]
    fn user_allow_other_is_read_from_fuse_conf() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("fuse.conf");
        let f = f.to_str().unwrap();
        std::fs::write(f, "# user_allow_other\nmount_max = 1000\n").unwrap();
        assert!(!fuse_conf_allows_other(f));
        std::fs::write(f, "mount_max = 1000\n  user_allow_other  \n").unwrap();
        assert!(fuse_conf_allows_other(f));
        assert!(!fuse_conf_allows_other("/nonexistent/fuse.conf"));
    }
}
