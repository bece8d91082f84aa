//! Runs one sequence on both sides and compares them: the outcome and
//! errno of every step, then the whole trees.

use std::sync::atomic::Ordering::Relaxed;

use super::identity::{Ids, Twin};
use super::ops::{Op, SLOTS};
use super::satellite::Served;
use super::through_core::Driver;
use super::tree;
use super::twin::TwinDir;

/// How the core side runs a sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Each step's lookups are forgotten after it.
    Forget,
    /// All lookups are held to the end, as the kernel's cache holds them.
    Keep,
    /// As `Keep`, with a satellite short of descriptors whose node budget
    /// is used up first by held nodes of deleted files: the nodes of the
    /// sequence hold no descriptor and are reopened by parent and name.
    Tight,
}

/// Who performs a sequence's steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Who {
    /// The test process itself, through a core that sends requests as the
    /// satellite's own.
    Itself,
    /// A caller ([`Ids`]), through a core that performs each request as
    /// its caller; root's setup steps stay the test process's.
    Caller,
}

/// Lookups the cores answered "absent" on the host, over all runs.
pub(crate) static ABSENT_HERE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// GETATTRs the cores answered from the attributes kept on the host, over
/// all runs.
pub(crate) static ATTRS_HERE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Unlinks and rmdirs the cores answered on the host and sent behind,
/// over all runs.
pub(crate) static REMOVED_HERE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How long a change made in the container may take to reach the ledger.
const CHANGE_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The ledger's invariants after a step: it counts the lookups the model's
/// kernel holds, keeps attributes only of watched nodes the kernel holds
/// (checked in [`crate::fs::Coherence::ledger_view`]), and what it keeps
/// is what the satellite answers now, once changes made in the container
/// had time to arrive (the mount's own changes must have dropped them at
/// once: the feed does not echo those).
fn ledger_agrees(served: &Served, driver: &Driver<'_>) -> Result<(), String> {
    let coh = served.core.coherence();
    let until = std::time::Instant::now() + CHANGE_LIMIT;
    loop {
        let (counts, kept) = coh.ledger_view();
        let want = driver.references();
        if counts != want {
            return Err(format!(
                "the ledger counts lookups {counts:?}, the kernel holds {want:?}"
            ));
        }
        let stale: Vec<_> = kept
            .into_iter()
            .filter_map(|(node, attr)| {
                let now = satellite_attr(served, node);
                let attr = dockerfuse_proto::Attr {
                    atime: 0,
                    atime_nsec: 0,
                    ..attr
                };
                (now.as_ref() != Ok(&attr))
                    .then(|| format!("node {node}: kept {attr:?}, now {now:?}"))
            })
            .collect();
        match stale.first() {
            None => return Ok(()),
            Some(_) if std::time::Instant::now() < until => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            Some(s) => return Err(format!("attributes kept on the host are stale: {s}")),
        }
    }
}

/// The attributes the satellite gives `node` now (atime left out: reads
/// may stamp it), asked without the core.
fn satellite_attr(
    served: &Served,
    node: u64,
) -> Result<dockerfuse_proto::Attr, dockerfuse_proto::Errno> {
    use crate::fs::Transport;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    served.core.transport().call(
        &dockerfuse_proto::Request::GetAttr { node, fh: None },
        Box::new(move |r| {
            let _ = tx.send(r.and_then(|r| match r {
                dockerfuse_proto::Response::Attr(a) => Ok(a),
                _ => Err(dockerfuse_proto::Errno::EIO),
            }));
        }),
    );
    let a = rx
        .recv_timeout(CHANGE_LIMIT)
        .expect("the satellite answers a getattr")?;
    Ok(dockerfuse_proto::Attr {
        ino: node,
        atime: 0,
        atime_nsec: 0,
        ..a
    })
}

/// RLIMIT_NOFILE of a `Tight` satellite: a budget of 64 nodes.
const TIGHT_NOFILE: u64 = 128;
/// Files created, held and deleted to use that budget up.
const TIGHT_FILLER: usize = 64;

/// Runs `ops` through the core (over a real satellite serving temp dir A)
/// and directly on temp dir B, as `who`; describes the first divergence.
pub(crate) fn run(mode: Mode, who: Who, ops: &[Op]) -> Result<(), String> {
    let tmp = tempfile::Builder::new()
        .prefix("dockerfuse-model-")
        .tempdir()
        .expect("a temp dir");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    // Third parties may leave directories immutable or unwritable.
    let _thaw = Thaw(tmp.path().to_path_buf());
    std::fs::create_dir(&a).expect("create A");
    std::fs::create_dir(&b).expect("create B");
    let tight = matches!(mode, Mode::Tight);
    let by_caller = who == Who::Caller;
    let ids = Ids::get();
    if by_caller {
        ids.prepare(tmp.path(), [&a, &b]);
    }
    let served = Served::start(&a, tight.then_some(TIGHT_NOFILE), by_caller);
    let mut twin = if by_caller {
        Twin::as_caller(TwinDir::new(b.clone()))
    } else {
        Twin::Here(TwinDir::new(b.clone()))
    };
    // One step on both sides, as the caller when `as_caller`.
    let mut both = |op: &Op, as_caller: bool, driver: &mut Driver<'_>| {
        let want = twin.apply(op, as_caller);
        driver.who = match as_caller {
            true => crate::fs::Who::Caller(ids.caller()),
            false => crate::fs::Who::Mount,
        };
        let got = driver.apply(op);
        driver.who = crate::fs::Who::Mount;
        (want, got)
    };
    let mut driver = Driver::new(&served.core, !matches!(mode, Mode::Forget), a.clone());
    driver.satellite = Some(served.pid());
    if tight {
        for _ in 0..TIGHT_FILLER {
            let create = Op::Create {
                path: "a",
                mode: 0o644,
            };
            for op in [create, Op::Unlink { path: "a" }] {
                driver
                    .apply(&op)
                    .map_err(|e| format!("filling the node budget, {op:?}: {e}"))?;
            }
        }
    }
    for (i, op) in ops.iter().enumerate() {
        let as_caller = by_caller && !op.by_root();
        let (want, got) = both(op, as_caller, &mut driver);
        if want != got
            && !(tight
                && stale_past_the_table(op, &got, |slot| {
                    both(&Op::FdStat { slot }, as_caller, &mut driver).0
                }))
        {
            return Err(format!(
                "step {i}, {op:?}: on the twin {want:?}, through the core {got:?}"
            ));
        }
        ledger_agrees(&served, &driver).map_err(|e| format!("after step {i}, {op:?}: {e}"))?;
        // A caller's write, truncation or chown may clear setuid/setgid:
        // the modes and owners must agree right after it.
        let check = match op.changes_mode().filter(|_| as_caller) {
            Some(Ok((path, follow))) => Op::Stat { path, follow },
            Some(Err(slot)) => Op::FdStat { slot },
            None => continue,
        };
        let (want, got) = both(&check, true, &mut driver);
        if want != got {
            return Err(format!(
                "after step {i}, {op:?}, {check:?}: on the twin {want:?}, through the core {got:?}"
            ));
        }
    }
    for slot in 0..SLOTS {
        let close = Op::Close { slot };
        let (want, got) = both(&close, by_caller, &mut driver);
        if want != got {
            return Err(format!(
                "closing at the end, {close:?}: on the twin {want:?}, through the core {got:?}"
            ));
        }
    }
    driver.forget_all();
    // What was answered before the container did it (creates sent
    // behind) is in the container once everything before is done, as
    // after an fsync.
    super::through_core::wait(|cb| served.core.settle(cb)).map_err(|e| format!("settle: {e:?}"))?;
    let here = served.core.coherence().counts.absent_here.load(Relaxed);
    ABSENT_HERE.fetch_add(here, Relaxed);
    let here = served.core.coherence().counts.attrs_here.load(Relaxed);
    ATTRS_HERE.fetch_add(here, Relaxed);
    let here = served.core.coherence().counts.removed_here.load(Relaxed);
    REMOVED_HERE.fetch_add(here, Relaxed);
    let want = tree::on_disk(&b);
    if let Some(d) = tree::differences(&want, &tree::on_disk(&a)) {
        return Err(format!("the served tree on disk differs:{d}"));
    }
    let seen = tree::through_core(&served.core)
        .map_err(|e| format!("reading the tree through the core failed: {e}"))?;
    if let Some(d) = tree::differences(&want, &seen) {
        return Err(format!("the tree seen through the core differs:{d}"));
    }
    Ok(())
}

/// The documented limit of a satellite short of descriptors (SEMANTICS,
/// "Limits of the node table"): a node without a descriptor is reopened
/// by parent and name, so a file opened on the host and removed in the
/// container before its first read gives ESTALE there, where a local
/// descriptor still reads the unlinked file. True when `op` is such a
/// read or write, the core said ESTALE and the twin's file (`twin_stat`
/// of the slot) has no name left.
fn stale_past_the_table(
    op: &Op,
    got: &super::ops::Outcome,
    twin_stat: impl FnOnce(usize) -> super::ops::Outcome,
) -> bool {
    let slot = match *op {
        Op::FdRead { slot, .. } | Op::FdWrite { slot, .. } => slot,
        _ => return false,
    };
    got == &Err(dockerfuse_proto::Errno::ESTALE)
        && matches!(twin_stat(slot), Ok(super::ops::Out::Stat(st)) if st.nlink == 0)
}

/// Makes a run's temp dir removable again when dropped.
struct Thaw(std::path::PathBuf);

impl Drop for Thaw {
    fn drop(&mut self) {
        super::twin::thaw(&self.0);
    }
}

/// Whether `Tight` sequences run too (on unless `DOCKERFUSE_MODEL_TIGHT=0`).
pub(crate) fn tight_too() -> bool {
    std::env::var("DOCKERFUSE_MODEL_TIGHT").map_or(true, |v| v != "0")
}

/// Runs `ops` in one mode and panics with the divergence.
pub(crate) fn check_mode(mode: Mode, ops: &[Op]) {
    if let Err(e) = run(mode, Who::Itself, ops) {
        panic!("({mode:?}) {e}");
    }
}

/// Runs `ops` as the caller, forgetting and keeping lookups, and panics
/// with the divergence, for named tests.
pub(crate) fn check_as_caller(ops: &[Op]) {
    for mode in [Mode::Forget, Mode::Keep] {
        if let Err(e) = run(mode, Who::Caller, ops) {
            panic!("({mode:?}, as the caller) {e}");
        }
    }
}

/// Runs `ops` in every mode (`Tight` unless turned off) and panics with the
/// divergence, for named tests.
pub(crate) fn check(ops: &[Op]) {
    check_mode(Mode::Forget, ops);
    check_mode(Mode::Keep, ops);
    if tight_too() {
        check_mode(Mode::Tight, ops);
    }
}
