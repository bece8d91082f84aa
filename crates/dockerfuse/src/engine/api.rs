//! The Docker Engine API, through bollard.
//!
//! bollard runs on tokio; the rest of the program runs on smol, so every
//! call here is awaited inside `async_compat::Compat` by the caller. The
//! engine is chosen the way the docker CLI chooses it (see [`resolve`]):
//! `-H`, else DOCKER_HOST (unix://, tcp://, with DOCKER_TLS_VERIFY and
//! DOCKER_CERT_PATH), else the context named by DOCKER_CONTEXT, else the
//! `currentContext` of `~/.docker/config.json`, else the local socket. The
//! connection negotiates the API version so older engines answer.
//!
//! bollard's own `connect_with_defaults` knows nothing of contexts and
//! reads the TLS environment even for a context, so the endpoint is
//! resolved here (pure functions, unit-tested) and bollard only connects.

use std::path::{Path, PathBuf};
use std::pin::Pin;

use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::query_parameters::UploadToContainerOptionsBuilder;
use bollard::Docker;
use futures_util::Stream;

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

/// Where the engine is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `unix:///path` or `tcp://host:port`.
    pub host: String,
    /// Client TLS material; `None` for plain HTTP or a unix socket.
    pub tls: Option<TlsFiles>,
    /// What chose this endpoint, for messages: "-H", "DOCKER_HOST",
    /// "context NAME (DOCKER_CONTEXT)", "default socket"...
    pub source: String,
}

/// The CA that signs the engine's certificate and the client's own pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    fn in_dir(dir: &Path) -> TlsFiles {
        TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }
}

pub(crate) const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// The docker CLI's global flags that choose the engine (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EngineFlags {
    /// `-H`/`--host`.
    pub host: Option<String>,
    /// `--context`/`-c`.
    pub context: Option<String>,
    /// `--config`: the CLI's configuration directory.
    pub config: Option<PathBuf>,
    /// `--tlsverify` (`Some(false)`: `--tlsverify=false`).
    pub tls_verify: Option<bool>,
    /// `--tlscacert`, `--tlscert`, `--tlskey`.
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl EngineFlags {
    /// Only `-H` (and the environment).
    #[cfg(test)]
    pub(crate) fn host(h: Option<&str>) -> EngineFlags {
        EngineFlags {
            host: h.map(str::to_owned),
            ..EngineFlags::default()
        }
    }
}

/// The docker CLI's configuration directory: `$DOCKER_CONFIG`, else
/// `$HOME/.docker`.
fn config_dir(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(d) = env("DOCKER_CONFIG") {
        return Some(PathBuf::from(d));
    }
    env("HOME").map(|h| Path::new(&h).join(".docker"))
}

/// TLS for a host given by `-H` or DOCKER_HOST: on when `--tlsverify` or
/// DOCKER_TLS_VERIFY is set (and not empty, as for the CLI) or the scheme
/// is https://; the files come from `--tlscacert`/`--tlscert`/`--tlskey`,
/// else DOCKER_CERT_PATH, else the config directory.
fn env_tls(
    host: &str,
    flags: &EngineFlags,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<TlsFiles> {
    let tcp = host.starts_with("tcp://") || host.starts_with("https://");
    let verify = flags
        .tls_verify
        .unwrap_or_else(|| env("DOCKER_TLS_VERIFY").is_some());
    if !tcp || (!verify && !host.starts_with("https://")) {
        return None;
    }
    let dir = env("DOCKER_CERT_PATH")
        .map(PathBuf::from)
        .or_else(|| config_dir(env))
        .unwrap_or_else(|| PathBuf::from(".docker"));
    let d = TlsFiles::in_dir(&dir);
    Some(TlsFiles {
        ca: flags.tls_ca.clone().unwrap_or(d.ca),
        cert: flags.tls_cert.clone().unwrap_or(d.cert),
        key: flags.tls_key.clone().unwrap_or(d.key),
    })
}

/// Lowercase hex sha256 of a context name: the directory the CLI keeps
/// the context in.
pub(crate) fn context_dir_name(name: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, name.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Picks the engine like the docker CLI: `--context`, then `-H`, then
/// DOCKER_HOST, DOCKER_CONTEXT, `currentContext` in config.json, and last
/// the default socket.
/// `env` reads an environment variable (empty counts as unset).
pub(crate) fn resolve(
    flags: &EngineFlags,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Endpoint> {
    let config = flags.config.as_ref().map(|c| c.display().to_string());
    let env = |k: &str| match (k, &config) {
        ("DOCKER_CONFIG", Some(c)) => Some(c.clone()),
        _ => env(k).filter(|v| !v.is_empty()),
    };
    let flag = flags.host.as_deref().filter(|h| !h.is_empty());
    let context = flags.context.as_deref().filter(|c| !c.is_empty());
    if let (Some(_), Some(_)) = (flag, context) {
        return Err(
            Error::setup("conflicting options: cannot specify both --host and --context")
                .with_hint("give one of them"),
        );
    }
    if let Some(h) = flag {
        return Ok(Endpoint {
            host: h.to_owned(),
            tls: env_tls(h, flags, &env),
            source: "-H".into(),
        });
    }
    // The default context's endpoint is DOCKER_HOST when it is set.
    if context.is_none_or(|c| c == "default") {
        if let Some(h) = env("DOCKER_HOST") {
            return Ok(Endpoint {
                tls: env_tls(&h, flags, &env),
                host: h,
                source: "DOCKER_HOST".into(),
            });
        }
    }
    let dir = config_dir(&env);
    let (name, from) = match (context, env("DOCKER_CONTEXT")) {
        (Some(n), _) => (Some(n.to_owned()), "--context"),
        (None, Some(n)) => (Some(n), "DOCKER_CONTEXT"),
        (None, None) => (
            match dir.as_deref() {
                Some(d) => current_context(d)?,
                None => None,
            },
            "currentContext in config.json",
        ),
    };
    match name {
        Some(n) if n != "default" => {
            let dir = dir.ok_or_else(|| {
                Error::setup(format!(
                    "docker context {n} ({from}): no HOME or DOCKER_CONFIG to find it in"
                ))
            })?;
            read_context(&dir, &n, from)
        }
        _ => Ok(Endpoint {
            host: DEFAULT_HOST.into(),
            tls: None,
            source: "the default socket".into(),
        }),
    }
}

/// `currentContext` of `DIR/config.json`, `Ok(None)` when there is none.
fn current_context(dir: &Path) -> Result<Option<String>> {
    let path = dir.join("config.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::setup(format!("cannot read {}: {e}", path.display()))),
    };
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::setup(format!("{} is not valid JSON: {e}", path.display())))?;
    Ok(v.get("currentContext")
        .and_then(|c| c.as_str())
        .filter(|c| !c.is_empty())
        .map(str::to_owned))
}

/// Reads context `name` from the CLI's store under `dir`:
/// `contexts/meta/<sha256>/meta.json` holds `Endpoints.docker.Host`,
/// `contexts/tls/<sha256>/docker/{ca,cert,key}.pem` the TLS material.
fn read_context(dir: &Path, name: &str, from: &str) -> Result<Endpoint> {
    let hash = context_dir_name(name);
    let meta = dir.join("contexts/meta").join(&hash).join("meta.json");
    let text = std::fs::read_to_string(&meta).map_err(|e| {
        Error::setup(format!(
            "docker context {name} ({from}) not found: cannot read {}: {e}",
            meta.display()
        ))
        .with_hint("docker context ls lists the contexts")
    })?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::setup(format!("{} is not valid JSON: {e}", meta.display())))?;
    let ep = &v["Endpoints"]["docker"];
    let host = ep["Host"]
        .as_str()
        .filter(|h| !h.is_empty())
        .unwrap_or(DEFAULT_HOST)
        .to_owned();
    if ep["SkipTLSVerify"].as_bool() == Some(true) {
        return Err(Error::setup(format!(
            "docker context {name} ({from}) skips TLS verification, which dockerfuse does not do: \
             give it a CA (docker context update {name} --docker ca=...)"
        )));
    }
    let tls_dir = dir.join("contexts/tls").join(&hash).join("docker");
    let tls = (host.starts_with("tcp://") || host.starts_with("https://"))
        .then(|| TlsFiles::in_dir(&tls_dir))
        .filter(|t| t.ca.exists() || t.cert.exists() || host.starts_with("https://"));
    Ok(Endpoint {
        host,
        tls,
        source: format!("docker context {name} ({from})"),
    })
}

fn os_env(k: &str) -> Option<String> {
    std::env::var(k).ok()
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
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| unreachable(&ep, &e))?;
        docker.ping().await.map_err(|e| unreachable(&ep, &e))?;
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
    use std::collections::HashMap;

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

    /// An environment made of `pairs`, with HOME set to `home`.
    fn env_of<'a>(
        home: &'a Path,
        pairs: &'a [(&'a str, &'a str)],
    ) -> impl Fn(&str) -> Option<String> + 'a {
        let mut m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        m.entry("HOME".into())
            .or_insert_with(|| home.display().to_string());
        move |k| m.get(k).cloned()
    }

    /// Writes a context the way `docker context create` does.
    fn make_context(home: &Path, name: &str, host: &str, tls: bool) {
        let hash = context_dir_name(name);
        let meta = home.join(".docker/contexts/meta").join(&hash);
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(
            meta.join("meta.json"),
            format!(
                r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":false}}}}}}"#
            ),
        )
        .unwrap();
        if tls {
            let t = home.join(".docker/contexts/tls").join(&hash).join("docker");
            std::fs::create_dir_all(&t).unwrap();
            for f in ["ca.pem", "cert.pem", "key.pem"] {
                std::fs::write(t.join(f), "x").unwrap();
            }
        }
    }

    fn set_current(home: &Path, name: &str) {
        std::fs::create_dir_all(home.join(".docker")).unwrap();
        std::fs::write(
            home.join(".docker/config.json"),
            format!(r#"{{"auths":{{}},"currentContext":"{name}"}}"#),
        )
        .unwrap();
    }

    #[test]
    fn context_dir_is_the_sha256_of_the_name() {
        // echo -n default | sha256sum
        assert_eq!(
            context_dir_name("default"),
            "37a8eec1ce19687d132fe29051dca629d164e2c4958ba141d5f4133a33f0688f"
        );
    }

    #[test]
    fn nothing_set_gives_the_default_socket() {
        let home = tempfile::tempdir().unwrap();
        let ep = resolve(&EngineFlags::default(), &env_of(home.path(), &[])).unwrap();
        assert_eq!(ep.host, DEFAULT_HOST);
        assert_eq!(ep.tls, None);
    }

    #[test]
    fn precedence_flag_host_context_current() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        make_context(h, "ctx-env", "tcp://10.0.0.1:2376", false);
        make_context(h, "ctx-cur", "unix:///run/cur.sock", false);
        set_current(h, "ctx-cur");
        let all = [
            ("DOCKER_HOST", "unix:///run/env.sock"),
            ("DOCKER_CONTEXT", "ctx-env"),
        ];
        let ep = resolve(&EngineFlags::host(Some("tcp://flag:1")), &env_of(h, &all)).unwrap();
        assert_eq!(
            (ep.host.as_str(), ep.source.as_str()),
            ("tcp://flag:1", "-H")
        );
        let ep = resolve(&EngineFlags::default(), &env_of(h, &all)).unwrap();
        assert_eq!(ep.host, "unix:///run/env.sock");
        let ep = resolve(&EngineFlags::default(), &env_of(h, &all[1..])).unwrap();
        assert_eq!(ep.host, "tcp://10.0.0.1:2376");
        assert!(ep.source.contains("ctx-env") && ep.source.contains("DOCKER_CONTEXT"));
        let ep = resolve(&EngineFlags::default(), &env_of(h, &[])).unwrap();
        assert_eq!(ep.host, "unix:///run/cur.sock");
        assert!(ep.source.contains("currentContext"));
        // Empty values count as unset, as for the CLI.
        let ep = resolve(
            &EngineFlags::host(Some("")),
            &env_of(h, &[("DOCKER_HOST", ""), ("DOCKER_CONTEXT", "")]),
        )
        .unwrap();
        assert_eq!(ep.host, "unix:///run/cur.sock");
        // "default" is the default socket even when currentContext says otherwise.
        let ep = resolve(
            &EngineFlags::default(),
            &env_of(h, &[("DOCKER_CONTEXT", "default")]),
        )
        .unwrap();
        assert_eq!(ep.host, DEFAULT_HOST);
    }

    #[test]
    fn the_context_flag_beats_everything_and_conflicts_with_host() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        make_context(h, "flagged", "tcp://10.9.9.9:2375", false);
        make_context(h, "ctx-env", "tcp://10.0.0.1:2376", false);
        let all = [
            ("DOCKER_HOST", "unix:///run/env.sock"),
            ("DOCKER_CONTEXT", "ctx-env"),
        ];
        let flags = EngineFlags {
            context: Some("flagged".into()),
            ..EngineFlags::default()
        };
        let ep = resolve(&flags, &env_of(h, &all)).unwrap();
        assert_eq!(ep.host, "tcp://10.9.9.9:2375");
        assert!(ep.source.contains("--context"), "{}", ep.source);
        let both = EngineFlags {
            host: Some("tcp://x:1".into()),
            ..flags.clone()
        };
        let e = resolve(&both, &env_of(h, &all)).unwrap_err();
        assert!(e.message.contains("conflicting"), "{}", e.message);
        // --context default is DOCKER_HOST when set, else the socket.
        let default = EngineFlags {
            context: Some("default".into()),
            ..EngineFlags::default()
        };
        assert_eq!(
            resolve(&default, &env_of(h, &all)).unwrap().host,
            "unix:///run/env.sock"
        );
        assert_eq!(
            resolve(&default, &env_of(h, &all[1..])).unwrap().host,
            DEFAULT_HOST
        );
    }

    #[test]
    fn config_and_tls_flags_override_the_environment() {
        let home = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        make_context(other.path(), "there", "tcp://5.6.7.8:9", false);
        let flags = EngineFlags {
            config: Some(other.path().join(".docker")),
            ..EngineFlags::default()
        };
        let env = env_of(home.path(), &[("DOCKER_CONTEXT", "there")]);
        assert_eq!(resolve(&flags, &env).unwrap().host, "tcp://5.6.7.8:9");
        let flags = EngineFlags {
            host: Some("tcp://h:2376".into()),
            tls_verify: Some(true),
            tls_ca: Some("/c/ca".into()),
            ..EngineFlags::default()
        };
        let ep = resolve(&flags, &env_of(home.path(), &[("DOCKER_CERT_PATH", "/d")])).unwrap();
        let tls = ep.tls.unwrap();
        assert_eq!(tls.ca, Path::new("/c/ca"));
        assert_eq!(tls.cert, Path::new("/d/cert.pem"));
        let off = EngineFlags {
            tls_verify: Some(false),
            ..flags
        };
        let env = env_of(home.path(), &[("DOCKER_TLS_VERIFY", "1")]);
        assert_eq!(resolve(&off, &env).unwrap().tls, None);
    }

    #[test]
    fn context_tls_material_comes_from_the_store() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        make_context(h, "secure", "tcp://127.0.0.1:2376", true);
        // The environment's TLS settings do not apply to a context.
        let env = env_of(
            h,
            &[
                ("DOCKER_CONTEXT", "secure"),
                ("DOCKER_TLS_VERIFY", "1"),
                ("DOCKER_CERT_PATH", "/elsewhere"),
            ],
        );
        let ep = resolve(&EngineFlags::default(), &env).unwrap();
        let dir = h
            .join(".docker/contexts/tls")
            .join(context_dir_name("secure"))
            .join("docker");
        assert_eq!(ep.tls, Some(TlsFiles::in_dir(&dir)));
        make_context(h, "plain", "tcp://127.0.0.1:2375", false);
        let ep = resolve(
            &EngineFlags::default(),
            &env_of(h, &[("DOCKER_CONTEXT", "plain")]),
        )
        .unwrap();
        assert_eq!(ep.tls, None);
    }

    #[test]
    fn docker_config_moves_the_store() {
        let home = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        make_context(other.path(), "moved", "tcp://1.2.3.4:5", false);
        // make_context writes below DIR/.docker: point DOCKER_CONFIG there.
        let cfg = other.path().join(".docker");
        let cfg = cfg.to_str().unwrap();
        let ep = resolve(
            &EngineFlags::default(),
            &env_of(
                home.path(),
                &[("DOCKER_CONFIG", cfg), ("DOCKER_CONTEXT", "moved")],
            ),
        )
        .unwrap();
        assert_eq!(ep.host, "tcp://1.2.3.4:5");
    }

    #[test]
    fn env_tls_for_host_and_flag() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        let env = env_of(
            h,
            &[
                ("DOCKER_HOST", "tcp://e:2376"),
                ("DOCKER_TLS_VERIFY", "1"),
                ("DOCKER_CERT_PATH", "/certs"),
            ],
        );
        let ep = resolve(&EngineFlags::default(), &env).unwrap();
        assert_eq!(ep.tls, Some(TlsFiles::in_dir(Path::new("/certs"))));
        let ep = resolve(&EngineFlags::host(Some("tcp://f:2376")), &env).unwrap();
        assert_eq!(ep.tls, Some(TlsFiles::in_dir(Path::new("/certs"))));
        // Without DOCKER_CERT_PATH: ~/.docker.
        let ep = resolve(
            &EngineFlags::default(),
            &env_of(
                h,
                &[("DOCKER_HOST", "tcp://e:2376"), ("DOCKER_TLS_VERIFY", "1")],
            ),
        )
        .unwrap();
        assert_eq!(ep.tls, Some(TlsFiles::in_dir(&h.join(".docker"))));
        // No TLS without DOCKER_TLS_VERIFY, nor for a unix socket.
        let ep = resolve(
            &EngineFlags::default(),
            &env_of(h, &[("DOCKER_HOST", "tcp://e:2375")]),
        )
        .unwrap();
        assert_eq!(ep.tls, None);
        let ep = resolve(&EngineFlags::host(Some("unix:///x.sock")), &env).unwrap();
        assert_eq!(ep.tls, None);
    }

    #[test]
    fn missing_context_names_the_file_tried() {
        let home = tempfile::tempdir().unwrap();
        let e = resolve(
            &EngineFlags::default(),
            &env_of(home.path(), &[("DOCKER_CONTEXT", "nope")]),
        )
        .unwrap_err();
        assert!(
            e.message.contains("nope") && e.message.contains(&context_dir_name("nope")),
            "{}",
            e.message
        );
        set_current(home.path(), "gone");
        let e = resolve(&EngineFlags::default(), &env_of(home.path(), &[])).unwrap_err();
        assert!(
            e.message.contains("gone") && e.message.contains("currentContext"),
            "{}",
            e.message
        );
    }
}
