//! The sock_diag dump loop under faults, injected where the bytes come in: a test
//! stands between the real kernel and the parser ([`SockDiag::interpose`]) and flags,
//! cuts or replaces the kernel's own replies about real sockets in a lab namespace.
//! Every outcome is checked against `ss` in the same namespace.
//!
//! | fault | outcome |
//! |---|---|
//! | `NLM_F_DUMP_INTR` once | the dump is repeated; the result is what `ss` lists |
//! | `NLM_F_DUMP_INTR` every time | `Interrupted` after 4 dumps, "try again"; nothing kept |
//! | `NLMSG_ERROR` ENOENT / EOPNOTSUPP | `Refused`, naming CONFIG_INET_DIAG and tcp_diag |
//! | EOPNOTSUPP for the one-walk request only | two walks, one per family; same result |
//! | `NLMSG_ERROR` part-way | `Failed`; nothing kept; the next dump is whole |
//! | a reply cut short | `Malformed`; nothing kept; the next dump is whole |
//! | EINTR from `recv` | retried; the result is what `ss` lists |

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail, ensure};
use tcpscope::kernel::sockdiag::{DumpError, DumpRequest, Interposer, SockDiag};
use tcpscope::snapshot::SocketRecord;

use crate::support::entries;
use crate::support::lab::{Entry, Lab, SETTLE, TcpState};

const NLMSG_HEADER_BYTES: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_DUMP_INTR: u16 = 0x10;
/// The reply type of the one-walk `TCPDIAG_GETSOCK` request.
const TCPDIAG_GETSOCK: u16 = 18;
/// A dump of every state is two walks: listeners apart, with their drop counters.
const WALKS_PER_DUMP: usize = 2;

/// The header fields of one netlink message in a reply.
#[derive(Debug, Clone, Copy)]
struct Header {
    offset: usize,
    kind: u16,
    sequence: u32,
}

/// The messages of a reply, as far as their headers can be read.
fn headers(reply: &[u8]) -> Vec<Header> {
    let mut found = Vec::new();
    let mut offset = 0;
    while let Some(header) = reply.get(offset..offset + NLMSG_HEADER_BYTES) {
        let length = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if length < NLMSG_HEADER_BYTES || offset + length > reply.len() {
            break;
        }
        found.push(Header {
            offset,
            kind: u16::from_ne_bytes([header[4], header[5]]),
            sequence: u32::from_ne_bytes([header[8], header[9], header[10], header[11]]),
        });
        offset += length.next_multiple_of(4);
    }
    found
}

/// Sets `NLM_F_DUMP_INTR` on every message, as the kernel does when its socket tables
/// changed under the dump.
fn flag_interrupted(reply: &mut [u8]) {
    for header in headers(reply) {
        let flags = header.offset + 6;
        let old = u16::from_ne_bytes([reply[flags], reply[flags + 1]]);
        reply[flags..flags + 2].copy_from_slice(&(old | NLM_F_DUMP_INTR).to_ne_bytes());
    }
}

/// Replaces the reply with the `NLMSG_ERROR` the kernel sends for a failed request:
/// the negative errno and the offending request's header. Returns its length.
fn replace_with_error(reply: &mut [u8], sequence: u32, errno: i32) -> usize {
    let length = NLMSG_HEADER_BYTES + 4 + NLMSG_HEADER_BYTES;
    let mut message = Vec::with_capacity(length);
    message.extend_from_slice(&(length as u32).to_ne_bytes());
    message.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
    message.extend_from_slice(&0u16.to_ne_bytes());
    message.extend_from_slice(&sequence.to_ne_bytes());
    message.extend_from_slice(&0u32.to_ne_bytes());
    message.extend_from_slice(&(-errno).to_ne_bytes());
    message.extend_from_slice(&[0; NLMSG_HEADER_BYTES]);
    reply[..length].copy_from_slice(&message);
    length
}

/// What an interposer saw of the real kernel's replies.
#[derive(Debug, Default)]
struct Seen {
    replies: AtomicUsize,
    /// Walks the kernel finished (`NLMSG_DONE` received, whatever was made of it).
    walks: AtomicUsize,
}

/// An interposer that calls the real receive, counts what came back, and lets `fault`
/// change it. `fault` gets the reply number (from 0), the walks finished before this
/// reply, and the reply itself; it returns the length the parser is to see.
fn interposer(
    seen: &Arc<Seen>,
    mut fault: impl FnMut(usize, usize, &mut [u8], usize) -> usize + Send + 'static,
) -> Interposer {
    let seen = Arc::clone(seen);
    Box::new(move |receive, buffer| {
        let length = receive(buffer)?;
        let reply = seen.replies.fetch_add(1, Ordering::SeqCst);
        let walks = seen.walks.load(Ordering::SeqCst);
        if headers(&buffer[..length])
            .iter()
            .any(|header| header.kind == NLMSG_DONE)
        {
            seen.walks.fetch_add(1, Ordering::SeqCst);
        }
        Ok(fault(reply, walks, buffer, length))
    })
}

/// The sequence number the kernel answered with.
fn sequence_of(reply: &[u8]) -> u32 {
    headers(reply).first().map_or(0, |header| header.sequence)
}

/// A lab whose dump takes many replies: a crowd of ESTABLISHED sockets, SYN_RECV
/// request sockets on a listener, and a TIME_WAIT. Returns what `ss` lists, sorted.
struct Busy {
    _lab: Lab,
    oracle: Vec<Entry>,
    _held: Vec<Box<dyn std::any::Any>>,
}

/// About 300 sockets fit one reply, so this makes a dump of a dozen replies.
const CROWD: usize = 4_000;
const HALF_OPEN: usize = 300;

fn busy_lab() -> Result<Busy> {
    let lab = Lab::enter()?;
    let crowd = lab.crowd(CROWD)?;
    let listener = lab.listener_v4()?;
    let half_open = lab.syn_flood(listener.addr_v4()?, HALF_OPEN, 11)?;
    let time_wait = lab.time_wait("127.0.0.1".parse()?)?;
    lab.wait_for_count(TcpState::SynRecv, HALF_OPEN, SETTLE)?;
    let mut oracle = lab.ss_entries()?;
    oracle.sort();
    ensure!(
        oracle.len() > CROWD + HALF_OPEN,
        "the lab holds only {} sockets",
        oracle.len()
    );
    Ok(Busy {
        _lab: lab,
        oracle,
        _held: vec![
            Box::new(crowd),
            Box::new(listener),
            Box::new(half_open),
            Box::new(time_wait),
        ],
    })
}

/// Dumps everything through `diag` into a vector that already holds `before`.
fn dump_after(diag: &mut SockDiag, before: &[SocketRecord]) -> (Vec<SocketRecord>, Result<()>) {
    let mut out = before.to_vec();
    let result = diag
        .dump_into(&DumpRequest::everything(), &mut out)
        .map_err(anyhow::Error::from);
    (out, result)
}

fn clean_dump() -> Result<Vec<SocketRecord>> {
    let mut out = Vec::new();
    SockDiag::open()?.dump_into(&DumpRequest::everything(), &mut out)?;
    Ok(out)
}

#[test]
fn a_dump_flagged_interrupted_once_is_repeated_and_matches_ss() -> Result<()> {
    let busy = busy_lab()?;
    let seen = Arc::new(Seen::default());
    let mut diag = SockDiag::open()?;
    // The kernel flags every message of a dump that raced with a change; here the
    // first walk is flagged, as if a connection had closed under it.
    diag.interpose(interposer(&seen, |_, walks, reply, length| {
        if walks == 0 {
            flag_interrupted(&mut reply[..length]);
        }
        length
    }));

    let (records, result) = dump_after(&mut diag, &[]);

    result?;
    ensure!(
        seen.walks.load(Ordering::SeqCst) == 2 * WALKS_PER_DUMP,
        "the interrupted dump was not repeated exactly once: {seen:?}"
    );
    assert_eq!(entries::of_records(&records)?, busy.oracle);
    Ok(())
}

#[test]
fn a_dump_interrupted_every_time_gives_up_and_keeps_nothing() -> Result<()> {
    let _busy = busy_lab()?;
    let earlier = clean_dump()?;
    let seen = Arc::new(Seen::default());
    let mut diag = SockDiag::open()?;
    diag.interpose(interposer(&seen, |_, _, reply, length| {
        flag_interrupted(&mut reply[..length]);
        length
    }));

    let (records, result) = dump_after(&mut diag, &earlier);

    let error = match result {
        Ok(()) => bail!("a dump interrupted every time was accepted"),
        Err(error) => error,
    };
    ensure!(
        matches!(
            error.downcast_ref::<DumpError>(),
            Some(DumpError::Interrupted)
        ),
        "{error:#}"
    );
    assert_eq!(
        error.to_string(),
        "the socket table changed during every one of 4 dumps; try again"
    );
    assert_eq!(
        seen.walks.load(Ordering::SeqCst),
        4 * WALKS_PER_DUMP,
        "4 attempts"
    );
    assert_eq!(records, earlier, "the sockets of a failed dump were kept");
    Ok(())
}

/// Replies the way a kernel without inet_diag (or without tcp_diag) does: the one-walk
/// request gets EOPNOTSUPP (`sock_diag_rcv_msg`), a per-family request ENOENT
/// (`inet_diag_lock_handler`).
fn refuse_like_a_kernel_without_tcp_diag(seen: &Arc<Seen>) -> Interposer {
    interposer(seen, |_, _, reply, length| {
        let Some(first) = headers(&reply[..length]).first().copied() else {
            return length;
        };
        let errno = if first.kind == TCPDIAG_GETSOCK {
            libc::EOPNOTSUPP
        } else {
            libc::ENOENT
        };
        replace_with_error(reply, first.sequence, errno)
    })
}

#[test]
fn a_kernel_without_tcp_diag_is_named_in_the_refusal() -> Result<()> {
    let _busy = busy_lab()?;
    let seen = Arc::new(Seen::default());
    let mut diag = SockDiag::open()?;
    diag.interpose(refuse_like_a_kernel_without_tcp_diag(&seen));

    let (records, result) = dump_after(&mut diag, &[]);
    let probe = diag.probe();

    let error = match result {
        Ok(()) => bail!("a refused dump was accepted"),
        Err(error) => error,
    };
    ensure!(
        matches!(
            error.downcast_ref::<DumpError>(),
            Some(DumpError::Refused { .. })
        ),
        "{error:#}"
    );
    let message = error.to_string();
    for needed in [
        "refused",
        "No such file or directory",
        "CONFIG_INET_DIAG",
        "tcp_diag",
    ] {
        ensure!(message.contains(needed), "{needed:?} not in: {message}");
    }
    ensure!(records.is_empty());
    ensure!(
        matches!(probe, Err(DumpError::Refused { .. })),
        "the start-up probe did not see the refusal: {probe:?}"
    );
    Ok(())
}

#[test]
fn a_kernel_without_the_one_walk_request_is_dumped_family_by_family() -> Result<()> {
    let busy = busy_lab()?;
    let refused = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Seen::default());
    let mut diag = SockDiag::open()?;
    diag.interpose(interposer(&seen, {
        let refused = Arc::clone(&refused);
        move |_, _, reply, length| match headers(&reply[..length]).first().copied() {
            Some(first) if first.kind == TCPDIAG_GETSOCK => {
                refused.fetch_add(1, Ordering::SeqCst);
                replace_with_error(reply, first.sequence, libc::EOPNOTSUPP)
            }
            _ => length,
        }
    }));

    let (first, result) = dump_after(&mut diag, &[]);
    result?;
    let (second, result) = dump_after(&mut diag, &[]);
    result?;

    assert_eq!(entries::of_records(&first)?, busy.oracle);
    assert_eq!(entries::of_records(&second)?, busy.oracle);
    assert_eq!(
        refused.load(Ordering::SeqCst),
        1,
        "the refused request was asked again"
    );
    Ok(())
}

#[test]
fn a_kernel_error_part_way_through_a_dump_keeps_nothing_and_the_next_dump_is_whole() -> Result<()> {
    let busy = busy_lab()?;
    let earlier = clean_dump()?;
    let fault_on = Arc::new(AtomicBool::new(true));
    let seen = Arc::new(Seen::default());
    let mut diag = SockDiag::open()?;
    // The third reply of the connections' walk (the listeners' comes first) becomes
    // the error a kernel sends when a dump fails part-way (an allocation failure, say);
    // two replies of sockets came before it in that walk.
    diag.interpose(interposer(&seen, {
        let fault_on = Arc::clone(&fault_on);
        let mut first_of_walk = None;
        move |reply_number, walks, reply, length| {
            if walks != 1 {
                return length;
            }
            let first = *first_of_walk.get_or_insert(reply_number);
            if reply_number == first + 2 && fault_on.load(Ordering::SeqCst) {
                replace_with_error(reply, sequence_of(&reply[..length]), libc::ENOMEM)
            } else {
                length
            }
        }
    }));

    let (records, result) = dump_after(&mut diag, &earlier);
    fault_on.store(false, Ordering::SeqCst);
    let (after, next) = dump_after(&mut diag, &[]);

    let error = match result {
        Ok(()) => bail!("a dump that failed part-way was accepted"),
        Err(error) => error,
    };
    ensure!(
        matches!(
            error.downcast_ref::<DumpError>(),
            Some(DumpError::Failed { .. })
        ),
        "{error:#}"
    );
    assert_eq!(
        error.to_string(),
        "the kernel failed the sock_diag dump part-way: Cannot allocate memory (os error 12)"
    );
    assert_eq!(records, earlier, "a partial dump was kept");
    // The kernel still held the rest of the abandoned dump for the old socket.
    next.context("the dump after the failed one")?;
    assert_eq!(entries::of_records(&after)?, busy.oracle);
    Ok(())
}

#[test]
fn a_reply_cut_short_is_malformed_keeps_nothing_and_the_next_dump_is_whole() -> Result<()> {
    let busy = busy_lab()?;
    let earlier = clean_dump()?;
    let seen = Arc::new(Seen::default());
    let mut diag = SockDiag::open()?;
    // The second reply loses its last 7 bytes, in the middle of a message.
    diag.interpose(interposer(&seen, |reply_number, _, _, length| {
        if reply_number == 1 {
            length.saturating_sub(7)
        } else {
            length
        }
    }));

    let (records, result) = dump_after(&mut diag, &earlier);
    let (after, next) = dump_after(&mut diag, &[]);

    let error = match result {
        Ok(()) => bail!("a truncated reply was accepted"),
        Err(error) => error,
    };
    ensure!(
        matches!(
            error.downcast_ref::<DumpError>(),
            Some(DumpError::Malformed(_))
        ),
        "{error:#}"
    );
    ensure!(
        error
            .to_string()
            .starts_with("malformed sock_diag reply: message at byte"),
        "{error:#}"
    );
    assert_eq!(records, earlier, "a partial dump was kept");
    next.context("the dump after the malformed one")?;
    assert_eq!(entries::of_records(&after)?, busy.oracle);
    Ok(())
}

#[test]
fn a_receive_interrupted_by_a_signal_is_retried() -> Result<()> {
    let busy = busy_lab()?;
    let interruptions = Arc::new(Mutex::new(3));
    let mut diag = SockDiag::open()?;
    // EINTR three times before the first real receive.
    diag.interpose(Box::new({
        let interruptions = Arc::clone(&interruptions);
        move |receive, buffer| {
            if let Ok(mut left) = interruptions.lock()
                && *left > 0
            {
                *left -= 1;
                return Err(std::io::Error::from_raw_os_error(libc::EINTR));
            }
            receive(buffer)
        }
    }));

    let (records, result) = dump_after(&mut diag, &[]);

    result?;
    assert_eq!(entries::of_records(&records)?, busy.oracle);
    assert_eq!(interruptions.lock().map(|left| *left).ok(), Some(0));
    Ok(())
}

#[test]
fn the_start_up_probe_passes_on_a_kernel_with_tcp_diag() -> Result<()> {
    let _lab = Lab::enter()?;
    SockDiag::open()?.probe()?;
    Ok(())
}
