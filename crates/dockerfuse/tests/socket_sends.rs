//! The local channel's client writes frames from the sending thread
//! itself when the socket takes them at once, and hands the rest to its
//! writer task: a sender never blocks on a peer that stops reading, and
//! the peer always gets whole frames in the order they were sent.

use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dockerfuse::rpc::{Rpc, Transport};
use dockerfuse_proto::frame::{decode, encode, read_frame};
use dockerfuse_proto::{Request, Response, SatelliteHello, HELLO_ID, PROTOCOL_VERSION};

#[test]
fn a_peer_that_stops_reading_never_blocks_a_sender_and_gets_whole_frames_in_order() {
    let (ours, mut peer) = UnixStream::pair().unwrap();
    let started = Rpc::start_socket(ours, Duration::from_secs(60)).unwrap();
    std::thread::spawn(move || smol::block_on(started.tasks));
    let rpc = started.rpc;
    let h = SatelliteHello {
        protocol: PROTOCOL_VERSION,
        version: "x".into(),
        arch: "x86_64".into(),
        uid: 0,
        gid: 0,
        pid: 1,
        max_io: 1 << 20,
    };
    let mut frame = Vec::new();
    encode(HELLO_ID, &Response::Hello(h), &mut frame).unwrap();
    peer.write_all(&frame).unwrap();

    // 48 MiB of writes while the peer reads nothing: far more than the
    // socket holds, so most of them queue; none may block the sender.
    let (tx, rx) = mpsc::channel();
    let t0 = Instant::now();
    let n = 48u64;
    for i in 0..n {
        let data = vec![i as u8; 1 << 20];
        let req = Request::Write {
            fh: i,
            offset: 0,
            data: data.into(),
        };
        let tx = tx.clone();
        rpc.call(&req, Box::new(move |r| tx.send((i, r.is_ok())).unwrap()));
    }
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "sending took {:?}: a sender blocked",
        t0.elapsed()
    );
    // Now the peer reads: whole frames, in order, each answered.
    let mut input = BufReader::new(peer.try_clone().unwrap());
    let mut buf = Vec::new();
    let mut last = 0;
    for i in 0..n {
        let id = read_frame(&mut input, &mut buf).unwrap().unwrap();
        assert!(id > last, "frame {id} after {last}: out of order");
        last = id;
        match decode::<Request<'_>>(&buf).unwrap() {
            Request::Write { fh, data, .. } => {
                assert_eq!(fh, i);
                assert!(data.len() == 1 << 20 && data.iter().all(|&b| b == i as u8));
            }
            other => panic!("expected a write, got {other:?}"),
        }
        frame.clear();
        encode(id, &Response::Written(1 << 20), &mut frame).unwrap();
        peer.write_all(&frame).unwrap();
    }
    let mut answered: Vec<u64> = (0..n)
        .map(|_| {
            let (i, ok) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert!(ok, "write {i} failed");
            i
        })
        .collect();
    answered.sort();
    assert_eq!(answered, (0..n).collect::<Vec<_>>());
}
