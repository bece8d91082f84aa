//! The subcommands next to mounting: `dockerfuse install-plugin`, ...
//!
//! They are recognised by their first word, before the mount flags are
//! parsed, so that the classic single-dash flags (`-id`, `-mount`) and the
//! positional `CONTAINER[:PATH] MOUNTPOINT` form keep working: a container
//! named like a subcommand is still reachable with `-id NAME`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

use crate::cli::flags::Cli;
use crate::error::{Result, EXIT_OK};

#[derive(Parser, Debug)]
#[command(name = "dockerfuse")]
struct Tool {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Install dockerfuse as the docker CLI plugin `docker mount`.
    InstallPlugin {
        /// Plugin directory (default: $DOCKER_CONFIG/cli-plugins, else
        /// ~/.docker/cli-plugins).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Copy the binary instead of linking to it.
        #[arg(long)]
        copy: bool,
    },
    /// List the dockerfuse mounts: container, path, mount point, pid,
    /// transport, since when.
    List {
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The kernel requests a mount answered, how many of them waited for
    /// the container (a round trip to the satellite), and the requests
    /// sent to it, by kind.
    Stats {
        /// The mount point.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Unmount dockerfuse mounts and wait for their processes to exit.
    Unmount {
        /// Mount points to unmount.
        #[arg(
            value_name = "DIR",
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        dirs: Vec<PathBuf>,
        /// Every mount of this user that `dockerfuse list` shows with a pid.
        #[arg(long)]
        all: bool,
        /// Seconds to wait for each serving process to exit.
        #[arg(long, default_value_t = 10.0, value_name = "SECONDS", value_parser = crate::cli::flags::seconds)]
        timeout: f64,
    },
    /// Print a shell completion script (container names included).
    Completions {
        #[arg(value_enum)]
        shell: crate::cli::completions::Shell,
    },
    /// Print the manual page (roff): dockerfuse man | man -l -
    Man,
    /// The running containers' names, one a line (used by the completions).
    #[command(hide = true)]
    CompleteContainers,
}

/// The subcommands, as clap knows them (for help, completions, man page).
pub(crate) fn subcommands() -> Vec<clap::Command> {
    <Tool as clap::CommandFactory>::command()
        .get_subcommands()
        .cloned()
        .collect()
}

/// The whole command line: mount flags and subcommands (for completions
/// and the man page).
pub(crate) fn command() -> clap::Command {
    subcommands()
        .into_iter()
        .fold(Cli::command(), |cmd, sub| cmd.subcommand(sub))
        // (clap would otherwise add a `help` subcommand that mounting
        // does not have)
        .disable_help_subcommand(true)
}

/// The subcommand named by `args[1]`, parsed (clap exits on bad usage).
pub(crate) fn parse(args: &[OsString]) -> Option<Command> {
    let first = args.get(1)?.to_str()?;
    if !subcommands().iter().any(|c| c.get_name() == first) {
        return None;
    }
    Some(Tool::parse_from(args).command)
}

/// Runs a subcommand; the exit status.
pub(crate) fn run(cmd: Command) -> Result<i32> {
    match cmd {
        Command::InstallPlugin { dir, copy } => {
            let made = crate::cli::plugin::install(dir.as_deref(), copy)?;
            println!("installed {}: try docker mount --help", made.display());
            Ok(EXIT_OK)
        }
        Command::Completions { shell } => crate::cli::completions::print(shell, command())
            .map(|()| EXIT_OK)
            .map_err(Into::into),
        Command::Man => crate::cli::completions::man(command())
            .map(|()| EXIT_OK)
            .map_err(Into::into),
        Command::CompleteContainers => {
            crate::cli::completions::containers();
            Ok(EXIT_OK)
        }
        Command::List { json } => crate::mount::manage::list(json).map(|()| EXIT_OK),
        Command::Stats { dir, json } => crate::mount::stats::run(&dir, json).map(|()| EXIT_OK),
        Command::Unmount { dirs, all, timeout } => Ok(crate::mount::manage::unmount(
            &dirs,
            all,
            std::time::Duration::from_secs_f64(timeout),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn subcommands_only_by_their_first_word() {
        assert!(matches!(
            parse(&os(&["dockerfuse", "list", "--json"])),
            Some(Command::List { json: true })
        ));
        // A container named like a subcommand stays reachable.
        assert!(parse(&os(&["dockerfuse", "-id", "list", "-mount", "m"])).is_none());
        assert!(parse(&os(&["dockerfuse", "web", "list"])).is_none());
        assert!(parse(&os(&["dockerfuse"])).is_none());
    }
}
