//! The Docker Engine API, through bollard: containers, exec, upload.
//!
//! bollard runs on tokio; the rest of the program runs on smol, so every
//! call here is awaited inside `async_compat::Compat` by the caller. The
//! engine to talk to is resolved first ([`endpoint`](super::endpoint));
//! the connection negotiates the API version so older engines answer.

use std::pin::Pin;

use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::query_parameters::UploadToContainerOptionsBuilder;
use bollard::Docker;
use futures_util::Stream;

use crate::engine::endpoint::{os_env, resolve, Endpoint, EngineFlags};
use crate::error::{Error, Result};
use crate::satellites::embedded::Arch;

pub(crate) type Output =
    Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;
pub(crate) type Input = Pin<Box<dyn tokio::io::AsyncWrite + Send>>;

/// What we need to know about the container.
#[derive(Debug, Clone)]
pub(crate) struct Container {
    pub id: String,
    pub name: String,
    pub running: bool,
    pub status: String,
    pub image_arch: Option<String>,
    /// The image's CPU variant (`v7` of `arm/v7`), when it names one.
    pub image_variant: Option<String>,
    /// `--read-only`: the archive upload is refused everywhere on the rootfs.
    pub read_only: bool,
    /// Where tmpfs filesystems are mounted (`--tmpfs`, `--mount
    /// type=tmpfs`). The archive API writes into the rootfs *beneath* such
    /// a mount, where the container cannot see the file.
    pub tmpfs: Vec<String>,
    /// The container's first process, as the engine's host sees it.
    pub pid: Option<u32>,
}

#[derive(Clone)]
pub(crate) struct Engine {
    docker: Docker,
    pub host: String,
    /// For an ssh:// engine: the socket bollard talks to (kept open as
    /// long as the engine is used).
    _ssh: Option<std::sync::Arc<crate::engine::ssh::Bridge>>,
}

fn engine_error(ep: &Endpoint, e: impl std::fmt::Display) -> Error {
    let tls = match &ep.tls {
        Some(t) => format!(
            " over TLS (ca {}, cert {}, key {})",
            t.ca.display(),
            t.cert.display(),
            t.key.display()
        ),
        None => String::new(),
    };
    let text = e.to_string();
    let hint = if text.contains("ermission denied") && ep.host.starts_with("unix://") {
        "add your user to the docker group (then log in again) or run as root".to_owned()
    } else if ep.tls.is_some() {
        format!(
            "check that the engine at {} serves TLS and that the CA signs its certificate",
            ep.host
        )
    } else {
        "is dockerd running? (docker info); choose another engine with -H, DOCKER_HOST or --context"
            .to_owned()
    };
    Error::setup(format!(
        "cannot reach the Docker engine at {} (from {}){tls}: {e}",
        ep.host, ep.source
    ))
    .with_hint(hint)
}

/// The error for a request to `ep` that failed: the cause in words
/// ([`crate::engine::reach`]) when it can be told, else the client's own text.
fn unreachable(ep: &Endpoint, e: &bollard::errors::Error) -> Error {
    let text = crate::engine::reach::chain(e);
    let cause = crate::engine::reach::cause(&ep.host, ep.tls.is_some(), &text);
    tracing::debug!(error = %text, ?cause, "the engine does not answer");
    let Some((sentence, hint)) = crate::engine::reach::words(&cause, &ep.host) else {
        return engine_error(ep, text);
    };
    let errno = match cause {
        crate::engine::reach::Cause::Permission { .. } => libc::EACCES,
        crate::engine::reach::Cause::NoSocket => libc::ENOENT,
        crate::engine::reach::Cause::NotListening => libc::ECONNREFUSED,
        _ => libc::EPROTO,
    };
    let what = if crate::engine::reach::is_podman(&ep.host) {
        "the Podman service"
    } else {
        "the Docker engine"
    };
    Error::setup(format!(
        "cannot reach {what} at {} (from {}): {sentence}",
        ep.host, ep.source
    ))
    .with_errno(errno)
    .with_hint(hint)
}

/// A bollard client for `ep` (no request made yet).
fn client(ep: &Endpoint) -> Result<Docker> {
    const TIMEOUT: u64 = 120;
    let v = bollard::API_DEFAULT_VERSION;
    match &ep.tls {
        Some(t) => {
            // bollard reads the client pair only during the handshake and
            // turns a missing file into an anonymous "handshake failure":
            // name the missing file up front instead.
            for f in [&t.ca, &t.cert, &t.key] {
                if let Err(e) = std::fs::metadata(f) {
                    return Err(engine_error(ep, format!("TLS file {}: {e}", f.display())));
                }
            }
            let addr = ep.host.replacen("https://", "tcp://", 1);
            Docker::connect_with_ssl(&addr, &t.key, &t.cert, &t.ca, TIMEOUT, v)
                .map_err(|e| unreachable(ep, &e))
        }
        None if ep.host.starts_with("unix://") => {
            Docker::connect_with_unix(&ep.host, TIMEOUT, v).map_err(|e| unreachable(ep, &e))
        }
        None if ep.host.starts_with("tcp://") || ep.host.starts_with("http://") => {
            Docker::connect_with_http(&ep.host, TIMEOUT, v).map_err(|e| unreachable(ep, &e))
        }
        None => Err(engine_error(
            ep,
            "unsupported address (dockerfuse speaks unix://, tcp://, http://, https:// and ssh://)",
        )),
    }
}

/// A bollard client for an ssh:// engine, through a [`crate::engine::ssh::Bridge`].
fn ssh_client(ep: &Endpoint) -> Result<(Docker, crate::engine::ssh::Bridge)> {
    let target = crate::engine::ssh::parse(&ep.host).map_err(|e| engine_error(ep, e))?;
    crate::engine::ssh::check(&target).map_err(|e| {
        let hint = e.hint.clone();
        let err = Error::setup(format!(
            "cannot reach the Docker engine at {} (from {}): {}",
            ep.host, ep.source, e.message
        ));
        match hint {
            Some(h) => err.with_hint(h),
            None => err,
        }
    })?;
    let bridge = crate::engine::ssh::Bridge::start(target)
        .map_err(|e| engine_error(ep, format!("cannot listen for the ssh bridge: {e}")))?;
    let docker = Docker::connect_with_unix(&bridge.url(), 120, bollard::API_DEFAULT_VERSION)
        .map_err(|e| engine_error(ep, e))?;
    Ok((docker, bridge))
}

impl Engine {
    /// Connects and checks the engine answers.
    pub(crate) async fn connect(flags: &EngineFlags) -> Result<Engine> {
        let ep = resolve(flags, &os_env)?;
        tracing::debug!(host = %ep.host, source = %ep.source, tls = ep.tls.is_some(), "engine");
        let (docker, ssh) = if ep.host.starts_with("ssh://") {
            let (docker, bridge) = ssh_client(&ep)?;
            (docker, Some(std::sync::Arc::new(bridge)))
        } else {
            (client(&ep)?, None)
        };
        // The version answer is the proof the engine answers: a ping
        // after it would only cost another round trip.
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| unreachable(&ep, &e))?;
        Ok(Engine {
            docker,
            host: ep.host,
            _ssh: ssh,
        })
    }

    /// The engine's own CPU architecture.
    pub(crate) async fn native_arch(&self) -> Option<Arch> {
        let info = self.docker.info().await.ok()?;
        Arch::parse(info.architecture.as_deref()?)
    }

    pub(crate) async fn inspect(&self, id: &str) -> Result<Container> {
        let c = self
            .docker
            .inspect_container(id, None)
            .await
            .map_err(|e| match e {
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                } => Error::setup(format!("no such container: {id}")).with_errno(libc::ENOENT),
                e => Error::setup(format!("cannot inspect container {id}: {e}")),
            });
        let c = match c {
            Ok(c) => c,
            Err(e) if e.errno == Some(libc::ENOENT) => {
                let names = self.running_names().await.unwrap_or_default();
                return Err(e.with_hint(running_hint(&names)));
            }
            Err(e) => return Err(e),
        };
        let state = c.state.unwrap_or_default();
        let hc = c.host_config.unwrap_or_default();
        let mut tmpfs: Vec<String> = hc.tmpfs.unwrap_or_default().into_keys().collect();
        tmpfs.extend(
            c.mounts
                .unwrap_or_default()
                .into_iter()
                .filter(|m| m.typ.as_deref() == Some("tmpfs"))
                .filter_map(|m| m.destination),
        );
        tmpfs.sort();
        tmpfs.dedup();
        let (image_arch, image_variant) = match c.image.as_deref() {
            Some(img) => match self.docker.inspect_image(img).await {
                Ok(i) => (i.architecture, i.variant),
                Err(_) => (None, None),
            },
            None => (None, None),
        };
        Ok(Container {
            id: c.id.unwrap_or_else(|| id.to_owned()),
            name: c
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_owned(),
            running: state.running.unwrap_or(false),
            pid: state
                .pid
                .and_then(|p| u32::try_from(p).ok())
                .filter(|p| *p > 0),
            status: state
                .status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "unknown".into()),
            image_arch,
            image_variant,
            read_only: hc.readonly_rootfs.unwrap_or(false),
            tmpfs,
        })
    }

    /// The names of the running containers, sorted.
    pub(crate) async fn running_names(&self) -> Result<Vec<String>> {
        let list = self
            .docker
            .list_containers(None::<bollard::query_parameters::ListContainersOptions>)
            .await
            .map_err(|e| Error::setup(format!("cannot list containers: {e}")))?;
        let mut names: Vec<String> = list
            .into_iter()
            .filter_map(|c| c.names?.into_iter().next())
            .map(|n| n.trim_start_matches('/').to_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Extracts a tar archive into `dir` in the container.
    pub(crate) async fn upload(&self, container: &str, dir: &str, tar: Vec<u8>) -> Result<()> {
        let opts = UploadToContainerOptionsBuilder::new().path(dir).build();
        self.docker
            .upload_to_container(container, Some(opts), bollard::body_full(tar.into()))
            .await
            .map_err(|e| Error::setup(format!("refused: {e}")))
    }

    /// A small regular file of the container (read through the archive
    /// API: no shell or exec needed), `None` when it is missing, not a
    /// plain file or larger than `max` bytes.
    pub(crate) async fn read_small_file(
        &self,
        container: &str,
        path: &str,
        max: usize,
    ) -> Option<Vec<u8>> {
        use futures_util::StreamExt;
        let opts = bollard::query_parameters::DownloadFromContainerOptions { path: path.into() };
        let mut stream = self.docker.download_from_container(container, Some(opts));
        let mut tar = Vec::new();
        while let Some(chunk) = stream.next().await {
            tar.extend_from_slice(&chunk.ok()?);
            if tar.len() > max + 2048 {
                return None;
            }
        }
        crate::satellites::tarball::first_file(&tar).map(<[u8]>::to_vec)
    }

    /// Starts `cmd` with stdin/stdout/stderr attached and no TTY (a binary
    /// stream needs Docker's multiplexed framing).
    pub(crate) async fn exec_attached(
        &self,
        container: &str,
        cmd: Vec<String>,
        user: &str,
    ) -> Result<(String, Output, Input)> {
        let id = self.create_exec(container, cmd, user).await?;
        let (output, input) = self.start_attached(&id).await?;
        Ok((id, output, input))
    }

    /// Creates (does not start) an exec of `cmd` that will be attached,
    /// without a TTY; its id. The program need not exist yet.
    pub(crate) async fn create_exec(
        &self,
        container: &str,
        cmd: Vec<String>,
        user: &str,
    ) -> Result<String> {
        let exec = self
            .docker
            .create_exec(
                container,
                ExecConfig {
                    attach_stdin: Some(true),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(false),
                    cmd: Some(cmd),
                    user: Some(user.to_owned()),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| Error::setup(format!("cannot create exec: {e}")))?;
        Ok(exec.id)
    }

    /// Starts an exec made by [`Engine::create_exec`], attached.
    pub(crate) async fn start_attached(&self, exec_id: &str) -> Result<(Output, Input)> {
        let started = self
            .docker
            .start_exec(
                exec_id,
                Some(StartExecOptions {
                    detach: false,
                    tty: false,
                    output_capacity: Some(1 << 20),
                }),
            )
            .await
            .map_err(|e| Error::setup(format!("cannot start exec: {e}")))?;
        match started {
            StartExecResults::Attached { output, input } => Ok((output, input)),
            StartExecResults::Detached => Err(Error::setup("exec started detached")),
        }
    }

    /// The host pid of a running exec's process, if the engine tells it.
    pub(crate) async fn exec_pid(&self, exec_id: &str) -> Option<u32> {
        let i = self.docker.inspect_exec(exec_id).await.ok()?;
        u32::try_from(i.pid?).ok().filter(|&p| p > 0)
    }

    /// Exit code of a finished exec, if the engine knows it.
    pub(crate) async fn exec_exit_code(&self, exec_id: &str) -> Option<i64> {
        let i = self.docker.inspect_exec(exec_id).await.ok()?;
        if i.running == Some(true) {
            return None;
        }
        i.exit_code
    }
}

/// The hint for an unknown container: what is running.
fn running_hint(names: &[String]) -> String {
    const SHOWN: usize = 10;
    match names.len() {
        0 => "no container is running on this engine (docker ps)".to_owned(),
        n if n <= SHOWN => format!("running containers: {}", names.join(", ")),
        n => format!(
            "running containers: {}, and {} more (docker ps)",
            names[..SHOWN].join(", "),
            n - SHOWN
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_hint_names_a_few() {
        assert!(running_hint(&[]).contains("no container"));
        let few: Vec<String> = ["db", "web"].map(String::from).to_vec();
        assert_eq!(running_hint(&few), "running containers: db, web");
        let many: Vec<String> = (0..12).map(|i| format!("c{i:02}")).collect();
        let h = running_hint(&many);
        assert!(
            h.contains("c09") && !h.contains("c10") && h.contains("2 more"),
            "{h}"
        );
    }
}
