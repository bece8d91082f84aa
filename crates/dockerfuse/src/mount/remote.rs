//! The engine side of a mount: connect, check the container, upload and
//! start the satellite (again, with `--reconnect`), say why it went away,
//! and tell it to exit.

use std::path::Path;
use std::time::Duration;

use tracing::info;

use crate::cli::flags::{Cli, Target};
use crate::engine::api::{Container, Engine};
use crate::engine::endpoint::EngineFlags;
use crate::error::{Error, Result};
use crate::satellites::embedded::{self, Arch};
use crate::satellites::launch::{Launch, Running, UPLOAD_DIRS};

/// The engine side of a mount: the container and its running satellite.
pub(super) struct Remote {
    pub(super) engine: Engine,
    pub(super) container: Container,
    pub(super) running: Running,
    /// How the core reaches the satellite: the exec stream or the local
    /// channel.
    pub(super) link: crate::transport::local::Link,
    /// The container's name, for messages.
    pub(super) name: String,
}

/// Connects to the engine, checks the container, uploads and starts the
/// satellite.
pub(super) async fn start_satellite(
    cli: &Cli,
    target: &Target,
    flags: &EngineFlags,
) -> Result<Remote> {
    let id = target.container.as_str();
    let engine = Engine::connect(flags).await?;
    // One round trip for both: the container and the engine's own arch.
    let (container, native) = smol::future::zip(engine.inspect(id), engine.native_arch()).await;
    let container = container?;
    if !container.running {
        return Err(Error::setup(format!(
            "container {id} is not running (status: {})",
            container.status
        ))
        .with_hint(format!("start it first: docker start {id}")));
    }
    if let Some(note) = container.pid.and_then(crate::mount::idmap::describe) {
        info!("{note}");
    }
    let image = container
        .image_arch
        .as_deref()
        .and_then(|a| Arch::parse_with_variant(a, container.image_variant.as_deref()));
    let archs = embedded::candidates(cli.satellite_arch, native, image).map_err(|why| {
        Error::setup(format!(
            "{why} (image architecture: {})",
            container.image_arch.as_deref().unwrap_or("unknown")
        ))
        .with_hint("force one that can run in the container with --satellite-arch")
    })?;
    let launch = launch(cli, target, &engine, &container.id, archs);
    let running = launch.run_with(&container).await?;
    let link = crate::transport::local::connect(&engine, &running, &want(cli, &launch)).await?;
    let name = if container.name.is_empty() {
        id.to_owned()
    } else {
        container.name.clone()
    };
    Ok(Remote {
        engine,
        container,
        running,
        link,
        name,
    })
}

/// How to start the satellite in the container.
fn launch<'a>(
    cli: &'a Cli,
    target: &'a Target,
    engine: &'a Engine,
    id: &'a str,
    archs: Vec<Arch>,
) -> Launch<'a> {
    let dirs = match &cli.satellite_dir {
        Some(d) => vec![d.clone()],
        None => UPLOAD_DIRS.iter().map(|s| s.to_string()).collect(),
    };
    Launch {
        engine,
        container: id,
        archs,
        dirs,
        user: &cli.user,
        root: &target.path,
        timeout: Duration::from_secs_f64(cli.start_timeout.max(1.0)),
        stall: Duration::from_secs_f64(cli.op_timeout.max(0.2)),
        max_watches: cli.max_watches,
    }
}

/// How to reach the satellite once it runs.
fn want(cli: &Cli, launch: &Launch<'_>) -> crate::transport::local::Want {
    crate::transport::local::Want {
        choice: cli.transport,
        no_passthrough: cli.no_passthrough,
        writeback: cli.writeback_cache,
        per_caller: cli.allow_other,
        stall: launch.stall,
        timeout: launch.timeout,
    }
}

/// Starts the satellite again (`--reconnect`), with the architecture that
/// worked, and reaches it the way the flags say.
pub(super) async fn restart_satellite(
    cli: &Cli,
    target: &Target,
    remote: &Remote,
) -> Result<(Running, crate::transport::local::Link)> {
    let (engine, id) = (&remote.engine, remote.container.id.as_str());
    let launch = launch(cli, target, engine, id, vec![remote.running.arch]);
    let running = launch.run().await?;
    let link = crate::transport::local::connect(engine, &running, &want(cli, &launch)).await?;
    Ok((running, link))
}

pub(super) fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    smol::block_on(async_compat::Compat::new(f))
}

/// Why the satellite went away, in words: the engine may need a moment to
/// see the container's end, so ask it a few times.
pub(super) async fn lost_cause(remote: &Remote, why: &str) -> String {
    let (engine, id, name) = (&remote.engine, &remote.container.id, &remote.name);
    let mut last = engine.inspect(id).await;
    for _ in 0..5 {
        match &last {
            Ok(c) if c.running => {
                smol::Timer::after(Duration::from_millis(100)).await;
                last = engine.inspect(id).await;
            }
            _ => break,
        }
    }
    match last {
        Ok(c) if !c.running => format!("container {name} stopped (status: {})", c.status),
        Ok(_) => format!("lost the satellite in container {name}: {why}"),
        Err(e) => format!("lost container {name}: {e}"),
    }
}

/// Tells the satellite to exit and removes the pid file.
pub(super) fn finish(remote: &Remote, pid_file: Option<&Path>) {
    remote.link.shutdown();
    // The shutdown frame is queued, not yet written: give the writer
    // thread a moment to deliver it before the process exits.
    std::thread::sleep(Duration::from_millis(50));
    if let Some(p) = pid_file {
        let _ = std::fs::remove_file(p);
    }
}
