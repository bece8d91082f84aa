//! `dockerfuse stats MOUNTPOINT`: the wait counts of a running mount.
//!
//! The serving process listens on a unix socket next to its state file
//! (`<pid>.sock` in [`crate::mount::state::dir`], mode 0700 like the directory)
//! and answers every connection with one JSON [`Snapshot`] of
//! [`crate::mount::waits`], then closes it; it reads nothing from the client.
//! The client finds the mount's pid in the state files, connects, and
//! prints a table (or the JSON). The socket is removed when the serving
//! process ends.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::mount::state;
use crate::mount::waits::Snapshot;

/// The most a client reads of an answer.
const MAX_ANSWER: u64 = 1 << 20;
/// How long either side waits for the other.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

fn socket_of(dir: &Path, pid: u32) -> PathBuf {
    dir.join(format!("{pid}.sock"))
}

/// The socket of a serving process, removed on drop.
pub(crate) struct Server(Option<PathBuf>);

impl Server {
    /// Listens in the state directory; a failure only costs `stats`.
    pub(crate) fn start() -> Server {
        match listen(&state::dir(), std::process::id()) {
            Ok(p) => Server(Some(p)),
            Err(e) => {
                tracing::debug!(error = %e, "no stats socket");
                Server(None)
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Binds `<dir>/<pid>.sock` and answers in a thread; the socket's path.
fn listen(dir: &Path, pid: u32) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let path = socket_of(dir, pid);
    // A socket left by a killed process of the same pid.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::thread::Builder::new()
        .name("stats".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(c) => answer(c),
                    Err(e) => tracing::debug!(error = %e, "stats socket accept failed"),
                }
            }
        })?;
    Ok(path)
}

fn answer(mut c: UnixStream) {
    let snap = crate::mount::waits::counters().snapshot();
    let Ok(mut json) = serde_json::to_vec(&snap) else {
        return;
    };
    json.push(b'\n');
    let _ = c.set_write_timeout(Some(IO_TIMEOUT));
    let _ = c.write_all(&json);
}

/// Asks the process listening at `sock` for its counts.
fn ask(sock: &Path) -> std::io::Result<Snapshot> {
    let c = UnixStream::connect(sock)?;
    c.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut buf = Vec::new();
    c.take(MAX_ANSWER).read_to_end(&mut buf)?;
    serde_json::from_slice(&buf).map_err(std::io::Error::other)
}

/// `dockerfuse stats MOUNTPOINT [--json]`.
pub(crate) fn run(mountpoint: &Path, json: bool) -> Result<()> {
    let want = std::fs::canonicalize(mountpoint).unwrap_or_else(|_| mountpoint.to_path_buf());
    let dir = state::dir();
    // Of mounts stacked on one directory, the latest is the one seen there.
    let Some((_, rec)) = state::read_all(&dir)
        .into_iter()
        .filter(|(_, r)| r.mountpoint == want && state::alive(r.pid))
        .max_by_key(|(_, r)| r.since)
    else {
        return Err(Error::setup(format!(
            "{} is not a dockerfuse mount of this user",
            mountpoint.display()
        ))
        .with_hint("dockerfuse list shows them"));
    };
    let snap = ask(&socket_of(&dir, rec.pid)).map_err(|e| {
        Error::setup(format!(
            "the mount's process (pid {}) did not give its counts: {e}",
            rec.pid
        ))
    })?;
    let text = if json {
        serde_json::to_string_pretty(&snap)
            .map_err(|e| Error::setup(format!("cannot write JSON: {e}")))?
            + "\n"
    } else {
        snap.table()
    };
    // A reader that went away (`| head`) is no error.
    let _ = std::io::stdout().write_all(text.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_the_counts_and_the_socket_goes_at_drop() {
        let d = tempfile::tempdir().unwrap();
        let path = listen(d.path(), 4242).unwrap();
        assert_eq!(path, d.path().join("4242.sock"));
        let snap = ask(&path).unwrap();
        assert_eq!(
            snap.requests,
            snap.ops.iter().map(|c| c.requests).sum::<u64>()
        );
        // Twice: the server answers every connection.
        ask(&path).unwrap();
        drop(Server(Some(path.clone())));
        assert!(!path.exists());
        assert!(ask(&path).is_err());
    }
}
