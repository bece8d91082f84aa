//! The FUSE session of a mount: the core over the satellite's
//! connection (through relink with `--reconnect`), the change feed, the
//! mount options, the mount itself, and how to take it down.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fuser::{Config, MountOption, SessionACL};
use tracing::{info, warn};

use crate::cli::flags::{Cli, Target};
use crate::error::{Error, Result};
use crate::fs::{Core, LinkRewrite, Options};
use crate::kernel::fuse::FuseFs;
use crate::kernel::sys_mount;
use crate::mount::preflight::FUSE_CONF;
use crate::mount::remote::Remote;
use crate::transport::relink::{Conn, Relink};

pub(super) type MountSession = fuser::Session<FuseFs<Conn<crate::transport::local::Peer>>>;

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
pub(super) fn mount_session(
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
        close_behind: cli.close_behind,
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
pub(super) fn translate(
    relink: &Relink<crate::transport::local::Peer>,
    epoch: u64,
) -> crate::kernel::feed::Translate {
    let relink = relink.clone();
    Box::new(move |changes: &mut Vec<dockerfuse_proto::Change<'_>>| relink.changes(epoch, changes))
}

/// How to take the mount down: umount2 as root, fusermount3 -u otherwise
/// (see [`sys_mount::unmount`]).
pub(super) struct Unmounter(PathBuf);

pub(super) fn unmount(unmounter: &mut Unmounter, mountpoint: &Path) {
    if let Err(e) = sys_mount::unmount(&unmounter.0) {
        warn!(error = %e, mountpoint = %mountpoint.display(), "cannot unmount");
    }
}
