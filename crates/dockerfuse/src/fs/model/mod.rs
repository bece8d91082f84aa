//! Model test of the filesystem core against the real satellite.
//!
//! Random sequences of operations (create, write, truncate, rename with
//! flags, link, unlink, mkdir/rmdir, symlink, chmod, utimens, user xattrs,
//! fallocate...) on a small namespace run twice: through [`Core`] over a
//! satellite child process serving temp dir A, and directly with libc on
//! temp dir B. Every step must give the same result or errno, and the two
//! trees must agree at the end, read on disk and through the core. Some
//! sequences forget each lookup after its step, others hold them all to
//! the end as the kernel's cache would, some with a satellite whose nodes
//! have no descriptors left ([`run::Mode`]). No root, FUSE or Docker is
//! needed.
//!
//! The satellite's change feed is on, as on a mount: whole directories
//! are listed with readdirplus and creations look their name up first,
//! so lookups of absent names are answered from complete listings on the
//! host; files and directories created inside the container (on temp dir
//! A, not through the core) must then show through the core within a
//! few seconds.
//!
//! A third party in the container also races the mount: between a
//! create's lookup and its arrival in the container (the satellite held
//! stopped meanwhile) it takes the name, removes the parent, chmods it
//! 0555 or makes it immutable, and the twin checks what
//! docs/SEMANTICS.md promises of a create sent behind and refused: its
//! error is the first its descriptor reports, the directory's next fsync
//! reports it too, and the host's view converges to the container's. It
//! rewrites files while their directory is listed (and streamed).
//!
//! A quarter of the sequences run as a caller, as with `--allow-other`
//! ([`identity`]): root plants setuid/setgid files, setgid directories and
//! things owned by others, and the caller (uid 3000, gid 2000, groups 2000
//! and 2001) works on them; owners and modes are compared after each of
//! its writes, truncations, chmods and chowns. Credentials are switched
//! only when the test runs as root; otherwise the caller is the test's
//! own user, and the test says so on stderr.
//!
//! If the temp dir's filesystem refuses `user.` xattrs, both sides must
//! refuse them with the same errno: nothing is skipped.
//!
//! `DOCKERFUSE_MODEL_CASES` sets the number of random sequences (default
//! [`DEFAULT_CASES`]), `DOCKERFUSE_MODEL_OPS` their longest length
//! (default [`DEFAULT_OPS`]); some sequences run on a satellite short of
//! descriptors (`DOCKERFUSE_MODEL_TIGHT=0` leaves them out). A failure is
//! shrunk to a short sequence: keep it as a named test in [`regressions`].
//!
//! Layout: [`ops`] the operations and their generation; [`twin`] and
//! [`through_core`] apply them, one method per operation on each side;
//! [`run`] compares the two; [`satellite`] starts the satellite through
//! the harness of `dockerfuse-testkit` (shared with the satellite's own
//! `tests/over_pipes.rs`). The test is a `#[cfg(test)]` module of `fs`
//! rather than a file in `tests/` because it drives crate-private parts
//! (`Core` and its `Options`, the change feed, the `Rpc` client) that an
//! integration test could reach only if they were made public.
//!
//! [`Core`]: crate::fs::Core

mod identity;
mod ops;
mod regressions;
mod run;
mod satellite;
mod through_core;
mod tree;
mod twin;

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Random sequences in a default run.
const DEFAULT_CASES: u32 = 300;
/// Longest sequence in a default run.
const DEFAULT_OPS: usize = 60;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}")),
        Err(_) => default,
    }
}

/// Whether the temp dirs' filesystem takes `user.` xattrs (either way,
/// both sides must give the same results).
fn user_xattrs() -> String {
    use std::os::unix::ffi::OsStrExt;
    let f = tempfile::NamedTempFile::new().expect("a temp file");
    let p = std::ffi::CString::new(f.path().as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C strings, a one-byte value.
    let r = unsafe {
        libc::setxattr(
            p.as_ptr(),
            c"user.probe".as_ptr(),
            b"1".as_ptr().cast(),
            1,
            0,
        )
    };
    if r == 0 {
        "supported".into()
    } else {
        format!("refused ({})", std::io::Error::last_os_error())
    }
}

#[test]
fn random_sequences_agree_through_the_core_and_directly() {
    let cases = env_or("DOCKERFUSE_MODEL_CASES", DEFAULT_CASES);
    let max_ops = env_or("DOCKERFUSE_MODEL_OPS", DEFAULT_OPS);
    let mut runner = TestRunner::new(Config {
        cases,
        // Shrunk failures are kept as named tests, not in files.
        failure_persistence: None,
        ..Config::default()
    });
    let (total, by_caller, by_root) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    let started = std::time::Instant::now();
    let mut modes = vec![run::Mode::Forget; 4];
    modes.extend([run::Mode::Keep; 3]);
    if run::tight_too() {
        modes.push(run::Mode::Tight);
    }
    let own = (
        proptest::sample::select(modes),
        Just(run::Who::Itself),
        proptest::collection::vec(ops::own_op(), 1..=max_ops),
    );
    let as_caller = (
        proptest::sample::select(vec![run::Mode::Forget, run::Mode::Keep]),
        Just(run::Who::Caller),
        proptest::collection::vec(ops::caller_op(), 1..=max_ops),
    );
    let sequences = prop_oneof![3 => own, 1 => as_caller];
    let result = runner.run(&sequences, |(mode, who, seq)| {
        total.fetch_add(seq.len(), Relaxed);
        if who == run::Who::Caller {
            let setup = seq.iter().filter(|op| op.by_root()).count();
            by_root.fetch_add(setup, Relaxed);
            by_caller.fetch_add(seq.len() - setup, Relaxed);
        }
        run::run(mode, who, &seq).map_err(TestCaseError::fail)
    });
    let ids = identity::Ids::get();
    let absent_here = run::ABSENT_HERE.load(Relaxed);
    let attrs_here = run::ATTRS_HERE.load(Relaxed);
    eprintln!(
        "model: {cases} sequences, {} operations ({} as uid {}, with {} setup steps by root) \
         in {:.1?}, {absent_here} lookups answered \"absent\" and {attrs_here} getattrs \
         answered on the host; user xattrs in temp dirs: {}",
        total.into_inner(),
        by_caller.into_inner(),
        ids.uid(),
        by_root.into_inner(),
        started.elapsed(),
        user_xattrs()
    );
    if !ids.switching {
        // Written past the test harness's capture: this must be seen.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "model: identity switching was not exercised because the test is not root: \
             the caller's sequences ran as the test's own user (uid {})",
            ids.uid()
        );
    }
    if let Err(e) = result {
        panic!("{e}");
    }
    // Listings followed by creations are common enough in a default run
    // that none answered on the host means the path went unexercised.
    if cases >= DEFAULT_CASES / 3 {
        assert!(
            absent_here > 0,
            "no lookup was answered from a complete listing"
        );
        // Stats of what a step looked up or listed before.
        assert!(
            attrs_here > 0,
            "no getattr was answered from the attributes kept on the host"
        );
    }
}
