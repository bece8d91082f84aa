//! SIGINT, SIGTERM and SIGHUP as events.
//!
//! The signals are blocked in the main thread before any other thread
//! starts (threads inherit the mask), and one thread takes them with
//! sigwait(), so no handler runs in the middle of anything.

use std::sync::mpsc::Sender;

fn set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset only write the set they are given.
    unsafe {
        let mut s = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut s);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut s, sig);
        }
        s
    }
}

/// Blocks the signals in the calling thread (call first thing in main).
pub(crate) fn block() {
    let s = set();
    // SAFETY: a valid set; the old mask is not needed.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &s, std::ptr::null_mut());
    }
}

/// Sends the number of each signal that arrives to `tx`.
pub(crate) fn forward<T: From<i32> + Send + 'static>(tx: Sender<T>) {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let s = set();
            let mut sig = 0;
            // SAFETY: valid set and out pointer.
            if unsafe { libc::sigwait(&s, &mut sig) } == 0 && tx.send(T::from(sig)).is_err() {
                return;
            }
        })
        .expect("spawn the signal thread");
}

pub(crate) fn name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "signal",
    }
}
