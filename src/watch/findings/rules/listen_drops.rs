//! `listen_drops`: a listener is dropping connection attempts. Each listening socket's
//! drop counter (`SK_MEMINFO_DROPS`, the `d` of `ss -tlm`) grows whenever the kernel
//! turns away a SYN or a completed handshake there (`tcp_listendrop()`: a full accept
//! queue, a full SYN queue without cookies, no memory). The host's TcpExt ListenDrops
//! only says that some listener drops; this says which, and how fast.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::watch::findings::{Evidence, Finding, FindingThresholds, Kind, Severity, Subject};

use super::{Candidate, ListenSocket};

/// One listening endpoint's drops between two readings (its `SO_REUSEPORT` sockets
/// together).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ListenerDrops {
    pub addr: IpAddr,
    pub port: u16,
    /// Drops since the sockets were created, summed.
    pub drops: u64,
    pub per_second: f64,
    pub accept_queue: u32,
    pub backlog: u32,
}

/// The drop rate of each listening endpoint between the `previous` reading (each
/// socket's drops, by cookie) and `listeners`, taken `seconds` later. A socket the
/// previous reading did not have was created since, so all its drops are new. Sorts
/// `listeners` by endpoint.
pub fn rates(
    listeners: &mut [ListenSocket],
    previous: &HashMap<u64, u32>,
    seconds: f64,
) -> Vec<ListenerDrops> {
    if !(seconds.is_finite() && seconds > 0.0) {
        return Vec::new();
    }
    listeners.sort_unstable_by_key(|socket| (socket.addr, socket.port));
    listeners
        .chunk_by(|a, b| (a.addr, a.port) == (b.addr, b.port))
        .map(|group| {
            let mut endpoint = ListenerDrops {
                addr: group[0].addr,
                port: group[0].port,
                drops: 0,
                per_second: 0.0,
                accept_queue: 0,
                backlog: 0,
            };
            let mut new_drops: u64 = 0;
            for socket in group {
                endpoint.drops += u64::from(socket.drops);
                endpoint.accept_queue = endpoint.accept_queue.saturating_add(socket.accept_queue);
                endpoint.backlog = endpoint.backlog.saturating_add(socket.backlog);
                let before = previous.get(&socket.cookie).copied().unwrap_or(0);
                // The counter only grows; a smaller one is a wrap, or a bad reading.
                new_drops += u64::from(socket.drops.saturating_sub(before));
            }
            // u64 → f64 is exact below 2^53 drops.
            endpoint.per_second = new_drops as f64 / seconds;
            endpoint
        })
        .collect()
}

/// A candidate for each listener dropping at the threshold's rate or faster.
pub fn check(drops: &[ListenerDrops], thresholds: &FindingThresholds, out: &mut Vec<Candidate>) {
    for listener in drops
        .iter()
        .filter(|listener| listener.per_second >= thresholds.listen_drops_per_second)
    {
        let subject = Subject::Listener {
            addr: listener.addr,
            port: listener.port,
        };
        let summary = format!(
            "{subject} is dropping {:.1} connection attempts a second (accept queue {} of {})",
            listener.per_second, listener.accept_queue, listener.backlog
        );
        let evidence = Evidence::default()
            .number("drops_per_second", listener.per_second)
            .count("drops", listener.drops)
            .count("accept_queue", listener.accept_queue)
            .count("backlog", listener.backlog);
        out.push(Candidate::new(Finding::new(
            Kind::ListenDrops,
            Severity::Critical,
            subject,
            summary,
            evidence,
        )));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(port: u16, cookie: u64, drops: u32) -> ListenSocket {
        ListenSocket {
            addr: "0.0.0.0".parse().expect("address"),
            port,
            cookie,
            drops,
            accept_queue: 128,
            backlog: 128,
        }
    }

    fn judge(drops: &[ListenerDrops]) -> Vec<u16> {
        let mut out = Vec::new();
        check(drops, &FindingThresholds::default(), &mut out);
        out.iter()
            .map(|c| match c.finding.subject {
                Subject::Listener { port, .. } => port,
                _ => 0,
            })
            .collect()
    }

    #[test]
    fn drops_per_second_are_the_growth_of_each_endpoints_sockets_summed() {
        // Port 80: two SO_REUSEPORT sockets, +10 and +20 over 2 s; port 22 unchanged.
        let previous = HashMap::from([(1, 100), (2, 0), (3, 7)]);
        let mut now = [socket(80, 1, 110), socket(22, 3, 7), socket(80, 2, 20)];
        let rates = rates(&mut now, &previous, 2.0);
        assert_eq!(rates.len(), 2);
        let http = rates.iter().find(|r| r.port == 80).expect("port 80");
        assert_eq!(http.per_second, 15.0);
        assert_eq!(http.drops, 130);
        assert_eq!(http.backlog, 256);
        assert_eq!(
            rates.iter().find(|r| r.port == 22).map(|r| r.per_second),
            Some(0.0)
        );
    }

    #[test]
    fn a_listener_created_since_the_last_reading_counts_all_its_drops() {
        let mut now = [socket(80, 9, 6)];
        assert_eq!(rates(&mut now, &HashMap::new(), 1.0)[0].per_second, 6.0);
    }

    #[test]
    fn a_counter_that_went_down_is_no_drop_and_no_interval_is_no_rate() {
        let mut now = [socket(80, 1, 5)];
        assert_eq!(
            rates(&mut now, &HashMap::from([(1, 50)]), 1.0)[0].per_second,
            0.0
        );
        for seconds in [0.0, -1.0, f64::NAN] {
            assert!(rates(&mut now, &HashMap::new(), seconds).is_empty());
        }
    }

    #[test]
    fn one_drop_a_second_is_dropping_and_a_stray_drop_is_not() {
        let mut previous = HashMap::from([(1, 0), (2, 0)]);
        let mut now = [socket(80, 1, 10), socket(8080, 2, 9)];
        let rates_now = rates(&mut now, &previous, 10.0);
        assert_eq!(judge(&rates_now), [80]);
        // A calm twin: one drop in a minute.
        previous.insert(1, 10);
        let mut calm = [socket(80, 1, 11)];
        assert!(judge(&rates(&mut calm, &previous, 60.0)).is_empty());
    }

    #[test]
    fn the_summary_names_the_listener_its_rate_and_its_queue() {
        let mut out = Vec::new();
        let mut now = [socket(443, 1, 25)];
        check(
            &rates(&mut now, &HashMap::from([(1, 0)]), 2.0),
            &FindingThresholds::default(),
            &mut out,
        );
        assert_eq!(
            out[0].finding.summary,
            "0.0.0.0:443 is dropping 12.5 connection attempts a second (accept queue 128 of 128)"
        );
        assert_eq!(out[0].finding.severity, Severity::Critical);
    }
}
