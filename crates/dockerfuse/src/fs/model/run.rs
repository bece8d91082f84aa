//! Runs one sequence on both sides and compares them: the outcome and
//! errno of every step, then the whole trees.

use super::direct::Direct;
use super::ops::{Op, SLOTS};
use super::satellite::Served;
use super::through_core::Driver;
use super::tree;

/// Runs `ops` through the core (over a real satellite serving temp dir A)
/// and directly on temp dir B; describes the first divergence. With
/// `keep`, the lookups of all steps are held until the end.
pub(crate) fn run(keep: bool, ops: &[Op]) -> Result<(), String> {
    let tmp = tempfile::Builder::new()
        .prefix("dockerfuse-model-")
        .tempdir()
        .expect("a temp dir");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir(&a).expect("create A");
    std::fs::create_dir(&b).expect("create B");
    let served = Served::start(&a);
    let mut twin = Direct::new(b.clone());
    let mut driver = Driver::new(&served.core, keep);
    for (i, op) in ops.iter().enumerate() {
        let want = twin.apply(op);
        let got = driver.apply(op);
        if want != got {
            return Err(format!(
                "step {i}, {op:?}: directly {want:?}, through the core {got:?}"
            ));
        }
    }
    for slot in 0..SLOTS {
        let close = Op::Close { slot };
        let (want, got) = (twin.apply(&close), driver.apply(&close));
        if want != got {
            return Err(format!(
                "closing at the end, {close:?}: directly {want:?}, through the core {got:?}"
            ));
        }
    }
    driver.forget_all();
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

/// Runs `ops` both ways (lookups forgotten after each step, and held to
/// the end) and panics with the divergence, for named tests.
pub(crate) fn check(ops: &[Op]) {
    for keep in [false, true] {
        if let Err(e) = run(keep, ops) {
            panic!("(lookups held to the end: {keep}) {e}");
        }
    }
}
