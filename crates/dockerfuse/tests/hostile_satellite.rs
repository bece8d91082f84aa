//! The satellite is not trusted: a peer speaking the protocol badly must
//! make the client fail cleanly — no panic, no hang, no unbounded memory,
//! EIO for the requests concerned.
//!
//! The RPC client is wired to in-memory streams standing in for the
//! exec's stdout (what a hostile satellite sends) and stdin (what the
//! client sends, decoded here to learn the request ids).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bollard::container::LogOutput;
use bytes::Bytes;
use dockerfuse::rpc::{Rpc, Transport};
use dockerfuse_proto::frame::{encode, FrameDecoder, MAX_PAYLOAD};
use dockerfuse_proto::{Errno, Request, Response, SatelliteHello, HELLO_ID, PROTOCOL_VERSION};

/// Collects what the client writes to the satellite's stdin.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl tokio::io::AsyncWrite for Sink {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

type Chunk = Result<LogOutput, bollard::errors::Error>;

struct Peer {
    rpc: Rpc,
    out: smol::channel::Sender<Chunk>,
    sent: Sink,
    closed: smol::channel::Receiver<String>,
}

impl Peer {
    fn start(stall: Duration) -> Peer {
        let (out, rx) = smol::channel::unbounded::<Chunk>();
        let sent = Sink::default();
        let started = Rpc::start(Box::pin(rx), Box::pin(sent.clone()), stall);
        std::thread::spawn(move || smol::block_on(started.tasks));
        let p = Peer {
            rpc: started.rpc,
            out,
            sent,
            closed: started.closed,
        };
        let mut hello = Vec::new();
        let h = SatelliteHello {
            protocol: PROTOCOL_VERSION,
            version: "x".into(),
            arch: "x86_64".into(),
            uid: 0,
            gid: 0,
            pid: 1,
            max_io: 1 << 20,
        };
        encode(HELLO_ID, &Response::Hello(h), &mut hello).unwrap();
        p.feed(hello);
        p
    }

    fn feed(&self, bytes: Vec<u8>) {
        let _ = self.out.try_send(Ok(LogOutput::StdOut {
            message: Bytes::from(bytes),
        }));
    }

    /// Ids of the requests the client has sent so far.
    fn sent_ids(&self) -> Vec<u64> {
        let mut d = FrameDecoder::new();
        d.push(&self.sent.0.lock().unwrap());
        let mut ids = Vec::new();
        while let Ok(Some((id, _))) = d.next_frame() {
            ids.push(id);
        }
        ids
    }

    fn wait_sent(&self, n: usize) -> Vec<u64> {
        for _ in 0..200 {
            let ids = self.sent_ids();
            if ids.len() >= n {
                return ids;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("client did not send {n} frames");
    }
}

type Outcome = Arc<Mutex<Vec<Result<String, Errno>>>>;

fn call(p: &Peer, out: &Outcome) {
    let o = out.clone();
    p.rpc.call(
        &Request::GetAttr { node: 1, fh: None },
        Box::new(move |r| o.lock().unwrap().push(r.map(|r| format!("{r:?}")))),
    );
}

fn wait_for(out: &Outcome, n: usize, limit: Duration) -> Vec<Result<String, Errno>> {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if out.lock().unwrap().len() >= n {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    out.lock().unwrap().clone()
}

fn reply(id: u64, r: &Response<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    encode(id, r, &mut v).unwrap();
    v
}

#[test]
fn oversize_frame_ends_the_connection_and_fails_everything_with_eio() {
    let p = Peer::start(Duration::from_secs(30));
    let out = Outcome::default();
    call(&p, &out);
    p.wait_sent(1);
    let mut evil = Vec::new();
    evil.extend_from_slice(&(MAX_PAYLOAD + 1).to_le_bytes());
    evil.extend_from_slice(&1u64.to_le_bytes());
    p.feed(evil);
    assert_eq!(
        wait_for(&out, 1, Duration::from_secs(5)),
        vec![Err(Errno::EIO)]
    );
    let why = smol::block_on(p.closed.recv()).unwrap();
    assert!(why.contains("protocol error"), "{why}");
    // Later requests fail at once, without waiting.
    call(&p, &out);
    assert_eq!(out.lock().unwrap().len(), 2);
    assert_eq!(out.lock().unwrap()[1], Err(Errno::EIO));
}

#[test]
fn unknown_and_duplicate_replies_are_dropped() {
    let p = Peer::start(Duration::from_secs(30));
    let out = Outcome::default();
    call(&p, &out);
    let id = p.wait_sent(1)[0];
    p.feed(reply(id + 1000, &Response::Ok));
    p.feed(reply(id, &Response::Error(libc::ENOENT)));
    p.feed(reply(id, &Response::Error(libc::EACCES)));
    let got = wait_for(&out, 1, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        got,
        vec![Ok(format!("{:?}", Response::Error(libc::ENOENT)))]
    );
    assert_eq!(
        out.lock().unwrap().len(),
        1,
        "the duplicate completed nothing"
    );
    assert!(!p.rpc.is_closed());
}

#[test]
fn undecodable_reply_fails_only_its_request() {
    let p = Peer::start(Duration::from_secs(30));
    let out = Outcome::default();
    call(&p, &out);
    call(&p, &out);
    let ids = p.wait_sent(2);
    let mut garbage = Vec::new();
    garbage.extend_from_slice(&4u32.to_le_bytes());
    garbage.extend_from_slice(&ids[0].to_le_bytes());
    garbage.extend_from_slice(&[0xff; 4]);
    p.feed(garbage);
    p.feed(reply(ids[1], &Response::Ok));
    let got = wait_for(&out, 2, Duration::from_secs(5));
    assert_eq!(got[0], Err(Errno::EIO));
    assert_eq!(got[1], Ok("Ok".into()));
    assert!(!p.rpc.is_closed());
}

#[test]
fn slow_drip_still_completes() {
    let p = Peer::start(Duration::from_secs(30));
    let out = Outcome::default();
    call(&p, &out);
    let id = p.wait_sent(1)[0];
    for b in reply(id, &Response::Written(7)) {
        p.feed(vec![b]);
    }
    assert_eq!(
        wait_for(&out, 1, Duration::from_secs(5)),
        vec![Ok("Written(7)".into())]
    );
}

#[test]
fn a_silent_satellite_gets_eio_after_the_stall_limit_and_late_replies_are_dropped() {
    let p = Peer::start(Duration::from_millis(400));
    let out = Outcome::default();
    let t = std::time::Instant::now();
    call(&p, &out);
    let id = p.wait_sent(1)[0];
    assert_eq!(
        wait_for(&out, 1, Duration::from_secs(5)),
        vec![Err(Errno::EIO)]
    );
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // The watchdog probed before giving up.
    assert!(p.sent_ids().len() >= 2, "a probe was sent");
    p.feed(reply(id, &Response::Ok));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(out.lock().unwrap().len(), 1);
    assert!(!p.rpc.is_closed(), "a stall does not end the connection");
}

#[test]
fn a_satellite_that_answers_probes_is_not_a_stall() {
    // Like a read from an empty FIFO: one request waits, but the satellite
    // answers everything else.
    let p = Peer::start(Duration::from_millis(300));
    let out = Outcome::default();
    call(&p, &out);
    let first = p.wait_sent(1)[0];
    let mut answered = vec![first];
    let t = std::time::Instant::now();
    while t.elapsed() < Duration::from_millis(1500) {
        for id in p.sent_ids() {
            if !answered.contains(&id) {
                answered.push(id);
                p.feed(reply(id, &Response::Ok));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        out.lock().unwrap().is_empty(),
        "the waiting request was not failed"
    );
    p.feed(reply(first, &Response::Ok));
    assert_eq!(
        wait_for(&out, 1, Duration::from_secs(5)),
        vec![Ok("Ok".into())]
    );
}

#[test]
fn end_of_stream_fails_pending_requests() {
    let p = Peer::start(Duration::from_secs(30));
    let out = Outcome::default();
    call(&p, &out);
    p.wait_sent(1);
    p.out.close();
    assert_eq!(
        wait_for(&out, 1, Duration::from_secs(5)),
        vec![Err(Errno::EIO)]
    );
    assert!(smol::block_on(p.closed.recv()).unwrap().contains("ended"));
}

#[test]
fn unframed_console_output_is_reported_not_parsed() {
    let p = Peer::start(Duration::from_secs(30));
    let _ = p.out.try_send(Ok(LogOutput::Console {
        message: Bytes::from_static(b"OCI runtime exec failed: exec format error"),
    }));
    let why = smol::block_on(p.closed.recv()).unwrap();
    assert!(why.contains("exec format error"), "{why}");
}

#[test]
fn runtime_error_text_on_stdout_before_the_hello_is_reported_as_such() {
    let (out, rx) = smol::channel::unbounded::<Chunk>();
    let started = Rpc::start(
        Box::pin(rx),
        Box::pin(Sink::default()),
        Duration::from_secs(30),
    );
    std::thread::spawn(move || smol::block_on(started.tasks));
    let _ = out.try_send(Ok(LogOutput::StdOut {
        message: Bytes::from_static(
            b"OCI runtime exec failed: exec failed: exec format error: unknown\r\n",
        ),
    }));
    let why = smol::block_on(started.closed.recv()).unwrap();
    assert!(why.contains("exec format error"), "{why}");
}

#[test]
fn change_frames_reach_the_feed_in_stream_order_and_never_end_the_connection() {
    use dockerfuse_proto::{Change, EVENT_ID};
    let p = Peer::start(Duration::from_secs(30));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let out = Outcome::default();
    let o = out.clone();
    p.rpc.on_events(Box::new(move |payload| {
        // The reply that follows in the stream has not completed yet.
        s.lock()
            .unwrap()
            .push((payload.len(), o.lock().unwrap().len()));
    }));
    call(&p, &out);
    let id = p.wait_sent(1)[0];
    let mut bytes = reply(EVENT_ID, &Response::Changes(vec![Change::Attr { node: 5 }]));
    bytes.extend(reply(EVENT_ID, &Response::Error(1))); // not changes: the feed's to judge
    let mut garbage = Vec::new();
    garbage.extend_from_slice(&7u32.to_le_bytes());
    garbage.extend_from_slice(&EVENT_ID.to_le_bytes());
    garbage.extend_from_slice(&[0xff; 7]);
    bytes.extend(garbage);
    bytes.extend(reply(id, &Response::Ok));
    p.feed(bytes);
    assert_eq!(wait_for(&out, 1, Duration::from_secs(5)).len(), 1);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.iter().all(|&(_, done)| done == 0), "{seen:?}");
    assert!(!p.rpc.is_closed());
}
