//! Waiting for the container to come back (`--reconnect`): after the
//! satellite is lost, poll the engine until the container runs again,
//! start a new satellite in it and hand it to the [`Relink`] transport,
//! all within `--reconnect-timeout`. Meanwhile the waiting requests are
//! failed once they have waited `--op-timeout`. An engine that does not
//! answer (restarting) is asked again until the time is up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::engine::Engine;
use crate::launch::{Launch, Running};
use crate::relink::Relink;
use crate::rpc::Rpc;

/// How often the engine is asked whether the container runs again.
const POLL: Duration = Duration::from_millis(250);
/// How often waiting requests are checked against the operation timeout.
const EXPIRE_TICK: Duration = Duration::from_millis(100);

/// How a wait for the container ended.
pub(crate) enum Outcome<E> {
    /// A new satellite serves the mount.
    Back(Running),
    /// Something else ended the wait (a signal, an unmount).
    Interrupted(E),
    /// The container did not come back in time.
    TimedOut,
}

/// Waits for the container of `launch` to run again and starts a new
/// satellite in it. `pause(d)` sleeps up to `d` and returns what
/// interrupts the wait, if anything.
pub(crate) fn come_back<E>(
    launch: &Launch<'_>,
    relink: &Relink<Rpc>,
    timeout: Duration,
    mut pause: impl FnMut(Duration) -> Option<E>,
) -> Outcome<E> {
    relink.disconnect();
    let deadline = Instant::now() + timeout;
    info!(waiting = ?timeout, "waiting for the container to run again");
    let waiting = AtomicBool::new(true);
    std::thread::scope(|scope| {
        // Waiting requests time out even while a start attempt runs.
        scope.spawn(|| {
            while waiting.load(Ordering::Relaxed) {
                relink.expire();
                std::thread::sleep(EXPIRE_TICK);
            }
        });
        let outcome = wait(launch, relink, deadline, &mut pause);
        waiting.store(false, Ordering::Relaxed);
        outcome
    })
}

fn wait<E>(
    launch: &Launch<'_>,
    relink: &Relink<Rpc>,
    deadline: Instant,
    pause: &mut impl FnMut(Duration) -> Option<E>,
) -> Outcome<E> {
    let block_on = |f| smol::block_on(async_compat::Compat::new(f));
    while Instant::now() < deadline {
        if let Some(e) = pause(POLL) {
            return Outcome::Interrupted(e);
        }
        if !block_on(runs(launch.engine, launch.container)) {
            continue;
        }
        match smol::block_on(async_compat::Compat::new(launch.run())) {
            Ok(running) => {
                relink.connect(running.rpc.clone());
                info!(satellite = %running.arch, "the container runs again: reconnected");
                return Outcome::Back(running);
            }
            Err(e) => warn!(error = %e.message, "cannot start the satellite again yet"),
        }
    }
    relink.give_up();
    Outcome::TimedOut
}

/// True when the engine answers and says the container runs.
async fn runs(engine: &Engine, id: &str) -> bool {
    match engine.inspect(id).await {
        Ok(c) => {
            debug!(status = %c.status, "container state");
            c.running
        }
        Err(e) => {
            debug!(error = %e.message, "the engine does not answer yet");
            false
        }
    }
}
