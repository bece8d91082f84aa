//! Waiting for the container to come back (`--reconnect`): after the
//! satellite is lost, poll the engine until the container runs again,
//! start a new satellite in it and hand it to the [`Relink`] transport,
//! all within `--reconnect-timeout`. Meanwhile the waiting requests are
//! failed once they have waited `--op-timeout`. An engine that does not
//! answer (restarting) is asked again until the time is up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::engine::api::Engine;
use crate::error::Result;
use crate::fs::Transport;
use crate::transport::relink::{Ends, Relink};

/// How often the engine is asked whether the container runs again.
const POLL: Duration = Duration::from_millis(250);
/// How often waiting requests are checked against the operation timeout.
const EXPIRE_TICK: Duration = Duration::from_millis(100);

/// How a wait for the container ended.
pub(crate) enum Outcome<R, E> {
    /// A new satellite serves the mount; what `start` gave.
    Back(R),
    /// Something else ended the wait (a signal, an unmount).
    Interrupted(E),
    /// The container did not come back in time.
    TimedOut,
}

/// Waits for container `id` to run again, then runs `start` (which starts
/// a satellite in it and gives the transport to it) and hands the
/// transport to `relink`. `pause(d)` sleeps up to `d` and returns what
/// interrupts the wait, if anything.
pub(crate) fn come_back<T: Transport + Ends, R, E>(
    relink: &Relink<T>,
    timeout: Duration,
    engine: &Engine,
    id: &str,
    mut start: impl FnMut() -> Result<(R, T)>,
    mut pause: impl FnMut(Duration) -> Option<E>,
) -> Outcome<R, E> {
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
        let outcome = (|| {
            while Instant::now() < deadline {
                if let Some(e) = pause(POLL) {
                    return Outcome::Interrupted(e);
                }
                if !smol::block_on(async_compat::Compat::new(runs(engine, id))) {
                    continue;
                }
                match start() {
                    Ok((started, transport)) => {
                        relink.connect(transport);
                        info!("the container runs again: reconnected");
                        return Outcome::Back(started);
                    }
                    Err(e) => warn!(error = %e.message, "cannot start the satellite again yet"),
                }
            }
            relink.give_up();
            Outcome::TimedOut
        })();
        waiting.store(false, Ordering::Relaxed);
        outcome
    })
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
