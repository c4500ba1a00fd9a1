//! The recording file's framing: a header, then records that each carry their length
//! and a CRC-32 of their bytes, so that a reader can tell a whole record from one cut
//! short by a crash.
//!
//! ```text
//! header   "TCPSCREC" (8 bytes), version: u32 LE
//! record   length: u32 LE, crc32(payload): u32 LE, payload (length bytes)
//! ```
//!
//! Records are only ever appended. A writer that dies mid-record leaves a torn tail: a
//! short length, a short payload, or a payload whose CRC does not match; a file
//! extended with zeros (preallocated, sparse, or a crash that left the size grown but
//! the data unwritten) has a zero length where a record would start, which is a tear
//! too, since no record is empty. A reader
//! stops there and says where; everything before it is intact. This module knows
//! bytes, not what the payloads mean.

use std::io::{self, Read};

pub const MAGIC: &[u8; 8] = b"TCPSCREC";
/// Raised on any change a version-1 reader could not read.
pub const VERSION: u32 = 1;
pub const HEADER_BYTES: usize = 12;
pub const FRAME_HEADER_BYTES: usize = 8;
/// The largest payload a reader accepts, so that a corrupt length cannot make it
/// allocate gigabytes. A poll of a million sockets is about 72 MB.
pub const MAX_PAYLOAD_BYTES: u32 = 512 * 1024 * 1024;

/// The file header.
pub fn header() -> [u8; HEADER_BYTES] {
    let mut header = [0u8; HEADER_BYTES];
    header[..8].copy_from_slice(MAGIC);
    header[8..].copy_from_slice(&VERSION.to_le_bytes());
    header
}

/// Appends one framed record holding `payload` to `out`.
pub fn append_frame(payload: &[u8], out: &mut Vec<u8>) {
    let length = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&crc32(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Why a file cannot be read as a recording at all.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error(
        "not a tcpscope recording (it does not start with {:?})",
        String::from_utf8_lossy(MAGIC)
    )]
    NotARecording,
    #[error("a recording of format version {0}; this tcpscope reads version {VERSION}")]
    Version(u32),
    #[error("reading the recording's header: {0}")]
    Io(#[from] io::Error),
}

/// What the next read found.
#[derive(Debug, PartialEq, Eq)]
pub enum Next<'a> {
    Frame(&'a [u8]),
    /// The file ends cleanly after the last record.
    End,
    /// The record starting at `offset` is incomplete or damaged: nothing from there on
    /// can be trusted.
    Torn {
        offset: u64,
        reason: &'static str,
    },
}

/// Reads framed records one by one.
pub struct FrameReader<R> {
    inner: R,
    /// Byte offset of the next record.
    offset: u64,
    payload: Vec<u8>,
}

impl<R: Read> FrameReader<R> {
    /// Reads and checks the header.
    pub fn open(mut inner: R) -> Result<FrameReader<R>, HeaderError> {
        let mut header = [0u8; HEADER_BYTES];
        if read_up_to(&mut inner, &mut header)? < HEADER_BYTES || &header[..8] != MAGIC {
            return Err(HeaderError::NotARecording);
        }
        let version = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
        if version != VERSION {
            return Err(HeaderError::Version(version));
        }
        Ok(FrameReader {
            inner,
            offset: HEADER_BYTES as u64,
            payload: Vec::new(),
        })
    }

    /// The byte offset where the next record starts (after a clean end: the file's
    /// length; after a tear: where the tear is).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next record. I/O errors other than the end of the file are errors; a
    /// record cut short or damaged is [`Next::Torn`], and so is everything after it.
    pub fn next_frame(&mut self) -> io::Result<Next<'_>> {
        let mut frame_header = [0u8; FRAME_HEADER_BYTES];
        let got = read_up_to(&mut self.inner, &mut frame_header)?;
        if got == 0 {
            return Ok(Next::End);
        }
        let torn = |reason| Next::Torn {
            offset: self.offset,
            reason,
        };
        if got < FRAME_HEADER_BYTES {
            return Ok(torn("the last record's header is cut short"));
        }
        let length = u32::from_le_bytes([
            frame_header[0],
            frame_header[1],
            frame_header[2],
            frame_header[3],
        ]);
        let crc = u32::from_le_bytes([
            frame_header[4],
            frame_header[5],
            frame_header[6],
            frame_header[7],
        ]);
        if length == 0 {
            // Every payload holds at least its kind, and an all-zero frame header
            // would otherwise pass (the CRC-32 of nothing is 0): a tail of zeros (a
            // file extended, preallocated or sparse) is a tear, for the reader and
            // for the recorder that cuts it off before appending.
            return Ok(torn("a zero-filled tail"));
        }
        if length > MAX_PAYLOAD_BYTES {
            return Ok(torn("a record claims an impossible length"));
        }
        if read_payload(&mut self.inner, &mut self.payload, length as usize)? < length as usize {
            return Ok(torn("the last record is cut short"));
        }
        if crc32(&self.payload) != crc {
            return Ok(torn("a record's checksum does not match its bytes"));
        }
        self.offset += (FRAME_HEADER_BYTES + self.payload.len()) as u64;
        Ok(Next::Frame(&self.payload))
    }
}

/// Reads up to `length` bytes into `payload` (emptied first), growing it only as bytes
/// arrive, so that a length field claiming more than the file holds allocates no more
/// than what is there. Returns how many bytes it read.
fn read_payload(input: &mut impl Read, payload: &mut Vec<u8>, length: usize) -> io::Result<usize> {
    const CHUNK: usize = 64 * 1024;
    payload.clear();
    while payload.len() < length {
        let filled = payload.len();
        let wanted = (length - filled).min(CHUNK);
        payload.resize(filled + wanted, 0);
        let got = read_up_to(input, &mut payload[filled..])?;
        payload.truncate(filled + got);
        if got < wanted {
            break;
        }
    }
    Ok(payload.len())
}

/// Reads until `buffer` is full or the input ends; returns how many bytes it read.
fn read_up_to(input: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match input.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// CRC-32 (IEEE 802.3, as in zlib and gzip), bit by bit over a table built at compile
/// time.
pub fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut crc = i as u32;
            let mut bit = 0;
            while bit < 8 {
                crc = if crc & 1 != 0 {
                    0xedb8_8320 ^ (crc >> 1)
                } else {
                    crc >> 1
                };
                bit += 1;
            }
            table[i] = crc;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &byte in bytes {
        crc = TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(payloads: &[&[u8]]) -> Vec<u8> {
        let mut bytes = header().to_vec();
        for payload in payloads {
            append_frame(payload, &mut bytes);
        }
        bytes
    }

    fn read_all(bytes: &[u8]) -> (Vec<Vec<u8>>, Option<u64>) {
        let mut reader = FrameReader::open(bytes).unwrap();
        let mut frames = Vec::new();
        loop {
            match reader.next_frame().unwrap() {
                Next::Frame(frame) => frames.push(frame.to_vec()),
                Next::End => return (frames, None),
                Next::Torn { offset, .. } => return (frames, Some(offset)),
            }
        }
    }

    #[test]
    fn crc32_is_the_zlib_checksum() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn records_read_back_in_order_and_the_end_is_clean() {
        let bytes = file(&[b"one", b"2", b"three"]);
        let (frames, torn) = read_all(&bytes);
        assert_eq!(frames, [b"one".to_vec(), b"2".to_vec(), b"three".to_vec()]);
        assert_eq!(torn, None);
    }

    #[test]
    fn a_file_cut_anywhere_inside_its_last_record_reads_up_to_that_record() {
        let whole = file(&[b"first", b"second record"]);
        let second_starts = (HEADER_BYTES + FRAME_HEADER_BYTES + 5) as u64;
        for cut in second_starts as usize + 1..whole.len() {
            let (frames, torn) = read_all(&whole[..cut]);
            assert_eq!(frames, [b"first".to_vec()], "cut at {cut}");
            assert_eq!(torn, Some(second_starts), "cut at {cut}");
        }
        assert_eq!(read_all(&whole[..second_starts as usize]).1, None);
    }

    #[test]
    fn a_damaged_byte_is_caught_by_the_checksum() {
        let mut bytes = file(&[b"first", b"second"]);
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        let (frames, torn) = read_all(&bytes);
        assert_eq!(frames.len(), 1);
        assert!(torn.is_some());
    }

    #[test]
    fn an_impossible_length_is_a_tear_not_an_allocation() {
        let mut bytes = header().to_vec();
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(read_all(&bytes), (vec![], Some(HEADER_BYTES as u64)));
    }

    #[test]
    fn a_zero_filled_tail_is_a_tear_where_the_zeros_start() {
        let mut bytes = file(&[b"first"]);
        let zeros_start = bytes.len() as u64;
        bytes.extend_from_slice(&[0u8; 8]);
        append_frame(b"behind the zeros", &mut bytes);
        assert_eq!(
            read_all(&bytes),
            (vec![b"first".to_vec()], Some(zeros_start))
        );
    }

    #[test]
    fn a_length_larger_than_the_bytes_left_allocates_only_what_is_there() {
        let mut bytes = header().to_vec();
        bytes.extend_from_slice(&(MAX_PAYLOAD_BYTES).to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(b"short");
        let mut reader = FrameReader::open(&bytes[..]).unwrap();
        assert!(matches!(reader.next_frame().unwrap(), Next::Torn { .. }));
        assert!(
            reader.payload.capacity() < 128 * 1024,
            "{} bytes allocated for 5 present",
            reader.payload.capacity()
        );
    }

    #[test]
    fn a_file_that_is_not_a_recording_or_is_too_new_is_refused() {
        assert!(matches!(
            FrameReader::open(&b"{\"schema\""[..]),
            Err(HeaderError::NotARecording)
        ));
        assert!(matches!(
            FrameReader::open(&b""[..]),
            Err(HeaderError::NotARecording)
        ));
        let mut newer = header();
        newer[8] = 2;
        assert!(matches!(
            FrameReader::open(&newer[..]),
            Err(HeaderError::Version(2))
        ));
    }
}
