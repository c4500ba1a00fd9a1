//! The sock_diag destroy multicast: the kernel's last word on every full TCP socket it
//! frees, so that a connection that opened and closed between two polls is still seen.
//!
//! This is what `ss -E` listens to. The kernel sends one `inet_diag_msg` per destroyed
//! socket to the `SKNLGRP_INET_TCP_DESTROY` / `SKNLGRP_INET6_TCP_DESTROY` groups
//! (`sock_diag_broadcast_destroy` in `net/core/sock_diag.c`). Request sockets and
//! TIME_WAIT remnants are not full sockets and produce no event.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_SOCK_DIAG};

use super::diag_msg::{self, ParseError};
use crate::snapshot::SocketRecord;

/// `enum sknetlink_groups` in `include/uapi/linux/sock_diag.h`.
const SKNLGRP_INET_TCP_DESTROY: u32 = 1;
const SKNLGRP_INET6_TCP_DESTROY: u32 = 3;
/// Events are broadcast with sequence number 0.
const BROADCAST_SEQUENCE: u32 = 0;
/// Room for bursts of closes between two reads; the kernel drops events (and reports
/// ENOBUFS) when the socket's queue is full.
const RECEIVE_QUEUE_BYTES: usize = 8 * 1024 * 1024;
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Whether the kernel's destroy events are arriving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventStatus {
    Subscribed,
    /// Not asked for.
    Off,
    /// The kernel refused the subscription; short-lived connections may be missed.
    Refused(String),
}

/// A subscription to destroy events.
pub struct DestroyEvents {
    socket: Socket,
    buffer: Vec<u8>,
}

/// What one [`DestroyEvents::drain`] found besides the events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Drained {
    /// How many times the kernel said it had to drop events because the queue was
    /// full (ENOBUFS). The number of events lost is not known, only that some were.
    pub overflows: u32,
    /// Events read but dropped because the caller's limit was reached.
    pub dropped: u64,
}

impl DestroyEvents {
    /// Joins the destroy groups of the families asked for. Fails when the kernel
    /// refuses (older kernels require CAP_NET_ADMIN).
    pub fn subscribe(ipv4: bool, ipv6: bool) -> io::Result<DestroyEvents> {
        Self::subscribe_with_queue(ipv4, ipv6, RECEIVE_QUEUE_BYTES)
    }

    /// Like [`DestroyEvents::subscribe`], with the kernel-side queue sized for about
    /// `queue_bytes` (the kernel caps it at `net.core.rmem_max` and doubles it for
    /// bookkeeping): a bigger queue rides out longer bursts between reads.
    pub fn subscribe_with_queue(
        ipv4: bool,
        ipv6: bool,
        queue_bytes: usize,
    ) -> io::Result<DestroyEvents> {
        let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
        socket.bind(&SocketAddr::new(0, 0))?;
        // A larger queue only helps; the kernel caps it at rmem_max.
        let _ = socket.set_rx_buf_sz(queue_bytes);
        if ipv4 {
            socket.add_membership(SKNLGRP_INET_TCP_DESTROY)?;
        }
        if ipv6 {
            socket.add_membership(SKNLGRP_INET6_TCP_DESTROY)?;
        }
        socket.set_non_blocking(true)?;
        Ok(DestroyEvents {
            socket,
            buffer: vec![0; READ_BUFFER_BYTES],
        })
    }

    /// Waits up to `timeout` for events to arrive. Returns whether any are ready.
    pub fn wait(&self, timeout: Duration) -> io::Result<bool> {
        let mut poll = libc::pollfd {
            fd: self.socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd, and its count is 1.
        let ready = unsafe { libc::poll(&mut poll, 1, millis) };
        match ready {
            -1 => {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::Interrupted {
                    Ok(false)
                } else {
                    Err(error)
                }
            }
            0 => Ok(false),
            _ => Ok(true),
        }
    }

    /// Reads every queued event without blocking, appending the destroyed sockets (in
    /// their final state, usually CLOSED) to `out`.
    pub fn drain(&mut self, out: &mut Vec<SocketRecord>) -> Result<Drained, EventError> {
        self.drain_up_to(out, usize::MAX)
    }

    /// Like [`DestroyEvents::drain`], but `out` never grows past `limit` records:
    /// further events are read and dropped, and counted in [`Drained::dropped`], so
    /// that a consumer that falls behind costs bounded memory, not a growing backlog.
    pub fn drain_up_to(
        &mut self,
        out: &mut Vec<SocketRecord>,
        limit: usize,
    ) -> Result<Drained, EventError> {
        let mut drained = Drained::default();
        loop {
            match self.socket.recv(&mut &mut self.buffer[..], 0) {
                Ok(length) => {
                    diag_msg::parse_batch(&self.buffer[..length], BROADCAST_SEQUENCE, |r| {
                        if out.len() < limit {
                            out.push(r);
                        } else {
                            drained.dropped += 1;
                        }
                    })?;
                }
                Err(error) => match error.raw_os_error() {
                    Some(libc::EAGAIN) => return Ok(drained),
                    Some(libc::EINTR) => {}
                    Some(libc::ENOBUFS) => drained.overflows += 1,
                    _ => return Err(EventError::Receive(error)),
                },
            }
        }
    }
}

impl AsRawFd for DestroyEvents {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("reading destroy events failed: {0}")]
    Receive(#[source] io::Error),
    #[error("malformed destroy event: {0}")]
    Malformed(#[from] ParseError),
}
