//! The life of one mount: checks, satellite, FUSE session, and the end.
//!
//! The mount is announced ready only after the satellite's hello. It ends
//! in one of three ways: a signal (we unmount), an unmount from outside
//! (`fusermount3 -u`, `umount`), or the loss of the satellite connection
//! (container stopped, satellite killed, engine gone). In the last case
//! every pending and later operation has already failed with EIO (the RPC
//! client does that as soon as the stream ends); we unmount and report the
//! cause with a non-zero exit status.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use fuser::{Config, MountOption, SessionACL};
use tracing::{info, warn};

use crate::cli::Cli;
use crate::daemon::Notifier;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::fs::{Core, LinkRewrite, Options};
use crate::fuse::FuseFs;
use crate::launch::{Launch, UPLOAD_DIRS};
use crate::satellites::{self, Arch};

enum Event {
    Signal(i32),
    Unmounted,
    Lost(String),
}

impl From<i32> for Event {
    fn from(sig: i32) -> Event {
        Event::Signal(sig)
    }
}

/// True when `path` is itself a mount point (per /proc/self/mountinfo).
fn is_mount_point(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.as_os_str().as_encoded_bytes();
    info.lines()
        .any(|l| l.split(' ').nth(4).map(unescape_mountinfo).as_deref() == Some(want))
}

fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Checks what can be checked before talking to the engine.
pub fn preflight(mount: &Path) -> Result<PathBuf> {
    if !Path::new("/dev/fuse").exists() {
        return Err(Error::setup("no /dev/fuse on this host: load the fuse module (modprobe fuse) or pass --device /dev/fuse to this container").with_errno(libc::ENODEV));
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0
        && which("fusermount3").is_none()
        && which("fusermount").is_none()
    {
        return Err(Error::setup(
            "fusermount3 not found in PATH: install fuse3 (needed to mount as a non-root user)",
        ));
    }
    let canon = mount.canonicalize().map_err(|e| {
        Error::setup(format!(
            "mount point {} is not usable: {e}",
            mount.display()
        ))
        .with_errno(e.raw_os_error().unwrap_or(libc::ENOENT))
    })?;
    if !canon.is_dir() {
        return Err(Error::setup(format!(
            "mount point {} is not a directory",
            mount.display()
        ))
        .with_errno(libc::ENOTDIR));
    }
    if is_mount_point(&canon) {
        return Err(Error::setup(format!(
            "mount point {} is already a mount (busy): unmount it first (fusermount3 -u {})",
            canon.display(),
            canon.display()
        ))
        .with_errno(libc::EBUSY));
    }
    Ok(canon)
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.is_file())
}

/// Mounts, serves until the end, and says how it ended.
pub fn run(cli: &Cli, notifier: &mut Notifier) -> Result<()> {
    let id = cli
        .id
        .as_deref()
        .ok_or_else(|| Error::setup("--id is required"))?;
    let mount = cli
        .mount
        .as_deref()
        .ok_or_else(|| Error::setup("--mount is required"))?;
    let mountpoint = preflight(mount)?;
    let ttl = cli.ttl.unwrap_or(1.0);
    if !(0.0..1e6).contains(&ttl) {
        return Err(Error::setup(format!(
            "--ttl {ttl} is not a number of seconds"
        )));
    }

    let (engine, container, running) = smol::block_on(async_compat::Compat::new(async {
        let engine = Engine::connect(cli.host.as_deref()).await?;
        let container = engine.inspect(id).await?;
        if !container.running {
            return Err(Error::setup(format!(
                "container {id} is not running (status: {})",
                container.status
            )));
        }
        let native = engine.native_arch().await;
        let image = container.image_arch.as_deref().and_then(Arch::parse);
        if cli.satellite_arch.is_none() && native.is_none() && image.is_none() {
            return Err(Error::setup(format!(
                "unsupported architecture: the engine and image {} are neither amd64 nor arm64",
                container.image_arch.as_deref().unwrap_or("(unknown)")
            )));
        }
        let dirs = match &cli.satellite_dir {
            Some(d) => vec![d.clone()],
            None => UPLOAD_DIRS.iter().map(|s| s.to_string()).collect(),
        };
        let launch = Launch {
            engine: &engine,
            container: &container.id,
            archs: satellites::candidates(cli.satellite_arch, native, image),
            dirs,
            user: &cli.user,
            root: &cli.path,
            timeout: Duration::from_secs_f64(cli.start_timeout.max(1.0)),
            stall: Duration::from_secs_f64(cli.op_timeout.max(0.2)),
        };
        let running = launch.run().await?;
        Ok::<_, Error>((engine, container, running))
    }))?;
    let name = if container.name.is_empty() {
        id.to_owned()
    } else {
        container.name.clone()
    };

    let links = cli.rewrite_absolute_links.then(|| LinkRewrite {
        root: cli.path.as_bytes().to_vec(),
        mountpoint: mountpoint.as_os_str().as_encoded_bytes().to_vec(),
    });
    let feed_wanted = !cli.no_change_feed && running.hello.protocol >= 3;
    let opts = Options {
        ttl: Duration::from_secs_f64(ttl),
        fixed_ttl: cli.ttl.is_some(),
        writeback: cli.writeback_cache,
        links,
        per_caller: cli.allow_other,
    };
    let core = Core::new(running.rpc.clone(), opts);
    let feed = feed_wanted
        .then(|| crate::feed::Feed::enable_on(&core, &running.rpc))
        .flatten();
    let fs = FuseFs::new(core);
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
    let session = fuser::Session::new(fs, &mountpoint, &config).map_err(|e| {
        running.rpc.shutdown();
        Error::setup(format!("cannot mount on {}: {e}", mountpoint.display()))
            .with_errno(e.raw_os_error().unwrap_or(libc::EIO))
    })?;
    let mut session = session;
    let mut unmounter = session.unmount_callable();
    if let Some(feed) = &feed {
        if let Err(e) = feed.start(session.notifier()) {
            warn!(error = %e, "cannot start the notification thread");
        }
    }
    raise_readahead(&mountpoint);

    let (tx, rx) = mpsc::channel::<Event>();
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
    let tx_lost = tx.clone();
    let closed = running.closed.clone();
    std::thread::Builder::new()
        .name("watch".into())
        .spawn(move || {
            if let Ok(why) = closed.recv_blocking() {
                let _ = tx_lost.send(Event::Lost(why));
            }
        })
        .map_err(|e| Error::setup(format!("cannot start a thread: {e}")))?;
    crate::signals::forward(tx);

    let pid_file = cli.pid_file.clone();
    if let Some(p) = &pid_file {
        if let Err(e) = std::fs::write(p, format!("{}\n", std::process::id())) {
            warn!(file = %p.display(), error = %e, "cannot write the pid file");
        }
    }
    info!(container = %name, mountpoint = %mountpoint.display(), satellite = %running.arch, "mounted");
    notifier.ready();

    let outcome = match rx.recv() {
        Ok(Event::Signal(sig)) => {
            info!(signal = crate::signals::name(sig), "unmounting");
            unmount(&mut unmounter, &mountpoint);
            wait_unmounted(&rx, Duration::from_secs(10));
            Ok(())
        }
        Ok(Event::Unmounted) | Err(_) => {
            info!("unmounted");
            Ok(())
        }
        Ok(Event::Lost(why)) => {
            // The engine may need a moment to see the container's end.
            let state = smol::block_on(async_compat::Compat::new(async {
                let mut last = engine.inspect(&container.id).await;
                for _ in 0..5 {
                    match &last {
                        Ok(c) if c.running => {
                            smol::Timer::after(Duration::from_millis(100)).await;
                            last = engine.inspect(&container.id).await;
                        }
                        _ => break,
                    }
                }
                last
            }));
            let cause = match state {
                Ok(c) if !c.running => format!("container {name} stopped (status: {})", c.status),
                Ok(_) => format!("lost the satellite in container {name}: {why}"),
                Err(e) => format!("lost container {name}: {e}"),
            };
            warn!(%cause, "unmounting");
            unmount(&mut unmounter, &mountpoint);
            wait_unmounted(&rx, Duration::from_secs(5));
            Err(Error::lost(cause))
        }
    };
    running.rpc.shutdown();
    // Give the writer a moment to deliver the shutdown frame.
    std::thread::sleep(Duration::from_millis(50));
    if let Some(p) = &pid_file {
        let _ = std::fs::remove_file(p);
    }
    outcome
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

/// `major:minor` of the filesystem mounted on `path` (the last such mount).
fn mount_device(path: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = path.as_os_str().as_encoded_bytes();
    info.lines()
        .rev()
        .filter(|l| l.split(' ').nth(4).map(unescape_mountinfo).as_deref() == Some(want))
        .find_map(|l| l.split(' ').nth(2).map(str::to_owned))
}

fn unmount(unmounter: &mut fuser::SessionUnmounter, mountpoint: &Path) {
    if let Err(e) = unmounter.unmount() {
        // Busy (a shell's cwd inside, say): detach it lazily instead.
        warn!(error = %e, "unmount failed, detaching lazily");
        let c =
            std::ffi::CString::new(mountpoint.as_os_str().as_encoded_bytes()).unwrap_or_default();
        // SAFETY: a valid C string.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
            let _ = std::process::Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(mountpoint)
                .status();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo("/a\\040b"), b"/a b");
        assert_eq!(unescape_mountinfo("/plain"), b"/plain");
        assert_eq!(unescape_mountinfo("/x\\"), b"/x\\");
    }

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
        let e = preflight(Path::new("/nonexistent/dockerfuse-test")).unwrap_err();
        assert!(e.message.contains("mount point"), "{}", e.message);
    }
}
