//! The docker CLI plugin: `docker mount [OPTIONS] CONTAINER[:PATH] MOUNTPOINT`.
//!
//! The docker CLI finds `docker-mount` in its plugin directories
//! (`~/.docker/cli-plugins`, ...), asks it `docker-mount
//! docker-cli-plugin-metadata` for a JSON description, and runs it for
//! `docker [GLOBAL FLAGS] mount ...` with the whole command line after
//! `docker`: the global flags (`--context`, `-H`, `--tls*`, `--config`,
//! `-D`, `-l`) come first, then the word `mount`, then the plugin's own
//! arguments; `DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND` is set in its
//! environment. The global flags are read here and choose the engine
//! exactly as they would for `docker` itself.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, FromArgMatches};

use crate::cli::flags::{normalize, Cli};
use crate::engine::endpoint::EngineFlags;
use crate::error::{Error, Result};

/// The plugin's name: the docker subcommand.
pub(crate) const NAME: &str = "mount";
/// The file the docker CLI looks for.
pub(crate) const FILE: &str = "docker-mount";
const METADATA_ARG: &str = "docker-cli-plugin-metadata";
const PLUGIN_ENV: &str = "DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND";

/// What the docker CLI asked for.
#[derive(Debug)]
pub(crate) enum Call {
    /// `docker-mount docker-cli-plugin-metadata`.
    Metadata,
    /// `docker [GLOBAL] mount ARGS`: the mount flags and the global flags.
    Mount(Box<Cli>, EngineFlags),
}

/// True when this process runs as the docker CLI plugin: started as
/// `docker-mount`, asked for its metadata, or run by the docker CLI for
/// `docker ... mount`.
pub(crate) fn invoked(args: &[OsString]) -> bool {
    let as_plugin = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .is_some_and(|n| n == FILE);
    as_plugin
        || args.get(1).is_some_and(|a| a == METADATA_ARG)
        || (std::env::var_os(PLUGIN_ENV).is_some() && split_globals(&args[1..]).is_ok())
}

/// The JSON the docker CLI expects from `docker-cli-plugin-metadata`.
pub(crate) fn metadata() -> String {
    serde_json::json!({
        "SchemaVersion": "0.1.0",
        "Vendor": "dockerfuse",
        "Version": env!("CARGO_PKG_VERSION"),
        "ShortDescription": "Mount a container's filesystem on the host (FUSE)",
        "URL": env!("CARGO_PKG_REPOSITORY"),
    })
    .to_string()
}

/// The global flags (before `mount`) and the plugin's arguments (after it).
fn split_globals(args: &[OsString]) -> Result<(EngineFlags, bool, Vec<OsString>), String> {
    let mut flags = EngineFlags::default();
    let mut debug = false;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_string_lossy().into_owned();
        if a == NAME {
            return Ok((flags, debug, args[i + 1..].to_vec()));
        }
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (a.clone(), None),
        };
        let takes_value = matches!(
            name.as_str(),
            "-c" | "--context"
                | "-H"
                | "--host"
                | "--config"
                | "-l"
                | "--log-level"
                | "--tlscacert"
                | "--tlscert"
                | "--tlskey"
        );
        let value = if takes_value && inline.is_none() {
            i += 1;
            Some(
                args.get(i)
                    .ok_or(format!("{name} needs a value"))?
                    .to_string_lossy()
                    .into_owned(),
            )
        } else {
            inline.clone()
        };
        let bool_value = || inline.as_deref().is_none_or(|v| v == "true" || v == "1");
        match name.as_str() {
            "-c" | "--context" => flags.context = value,
            "-H" | "--host" => flags.host = value,
            "--config" => flags.config = value.map(PathBuf::from),
            "--tlscacert" => flags.tls_ca = value.map(PathBuf::from),
            "--tlscert" => flags.tls_cert = value.map(PathBuf::from),
            "--tlskey" => flags.tls_key = value.map(PathBuf::from),
            "--tlsverify" => flags.tls_verify = Some(bool_value()),
            "--tls" => {}
            "-D" | "--debug" => debug = bool_value(),
            "-l" | "--log-level" => debug |= value.as_deref() == Some("debug"),
            _ => return Err(format!("unknown docker flag {a}")),
        }
        i += 1;
    }
    Err(format!("no '{NAME}' command"))
}

/// Reads the command line the docker CLI gave.
pub(crate) fn parse(args: &[OsString]) -> Result<Call> {
    if args.get(1).is_some_and(|a| a == METADATA_ARG) {
        return Ok(Call::Metadata);
    }
    let (mut flags, debug, rest) =
        split_globals(&args[1..]).map_err(|e| Error::setup(format!("docker {NAME}: {e}")))?;
    let cmd = command();
    let argv = std::iter::once(OsString::from(format!("docker {NAME}"))).chain(rest);
    let matches = cmd.get_matches_from(normalize(argv));
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Err(e) = crate::cli::helper::apply(&mut cli) {
        command()
            .error(clap::error::ErrorKind::ValueValidation, e)
            .exit();
    }
    cli.debug |= debug;
    // Flags after `mount` win over the global ones.
    let own = cli.engine_flags();
    if own.host.is_some() || own.context.is_some() {
        flags.host = own.host;
        flags.context = own.context;
    }
    Ok(Call::Mount(Box::new(cli), flags))
}

/// The mount command as `docker mount` shows it in its help.
pub(crate) fn command() -> clap::Command {
    Cli::command()
        .name("docker mount")
        .bin_name("docker mount")
        .override_usage("docker mount [OPTIONS] CONTAINER[:PATH] MOUNTPOINT")
}

/// `dockerfuse install-plugin`: a symlink `docker-mount` to this binary
/// (or a copy) in `dir`, by default `$DOCKER_CONFIG/cli-plugins` or
/// `~/.docker/cli-plugins`. Returns the path made.
pub(crate) fn install(dir: Option<&Path>, copy: bool) -> Result<PathBuf> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => default_dir().ok_or_else(|| {
            Error::setup("neither DOCKER_CONFIG nor HOME is set").with_hint("give --dir DIR")
        })?,
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::from(e).context(format!("cannot create {}", dir.display())))?;
    let exe = std::env::current_exe()
        .and_then(|e| e.canonicalize())
        .map_err(|e| Error::from(e).context("cannot find my own executable"))?;
    let dest = dir.join(FILE);
    match std::fs::remove_file(&dest) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::from(e).context(format!("cannot replace {}", dest.display())));
        }
    }
    let made = if copy {
        std::fs::copy(&exe, &dest).map(|_| ())
    } else {
        std::os::unix::fs::symlink(&exe, &dest)
    };
    made.map_err(|e| Error::from(e).context(format!("cannot create {}", dest.display())))?;
    Ok(dest)
}

fn default_dir() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
        Some(d) => Some(PathBuf::from(d).join("cli-plugins")),
        None => Some(
            PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?)
                .join(".docker/cli-plugins"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn metadata_is_what_the_cli_expects() {
        let v: serde_json::Value = serde_json::from_str(&metadata()).unwrap();
        assert_eq!(v["SchemaVersion"], "0.1.0");
        for k in ["Vendor", "Version", "ShortDescription", "URL"] {
            assert!(v[k].as_str().is_some_and(|s| !s.is_empty()), "{k}");
        }
    }

    #[test]
    fn global_flags_come_before_the_command() {
        let (f, debug, rest) = split_globals(&os(&[
            "--context",
            "remote",
            "-D",
            "--tlsverify=false",
            "--config",
            "/cfg",
            "--tlscacert=/ca.pem",
            "mount",
            "web",
            "./mnt",
        ]))
        .unwrap();
        assert_eq!(f.context.as_deref(), Some("remote"));
        assert_eq!(f.config.as_deref(), Some(Path::new("/cfg")));
        assert_eq!(f.tls_verify, Some(false));
        assert_eq!(f.tls_ca.as_deref(), Some(Path::new("/ca.pem")));
        assert!(debug);
        assert_eq!(rest, os(&["web", "./mnt"]));
        let (f, debug, _) =
            split_globals(&os(&["-H", "unix:///s", "-l", "info", "mount"])).unwrap();
        assert_eq!(f.host.as_deref(), Some("unix:///s"));
        assert!(!debug);
        assert!(split_globals(&os(&["--bogus", "mount"])).is_err());
        assert!(split_globals(&os(&["ps"])).is_err());
    }

    #[test]
    fn the_plugin_is_recognised_by_its_name_or_the_metadata_question() {
        assert!(invoked(&os(&["/x/docker-mount", "web", "m"])));
        assert!(invoked(&os(&["dockerfuse", "docker-cli-plugin-metadata"])));
        match parse(&os(&["docker-mount", "-c", "x", "mount", "web:/etc", "m"])).unwrap() {
            Call::Mount(cli, flags) => {
                assert_eq!(flags.context.as_deref(), Some("x"));
                assert_eq!(cli.target().unwrap().path, "/etc");
            }
            Call::Metadata => panic!("not metadata"),
        }
    }
}
