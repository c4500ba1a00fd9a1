//! The reference every one-shot timing is held against: a bare kernel dump, the sock_diag
//! request tcpscope sends, with a reply that is received and only counted, never parsed.
//!
//! It is what no tool reading sock_diag can beat, so "`--json` within 1.15× of it"
//! says how much tcpscope adds to the kernel's own work, whatever the machine.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_SOCK_DIAG};
use tcpscope::tcp::StateSet;

/// One `TCPDIAG_GETSOCK` request for every TCP socket of both families (the one walk
/// tcpscope asks for too), sent on a netlink socket of its own. The reply is received
/// into one 64 KiB buffer and its messages are only counted by walking their headers:
/// nothing is parsed, nothing kept. Returns how many sockets the kernel sent.
pub fn bare_dump() -> Result<usize> {
    const TCPDIAG_GETSOCK: u16 = 18;
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const NLM_F_REQUEST_DUMP: u16 = 0x1 | 0x300;
    // nlmsghdr, then struct inet_diag_req: family, src_len, dst_len, ext (4 bytes),
    // the 48-byte inet_diag_sockid, states, dbs.
    const HEADER: usize = 16;
    const REQUEST: usize = 4 + 48 + 4 + 4;
    let mut socket = Socket::new(NETLINK_SOCK_DIAG).context("opening a sock_diag socket")?;
    socket.bind(&SocketAddr::new(0, 0))?;
    let mut request = vec![0u8; HEADER + REQUEST];
    request[0..4].copy_from_slice(&((HEADER + REQUEST) as u32).to_ne_bytes());
    request[4..6].copy_from_slice(&TCPDIAG_GETSOCK.to_ne_bytes());
    request[6..8].copy_from_slice(&NLM_F_REQUEST_DUMP.to_ne_bytes());
    request[8..12].copy_from_slice(&1u32.to_ne_bytes());
    // Every TCP state, as tcpscope asks for them.
    let states_at = HEADER + 4 + 48;
    request[states_at..states_at + 4].copy_from_slice(&StateSet::all().kernel_mask().to_ne_bytes());
    let sent = socket.send_to(&request, &SocketAddr::new(0, 0), 0)?;
    ensure!(sent == request.len(), "a short write of the dump request");

    let mut buffer = vec![0u8; 64 * 1024];
    let mut sockets = 0;
    loop {
        let length = socket.recv(&mut &mut buffer[..], 0)?.min(buffer.len());
        let mut at = 0;
        while at + HEADER <= length {
            let field = |offset: usize, width: usize| &buffer[at + offset..at + offset + width];
            let message_length = u32::from_ne_bytes(field(0, 4).try_into()?) as usize;
            let kind = u16::from_ne_bytes(field(4, 2).try_into()?);
            match kind {
                NLMSG_DONE => return Ok(sockets),
                NLMSG_ERROR => bail!("the kernel refused the bare dump"),
                _ => sockets += 1,
            }
            ensure!(
                message_length >= HEADER,
                "a message shorter than its header"
            );
            at += (message_length + 3) & !3;
        }
    }
}

/// One [`bare_dump`]: what it took and what it counted.
#[derive(Debug, Clone, Copy)]
pub struct BareDump {
    pub wall: Duration,
    /// The CPU time of the thread that ran it, the kernel's work on the dump included
    /// (the kernel builds a dump's replies in the thread that receives them).
    pub cpu: Duration,
    pub sockets: usize,
}

/// [`bare_dump`], timed on the wall clock and the calling thread's CPU clock.
pub fn timed_bare_dump() -> Result<BareDump> {
    let (start, cpu_start) = (Instant::now(), thread_cpu_time());
    let sockets = bare_dump()?;
    Ok(BareDump {
        wall: start.elapsed(),
        cpu: thread_cpu_time().saturating_sub(cpu_start),
        sockets,
    })
}

/// The calling thread's CPU time, user and system.
pub fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a pointer to a live local.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}
