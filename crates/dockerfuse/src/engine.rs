//! The Docker Engine API, through bollard.
//!
//! bollard runs on tokio; the rest of the program runs on smol, so every
//! call here is awaited inside `async_compat::Compat` by the caller. The
//! connection honours `-H`, else DOCKER_HOST (unix://, tcp://, with
//! DOCKER_TLS_VERIFY and DOCKER_CERT_PATH), else the local socket, and
//! negotiates the API version so older engines answer.

use std::pin::Pin;

use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::query_parameters::UploadToContainerOptionsBuilder;
use bollard::Docker;
use futures_util::Stream;

use crate::error::{Error, Result};
use crate::satellites::Arch;

pub type Output = Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;
pub type Input = Pin<Box<dyn tokio::io::AsyncWrite + Send>>;

/// What we need to know about the container.
#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub running: bool,
    pub status: String,
    pub image_arch: Option<String>,
    pub pid: i64,
}

#[derive(Clone)]
pub struct Engine {
    docker: Docker,
    pub host: String,
}

fn engine_error(host: &str, e: bollard::errors::Error) -> Error {
    Error::setup(format!("cannot reach the Docker engine at {host}: {e}"))
}

impl Engine {
    /// Connects and checks the engine answers.
    pub async fn connect(host: Option<&str>) -> Result<Engine> {
        let host = host
            .map(str::to_owned)
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned());
        let docker = Docker::connect_with_host(&host).map_err(|e| engine_error(&host, e))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| engine_error(&host, e))?;
        docker.ping().await.map_err(|e| engine_error(&host, e))?;
        Ok(Engine { docker, host })
    }

    /// The engine's own CPU architecture.
    pub async fn native_arch(&self) -> Option<Arch> {
        let info = self.docker.info().await.ok()?;
        Arch::parse(info.architecture.as_deref()?)
    }

    pub async fn inspect(&self, id: &str) -> Result<Container> {
        let c = self
            .docker
            .inspect_container(id, None)
            .await
            .map_err(|e| match e {
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                } => Error::setup(format!("no such container: {id}")).with_errno(libc::ENOENT),
                e => Error::setup(format!("cannot inspect container {id}: {e}")),
            })?;
        let state = c.state.unwrap_or_default();
        let image_arch = match c.image.as_deref() {
            Some(img) => self
                .docker
                .inspect_image(img)
                .await
                .ok()
                .and_then(|i| i.architecture),
            None => None,
        };
        Ok(Container {
            id: c.id.unwrap_or_else(|| id.to_owned()),
            name: c
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_owned(),
            running: state.running.unwrap_or(false),
            status: state
                .status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "unknown".into()),
            image_arch,
            pid: state.pid.unwrap_or(0),
        })
    }

    /// Extracts a tar archive into `dir` in the container.
    pub async fn upload(&self, container: &str, dir: &str, tar: Vec<u8>) -> Result<()> {
        let opts = UploadToContainerOptionsBuilder::new().path(dir).build();
        self.docker
            .upload_to_container(container, Some(opts), bollard::body_full(tar.into()))
            .await
            .map_err(|e| Error::setup(format!("upload to {dir} failed: {e}")))
    }

    /// Starts `cmd` with stdin/stdout/stderr attached and no TTY (a binary
    /// stream needs Docker's multiplexed framing).
    pub async fn exec_attached(
        &self,
        container: &str,
        cmd: Vec<String>,
        user: &str,
    ) -> Result<(String, Output, Input)> {
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
        let started = self
            .docker
            .start_exec(
                &exec.id,
                Some(StartExecOptions {
                    detach: false,
                    tty: false,
                    output_capacity: Some(1 << 20),
                }),
            )
            .await
            .map_err(|e| Error::setup(format!("cannot start exec: {e}")))?;
        match started {
            StartExecResults::Attached { output, input } => Ok((exec.id, output, input)),
            StartExecResults::Detached => Err(Error::setup("exec started detached")),
        }
    }

    /// Exit code of a finished exec, if the engine knows it.
    pub async fn exec_exit_code(&self, exec_id: &str) -> Option<i64> {
        let i = self.docker.inspect_exec(exec_id).await.ok()?;
        if i.running == Some(true) {
            return None;
        }
        i.exit_code
    }
}
