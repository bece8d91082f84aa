//! Logging through tracing: `RUST_LOG` when set, else `info` (`debug` with
//! -debug); human-readable or JSON lines (-json); to stderr or a file.

use std::path::Path;

use tracing_subscriber::EnvFilter;

pub fn init(debug: bool, json: bool, file: Option<&Path>) -> std::io::Result<()> {
    let default = if debug {
        "dockerfuse=debug,fuser=info,info"
    } else {
        "dockerfuse=info,fuser=error,warn"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let writer: Box<dyn Fn() -> Box<dyn std::io::Write> + Send + Sync> = match file {
        Some(p) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?;
            Box::new(move || {
                Box::new(f.try_clone().expect("log file handle")) as Box<dyn std::io::Write>
            })
        }
        None => Box::new(|| Box::new(std::io::stderr()) as Box<dyn std::io::Write>),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(debug)
        .with_ansi(file.is_none());
    let res = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    res.map_err(|e| std::io::Error::other(e.to_string()))
}
