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

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use tracing::{debug, info, warn};

use crate::cli::flags::{Cli, Target};
use crate::engine::endpoint::EngineFlags;
use crate::error::{Error, Result};
use crate::mount::daemon::Notifier;
use crate::mount::preflight::preflight;
use crate::mount::remote::{
    block_on, finish, lost_cause, restart_satellite, start_satellite, Remote,
};
use crate::mount::session::{mount_session, translate, unmount, MountSession, Unmounter};
use crate::mount::state;
use crate::mount::tuning::{limit_dirty, raise_readahead};
use crate::transport::reconnect::{self, Outcome};
use crate::transport::relink::Relink;

enum Event {
    Signal(i32),
    Unmounted,
    Lost(String),
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

fn wait_unmounted(rx: &mpsc::Receiver<Event>, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(Event::Unmounted) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
