//! Getting a satellite running in the container.
//!
//! For each candidate architecture and each candidate directory: upload
//! the binary as a one-file tar, exec it attached (no TTY) and wait for its
//! hello. A directory can refuse the upload (read-only rootfs), refuse to
//! execute (`noexec` tmpfs, 0700 directory of another user: exit 126/127),
//! or the binary can be of the wrong architecture (exec format error); each
//! failure is recorded and the next candidate tried. The satellite deletes
//! its own file once it runs; files of failed attempts are removed by the
//! satellite that finally starts, so nothing stays in the container.

use std::time::Duration;

use dockerfuse_proto::{HostHello, Request, SatelliteHello, HELLO_ID, MAX_IO, PROTOCOL_VERSION};
use tracing::{debug, info};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::rpc::{Rpc, Started, Transport};
use crate::satellites::Arch;
use crate::tarball;

/// Directories tried for the upload, in order. /dev/shm is not among
/// them: the archive API writes beneath a tmpfs mount, into the hidden
/// directory of the image, where the container cannot see the file.
pub const UPLOAD_DIRS: &[&str] = &["/tmp", "/run", "/var/tmp", "/"];

pub struct Launch<'a> {
    pub engine: &'a Engine,
    pub container: &'a str,
    pub archs: Vec<Arch>,
    pub dirs: Vec<String>,
    pub user: &'a str,
    pub root: &'a str,
    pub timeout: Duration,
    /// How long requests may wait on a silent satellite.
    pub stall: Duration,
}

/// A running satellite.
pub struct Running {
    pub rpc: Rpc,
    pub hello: SatelliteHello,
    pub closed: smol::channel::Receiver<String>,
    pub arch: Arch,
    pub path: String,
}

enum Attempt {
    Up(Running),
    /// Try the next directory.
    NextDir(String),
    /// Wrong architecture: try the next one.
    NextArch(String),
}

impl Launch<'_> {
    pub async fn run(&self) -> Result<Running> {
        let mut tried = Vec::new();
        let mut leftovers: Vec<String> = Vec::new();
        for &arch in &self.archs {
            for dir in &self.dirs {
                let name = format!(".dockerfuse-satellite-{}-{}", std::process::id(), nonce());
                let path = format!("{}/{}", dir.trim_end_matches('/'), name);
                let tar = tarball::single_file(&name, arch.binary(), 0o755, 0, 0);
                if let Err(e) = self.engine.upload(self.container, dir, tar).await {
                    debug!(%dir, error = %e, "upload refused");
                    tried.push(format!("{arch} in {dir}: {e}"));
                    continue;
                }
                match self.attempt(arch, &path).await {
                    Ok(Attempt::Up(r)) => {
                        if !leftovers.is_empty() {
                            let paths = leftovers.iter().map(|p| p.as_bytes().into()).collect();
                            r.rpc
                                .call(&Request::RemovePaths { paths }, Box::new(|_| {}));
                        }
                        info!(arch = %arch, path = %path, satellite = %r.hello.version, uid = r.hello.uid, "satellite started");
                        return Ok(r);
                    }
                    Ok(Attempt::NextDir(why)) => {
                        tried.push(format!("{arch} in {dir}: {why}"));
                        leftovers.push(path);
                    }
                    Ok(Attempt::NextArch(why)) => {
                        tried.push(format!("{arch} in {dir}: {why}"));
                        leftovers.push(path);
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Err(Error::setup(format!(
            "could not start a satellite in container {}; tried:\n  {}",
            self.container,
            tried.join("\n  ")
        )))
    }

    async fn attempt(&self, arch: Arch, path: &str) -> Result<Attempt> {
        let cmd = vec![
            path.to_owned(),
            "--delete-self".into(),
            "--root".into(),
            self.root.to_owned(),
        ];
        let (exec_id, output, input) = self
            .engine
            .exec_attached(self.container, cmd, self.user)
            .await?;
        let Started {
            rpc,
            hello,
            closed,
            early_stderr,
            tasks,
        } = Rpc::start(output, input, self.stall);
        std::thread::Builder::new()
            .name("rpc".into())
            .spawn(move || smol::block_on(async_compat::Compat::new(tasks)))
            .map_err(|e| Error::setup(format!("cannot start the rpc thread: {e}")))?;
        let timer = async {
            smol::Timer::after(self.timeout).await;
            None
        };
        let got = smol::future::or(async { hello.recv().await.ok() }, timer).await;
        let Some(h) = got else {
            let reason = closed
                .try_recv()
                .unwrap_or_else(|_| format!("no hello within {:?}", self.timeout));
            rpc.close("start failed".into());
            let code = self.engine.exec_exit_code(&exec_id).await;
            let stderr = early_stderr
                .lock()
                .map(|s| s.trim().to_owned())
                .unwrap_or_default();
            let why = format!(
                "{reason}{}{}",
                code.map(|c| format!(" (exit {c})")).unwrap_or_default(),
                if stderr.is_empty() {
                    String::new()
                } else {
                    format!(": {stderr}")
                }
            );
            let text = why.to_ascii_lowercase();
            return Ok(
                if text.contains("exec format") || code == Some(139) || code == Some(132) {
                    Attempt::NextArch(why)
                } else {
                    Attempt::NextDir(why)
                },
            );
        };
        if let Err(e) = check_hello(&h) {
            rpc.close("bad hello".into());
            return Err(e);
        }
        if h.arch != arch.rust_name() {
            debug!(expected = arch.rust_name(), got = %h.arch, "satellite reports another arch");
        }
        rpc.send_frame(
            HELLO_ID,
            &Request::Hello(HostHello {
                protocol: PROTOCOL_VERSION,
                version: env!("CARGO_PKG_VERSION").into(),
                max_io: MAX_IO,
            }),
        )
        .map_err(|e| Error::setup(format!("cannot talk to the satellite: {e}")))?;
        Ok(Attempt::Up(Running {
            rpc,
            hello: h,
            closed,
            arch,
            path: path.to_owned(),
        }))
    }
}

/// Refuses a hello this client cannot work with.
pub fn check_hello(h: &SatelliteHello) -> Result<()> {
    if h.protocol != PROTOCOL_VERSION {
        return Err(Error::setup(format!(
            "the satellite speaks protocol {}, this dockerfuse {PROTOCOL_VERSION} (satellite {})",
            h.protocol,
            h.version.chars().take(64).collect::<String>()
        ))
        .with_errno(libc::EPROTO));
    }
    if h.max_io < 4096 {
        return Err(Error::setup(format!(
            "the satellite offers I/O of {} bytes, too small",
            h.max_io
        ))
        .with_errno(libc::EPROTO));
    }
    Ok(())
}

/// A short random suffix for upload names (no rand crate for this).
fn nonce() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut x = (t as u64) ^ ((std::process::id() as u64) << 32);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51afd7ed558ccd);
    x ^= x >> 33;
    format!("{:08x}", x as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(protocol: u32, max_io: u32) -> SatelliteHello {
        SatelliteHello {
            protocol,
            version: "v".repeat(10_000),
            arch: "x86_64".into(),
            uid: 0,
            gid: 0,
            pid: 1,
            max_io,
        }
    }

    #[test]
    fn a_lying_hello_is_refused_with_a_short_message() {
        let e = check_hello(&hello(PROTOCOL_VERSION + 1, MAX_IO)).unwrap_err();
        assert!(e.message.contains("protocol"), "{}", e.message);
        assert!(e.message.len() < 200, "the satellite's text is cut");
        assert!(check_hello(&hello(PROTOCOL_VERSION, 0)).is_err());
        assert!(check_hello(&hello(PROTOCOL_VERSION, MAX_IO)).is_ok());
    }
}
