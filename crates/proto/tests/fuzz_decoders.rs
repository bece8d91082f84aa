//! Property tests over arbitrary bytes: the frame decoder and the message
//! decoders of both sides never panic, never hand out a frame above the
//! limit, and never hold more than what they were given. Failures that
//! proptest finds are kept in `proptest-regressions/` and replayed first.

use dockerfuse_proto::frame::{decode, encode, FrameDecoder, HEADER_LEN, MAX_PAYLOAD};
use dockerfuse_proto::{Request, Response};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_the_message_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode::<Request<'_>>(&bytes);
        let _ = decode::<Response<'_>>(&bytes);
    }

    #[test]
    fn arbitrary_streams_never_panic_the_frame_decoder(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
        chunk in 1usize..300,
    ) {
        let mut d = FrameDecoder::new();
        let mut fed = 0usize;
        'outer: for piece in bytes.chunks(chunk) {
            d.push(piece);
            fed += piece.len();
            loop {
                match d.next_frame() {
                    Ok(Some((_, payload))) => {
                        prop_assert!(payload.len() <= MAX_PAYLOAD as usize);
                        let _ = decode::<Response<'_>>(payload);
                    }
                    Ok(None) => break,
                    Err(_) => break 'outer,
                }
            }
            prop_assert!(d.pending() <= fed);
        }
    }

    #[test]
    fn names_and_data_of_any_bytes_round_trip(
        name in proptest::collection::vec(any::<u8>(), 0..300),
        data in proptest::collection::vec(any::<u8>(), 0..3000),
        id in any::<u64>(),
        split in 0usize..4000,
    ) {
        let reqs = [
            Request::Lookup { parent: 1, name: name.as_slice().into() },
            Request::Write { fh: 2, offset: 3, data: data.as_slice().into() },
        ];
        let mut stream = Vec::new();
        for r in &reqs {
            encode(id, r, &mut stream).unwrap();
        }
        let mut d = FrameDecoder::new();
        let cut = split.min(stream.len());
        d.push(&stream[..cut]);
        d.push(&stream[cut..]);
        for want in &reqs {
            let (got_id, payload) = d.next_frame().unwrap().expect("a whole frame");
            prop_assert_eq!(got_id, id);
            prop_assert!(payload.len() + HEADER_LEN <= stream.len());
            let got: Request<'_> = decode(payload).unwrap();
            prop_assert_eq!(&got, want);
        }
    }
}
