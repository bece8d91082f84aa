//! What performing requests as a caller costs: round trips of a getattr
//! over pipes to a satellite, plain and wrapped in `Request::As` with 0, 2
//! and 64 supplementary groups, and the host's read of a process's
//! `/proc/<pid>/status` (made once per pid per second).
//!
//!     cargo build --release -p dockerfuse-satellite
//!     cargo run --release -p dockerfuse-satellite --example caller_cost -- \
//!         target/release/dockerfuse-satellite
//!
//! Run as root (the satellite switches identities only then). Prints the
//! best of 7 runs of 20,000 sequential round trips per case, in µs.

use std::io::{BufReader, Read, Write};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use dockerfuse_proto::frame::{decode, encode, read_frame};
use dockerfuse_proto::*;

struct Pipe {
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    buf: Vec<u8>,
    frame: Vec<u8>,
    next: u64,
}

impl Pipe {
    fn call(&mut self, req: &Request<'_>) {
        self.frame.clear();
        encode(self.next, req, &mut self.frame).expect("encodes");
        self.input.write_all(&self.frame).expect("satellite alive");
        let id = read_frame(&mut self.output, &mut self.buf)
            .expect("a frame")
            .expect("not closed");
        assert_eq!(id, self.next);
        self.next += 1;
        let r: Response<'_> = decode(&self.buf).expect("decodes");
        assert!(!matches!(r, Response::Error(_)), "{r:?}");
    }
}

fn main() {
    let sat = std::env::args()
        .nth(1)
        .expect("usage: caller_cost SATELLITE");
    let root = tempfile_dir();
    let mut child = Command::new(sat)
        .arg("--root")
        .arg(&root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("satellite starts");
    let mut p = Pipe {
        input: child.stdin.take().expect("piped"),
        output: BufReader::new(child.stdout.take().expect("piped")),
        buf: Vec::new(),
        frame: Vec::new(),
        next: 1,
    };
    read_frame(&mut p.output, &mut p.buf).expect("hello");
    let mut f = Vec::new();
    let hello = Request::Hello(HostHello {
        protocol: PROTOCOL_VERSION,
        version: "bench".into(),
        max_io: MAX_IO,
    });
    encode(HELLO_ID, &hello, &mut f).expect("encodes");
    p.input.write_all(&f).expect("satellite alive");

    let plain = Request::GetAttr {
        node: ROOT_NODE,
        fh: None,
    };
    let as_with = |n: u32| Request::As {
        uid: 3000,
        gid: 3000,
        groups: (2000..2000 + n).collect(),
        req: Box::new(plain.clone()),
    };
    let cases = [
        ("plain", plain.clone()),
        ("As, 0 groups", as_with(0)),
        ("As, 2 groups", as_with(2)),
        ("As, 64 groups", as_with(64)),
    ];
    let n = 20_000;
    let mut best = [f64::MAX; 4];
    for _ in 0..7 {
        for (i, (_, req)) in cases.iter().enumerate() {
            for _ in 0..500 {
                p.call(req);
            }
            let t = Instant::now();
            for _ in 0..n {
                p.call(req);
            }
            best[i] = best[i].min(t.elapsed().as_secs_f64() * 1e6 / f64::from(n));
        }
    }
    for (i, (name, _)) in cases.iter().enumerate() {
        println!("{name:14} {:7.2} µs per round trip", best[i]);
    }
    let status = format!("/proc/{}/status", child.id());
    let mut best_read = f64::MAX;
    for _ in 0..7 {
        let t = Instant::now();
        for _ in 0..5000 {
            let mut s = String::new();
            std::fs::File::open(&status)
                .expect("the satellite runs")
                .take(16 * 1024)
                .read_to_string(&mut s)
                .expect("readable");
            assert!(s.contains("\nGroups:"));
        }
        best_read = best_read.min(t.elapsed().as_secs_f64() * 1e6 / 5000.0);
    }
    println!("read {status:>9} {best_read:7.2} µs (once per pid per second)");
    drop(p);
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&root);
}

/// A fresh directory for the satellite to serve.
fn tempfile_dir() -> std::path::PathBuf {
    let d = tempfile::tempdir().expect("a temporary directory");
    d.keep()
}
