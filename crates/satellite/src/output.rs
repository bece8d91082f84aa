//! The output stream, shared by the workers and the change feed.
//!
//! Frames are appended to a pending buffer; whoever finds nobody writing
//! becomes the writer and writes everything pending, looping until the
//! buffer is empty, while the others just append and go back to work. So
//! under load several replies leave in one write(), with no extra thread
//! and no hand-off when idle. The buffer is bounded: past [`MAX_PENDING`]
//! a sender waits until the writer has drained it.

use std::io::Write;
use std::sync::{Condvar, Mutex};

/// Bytes that may wait for the writer before senders block.
const MAX_PENDING: usize = 8 << 20;
/// A drained buffer larger than this is not kept for reuse.
const KEEP_CAPACITY: usize = 4 << 20;

struct Pending {
    buf: Vec<u8>,
    spare: Vec<u8>,
    writing: bool,
    failed: bool,
}

/// The satellite's stdout.
pub(crate) struct Output<W> {
    pending: Mutex<Pending>,
    drained: Condvar,
    w: Mutex<W>,
}

impl<W: Write> Output<W> {
    pub(crate) fn new(w: W) -> Self {
        Output {
            pending: Mutex::new(Pending {
                buf: Vec::new(),
                spare: Vec::new(),
                writing: false,
                failed: false,
            }),
            drained: Condvar::new(),
            w: Mutex::new(w),
        }
    }

    /// Runs `f` on the writer once everything pending is written, with
    /// every sender held back until it returns (the switch to another
    /// stream: what was queued goes to the old one, the rest to the new).
    pub(crate) fn switch(&self, f: impl FnOnce(&mut W)) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        while p.writing {
            p = self.drained.wait(p).unwrap_or_else(|e| e.into_inner());
        }
        let mut w = self.w.lock().unwrap_or_else(|e| e.into_inner());
        if !p.buf.is_empty() {
            if w.write_all(&p.buf).and_then(|_| w.flush()).is_err() {
                p.failed = true;
            }
            p.buf.clear();
        }
        f(&mut w);
    }

    /// Sends encoded frames. Returns false once the host is gone.
    pub(crate) fn send(&self, frames: &[u8]) -> bool {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        while p.writing && !p.failed && p.buf.len() > MAX_PENDING {
            p = self.drained.wait(p).unwrap_or_else(|e| e.into_inner());
        }
        if p.failed {
            return false;
        }
        p.buf.extend_from_slice(frames);
        if p.writing {
            return true;
        }
        p.writing = true;
        loop {
            let spare = std::mem::take(&mut p.spare);
            let mut chunk = std::mem::replace(&mut p.buf, spare);
            drop(p);
            let ok = {
                let mut w = self.w.lock().unwrap_or_else(|e| e.into_inner());
                w.write_all(&chunk).and_then(|_| w.flush()).is_ok()
            };
            p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            chunk.clear();
            if chunk.capacity() <= KEEP_CAPACITY {
                p.spare = chunk;
            }
            self.drained.notify_all();
            if !ok {
                p.failed = true;
                p.writing = false;
                return false;
            }
            if p.buf.is_empty() {
                p.writing = false;
                return true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Counts write calls and keeps the bytes; the first call is slow so
    /// that others pile up behind it.
    #[derive(Default)]
    struct Slow {
        bytes: Vec<u8>,
        writes: usize,
    }

    impl Write for Slow {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if self.writes == 0 {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            self.writes += 1;
            self.bytes.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn frames_sent_while_one_is_written_leave_together_and_whole() {
        let out = Arc::new(Output::new(Slow::default()));
        let first = {
            let out = out.clone();
            std::thread::spawn(move || out.send(&[0u8; 10]))
        };
        std::thread::sleep(std::time::Duration::from_millis(10));
        let others: Vec<_> = (1..=8u8)
            .map(|i| {
                let out = out.clone();
                std::thread::spawn(move || out.send(&[i; 10]))
            })
            .collect();
        assert!(first.join().unwrap());
        for t in others {
            assert!(t.join().unwrap());
        }
        let w = out.w.lock().unwrap();
        assert_eq!(w.bytes.len(), 90);
        for piece in w.bytes.chunks(10) {
            assert!(
                piece.iter().all(|&b| b == piece[0]),
                "frames never interleave"
            );
        }
        assert!(w.writes <= 3, "{} writes for 9 frames", w.writes);
    }

    #[test]
    fn a_failed_write_is_reported_to_every_later_sender() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Output::new(Broken);
        assert!(!out.send(b"x"));
        assert!(!out.send(b"y"));
    }
}
