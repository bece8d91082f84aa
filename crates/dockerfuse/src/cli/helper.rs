//! `mount -t fuse.dockerfuse` and `/etc/fstab`: mount(8) runs mount.fuse3,
//! which runs `dockerfuse SOURCE MOUNTPOINT -o OPTIONS` (with no PATH in
//! the environment). Each dockerfuse flag has an `-o` spelling
//! (`ro`, `allow_other`, `ttl=2`, `user=1000`, `context=remote`...), the
//! generic mount options (`defaults`, `nofail`, `_netdev`, `x-systemd.*`,
//! `dev`, `suid`...) are ignored, and the form daemonizes by default:
//! mount returns once the mount is ready (`-o foreground` keeps it in the
//! foreground).

use std::path::PathBuf;

use clap::Parser;

use crate::cli::flags::{normalize, Cli};
use crate::satellites::embedded::Arch;

/// The PATH a mount helper gets when it has none (the shell's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Options mount(8) and mount.fuse3 pass on that mean nothing here. The
/// mount stays nodev and nosuid whatever `dev`/`suid` say: the files are
/// the container's.
const IGNORED: &[&str] = &[
    "defaults",
    "rw",
    "auto",
    "noauto",
    "nofail",
    "_netdev",
    "user",
    "nouser",
    "users",
    "owner",
    "group",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "noexec",
    "atime",
    "noatime",
    "relatime",
    "strictatime",
    "nodiratime",
    "diratime",
    "sync",
    "async",
    "loud",
    "silent",
];

/// True for options that are ignored (including `x-*` and `comment=*`).
fn ignored(opt: &str) -> bool {
    IGNORED.contains(&opt) || opt.starts_with("x-") || opt.starts_with("comment=")
}

/// The mount flags from the process's arguments, with the `-o` options
/// applied (clap exits on bad usage).
pub(crate) fn parse_args() -> Cli {
    let mut cli = Cli::parse_from(normalize(std::env::args_os()));
    if let Err(e) = apply(&mut cli) {
        <Cli as clap::CommandFactory>::command()
            .error(clap::error::ErrorKind::ValueValidation, e)
            .exit();
    }
    cli
}

/// Applies the `-o` options to `cli`. An unknown option is an error naming it.
pub(crate) fn apply(cli: &mut Cli) -> Result<(), String> {
    if cli.options.is_empty() {
        return Ok(());
    }
    cli.daemonize = true;
    let opts: Vec<String> = cli
        .options
        .iter()
        .flat_map(|o| o.split(','))
        .filter(|o| !o.is_empty())
        .map(str::to_owned)
        .collect();
    for opt in opts {
        if ignored(&opt) {
            continue;
        }
        let (key, value) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v.to_owned())),
            None => (opt.as_str(), None),
        };
        let need = |v: Option<String>| v.ok_or(format!("-o {key} needs a value ({key}=...)"));
        let secs = |v: Option<String>| -> Result<f64, String> {
            let v = need(v)?;
            crate::cli::flags::seconds(&v).map_err(|e| format!("-o {key}: {e}"))
        };
        let flag = |v: &Option<String>| -> Result<(), String> {
            match v {
                None => Ok(()),
                Some(_) => Err(format!("-o {key} takes no value")),
            }
        };
        match key.replace('-', "_").as_str() {
            "ro" | "read_only" => {
                flag(&value)?;
                cli.read_only = true
            }
            "allow_other" => {
                flag(&value)?;
                cli.allow_other = true
            }
            "writeback_cache" => {
                flag(&value)?;
                cli.writeback_cache = true
            }
            "close_behind" => {
                flag(&value)?;
                cli.close_behind = true
            }
            "rewrite_absolute_links" => {
                flag(&value)?;
                cli.rewrite_absolute_links = true
            }
            // sshfs spells it idmap=user
            "idmap" => match value.as_deref() {
                None | Some("user") => cli.idmap = true,
                Some(v) => return Err(format!("-o idmap={v}: only idmap or idmap=user")),
            },
            "reconnect" => {
                flag(&value)?;
                cli.reconnect = true
            }
            "debug" => {
                flag(&value)?;
                cli.debug = true
            }
            "json" => {
                flag(&value)?;
                cli.json = true
            }
            "foreground" => {
                flag(&value)?;
                cli.daemonize = false
            }
            "path" => cli.path = need(value)?,
            "ttl" => cli.ttl = Some(secs(value)?),
            "start_timeout" => cli.start_timeout = secs(value)?,
            "op_timeout" => cli.op_timeout = secs(value)?,
            "reconnect_timeout" => cli.reconnect_timeout = secs(value)?,
            "user" => cli.user = need(value)?,
            "satellite_arch" => {
                let v = need(value)?;
                cli.satellite_arch = Some(
                    Arch::parse(&v).ok_or(format!("-o satellite_arch={v}: not amd64 or arm64"))?,
                )
            }
            "satellite_dir" => cli.satellite_dir = Some(need(value)?),
            "host" => cli.host = Some(need(value)?),
            "context" => cli.context = Some(need(value)?),
            "pid_file" => cli.pid_file = Some(PathBuf::from(need(value)?)),
            "log_file" => cli.log_file = Some(PathBuf::from(need(value)?)),
            _ => return Err(format!("unknown mount option -o {opt}")),
        }
    }
    if cli.host.is_some() && cli.context.is_some() {
        return Err("-o host and -o context cannot be used together".into());
    }
    Ok(())
}

/// mount(8) runs helpers with no PATH; give the usual one so that
/// fusermount3, ssh and the like are found.
pub(crate) fn ensure_path() {
    if std::env::var_os("PATH").is_none() {
        // Called first thing in main, before any thread starts.
        std::env::set_var("PATH", DEFAULT_PATH);
    }
}

/// mount(8) run by a user for a `user`/`users` fstab entry hands its
/// helpers root's HOME; a user's contexts and config are under their own.
/// When HOME is unset or not this user's directory, it becomes the home
/// directory of the passwd entry.
pub(crate) fn ensure_home() {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let ours = std::env::var_os("HOME")
        .and_then(|h| std::fs::metadata(h).ok())
        .is_some_and(|m| m.uid() == uid);
    if uid == 0 || ours {
        return;
    }
    if let Some(home) = passwd_home(uid) {
        // Called first thing in main, before any thread starts.
        std::env::set_var("HOME", home);
    }
}

/// The home directory of `uid` in the passwd database.
fn passwd_home(uid: libc::uid_t) -> Option<std::ffi::OsString> {
    use std::os::unix::ffi::OsStrExt;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value to be overwritten.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; buf outlives the use
    // of the strings it holds (copied out below).
    let rc =
        unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() || pw.pw_dir.is_null() {
        return None;
    }
    // SAFETY: pw_dir points at a NUL-terminated string inside buf.
    let dir = unsafe { std::ffi::CStr::from_ptr(pw.pw_dir) };
    Some(std::ffi::OsStr::from_bytes(dir.to_bytes()).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn cli(args: &[&str]) -> Result<Cli, String> {
        let mut c = Cli::try_parse_from(args).map_err(|e| e.to_string())?;
        apply(&mut c)?;
        Ok(c)
    }

    #[test]
    fn the_passwd_entry_gives_a_home() {
        assert_eq!(
            passwd_home(0).as_deref(),
            Some(std::ffi::OsStr::new("/root"))
        );
        assert!(passwd_home(3_999_999_999).is_none());
    }

    #[test]
    fn every_flag_has_an_option() {
        let c = cli(&[
            "dockerfuse",
            "web:/etc",
            "/mnt/web",
            "-o",
            "ro,allow_other,ttl=2.5,user=1000:1000,satellite_arch=arm64,context=remote",
            "-o",
            "satellite_dir=/run,start_timeout=9,op_timeout=7,writeback_cache,rewrite_absolute_links",
            "-o",
            "reconnect,reconnect_timeout=60,idmap=user,close_behind",
        ])
        .unwrap();
        assert!(c.idmap && c.close_behind);
        assert!(c.daemonize && c.read_only && c.allow_other);
        assert!(c.writeback_cache && c.rewrite_absolute_links);
        assert_eq!(c.ttl, Some(2.5));
        assert_eq!(c.user, "1000:1000");
        assert_eq!(c.satellite_arch, Some(Arch::Arm64));
        assert_eq!(c.context.as_deref(), Some("remote"));
        assert_eq!(c.satellite_dir.as_deref(), Some("/run"));
        assert_eq!((c.start_timeout, c.op_timeout), (9.0, 7.0));
        assert!(c.reconnect);
        assert_eq!(c.reconnect_timeout, 60.0);
        assert_eq!(c.target().unwrap().path, "/etc");
    }

    #[test]
    fn generic_options_are_ignored_and_unknown_ones_refused() {
        let c = cli(&[
            "d",
            "web",
            "/m",
            "-o",
            "rw,dev,suid,exec,defaults,nofail,_netdev,noauto,x-systemd.requires=docker.service,comment=x",
        ])
        .unwrap();
        assert!(c.daemonize && !c.read_only);
        assert!(cli(&["d", "web", "/m", "-o", "bogus"])
            .unwrap_err()
            .contains("bogus"));
        assert!(cli(&["d", "web", "/m", "-o", "ttl"]).is_err());
        assert!(cli(&["d", "web", "/m", "-o", "ttl=-1"]).is_err());
        assert!(cli(&["d", "web", "/m", "-o", "ro=1"]).is_err());
        assert!(cli(&["d", "web", "/m", "-o", "host=tcp://x:1,context=y"]).is_err());
        assert!(cli(&["d", "web", "/m", "-o", "foreground"]).is_ok_and(|c| !c.daemonize));
        assert!(
            !cli(&["d", "web", "/m"]).unwrap().daemonize,
            "no -o: no change"
        );
    }
}
