//! What can be checked before the engine is asked: `/dev/fuse`, the
//! setuid helper and `user_allow_other` for a user other than root, and
//! the mount point itself (exists, a directory, writable, not a mount).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::kernel::mountinfo;

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

pub(super) const FUSE_CONF: &str = "/etc/fuse.conf";

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
