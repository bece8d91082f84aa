//! The command's entry point: which face the binary shows (the docker CLI
//! plugin, a subcommand, or a mount), and the mount's start and exit
//! status. `main.rs` only calls [`run`].

use std::ffi::OsString;

use crate::cli::flags::Cli;
use crate::cli::{commands, helper, plugin};
use crate::engine::endpoint::EngineFlags;
use crate::logging::Style;
use crate::mount::{daemon, lifecycle, signals};
use crate::satellites::embedded;
use crate::{error, logging, report};

/// Runs the command with the process's arguments (what `main` does).
pub fn run() {
    helper::ensure_path();
    helper::ensure_home();
    let args: Vec<OsString> = std::env::args_os().collect();
    let (cli, engine) = if plugin::invoked(&args) {
        match plugin::parse(&args) {
            Ok(plugin::Call::Metadata) => {
                println!("{}", plugin::metadata());
                return;
            }
            Ok(plugin::Call::Mount(cli, engine)) => (*cli, engine),
            Err(e) => {
                report::print(&e);
                std::process::exit(error::EXIT_USAGE);
            }
        }
    } else if let Some(cmd) = commands::parse(&args) {
        let code = commands::run(cmd).unwrap_or_else(|e| {
            report::print(&e);
            e.exit_code()
        });
        std::process::exit(code);
    } else {
        let cli = helper::parse_args();
        let engine = cli.engine_flags();
        (cli, engine)
    };
    mount_and_serve(cli, &engine);
}

fn mount_and_serve(cli: Cli, engine: &EngineFlags) -> ! {
    if cli.version {
        print_version(cli.debug);
        std::process::exit(error::EXIT_OK);
    }
    let Some(target) = cli.target() else {
        // clap requires both unless -version: not reached.
        report::print_text("a container and a mount point are needed (see --help)");
        std::process::exit(error::EXIT_USAGE);
    };
    if cli.daemonize && !daemon::is_child() {
        std::process::exit(daemon::spawn_and_wait());
    }
    let mut notifier = daemon::Notifier::from_env();
    signals::block();
    let log_file = cli.log_file.as_deref();
    let style = logging::init(cli.debug, cli.json, log_file).unwrap_or_else(|e| {
        report::print_text(&format!("cannot set up logging: {e}"));
        Style::Plain
    });
    let code = match lifecycle::run(&cli, &target, engine, &mut notifier) {
        Ok(()) => error::EXIT_OK,
        Err(e) => {
            // -debug/-json keep their log lines; people get plain ones.
            let logged_to_stderr = log_file.is_none() && style != Style::Plain;
            if log_file.is_some() || logged_to_stderr {
                tracing::error!(errno = e.errno, hint = e.hint.as_deref(), "{e}");
            }
            if !notifier.is_child() && !logged_to_stderr {
                report::print(&e);
            }
            notifier.failed(e.exit_code(), &e.full_text());
            e.exit_code()
        }
    };
    std::process::exit(code);
}

fn print_version(debug: bool) {
    println!(
        "dockerfuse {} (protocol {})",
        env!("CARGO_PKG_VERSION"),
        dockerfuse_proto::PROTOCOL_VERSION
    );
    if debug {
        print!("{}", embedded::report());
    }
}
