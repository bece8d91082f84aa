//! Command-line flags.
//!
//! Both spellings are accepted: the classic single-dash long flags of the
//! Go tool (`-id web -mount ./mnt`, `-daemonize`, `-version`) and the
//! usual `--id`/`-i`. [`normalize`] rewrites the first into the second
//! before clap sees them.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;

use crate::satellites::Arch;

/// Mount the filesystem of a running Docker container through FUSE.
#[derive(Parser, Debug, Clone)]
#[command(name = "dockerfuse", disable_version_flag = true, after_help = AFTER_HELP)]
pub struct Cli {
    /// Container name or id (must be running).
    #[arg(short = 'i', long = "id", required_unless_present = "version")]
    pub id: Option<String>,

    /// Directory to mount on (must exist and not be a mount already).
    #[arg(short = 'm', long = "mount", required_unless_present = "version")]
    pub mount: Option<PathBuf>,

    /// Directory inside the container to mount.
    #[arg(short = 'p', long = "path", default_value = "/")]
    pub path: String,

    /// Return once the mount is ready and keep serving in the background.
    #[arg(short = 'd', long)]
    pub daemonize: bool,

    /// Write the serving process's pid here.
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,

    /// Send logs to this file (the default with -daemonize is nowhere).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    /// Mount read-only.
    #[arg(long)]
    pub read_only: bool,

    /// Let other users see the mount (needs user_allow_other in
    /// /etc/fuse.conf when not root).
    #[arg(long)]
    pub allow_other: bool,

    /// Seconds the kernel may cache names and attributes (0: none).
    /// Default: what the change feed watches is kept until it changes,
    /// anything else for 1 s. Given, it applies to everything.
    #[arg(long, value_name = "SECONDS")]
    pub ttl: Option<f64>,

    /// Do not ask the satellite for its change feed (every cache then
    /// lasts the TTL only).
    #[arg(long)]
    pub no_change_feed: bool,

    /// Show absolute symlinks under the mount point (default: as they are
    /// in the container, which points into the host's tree).
    #[arg(long)]
    pub rewrite_absolute_links: bool,

    /// Let the kernel cache writes and send them in large batches. The
    /// kernel then trusts its own size and mtime of a file it caches:
    /// changes of them made inside the container show only once it drops
    /// the inode (see docs/SEMANTICS.md).
    #[arg(long)]
    pub writeback_cache: bool,

    /// Docker engine to use (default: $DOCKER_HOST, else the local socket).
    #[arg(short = 'H', long, value_name = "URL")]
    pub host: Option<String>,

    /// User the satellite runs as inside the container.
    #[arg(long, default_value = "0", value_name = "USER[:GROUP]")]
    pub user: String,

    /// Use this satellite instead of choosing one.
    #[arg(long, value_enum)]
    pub satellite_arch: Option<Arch>,

    /// Directory in the container to upload the satellite to (default: the
    /// first of /tmp, /run, /var/tmp, / that works).
    #[arg(long, value_name = "DIR")]
    pub satellite_dir: Option<String>,

    /// Seconds to wait for the satellite to start.
    #[arg(long, default_value_t = 20.0, value_name = "SECONDS")]
    pub start_timeout: f64,

    /// Seconds an operation may wait on a satellite that answers nothing
    /// (a paused container) before it fails with EIO.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub op_timeout: f64,

    /// Log at debug level (RUST_LOG overrides).
    #[arg(long)]
    pub debug: bool,

    /// Log as JSON lines.
    #[arg(long)]
    pub json: bool,

    /// Print the version (with -debug: the satellites' sizes too).
    #[arg(long)]
    pub version: bool,
}

const AFTER_HELP: &str = "\
Single-dash long flags work too: dockerfuse -id web -mount ./mnt
Exit status: 0 unmounted cleanly, 1 setup failed, 2 bad usage,
3 the container or its satellite went away while mounted.";

/// Rewrites `-id` / `-id=web` into `--id` / `--id=web`.
pub fn normalize<I: IntoIterator<Item = OsString>>(args: I) -> Vec<OsString> {
    let cmd = <Cli as clap::CommandFactory>::command();
    let long: Vec<&str> = cmd
        .get_arguments()
        .filter_map(|a| a.get_long())
        .chain(["help"])
        .collect();
    let mut out = Vec::new();
    let mut rest = false;
    for a in args {
        if rest {
            out.push(a);
            continue;
        }
        let s = a.to_string_lossy();
        if s == "--" {
            rest = true;
        } else if let Some(body) = s.strip_prefix('-').filter(|b| !b.starts_with('-')) {
            let name = body.split('=').next().unwrap_or("");
            if name.len() > 1 && long.contains(&name) {
                out.push(OsString::from(format!("-{s}")));
                continue;
            }
        }
        out.push(a);
    }
    out
}

impl Cli {
    pub fn parse_args() -> Cli {
        Cli::parse_from(normalize(std::env::args_os()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(normalize(args.iter().map(OsString::from))).unwrap()
    }

    #[test]
    fn classic_and_long_forms_agree() {
        let a = parse(&[
            "dockerfuse",
            "-id",
            "web",
            "-mount",
            "./mnt",
            "-daemonize",
            "-debug",
            "-json",
            "-path",
            "/etc",
        ]);
        let b = parse(&[
            "dockerfuse",
            "--id",
            "web",
            "--mount",
            "./mnt",
            "-d",
            "--debug",
            "--json",
            "-p",
            "/etc",
        ]);
        let c = parse(&[
            "dockerfuse",
            "-i",
            "web",
            "-m",
            "./mnt",
            "--daemonize",
            "-debug",
            "-json",
            "-path=/etc",
        ]);
        for x in [&a, &b, &c] {
            assert_eq!(x.id.as_deref(), Some("web"));
            assert_eq!(x.mount.as_deref(), Some(std::path::Path::new("./mnt")));
            assert_eq!(x.path, "/etc");
            assert!(x.daemonize && x.debug && x.json);
        }
    }

    #[test]
    fn version_needs_no_container() {
        assert!(parse(&["dockerfuse", "-version"]).version);
        assert!(Cli::try_parse_from(["dockerfuse", "--mount", "x"]).is_err());
    }

    #[test]
    fn values_after_double_dash_are_left_alone() {
        let v = normalize(["x", "--", "-id"].map(OsString::from));
        assert_eq!(v[2], "-id");
        // A value that looks like a flag name is not rewritten when it is
        // a short cluster: -dH is not a long name.
        assert_eq!(normalize(["x", "-dH"].map(OsString::from))[1], "-dH");
    }

    #[test]
    fn satellite_arch_accepts_both_spellings() {
        assert_eq!(
            parse(&["d", "-i", "c", "-m", "m", "--satellite-arch", "aarch64"]).satellite_arch,
            Some(Arch::Arm64)
        );
        assert_eq!(
            parse(&["d", "-i", "c", "-m", "m", "--satellite-arch", "amd64"]).satellite_arch,
            Some(Arch::Amd64)
        );
    }
}
