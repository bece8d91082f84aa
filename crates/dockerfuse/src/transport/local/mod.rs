//! The local path: when the engine runs on this host, the RPC leaves the
//! engine out, and open files can be handed to the kernel.
//!
//! The satellite is started as always (uploaded, `docker exec` attached)
//! and says hello on the exec stream, which stays the lifeline: its end
//! still means the satellite is gone, and the satellite still exits when
//! its stdin ends. Then, when the engine is reached over a unix socket:
//!
//! 1. the exec's inspect gives the satellite's pid on this host; a pidfd
//!    pins that process, which must be ours: the last field of its
//!    `NSpid` is the pid its hello gave, and its command line runs the
//!    file this mount uploaded (directly, or under qemu-user);
//! 2. `OpenChannel` (over the exec stream) makes the satellite create an
//!    anonymous socket pair and report the host end's descriptor number;
//!    `pidfd_getfd` copies that end here; it must be a socket created by
//!    that very process (`SO_PEERCRED`);
//! 3. `UseChannel` switches the satellite over: it closes its copy of our
//!    end, answers on the exec stream once more, says hello on the socket
//!    and answers everything there from then on.
//!
//! Any "no" before the switch leaves the mount on the exec stream with the
//! reason logged (`--transport local` fails instead). Everything read
//! from the socket is as untrusted as the exec stream: the same client
//! ([`Rpc::start_bytes`]) checks every frame.

mod pidfd;
mod select;

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use dockerfuse_proto::{Errno, Request, Response, SatelliteHello};
use smol::channel::Receiver;
use tracing::{debug, info};

use crate::engine::api::Engine;
use crate::error::{Error, Result};
use crate::fs::{Done, Transport};
use crate::satellites::launch::Running;
use crate::transport::rpc::{Rpc, Started};

use pidfd::Pidfd;
use select::PassthroughFacts;
pub(crate) use select::TransportChoice;

/// CAP_SYS_ADMIN's bit number.
const CAP_SYS_ADMIN: u32 = 21;

/// The peer: the satellite as the mount's core talks to it, through the
/// RPC client of the exec stream or of the local channel, and on the
/// local channel the means to take the satellite's descriptors.
#[derive(Clone)]
pub(crate) struct Peer {
    rpc: Rpc,
    satellite: Option<Arc<Pidfd>>,
}

impl Peer {
    /// The RPC client that carries the conversation now.
    pub(crate) fn rpc(&self) -> &Rpc {
        &self.rpc
    }
}

impl Transport for Peer {
    fn call(&self, req: &Request<'_>, done: Done) {
        self.rpc.call(req, done)
    }

    fn post(&self, req: &Request<'_>) {
        self.rpc.post(req)
    }

    fn take_fd(&self, fd: u32) -> Option<OwnedFd> {
        let p = self.satellite.as_ref()?;
        match p.take(fd) {
            Ok(fd) => Some(fd),
            Err(e) => {
                debug!(fd, pid = p.pid(), error = %e, "cannot take the satellite's descriptor");
                None
            }
        }
    }
}

impl Peer {
    /// The connection has ended (its requests fail with EIO at once).
    pub(crate) fn is_closed(&self) -> bool {
        self.rpc.is_closed()
    }
}

/// How the mount reaches its satellite.
pub(crate) struct Link {
    pub(crate) peer: Peer,
    /// Fires once, with the reason, when the exec stream or the channel
    /// ends (the other is closed too).
    pub(crate) closed: Receiver<String>,
    /// `Ok` on the local channel, else why not.
    pub(crate) local: std::result::Result<(), String>,
    /// `Ok` when the kernel may be asked for passthrough, else why not.
    pub(crate) passthrough: std::result::Result<(), String>,
    exec: Rpc,
}

impl Link {
    /// Asks the satellite to exit and closes both streams.
    pub(crate) fn shutdown(&self) {
        if self.local.is_ok() {
            self.peer.rpc.shutdown();
        }
        self.exec.shutdown();
    }

    /// The transport's short name, as `dockerfuse list` shows it.
    pub(crate) fn transport_name(&self) -> &'static str {
        if self.local.is_ok() {
            "local"
        } else {
            "exec"
        }
    }

    /// One line for the log: which path, and passthrough or why not.
    pub(crate) fn describe(&self) -> String {
        let transport = match &self.local {
            Ok(()) => "local channel (the engine is bypassed)".to_owned(),
            Err(why) => format!("exec stream through the engine (no local channel: {why})"),
        };
        let pt = match &self.passthrough {
            Ok(()) => "passthrough requested".to_owned(),
            Err(why) => format!("passthrough off: {why}"),
        };
        format!("transport: {transport}; {pt}")
    }
}

/// What the kernel and this process allow for passthrough.
fn passthrough_facts(local: bool, want: &Want) -> PassthroughFacts {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    PassthroughFacts {
        local,
        disabled: want.no_passthrough,
        writeback: want.writeback,
        per_caller: want.per_caller,
        sys_admin: select::has_capability(&status, CAP_SYS_ADMIN),
        kernel: select::kernel_version(release.trim()),
    }
}

/// Settings of the switch.
pub(crate) struct Want {
    pub(crate) choice: TransportChoice,
    pub(crate) no_passthrough: bool,
    pub(crate) writeback: bool,
    /// `--allow-other`: requests are performed as their callers.
    pub(crate) per_caller: bool,
    /// How long to wait for each answer of the switch, and the stall limit
    /// of the channel's client.
    pub(crate) stall: Duration,
    pub(crate) timeout: Duration,
}

/// Moves the conversation to the local channel when it can, and says
/// which path the mount takes. Fails only for `--transport local` (or when
/// the satellite broke off in the middle of the switch).
pub(crate) async fn connect(engine: &Engine, running: &Running, want: &Want) -> Result<Link> {
    let exec = running.rpc.clone();
    let pt_if_local = select::passthrough_wanted(&passthrough_facts(true, want));
    let attempt = match select::channel_wanted(want.choice, &engine.host) {
        Ok(()) => prepare(engine, running, want.timeout).await,
        Err(why) => Err(why),
    };
    let (link, local, passthrough) = match attempt {
        Ok((pidfd, sock)) => {
            let fds = pt_if_local.is_ok();
            match switch(running, pidfd, sock, fds, want).await {
                Ok((channel, closed)) => (Some((channel, closed)), Ok(()), pt_if_local),
                Err(why) => {
                    exec.shutdown();
                    return Err(Error::setup(format!(
                        "the satellite in the container did not finish moving to the local channel: {why}"
                    )));
                }
            }
        }
        Err(why) => {
            if want.choice == TransportChoice::Local {
                exec.shutdown();
                return Err(Error::setup(format!(
                    "--transport local: cannot bypass the engine: {why}"
                )));
            }
            let pt = select::passthrough_wanted(&passthrough_facts(false, want));
            (None, Err(why), pt)
        }
    };
    let (peer, closed) = match link {
        Some((peer, chan_closed)) => {
            let merged = merge_closed(&exec, running.closed.clone(), &peer.rpc, chan_closed);
            (peer, merged)
        }
        None => (
            Peer {
                rpc: exec.clone(),
                satellite: None,
            },
            running.closed.clone(),
        ),
    };
    let link = Link {
        peer,
        closed,
        local,
        passthrough,
        exec,
    };
    info!("{}", link.describe());
    Ok(link)
}

/// One receiver for the end of either stream; the end of one closes the
/// other (pending requests fail with EIO at once).
fn merge_closed(
    exec: &Rpc,
    exec_closed: Receiver<String>,
    chan: &Rpc,
    chan_closed: Receiver<String>,
) -> Receiver<String> {
    let (tx, rx) = smol::channel::bounded(2);
    for (what, src, other) in [
        ("exec stream", exec_closed, chan.clone()),
        ("local channel", chan_closed, exec.clone()),
    ] {
        let tx = tx.clone();
        let spawned = std::thread::Builder::new()
            .name("lifeline".into())
            .spawn(move || {
                if let Ok(why) = src.recv_blocking() {
                    let why = format!("{why} ({what})");
                    other.close(why.clone());
                    let _ = tx.try_send(why);
                }
            });
        if let Err(e) = spawned {
            debug!(error = %e, "cannot start a lifeline thread");
        }
    }
    rx
}

/// Sends `req` over `rpc` and waits (bounded) for its answer, mapped by `map`.
async fn ask<R: Send + 'static>(
    rpc: &Rpc,
    (name, req): (&str, Request<'_>),
    map: fn(Response<'_>) -> Option<R>,
    limit: Duration,
) -> std::result::Result<R, String> {
    let (tx, rx) = smol::channel::bounded(1);
    rpc.call(
        &req,
        Box::new(move |r| {
            let _ = tx.try_send(match r {
                Ok(resp) => map(resp).ok_or(Errno::EPROTO),
                Err(e) => Err(e),
            });
        }),
    );
    let timer = async {
        smol::Timer::after(limit).await;
        Err(Errno(libc::ETIMEDOUT))
    };
    let got = smol::future::or(async { rx.recv().await.unwrap_or(Err(Errno::EIO)) }, timer).await;
    got.map_err(|e| format!("{name} failed: {}", std::io::Error::from_raw_os_error(e.0)))
}

/// Steps 1 and 2: finds and checks the satellite's process and takes the
/// host's end of a fresh socket pair. Nothing has switched yet.
async fn prepare(
    engine: &Engine,
    running: &Running,
    limit: Duration,
) -> std::result::Result<(Pidfd, OwnedFd), String> {
    // The engine records the pid once the runtime returns from starting
    // the process, which can be a moment after the process said hello.
    let deadline = std::time::Instant::now() + limit;
    let pid = loop {
        if let Some(pid) = engine.exec_pid(&running.exec_id).await {
            break pid;
        }
        if std::time::Instant::now() >= deadline {
            return Err("the engine did not tell the satellite's pid".into());
        }
        smol::Timer::after(Duration::from_millis(10)).await;
    };
    let pidfd = Pidfd::open(pid).map_err(|e| format!("pidfd_open of pid {pid} failed: {e}"))?;
    verify(&pidfd, &running.hello, &running.path)?;
    let fd = ask(
        &running.rpc,
        ("open_channel", Request::OpenChannel),
        |r| match r {
            Response::Channel { fd } => Some(fd),
            _ => None,
        },
        limit,
    )
    .await?;
    let sock = pidfd
        .take(fd)
        .map_err(|e| format!("pidfd_getfd on the satellite (pid {pid}) was refused: {e}"))?;
    check_socket(&sock, pid)?;
    Ok((pidfd, sock))
}

/// The process behind `pidfd` is this mount's satellite.
fn verify(pidfd: &Pidfd, hello: &SatelliteHello, path: &str) -> std::result::Result<(), String> {
    let pid = pidfd.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| {
        format!(
            "pid {pid} is not visible from here ({e}): another pid namespace (rootless engine?)"
        )
    })?;
    match select::innermost_pid(&status) {
        Some(p) if p == hello.pid => {}
        other => {
            return Err(format!(
            "pid {pid} is not the satellite: it is pid {} in its namespace, the satellite said {}",
            other
                .map(|p| p.to_string())
                .unwrap_or_else(|| "unknown".into()),
            hello.pid
        ))
        }
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if !select::cmdline_runs(&cmdline, path) {
        return Err(format!(
            "pid {pid} does not run the uploaded satellite {path}"
        ));
    }
    Ok(())
}

/// `sock` is a stream socket made by process `pid`.
fn check_socket(sock: &OwnedFd, pid: u32) -> std::result::Result<(), String> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: a descriptor we own, and a ucred-sized buffer with its length.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(format!(
            "the satellite's descriptor is not a socket: {}",
            std::io::Error::last_os_error()
        ));
    }
    if u32::try_from(cred.pid).ok() != Some(pid) {
        return Err(format!(
            "the socket was not made by the satellite (its peer is pid {}, not {pid})",
            cred.pid
        ));
    }
    Ok(())
}

/// Step 3: switches the satellite over and starts the channel's client.
async fn switch(
    running: &Running,
    pidfd: Pidfd,
    sock: OwnedFd,
    fds: bool,
    want: &Want,
) -> std::result::Result<(Peer, Receiver<String>), String> {
    let stream = std::os::unix::net::UnixStream::from(sock);
    ask(
        &running.rpc,
        ("use_channel", Request::UseChannel { fds }),
        |r| matches!(r, Response::Ok).then_some(()),
        want.timeout,
    )
    .await?;
    let Started {
        rpc,
        hello,
        closed,
        tasks,
        ..
    } = Rpc::start_socket(stream, want.stall).map_err(|e| format!("cannot use the socket: {e}"))?;
    std::thread::Builder::new()
        .name("rpc-local".into())
        .spawn(move || smol::block_on(tasks))
        .map_err(|e| format!("cannot start the channel's thread: {e}"))?;
    let timer = async {
        smol::Timer::after(want.timeout).await;
        None
    };
    let got = smol::future::or(async { hello.recv().await.ok() }, timer).await;
    let Some(h) = got else {
        rpc.close("no hello on the channel".into());
        return Err("no hello on the local channel".into());
    };
    if h != running.hello {
        rpc.close("another hello".into());
        return Err(format!(
            "the channel's hello differs from the exec's ({h:?})"
        ));
    }
    debug!(
        pid = pidfd.pid(),
        fds, "satellite moved to the local channel"
    );
    Ok((
        Peer {
            rpc,
            satellite: Some(Arc::new(pidfd)),
        },
        closed,
    ))
}
