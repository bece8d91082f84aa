//! The subcommands next to mounting: `dockerfuse install-plugin`, ...
//!
//! They are recognised by their first word, before the mount flags are
//! parsed, so that the classic single-dash flags (`-id`, `-mount`) and the
//! positional `CONTAINER[:PATH] MOUNTPOINT` form keep working: a container
//! named like a subcommand is still reachable with `-id NAME`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::error::{Result, EXIT_OK};

#[derive(Parser, Debug)]
#[command(name = "dockerfuse")]
struct Tool {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
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
}

/// The subcommands, as clap knows them (for help, completions, man page).
pub fn subcommands() -> Vec<clap::Command> {
    <Tool as clap::CommandFactory>::command()
        .get_subcommands()
        .cloned()
        .collect()
}

/// The subcommand named by `args[1]`, parsed (clap exits on bad usage).
pub fn parse(args: &[OsString]) -> Option<Command> {
    let first = args.get(1)?.to_str()?;
    if !subcommands().iter().any(|c| c.get_name() == first) {
        return None;
    }
    Some(Tool::parse_from(args).command)
}

/// Runs a subcommand; the exit status.
pub fn run(cmd: Command) -> Result<i32> {
    match cmd {
        Command::InstallPlugin { dir, copy } => {
            let made = crate::plugin::install(dir.as_deref(), copy)?;
            println!("installed {}: try docker mount --help", made.display());
            Ok(EXIT_OK)
        }
    }
}
