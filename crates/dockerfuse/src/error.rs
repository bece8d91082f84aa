//! The error type of setup and lifecycle, and the exit codes it maps to.
//!
//! Filesystem operations carry a bare errno (`dockerfuse_proto::Errno`);
//! this type is for everything around them: a message meant for the user,
//! a kind that decides the exit status, an errno where one exists, and a
//! hint: what the user can do about it, printed on a line of its own.

use std::fmt;

/// Exit status of a clean unmount.
pub(crate) const EXIT_OK: i32 = 0;
/// Exit status when the mount could not be set up.
pub(crate) const EXIT_SETUP: i32 = 1;
/// Exit status for bad usage (clap's own).
pub(crate) const EXIT_USAGE: i32 = 2;
/// Exit status when the container or satellite went away while mounted.
pub(crate) const EXIT_LOST: i32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Before the mount is up: engine, container, satellite, mountpoint.
    Setup,
    /// The mount was up and the other side went away.
    Lost,
}

#[derive(Debug)]
pub(crate) struct Error {
    pub kind: Kind,
    pub message: String,
    pub errno: Option<i32>,
    /// What to try next, when there is something useful to say.
    pub hint: Option<String>,
}

impl Error {
    pub(crate) fn setup(message: impl Into<String>) -> Error {
        Error {
            kind: Kind::Setup,
            message: message.into(),
            errno: None,
            hint: None,
        }
    }

    pub(crate) fn lost(message: impl Into<String>) -> Error {
        Error {
            kind: Kind::Lost,
            message: message.into(),
            errno: Some(libc::EIO),
            hint: None,
        }
    }

    pub(crate) fn with_errno(mut self, errno: i32) -> Error {
        self.errno = Some(errno);
        self
    }

    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> Error {
        self.hint = Some(hint.into());
        self
    }

    /// The message and, on a line of its own, the hint.
    pub(crate) fn full_text(&self) -> String {
        match &self.hint {
            Some(h) => format!("{}\nhint: {h}", self.message),
            None => self.message.clone(),
        }
    }

    /// Adds what was being done in front of the message.
    pub(crate) fn context(mut self, what: impl fmt::Display) -> Error {
        self.message = format!("{what}: {}", self.message);
        self
    }

    pub(crate) fn exit_code(&self) -> i32 {
        match self.kind {
            Kind::Setup => EXIT_SETUP,
            Kind::Lost => EXIT_LOST,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        let errno = e.raw_os_error();
        Error {
            kind: Kind::Setup,
            message: e.to_string(),
            errno,
            hint: None,
        }
    }
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;
