//! `-daemonize`: return to the shell only once the mount is ready.
//!
//! Forking a process that already runs threads is unsafe, so the parent
//! starts a second copy of itself in a new session instead, handing it the
//! write end of a pipe. The child says `ok` on the pipe when the mount is
//! ready, or `err <code> <message>` when it gives up; the parent prints the
//! message and exits with that status. A child that dies silently closes
//! the pipe, which the parent reports as a failure.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use crate::error::{EXIT_OK, EXIT_SETUP};

const READY_FD: &str = "DOCKERFUSE_READY_FD";

/// In the parent: starts the serving child and waits for its word.
pub(crate) fn spawn_and_wait() -> i32 {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        eprintln!(
            "dockerfuse: cannot create a pipe: {}",
            std::io::Error::last_os_error()
        );
        return EXIT_SETUP;
    }
    let (read_fd, write_fd) = (fds[0], fds[1]);
    // SAFETY: read_fd is ours and not used elsewhere.
    let mut reader = unsafe { File::from_raw_fd(read_fd) };
    // The child must inherit the write end: clear its close-on-exec flag.
    // SAFETY: write_fd is a descriptor we own; F_SETFD takes an int.
    unsafe { libc::fcntl(write_fd, libc::F_SETFD, 0) };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("dockerfuse: cannot find my own executable: {e}");
            return EXIT_SETUP;
        }
    };
    let mut argv = std::env::args_os();
    let mut cmd = Command::new(exe);
    // The same argv[0]: the docker CLI plugin is recognised by its name.
    if let Some(arg0) = argv.next() {
        cmd.arg0(arg0);
    }
    let spawned = cmd
        .args(argv)
        .env(READY_FD, write_fd.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    // SAFETY: closing our copy of the write end so EOF means the child is done.
    unsafe { libc::close(write_fd) };
    if let Err(e) = spawned {
        eprintln!("dockerfuse: cannot start the background process: {e}");
        return EXIT_SETUP;
    }
    let mut msg = String::new();
    let _ = reader.read_to_string(&mut msg);
    parse_word(&msg).unwrap_or_else(|| {
        eprintln!(
            "dockerfuse: the background process ended before the mount was ready (see --log-file)"
        );
        EXIT_SETUP
    })
}

/// Reads the child's word; prints its error message. None when it said nothing.
fn parse_word(msg: &str) -> Option<i32> {
    let line = msg.lines().next()?;
    if line == "ok" {
        return Some(EXIT_OK);
    }
    let rest = line.strip_prefix("err ")?;
    let (code, text) = rest.split_once(' ').unwrap_or((rest, ""));
    crate::report::print_text(&text.replace("\\n", "\n"));
    Some(code.parse().ok().filter(|c| *c != 0).unwrap_or(EXIT_SETUP))
}

/// In the serving process: the parent's pipe, if there is one.
pub(crate) struct Notifier(Option<File>);

impl Notifier {
    pub(crate) fn from_env() -> Notifier {
        let fd = std::env::var(READY_FD)
            .ok()
            .and_then(|v| v.parse::<RawFd>().ok());
        std::env::remove_var(READY_FD);
        Notifier(fd.filter(|&fd| fd > 2).map(|fd| {
            // Leave the shell's session: no SIGHUP when the terminal closes.
            // SAFETY: setsid has no memory-safety preconditions; it fails
            // harmlessly if we already lead a process group.
            unsafe { libc::setsid() };
            // SAFETY: the parent handed this descriptor to us alone.
            let f = unsafe { File::from_raw_fd(fd) };
            // SAFETY: fd is open (owned by f); F_SETFD takes an int.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            f
        }))
    }

    pub(crate) fn is_child(&self) -> bool {
        self.0.is_some()
    }

    pub(crate) fn ready(&mut self) {
        if let Some(mut f) = self.0.take() {
            let _ = f.write_all(b"ok\n");
        }
    }

    pub(crate) fn failed(&mut self, code: i32, message: &str) {
        if let Some(mut f) = self.0.take() {
            let _ = writeln!(f, "err {code} {}", message.replace('\n', "\\n"));
        }
    }
}

/// True in the background child (which must not daemonize again).
pub(crate) fn is_child() -> bool {
    std::env::var_os(READY_FD).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_from_the_child() {
        assert_eq!(parse_word("ok\n"), Some(0));
        assert_eq!(parse_word("err 1 no such container: web\n"), Some(1));
        assert_eq!(parse_word("err 0 odd\n"), Some(EXIT_SETUP));
        assert_eq!(parse_word(""), None);
    }
}
