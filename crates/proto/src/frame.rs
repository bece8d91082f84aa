//! Framing: `u32 payload length | u64 id | payload`, little endian.
//!
//! The length is checked against [`MAX_PAYLOAD`] before anything is
//! allocated from it, and payloads are decoded only from a complete frame
//! buffer, so every length speedy reads inside a payload is bounded by the
//! frame that carries it.

use std::io::{self, Read};

use speedy::{LittleEndian, Readable, Writable};

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 12;

/// Largest payload either side accepts: the largest read or write plus
/// room for the message around it.
pub const MAX_PAYLOAD: u32 = crate::MAX_IO + 64 * 1024;

/// What can go wrong with a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The header announces a payload larger than [`MAX_PAYLOAD`].
    TooLarge(u32),
    /// The payload does not decode as the expected message.
    Decode(String),
    /// The stream ended inside a frame.
    Truncated,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLarge(n) => {
                write!(f, "frame of {n} bytes exceeds the limit of {MAX_PAYLOAD}")
            }
            FrameError::Decode(e) => write!(f, "undecodable payload: {e}"),
            FrameError::Truncated => write!(f, "stream ended inside a frame"),
        }
    }
}

impl std::error::Error for FrameError {}

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FrameHeader {
    len: u32,
    id: u64,
}

impl FrameHeader {
    /// Parses and checks a header.
    fn parse(bytes: &[u8; HEADER_LEN]) -> Result<FrameHeader, FrameError> {
        let len = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes"));
        let id = u64::from_le_bytes(bytes[4..12].try_into().expect("8 bytes"));
        if len > MAX_PAYLOAD {
            return Err(FrameError::TooLarge(len));
        }
        Ok(FrameHeader { len, id })
    }
}

/// Appends one frame holding `msg` to `out`.
pub fn encode<T>(id: u64, msg: &T, out: &mut Vec<u8>) -> Result<(), FrameError>
where
    T: Writable<LittleEndian>,
{
    let size = msg
        .bytes_needed()
        .map_err(|e| FrameError::Decode(e.to_string()))?;
    let len = u32::try_from(size)
        .ok()
        .filter(|&n| n <= MAX_PAYLOAD)
        .ok_or(FrameError::TooLarge(u32::MAX))?;
    let start = out.len();
    out.reserve(HEADER_LEN + size);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.resize(start + HEADER_LEN + size, 0);
    msg.write_to_buffer(&mut out[start + HEADER_LEN..])
        .map_err(|e| FrameError::Decode(e.to_string()))?;
    Ok(())
}

/// Decodes a payload taken from a complete frame.
pub fn decode<'a, T>(payload: &'a [u8]) -> Result<T, FrameError>
where
    T: Readable<'a, LittleEndian>,
{
    T::read_from_buffer(payload).map_err(|e| FrameError::Decode(e.to_string()))
}

/// Reads one frame from a blocking reader into `buf` (reused between
/// calls). Returns `Ok(None)` on a clean end of stream between frames.
pub fn read_frame<R: Read>(r: &mut R, buf: &mut Vec<u8>) -> io::Result<Option<u64>> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    FrameError::Truncated,
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let h =
        FrameHeader::parse(&header).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    buf.clear();
    buf.resize(h.len as usize, 0);
    r.read_exact(buf)?;
    Ok(Some(h.id))
}

/// Incremental decoder for a byte stream that arrives in arbitrary chunks
/// (the host side: the exec's stdout comes in Docker's multiplexed pieces,
/// which do not line up with frames).
#[derive(Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > (1 << 20) {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, if one is buffered. The header is checked
    /// as soon as its 12 bytes are in, so an oversize length is refused
    /// before its payload is waited for or buffered.
    pub fn next_frame(&mut self) -> Result<Option<(u64, &[u8])>, FrameError> {
        let avail = &self.buf[self.start..];
        if avail.len() < HEADER_LEN {
            return Ok(None);
        }
        let h = FrameHeader::parse(avail[..HEADER_LEN].try_into().expect("12 bytes"))?;
        let total = HEADER_LEN + h.len as usize;
        if avail.len() < total {
            return Ok(None);
        }
        let begin = self.start + HEADER_LEN;
        self.start += total;
        Ok(Some((h.id, &self.buf[begin..begin + h.len as usize])))
    }

    /// Bytes buffered but not yet returned as frames.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{Request, Response};

    fn frame_of(id: u64, req: &Request<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        encode(id, req, &mut out).unwrap();
        out
    }

    #[test]
    fn oversize_header_is_refused_before_payload() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&(MAX_PAYLOAD + 1).to_le_bytes());
        bytes.extend_from_slice(&7u64.to_le_bytes());
        let mut d = FrameDecoder::new();
        d.push(&bytes);
        assert_eq!(d.next_frame(), Err(FrameError::TooLarge(MAX_PAYLOAD + 1)));
        let mut r = &bytes[..];
        let mut buf = Vec::new();
        let err = read_frame(&mut r, &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(
            buf.capacity() < 1024,
            "nothing was allocated for the payload"
        );
    }

    #[test]
    fn frames_survive_any_chunking() {
        let mut stream = Vec::new();
        let reqs: Vec<Request<'_>> = vec![
            Request::Lookup {
                parent: 1,
                name: b"etc".as_slice().into(),
            },
            Request::Write {
                fh: 3,
                offset: 10,
                data: vec![7u8; 5000].into(),
            },
            Request::Shutdown,
        ];
        for (i, r) in reqs.iter().enumerate() {
            stream.extend(frame_of(i as u64 + 1, r));
        }
        for chunk in [1usize, 3, 11, 12, 13, 4096, stream.len()] {
            let mut d = FrameDecoder::new();
            let mut seen = Vec::new();
            for piece in stream.chunks(chunk) {
                d.push(piece);
                while let Some((id, payload)) = d.next_frame().unwrap() {
                    let r: Request<'_> = decode(payload).unwrap();
                    seen.push((id, r.into_owned()));
                }
            }
            assert_eq!(d.pending(), 0);
            let want: Vec<_> = reqs
                .iter()
                .enumerate()
                .map(|(i, r)| (i as u64 + 1, r.clone().into_owned()))
                .collect();
            assert_eq!(seen, want, "chunk size {chunk}");
        }
    }

    #[test]
    fn truncated_stream_is_an_error_not_a_panic() {
        let f = frame_of(1, &Request::GetAttr { node: 1, fh: None });
        for cut in 1..f.len() {
            let mut r = &f[..cut];
            let mut buf = Vec::new();
            assert!(read_frame(&mut r, &mut buf).is_err(), "cut at {cut}");
            let mut d = FrameDecoder::new();
            d.push(&f[..cut]);
            assert_eq!(d.next_frame(), Ok(None));
        }
        let mut empty: &[u8] = &[];
        assert!(read_frame(&mut empty, &mut Vec::new()).unwrap().is_none());
    }

    #[test]
    fn garbage_payloads_decode_to_errors() {
        // A deterministic pseudo-random generator is enough to walk many
        // shapes of garbage without a dependency.
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for len in 0..2000usize {
            let mut bytes = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                bytes.push(x as u8);
            }
            let _ = decode::<Request<'_>>(&bytes);
            let _ = decode::<Response<'_>>(&bytes);
        }
    }

    #[test]
    fn huge_vector_counts_do_not_allocate() {
        // Response::Dir with a count of u32::MAX entries in a 9-byte payload.
        let mut payload = Vec::new();
        let mut probe = Vec::new();
        encode(0, &Response::Dir(vec![]), &mut probe).unwrap();
        let tag = &probe[HEADER_LEN..HEADER_LEN + 4];
        payload.extend_from_slice(tag);
        payload.extend_from_slice(&u32::MAX.to_le_bytes());
        payload.push(0);
        assert!(decode::<Response<'_>>(&payload).is_err());
    }
}
