//! One pass over a poll's sockets for what the analyses after the diff need of the
//! whole table: the per-state and per-family counts, and the few sockets in the states
//! the SYN watch (LISTEN, SYN_RECV) and the CLOSE_WAIT watch look at.
//!
//! At 100k sockets a pass over the table reads about 9 MB and costs about half a
//! millisecond however little it does with each socket; the SYN watch, the CLOSE_WAIT
//! watch, the counts and the copy of the SYN_RECV sockets kept for the fast lane each
//! made their own. They now share this one and work on the sockets it picked out.
//!
//! Pure: a slice of records in, counts and copies out.

use crate::snapshot::{Counts, Family, SocketRecord};
use crate::tcp::State;

/// How many sockets of each address family a table holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Families {
    pub ipv4: u32,
    pub ipv6: u32,
}

impl Families {
    /// Counts `sockets`: one pass, for a table no census was taken of.
    pub fn of(sockets: &[SocketRecord]) -> Families {
        let mut families = Families::default();
        for socket in sockets {
            families.add(socket.family);
        }
        families
    }

    fn add(&mut self, family: Family) {
        match family {
            Family::Ipv4 => self.ipv4 = self.ipv4.saturating_add(1),
            Family::Ipv6 => self.ipv6 = self.ipv6.saturating_add(1),
        }
    }
}

/// What one pass over a poll's sockets found. Keep one and [`Census::take`] each poll:
/// its buffers are reused.
#[derive(Debug, Default, Clone)]
pub struct Census {
    pub counts: Counts,
    pub families: Families,
    /// The LISTEN sockets, in the table's order.
    pub listeners: Vec<SocketRecord>,
    /// The SYN_RECV request sockets, in the table's order.
    pub syn_recv: Vec<SocketRecord>,
    /// The CLOSE_WAIT sockets, in the table's order.
    pub close_wait: Vec<SocketRecord>,
}

impl Census {
    /// Counts `sockets` afresh and picks out the LISTEN, SYN_RECV and CLOSE_WAIT ones.
    pub fn take(&mut self, sockets: &[SocketRecord]) {
        self.counts = Counts::default();
        self.families = Families::default();
        self.listeners.clear();
        self.syn_recv.clear();
        self.close_wait.clear();
        for socket in sockets {
            self.counts.add(socket.state);
            self.families.add(socket.family);
            match socket.state {
                State::Listen => self.listeners.push(*socket),
                State::SynRecv => self.syn_recv.push(*socket),
                State::CloseWait => self.close_wait.push(*socket),
                _ => {}
            }
        }
    }

    /// The listeners followed by the SYN_RECV sockets: all the SYN watch reads of a
    /// table, in the order it reads them.
    pub fn listen_and_syn_recv(&self) -> Vec<SocketRecord> {
        let mut sockets = Vec::with_capacity(self.listeners.len() + self.syn_recv.len());
        sockets.extend_from_slice(&self.listeners);
        sockets.extend_from_slice(&self.syn_recv);
        sockets
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::snapshot::Snapshot;
    use crate::snapshot::fixtures::socket;
    use crate::watch::{CounterRates, LeakWatcher, SynWatcher, Thresholds};

    /// A table with a request socket before its listener, as a dump may list them, and
    /// every state the census picks out among ones it does not.
    fn table() -> Vec<SocketRecord> {
        let mut sockets = Vec::new();
        for port in 0..3u16 {
            sockets.push(socket(
                State::SynRecv,
                "10.0.0.1",
                80,
                "10.9.0.1",
                2000 + port,
            ));
        }
        let mut listener = socket(State::Listen, "0.0.0.0", 80, "0.0.0.0", 0);
        listener.send_q = 128;
        sockets.push(listener);
        for port in 0..4u16 {
            let mut established =
                socket(State::Established, "10.0.0.1", 80, "10.0.0.2", 3000 + port);
            established.cookie = 100 + u64::from(port);
            sockets.push(established);
        }
        for port in 0..2u16 {
            let mut waiting = socket(State::CloseWait, "10.0.0.1", 8080, "10.0.0.3", 4000 + port);
            waiting.cookie = 200 + u64::from(port);
            waiting.inode = 9 + u32::from(port);
            sockets.push(waiting);
        }
        sockets.push(socket(State::TimeWait, "10.0.0.1", 80, "10.0.0.4", 5000));
        sockets
    }

    #[test]
    fn one_pass_counts_every_state_and_picks_out_listeners_syn_recv_and_close_wait() {
        let sockets = table();
        let mut census = Census::default();
        census.take(&sockets);
        let snapshot = Snapshot::new(SystemTime::UNIX_EPOCH, sockets);
        assert_eq!(census.counts, snapshot.counts());
        assert_eq!(census.families, Families::of(&snapshot.sockets));
        assert_eq!(census.families.ipv4, 11);
        assert_eq!(census.listeners.len(), 1);
        assert_eq!(census.syn_recv.len(), 3);
        assert_eq!(census.close_wait.len(), 2);
        assert_eq!(census.listen_and_syn_recv()[0].state, State::Listen);

        // Taken again over fewer sockets, nothing of the first table is left.
        census.take(&snapshot.sockets[..1]);
        assert_eq!(census.counts.total(), 1);
        assert_eq!(census.families, Families { ipv4: 1, ipv6: 0 });
        assert!(census.listeners.is_empty() && census.close_wait.is_empty());
        assert_eq!(census.syn_recv.len(), 1);
    }

    #[test]
    fn the_syn_watch_and_the_close_wait_watch_see_the_same_over_the_census_as_over_the_table() {
        let sockets = table();
        let mut census = Census::default();
        census.take(&sockets);
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let whole = Snapshot::new(at, sockets.clone());
        let picked = Snapshot::new(at, census.listen_and_syn_recv());
        let rates = CounterRates::default();
        let over_table =
            SynWatcher::new(Thresholds::default()).poll(&whole, &rates, Duration::ZERO);
        let over_census =
            SynWatcher::new(Thresholds::default()).poll(&picked, &rates, Duration::ZERO);
        assert_eq!(over_census, over_table);
        assert_eq!(over_table.listeners[0].listener.half_open, 3);

        let owner = |inode: u32| {
            Some(crate::watch::Owner {
                pid: i32::try_from(inode).unwrap_or(0),
                name: format!("app{inode}"),
            })
        };
        let leaks_table = LeakWatcher::new(1).observe(at, &sockets, owner);
        let leaks_census = LeakWatcher::new(1).observe(at, &census.close_wait, owner);
        assert_eq!(leaks_census, leaks_table);
    }
}
