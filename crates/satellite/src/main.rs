//! dockerfuse satellite: the file server that runs inside the container.
//!
//! The host uploads this static binary, starts it with `docker exec`
//! (no TTY) and speaks the `dockerfuse-proto` protocol over its
//! stdin/stdout. Logs go to stderr only. It removes its own executable as
//! soon as it runs (`--delete-self`), so neither a crash nor `kill -9`
//! leaves a file behind, and it exits when stdin closes or a shutdown
//! frame arrives.
//!
//! Usage: `dockerfuse-satellite [--root PATH] [--delete-self]`
//!
//! Modules: [`server`] (handshake and reader), [`pool`] (workers and the
//! output lock), [`ops`] (the operations, by concern in its submodules),
//! [`nodes`] and [`handles`] (the tables of node and handle ids),
//! [`ident`] (acting as the host's user) and [`sys`] (system calls).

#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(unreachable_pub)]

mod channel;
mod coalesce;
mod handles;
mod ident;
mod inotify;
mod nodes;
mod ops;
mod output;
mod pool;
mod privs;
mod server;
mod sys;
mod watch;

use std::fs::File;
use std::io::BufReader;
use std::os::fd::FromRawFd;
use std::os::unix::ffi::OsStrExt;

fn main() {
    let args = parse_args();
    let root = args.root;
    // Modes arrive with the caller's umask already applied by the kernel.
    sys::set_umask_zero();
    let fs = match ops::Fs::open(&root) {
        Ok(fs) => {
            if let Some(max) = args.max_watches {
                fs.watch.set_limit(max);
            }
            fs
        }
        Err(e) => {
            eprintln!(
                "dockerfuse-satellite: cannot open {:?}: {e}",
                String::from_utf8_lossy(&root)
            );
            std::process::exit(1);
        }
    };
    // SAFETY: fd 0 is the exec's stdin, owned by nobody else in this
    // process (Rust's std handles are never used here).
    let input = BufReader::with_capacity(256 * 1024, unsafe { File::from_raw_fd(0) });
    // SAFETY: fd 1 is the exec's stdout, likewise owned by nobody else
    // (nothing here prints to stdout).
    let output = unsafe { File::from_raw_fd(1) };
    match server::serve(fs, input, output) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("dockerfuse-satellite: {e}");
            std::process::exit(1);
        }
    }
}

/// What the command line asks for.
struct Args {
    /// The directory to serve (`--root`, default `/`).
    root: Vec<u8>,
    /// Most inotify watches the change feed may hold (`--max-watches`).
    max_watches: Option<usize>,
}

/// Reads the command line, removing the executable at `--delete-self`.
/// Exits on an unknown argument or a bad number.
fn parse_args() -> Args {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut root: Vec<u8> = b"/".to_vec();
    let mut max_watches = None;
    let mut i = 1;
    while i < args.len() {
        match args[i].as_bytes() {
            b"--delete-self" => {
                if let Err(e) = std::fs::remove_file(&args[0]) {
                    eprintln!("dockerfuse-satellite: cannot remove {:?}: {e}", args[0]);
                }
            }
            b"--root" if i + 1 < args.len() => {
                i += 1;
                root = args[i].as_bytes().to_vec();
            }
            b"--max-watches" if i + 1 < args.len() => {
                i += 1;
                match args[i].to_str().and_then(|n| n.parse::<usize>().ok()) {
                    Some(n) if n > 0 => max_watches = Some(n),
                    _ => {
                        eprintln!(
                            "dockerfuse-satellite: --max-watches needs a positive number, not {:?}",
                            args[i]
                        );
                        std::process::exit(2);
                    }
                }
            }
            other => {
                eprintln!(
                    "dockerfuse-satellite: unknown argument {:?}",
                    String::from_utf8_lossy(other)
                );
                std::process::exit(2);
            }
        }
        i += 1;
    }
    Args { root, max_watches }
}
