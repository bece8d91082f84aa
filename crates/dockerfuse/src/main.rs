//! The `dockerfuse` command; everything lives in the library.

use dockerfuse::cli::Cli;
use dockerfuse::{daemon, error, logging, mount, satellites, signals};

fn main() {
    let cli = Cli::parse_args();
    if cli.version {
        println!(
            "dockerfuse {} (protocol {})",
            env!("CARGO_PKG_VERSION"),
            dockerfuse_proto::PROTOCOL_VERSION
        );
        if cli.debug {
            print!("{}", satellites::report());
        }
        return;
    }
    if cli.daemonize && !daemon::is_child() {
        std::process::exit(daemon::spawn_and_wait());
    }
    let mut notifier = daemon::Notifier::from_env();
    signals::block();
    let log_file = cli.log_file.as_deref();
    if let Err(e) = logging::init(cli.debug, cli.json, log_file) {
        eprintln!("dockerfuse: cannot set up logging: {e}");
    }
    let code = match mount::run(&cli, &mut notifier) {
        Ok(()) => error::EXIT_OK,
        Err(e) => {
            tracing::error!(errno = e.errno, "{e}");
            if !notifier.is_child() && log_file.is_some() {
                eprintln!("dockerfuse: {e}");
            }
            notifier.failed(e.exit_code(), &e.message);
            e.exit_code()
        }
    };
    std::process::exit(code);
}
