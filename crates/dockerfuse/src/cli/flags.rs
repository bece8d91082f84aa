//! Command-line flags.
//!
//! Both spellings are accepted: the classic single-dash long flags of the
//! Go tool (`-id web -mount ./mnt`, `-daemonize`, `-version`) and the
//! usual `--id`/`-i`. [`normalize`] rewrites the first into the second
//! before clap sees them.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;

use crate::engine::endpoint::EngineFlags;
use crate::satellites::embedded::Arch;

/// Mount the filesystem of a running Docker container through FUSE.
#[derive(Parser, Debug, Clone)]
#[command(name = "dockerfuse", disable_version_flag = true, after_help = AFTER_HELP)]
pub(crate) struct Cli {
    /// The container (name or id, must be running) and optionally the
    /// directory in it to mount: web, web:/etc.
    #[arg(value_name = "CONTAINER[:PATH]", conflicts_with = "id")]
    pub source: Option<String>,

    /// Directory to mount on (must exist and not be a mount already).
    #[arg(value_name = "MOUNTPOINT", conflicts_with = "mount", value_hint = clap::ValueHint::DirPath)]
    pub mountpoint: Option<PathBuf>,

    /// Container name or id (must be running).
    #[arg(short = 'i', long = "id", required_unless_present_any = ["version", "source"], help_heading = ARGS)]
    pub id: Option<String>,

    /// Directory to mount on (must exist and not be a mount already).
    #[arg(short = 'm', long = "mount", required_unless_present_any = ["version", "mountpoint"], help_heading = ARGS)]
    pub mount: Option<PathBuf>,

    /// Directory inside the container to mount.
    #[arg(short = 'p', long = "path", default_value = "/", help_heading = ARGS)]
    pub path: String,

    /// Return once the mount is ready and keep serving in the background.
    #[arg(short = 'd', long, help_heading = RUN)]
    pub daemonize: bool,

    /// Write the serving process's pid here.
    #[arg(long, value_name = "FILE", help_heading = RUN)]
    pub pid_file: Option<PathBuf>,

    /// Send logs to this file (the default with -daemonize is nowhere).
    #[arg(long, value_name = "FILE", help_heading = RUN)]
    pub log_file: Option<PathBuf>,

    /// Mount read-only.
    #[arg(long, help_heading = MOUNT)]
    pub read_only: bool,

    /// Let other users see the mount (needs user_allow_other in
    /// /etc/fuse.conf when not root).
    #[arg(long, help_heading = MOUNT)]
    pub allow_other: bool,

    /// Seconds the kernel may cache names and attributes (0: none).
    /// Default: what the change feed watches is kept until it changes,
    /// anything else for 1 s. Given, it applies to everything.
    #[arg(long, value_name = "SECONDS", value_parser = seconds, help_heading = MOUNT)]
    pub ttl: Option<f64>,

    /// Do not ask the satellite for its change feed (every cache then
    /// lasts the TTL only).
    #[arg(long, help_heading = MOUNT)]
    pub no_change_feed: bool,

    /// Most inotify watches the change feed may hold in the container
    /// (default: half of fs.inotify.max_user_watches, a budget the
    /// container's user shares with the host). Nodes past it are cached
    /// for the TTL only.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), help_heading = MOUNT)]
    pub max_watches: Option<u32>,

    /// Show the files of the satellite's user and group (the container's
    /// root by default) as your own, and a chown to you as one to them,
    /// as sshfs's `-o idmap=user`: with a rootless engine the container's
    /// root is you on the host.
    #[arg(long, help_heading = MOUNT)]
    pub idmap: bool,

    /// Show absolute symlinks under the mount point (default: as they are
    /// in the container, which points into the host's tree).
    #[arg(long, help_heading = MOUNT)]
    pub rewrite_absolute_links: bool,

    /// Let the kernel cache writes and send them in large batches. The
    /// kernel then trusts its own size and mtime of a file it caches:
    /// changes of them made inside the container show only once it drops
    /// the inode (see docs/SEMANTICS.md).
    #[arg(long, help_heading = MOUNT)]
    pub writeback_cache: bool,

    /// Wait for the container to take each write before write(2) returns
    /// (default: writes are answered at once and sent in batches; an
    /// error shows at the next write, fsync or close).
    #[arg(long, help_heading = MOUNT)]
    pub no_write_behind: bool,

    /// Wait for the container to make or remove each name before
    /// create/mkdir/symlink/unlink/rmdir/rename returns (default: a name
    /// the host knows is absent is created at once, and one it knows is
    /// there removed or renamed at once, and made so in the container
    /// behind, in order; a refusal shows at the next write, close or
    /// fsync, or the directory's fsync, see docs/SEMANTICS.md).
    /// `--no-write-behind` implies it.
    #[arg(long, help_heading = MOUNT)]
    pub sync_metadata: bool,

    /// Let close(2) return at once, without waiting for the container to
    /// take the file's writes and create still behind (default: close
    /// waits and reports their error). A refusal after close returned
    /// shows at the file's next write, open, stat or setattr, at the
    /// directory's fsync (a create), and in the log; fsync the file to
    /// know it is there (see docs/SEMANTICS.md). No effect where writes
    /// are not sent behind (`--no-write-behind`, `--allow-other`,
    /// `--writeback-cache`).
    #[arg(long, help_heading = MOUNT)]
    pub close_behind: bool,

    /// Ask the container for the attributes of every stat the kernel
    /// cannot answer itself (default: with the change feed on, the
    /// attributes of the nodes it watches are kept on the host until a
    /// change says otherwise).
    #[arg(long, help_heading = MOUNT)]
    pub no_host_attrs: bool,
    /// Open every file in the container at open(2) (default: a read-only
    /// open of a file the change feed watches is answered at once and
    /// made in the container on the first read the page cache does not
    /// serve).
    #[arg(long, help_heading = MOUNT)]
    pub no_lazy_open: bool,
    /// Read each directory in the container when the kernel lists it
    /// (default: the first listing of a directory brings the subtree below
    /// it, listings, attributes and small files' contents, in one round
    /// trip, kept on the host until the kernel reads them or something
    /// changes).
    #[arg(long, help_heading = MOUNT)]
    pub no_stream: bool,

    /// Docker engine to use (default: $DOCKER_HOST, else the context, else
    /// the local socket).
    #[arg(short = 'H', long, value_name = "URL", help_heading = ENGINE)]
    pub host: Option<String>,

    /// Docker context to use (overrides DOCKER_HOST, DOCKER_CONTEXT and
    /// `docker context use`).
    #[arg(short = 'c', long, value_name = "NAME", conflicts_with = "host", help_heading = ENGINE)]
    pub context: Option<String>,

    /// User the satellite runs as inside the container.
    #[arg(long, default_value = "0", value_name = "USER[:GROUP]", help_heading = SATELLITE)]
    pub user: String,

    /// Use this satellite instead of choosing one.
    #[arg(long, value_enum, help_heading = SATELLITE)]
    pub satellite_arch: Option<Arch>,

    /// Directory in the container to upload the satellite to (default: the
    /// first of /tmp, /run, /var/tmp, / that works).
    #[arg(long, value_name = "DIR", help_heading = SATELLITE)]
    pub satellite_dir: Option<String>,

    /// Seconds to wait for the satellite to start.
    #[arg(long, default_value_t = 20.0, value_name = "SECONDS", value_parser = seconds, help_heading = SATELLITE)]
    pub start_timeout: f64,

    /// Seconds an operation may wait on a satellite that answers nothing
    /// (a paused container) before it fails with EIO.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS", value_parser = seconds, help_heading = SATELLITE)]
    pub op_timeout: f64,

    /// When the container stops or the satellite is lost, keep the mount
    /// and wait for the container to run again, then start a new
    /// satellite and carry on (files open across the gap give EIO).
    #[arg(long, help_heading = SATELLITE)]
    pub reconnect: bool,

    /// Seconds --reconnect waits for the container to run again before
    /// giving up (then the mount ends as without --reconnect).
    #[arg(long, default_value_t = 300.0, value_name = "SECONDS", value_parser = seconds, help_heading = SATELLITE)]
    pub reconnect_timeout: f64,

    /// How to reach the satellite: `local` leaves the engine out (engine
    /// on this host, dockerfuse root) and lets the kernel read and write
    /// open files directly; `exec` goes through the engine; `auto` takes
    /// local when it can. -debug says which one a mount uses and why.
    #[arg(long, value_enum, default_value_t, value_name = "HOW")]
    pub transport: crate::transport::local::TransportChoice,

    /// Keep file data on the RPC path even on the local transport (no
    /// FUSE passthrough).
    #[arg(long)]
    pub no_passthrough: bool,

    /// Log at debug level (RUST_LOG overrides).
    #[arg(long, help_heading = RUN)]
    pub debug: bool,

    /// Log as JSON lines.
    #[arg(long, help_heading = RUN)]
    pub json: bool,

    /// Mount options, comma separated, as mount(8) passes them (`-o
    /// ro,allow_other,ttl=2`): each flag has one; implies --daemonize.
    #[arg(short = 'o', value_name = "OPTIONS", action = clap::ArgAction::Append, help_heading = MOUNT)]
    pub options: Vec<String>,

    /// Print the version (with -debug: the satellites' sizes too).
    #[arg(long, help_heading = RUN)]
    pub version: bool,
}

const ARGS: &str = "What to mount";
const MOUNT: &str = "Mount options";
const ENGINE: &str = "Docker engine";
const SATELLITE: &str = "Satellite (the file server in the container)";
const RUN: &str = "Process and logs";

const AFTER_HELP: &str = "\
Examples:
  dockerfuse web ./mnt                      mount container web on ./mnt (Ctrl-C ends it)
  dockerfuse web:/etc ./mnt -d --read-only  /etc of web, read-only, in the background
  dockerfuse --context remote web ./mnt     through a docker context
  mount -t fuse.dockerfuse web:/etc /mnt/web -o ro,allow_other
  docker mount web ./mnt                    as a docker CLI plugin (dockerfuse install-plugin)

Other commands:
  dockerfuse list [--json]                  the mounts: container, path, pid, since...
  dockerfuse unmount DIR...|--all           unmount and wait for the process to exit
  dockerfuse stats DIR [--json]             requests answered and waits for the container
  dockerfuse install-plugin [--dir DIR]     install as the docker CLI plugin `docker mount`
  dockerfuse completions bash|zsh|fish      shell completions (container names included)
  dockerfuse man                            the manual page

Single-dash long flags work too: dockerfuse -id web -mount ./mnt
Exit status: 0 unmounted cleanly, 1 setup failed, 2 bad usage,
3 the container or its satellite went away while mounted.";

/// A number of seconds: finite, not negative, below a million.
pub(crate) fn seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..1e6).contains(&v) => Ok(v),
        _ => Err(format!("{s} is not a number of seconds (0 to 999999)")),
    }
}

/// Rewrites `-id` / `-id=web` into `--id` / `--id=web`.
pub(crate) fn normalize<I: IntoIterator<Item = OsString>>(args: I) -> Vec<OsString> {
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

/// What to mount where, once the flags are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// Container name or id.
    pub container: String,
    /// Directory inside the container.
    pub path: String,
    /// Directory on the host.
    pub mountpoint: PathBuf,
}

impl Cli {
    /// The container, path and mount point, from the positional form or
    /// the flags (`None` only with -version, which clap lets through
    /// without them).
    pub(crate) fn target(&self) -> Option<Target> {
        let (container, path) = match &self.source {
            Some(s) => match s.split_once(':') {
                Some((c, p)) if !p.is_empty() => (c.to_owned(), p.to_owned()),
                Some((c, _)) => (c.to_owned(), self.path.clone()),
                None => (s.clone(), self.path.clone()),
            },
            None => (self.id.clone()?, self.path.clone()),
        };
        Some(Target {
            container,
            path,
            mountpoint: self.mountpoint.clone().or_else(|| self.mount.clone())?,
        })
    }

    /// The flags that choose the engine.
    pub(crate) fn engine_flags(&self) -> EngineFlags {
        EngineFlags {
            host: self.host.clone(),
            context: self.context.clone(),
            ..EngineFlags::default()
        }
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
    fn positional_form_gives_the_same_target() {
        let a = parse(&["d", "web:/etc", "./mnt"]).target().unwrap();
        let b = parse(&["d", "-id", "web", "-path", "/etc", "-mount", "./mnt"])
            .target()
            .unwrap();
        assert_eq!(a, b);
        let c = parse(&["d", "web", "./mnt", "-p", "/var"])
            .target()
            .unwrap();
        assert_eq!((c.container.as_str(), c.path.as_str()), ("web", "/var"));
        assert!(Cli::try_parse_from(["d", "web"]).is_err(), "no mount point");
        assert!(Cli::try_parse_from(["d", "web", "m", "--id", "x"]).is_err());
    }

    #[test]
    fn context_and_host_conflict() {
        assert_eq!(
            parse(&["d", "w", "m", "--context", "x"])
                .engine_flags()
                .context
                .as_deref(),
            Some("x")
        );
        assert_eq!(
            parse(&["d", "w", "m", "-context", "x"]).context.as_deref(),
            Some("x")
        );
        assert!(Cli::try_parse_from(["d", "w", "m", "-c", "x", "-H", "unix:///s"]).is_err());
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
