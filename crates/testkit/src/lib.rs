//! The test harness the workspace's crates share: a satellite as a child
//! process serving a directory over pipes, as the host runs one through
//! `docker exec`.
//!
//! What a test calls:
//! * [`Satellite::from_env`] — the satellite under test: the binary
//!   `DOCKERFUSE_TEST_SATELLITE` names (another architecture's, run
//!   through qemu-user's binfmt handler), else the given default, started
//!   through `DOCKERFUSE_TEST_SATELLITE_RUNNER` when set (such as
//!   `qemu-arm-static -cpu arm1176`, words split on spaces);
//! * [`Satellite::written_out`] — an in-memory satellite (the one a build
//!   embeds) written once next to the test binary;
//! * [`Satellite::command`] — its command line serving a directory, stdin
//!   and stdout piped, with a descriptor limit ([`Spawn`]); spawn it with
//!   [`Satellite::spawn`], or through [`retry_busy`] (a smol command made
//!   from it sets the standard streams itself: pipe them there again);
//! * [`Satellite::arch`] — its architecture, from its ELF header.
//!
//! The frames themselves are each test's business: the satellite's tests
//! speak them by hand, the host's through its RPC client.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How a satellite is started, beyond the directory it serves.
#[derive(Clone, Debug, Default)]
pub struct Spawn<'a> {
    /// RLIMIT_NOFILE (soft and hard) for the satellite.
    pub nofile: Option<u64>,
    /// Arguments before `--root DIR`.
    pub args: &'a [&'a str],
    /// Its stderr goes nowhere (else it is the test's).
    pub quiet: bool,
}

/// A satellite binary and how to run it.
#[derive(Clone, Debug)]
pub struct Satellite {
    /// The executable.
    pub path: PathBuf,
    /// A command to run it with (an emulator and its arguments), or none.
    pub runner: Vec<String>,
}

impl Satellite {
    /// The satellite under test: `DOCKERFUSE_TEST_SATELLITE`, else
    /// `default`; run through `DOCKERFUSE_TEST_SATELLITE_RUNNER` if set.
    pub fn from_env(default: &Path) -> Satellite {
        let path = std::env::var_os("DOCKERFUSE_TEST_SATELLITE")
            .map_or_else(|| default.to_path_buf(), PathBuf::from);
        let runner = std::env::var("DOCKERFUSE_TEST_SATELLITE_RUNNER").unwrap_or_default();
        Satellite {
            path,
            runner: runner.split_whitespace().map(str::to_owned).collect(),
        }
    }

    /// The satellite `bytes`, written as `name` next to the test binary
    /// (rewritten only when its content differs). Written under a private
    /// name, then renamed: a concurrent test process never executes a
    /// half-written file.
    pub fn written_out(name: &str, bytes: &[u8]) -> Satellite {
        let exe = std::env::current_exe().expect("the test binary's path");
        let dir = exe.parent().expect("the test binary's directory");
        let path = dir.join(name);
        if std::fs::read(&path).ok().as_deref() != Some(bytes) {
            // One temporary file per call: test threads of one process
            // may write the same satellite at once, and a file shared
            // between them could be renamed into place half written.
            static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let tmp = dir.join(format!("{name}.{}.{call}", std::process::id()));
            let mut f = std::fs::File::create(&tmp).expect("write the satellite");
            f.write_all(bytes).expect("write the satellite");
            f.set_permissions(std::fs::Permissions::from_mode(0o755))
                .expect("make the satellite executable");
            drop(f);
            std::fs::rename(&tmp, &path).expect("put the satellite in place");
        }
        Satellite {
            path,
            runner: Vec::new(),
        }
    }

    /// Its command line serving `root`: stdin and stdout piped.
    pub fn command(&self, root: &Path, how: &Spawn<'_>) -> Command {
        let mut cmd = match self.runner.split_first() {
            Some((first, rest)) => {
                let mut cmd = Command::new(first);
                cmd.args(rest).arg(&self.path);
                cmd
            }
            None => Command::new(&self.path),
        };
        cmd.args(how.args)
            .arg("--root")
            .arg(root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if how.quiet {
            cmd.stderr(Stdio::null());
        }
        if let Some(n) = how.nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs
            // between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let rl = libc::rlimit {
                        rlim_cur: n as libc::rlim_t,
                        rlim_max: n as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rl) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd
    }

    /// Starts it serving `root` (see [`retry_busy`]).
    pub fn spawn(&self, root: &Path, how: &Spawn<'_>) -> Child {
        retry_busy(|| self.command(root, how).spawn())
    }

    /// Its architecture as Rust's `std::env::consts::ARCH` names it, from
    /// its ELF header's machine field.
    pub fn arch(&self) -> &'static str {
        let elf = std::fs::read(&self.path).expect("the satellite is readable");
        assert_eq!(
            elf.get(..4),
            Some(&b"\x7fELF"[..]),
            "the satellite is an ELF file"
        );
        // e_machine, in the file's byte order (EI_DATA: 1 little, 2 big).
        let m = [elf[18], elf[19]];
        let machine = if elf[5] == 2 {
            u16::from_be_bytes(m)
        } else {
            u16::from_le_bytes(m)
        };
        match machine {
            0x3e => "x86_64",
            0xb7 => "aarch64",
            0x03 => "x86",
            0x28 => "arm",
            0x15 => "powerpc64",
            0xf3 => "riscv64",
            0x16 => "s390x",
            other => panic!("a satellite for ELF machine {other:#x}"),
        }
    }
}

/// Runs `spawn` until it does not fail with ETXTBSY: another test
/// thread's fork may still hold a freshly written binary open for
/// writing. Panics on any other error.
pub fn retry_busy<C>(mut spawn: impl FnMut() -> std::io::Result<C>) -> C {
    let mut tries = 0;
    loop {
        match spawn() {
            Ok(c) => return c,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("cannot start the satellite: {e}"),
        }
    }
}
