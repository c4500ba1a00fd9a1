//! tcp_info beside a poll's snapshot, for the view's optional columns (`-i`, or `i`
//! at run time): a table keyed by socket cookie, filled only by a full dump that asked
//! the kernel for `INET_DIAG_INFO`, and holding only the fields the columns show.
//!
//! It is kept beside the snapshot, not in its records, so that a poll that does not
//! ask (the default) costs and holds what it did before; and it is looked up by
//! cookie, never by a record's position in the snapshot.

use std::time::SystemTime;

use crate::filter::Filter;
use crate::kernel::sockdiag::{Delivery, DumpError, DumpRequest, SockDiag};
use crate::kernel::tcp_info::TcpInfo;
use crate::snapshot::{Snapshot, SocketRecord};

/// A count the socket's kernel does not keep (see [`TcpInfo::bytes_acked`]).
const UNKNOWN: u64 = u64::MAX;

/// The fields of one socket's `tcp_info` the connections table shows: 40 bytes, where
/// [`TcpInfo`] takes 80.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InfoSummary {
    /// Smoothed round-trip time and its variance, in microseconds.
    pub rtt_us: u32,
    pub rttvar_us: u32,
    /// Congestion window, in segments.
    pub cwnd: u32,
    /// Segments retransmitted over the connection's life.
    pub retransmits: u32,
    bytes_acked: u64,
    bytes_received: u64,
    delivery_rate: u64,
}

impl InfoSummary {
    pub fn of(info: &TcpInfo) -> InfoSummary {
        InfoSummary {
            rtt_us: info.rtt_us,
            rttvar_us: info.rttvar_us,
            cwnd: info.snd_cwnd,
            retransmits: info.total_retrans,
            bytes_acked: info.bytes_acked.unwrap_or(UNKNOWN),
            bytes_received: info.bytes_received.unwrap_or(UNKNOWN),
            delivery_rate: info.delivery_rate.unwrap_or(UNKNOWN),
        }
    }

    /// Bytes the peer acknowledged; `None` on kernels before 4.1.
    pub fn bytes_acked(&self) -> Option<u64> {
        known(self.bytes_acked)
    }

    /// Bytes received from the peer; `None` on kernels before 4.1.
    pub fn bytes_received(&self) -> Option<u64> {
        known(self.bytes_received)
    }

    /// The latest delivery rate in bytes a second; `None` on kernels before 4.9.
    pub fn delivery_rate(&self) -> Option<u64> {
        known(self.delivery_rate)
    }
}

fn known(value: u64) -> Option<u64> {
    (value != UNKNOWN).then_some(value)
}

/// The tcp_info of one poll's sockets, by cookie. Sockets the kernel sends none for
/// (request sockets, TIME_WAIT remnants) are absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TcpInfoTable {
    /// Sorted by cookie, for a binary search.
    entries: Vec<(u64, InfoSummary)>,
}

impl TcpInfoTable {
    /// A table of these entries, in any order.
    pub fn new(mut entries: Vec<(u64, InfoSummary)>) -> TcpInfoTable {
        entries.sort_unstable_by_key(|(cookie, _)| *cookie);
        TcpInfoTable { entries }
    }

    /// The tcp_info of the socket with this cookie, if the dump carried one.
    pub fn get(&self, cookie: u64) -> Option<&InfoSummary> {
        let at = self
            .entries
            .binary_search_by_key(&cookie, |(cookie, _)| *cookie)
            .ok()?;
        self.entries.get(at).map(|(_, info)| info)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A snapshot of the sockets `filter` matches, as [`SockDiag::snapshot`] takes it, and
/// their tcp_info: one dump that asks the kernel for `INET_DIAG_INFO` too.
pub fn snapshot_with_info(
    diag: &mut SockDiag,
    filter: &Filter,
    capacity: usize,
) -> Result<(Snapshot, TcpInfoTable), DumpError> {
    let taken_at = SystemTime::now();
    let request = DumpRequest {
        info: true,
        ..DumpRequest::for_filter(filter)
    };
    let mut sockets: Vec<SocketRecord> = Vec::with_capacity(capacity);
    let mut entries = Vec::with_capacity(capacity);
    diag.stream_with_info(&request, &mut |delivery, info| match delivery {
        Delivery::Sockets(batch) => {
            for (at, socket) in batch.iter().enumerate() {
                // The kernel's filter may let through what the user's does not.
                if !filter.matches(socket) {
                    continue;
                }
                sockets.push(*socket);
                if let Some(Some(info)) = info.get(at) {
                    entries.push((socket.cookie, InfoSummary::of(info)));
                }
            }
        }
        Delivery::Restart => {
            sockets.clear();
            entries.clear();
        }
    })?;
    Ok((Snapshot::new(taken_at, sockets), TcpInfoTable::new(entries)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(rtt_us: u32) -> TcpInfo {
        TcpInfo {
            rtt_us,
            snd_cwnd: 10,
            bytes_acked: Some(1234),
            ..TcpInfo::default()
        }
    }

    #[test]
    fn a_socket_is_found_by_its_cookie_whatever_the_order_entries_came_in() {
        let table = TcpInfoTable::new(vec![
            (30, InfoSummary::of(&info(300))),
            (10, InfoSummary::of(&info(100))),
            (20, InfoSummary::of(&info(200))),
        ]);
        assert_eq!(table.get(20).map(|info| info.rtt_us), Some(200));
        assert_eq!(table.get(10).map(|info| info.rtt_us), Some(100));
        assert_eq!(table.get(25), None);
        assert_eq!(table.len(), 3);
    }

    #[test]
    fn counts_an_old_kernel_does_not_keep_stay_unknown() {
        let summary = InfoSummary::of(&info(100));
        assert_eq!(summary.bytes_acked(), Some(1234));
        assert_eq!(summary.bytes_received(), None);
        assert_eq!(summary.delivery_rate(), None);
    }

    #[test]
    fn a_summary_is_half_the_size_of_the_whole_tcp_info() {
        assert_eq!(std::mem::size_of::<InfoSummary>(), 40);
        assert!(std::mem::size_of::<InfoSummary>() * 2 <= std::mem::size_of::<TcpInfo>());
    }
}
