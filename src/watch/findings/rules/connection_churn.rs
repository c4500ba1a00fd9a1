//! `connection_churn`: new connections to one remote endpoint, or into one local
//! listener, at a high rate, most of them over within the poll they began in: a client
//! that opens a connection per request. Counted from the diff between two polls, so it
//! needs a live mode: a connection first seen already closing (in TIME_WAIT, say) began
//! and ended between the polls, and one the kernel destroyed between them is seen only
//! by its destroy event.
//!
//! A poll cannot see when a connection began, only that it was not there at the
//! previous poll: "most over within a poll" stands for "a median lifetime under the
//! poll interval" (1 s by default).

use std::net::IpAddr;

use crate::diff::{Ending, Kind as Step, Transition};
use crate::snapshot::SocketRecord;
use crate::tcp::State;
use crate::watch::findings::{
    Endpoint, Evidence, Finding, FindingThresholds, Kind, Severity, Subject, share,
};

use super::{Candidate, count};

/// A connection new in this poll, reduced to what it is grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Arrival {
    /// Into one of this host's listeners (its local port is not ephemeral), rather than
    /// out to a remote endpoint.
    pub incoming: bool,
    /// The local listener's address and port when incoming, else the remote endpoint.
    pub addr: IpAddr,
    pub port: u16,
    /// Already over (closing, closed or gone) when first seen.
    pub short: bool,
}

impl Arrival {
    fn subject(self) -> Subject {
        if self.incoming {
            Subject::Listener {
                addr: self.addr,
                port: self.port,
            }
        } else {
            Subject::Remote {
                addr: self.addr,
                port: self.port,
            }
        }
    }

    /// Whether `socket` is a TIME_WAIT remnant of this arrival's group.
    fn left_in_time_wait(self, socket: &SocketRecord, outgoing: impl Fn(u16) -> bool) -> bool {
        socket.state == State::TimeWait
            && if self.incoming {
                (socket.local_addr, socket.local_port) == (self.addr, self.port)
            } else {
                (socket.remote_addr, socket.remote_port) == (self.addr, self.port)
                    && outgoing(socket.local_port)
            }
    }
}

/// The connections `transitions` show beginning since the previous poll, into
/// `arrivals` (cleared first). `outgoing` says whether a connection on a local port is
/// one this host opened ([`super::Tally::is_outgoing`]).
pub fn arrivals(
    transitions: &[Transition],
    outgoing: impl Fn(u16) -> bool,
    arrivals: &mut Vec<Arrival>,
) {
    arrivals.clear();
    arrivals.extend(transitions.iter().filter_map(|step| {
        let short = match (step.kind, step.to, step.ending) {
            (Step::Opened, Some(State::Listen | State::Closed), _) => return None,
            (Step::Opened, Some(state), _) => {
                !matches!(state, State::SynSent | State::SynRecv | State::Established)
            }
            (Step::Closed, _, Some(Ending::BetweenPolls)) => true,
            _ => return None,
        };
        let (local_addr, local_port) = step.endpoints.local;
        let (remote_addr, remote_port) = step.endpoints.remote;
        let incoming = !outgoing(local_port);
        Some(if incoming {
            Arrival {
                incoming,
                addr: local_addr,
                port: local_port,
                short,
            }
        } else {
            Arrival {
                incoming,
                addr: remote_addr,
                port: remote_port,
                short,
            }
        })
    }));
}

/// A candidate for each group of `arrivals` that came at `churn_per_second` or faster
/// over `seconds`, more than half of them over within the poll. `sockets`, the poll's
/// snapshot, is looked into only for a candidate's TIME_WAIT remnants. Sorts
/// `arrivals`.
pub fn check(
    arrivals: &mut [Arrival],
    seconds: f64,
    sockets: &[SocketRecord],
    outgoing: impl Fn(u16) -> bool,
    thresholds: &FindingThresholds,
    out: &mut Vec<Candidate>,
) {
    let rate = |n: usize| count(n) as f64 / seconds;
    if seconds <= 0.0 || rate(arrivals.len()) < thresholds.churn_per_second {
        return;
    }
    arrivals.sort_unstable();
    for group in
        arrivals.chunk_by(|a, b| (a.incoming, a.addr, a.port) == (b.incoming, b.addr, b.port))
    {
        let new = count(group.len());
        let short = count(group.iter().filter(|arrival| arrival.short).count());
        let per_second = rate(group.len());
        if per_second < thresholds.churn_per_second || short * 2 <= new {
            continue;
        }
        let first = group[0];
        let time_wait = count(
            sockets
                .iter()
                .filter(|socket| first.left_in_time_wait(socket, &outgoing))
                .count(),
        );
        let direction = if first.incoming { "into" } else { "to" };
        let summary = format!(
            "{per_second:.0} new connections a second {direction} {}, most of them over \
             within {seconds:.1} s; {time_wait} left in TIME_WAIT",
            Endpoint(first.addr, first.port),
        );
        let evidence = Evidence::default()
            .number("per_second", per_second)
            .count("new_connections", new)
            .number("short_lived_share", share(short, new))
            .number("median_lifetime_under_seconds", seconds)
            .count("time_wait", time_wait);
        out.push(Candidate::new(Finding::new(
            Kind::ConnectionChurn,
            Severity::Warning,
            first.subject(),
            summary,
            evidence,
        )));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::fixtures::socket;
    use crate::watch::findings::{HostLimits, Value};

    /// A connection from ephemeral port `port` to 192.0.2.5:80 first seen in `state`.
    fn opened(state: State, port: u16) -> Transition {
        let record = socket(state, "10.0.0.1", port, "192.0.2.5", 80);
        Transition::opened(record.endpoints(), state, u64::from(port))
    }

    /// `total` connections opened to 192.0.2.5:80, `short` of them already in TIME_WAIT.
    fn poll(total: u16, short: u16) -> Vec<Transition> {
        (0..total)
            .map(|i| {
                let state = if i < short {
                    State::TimeWait
                } else {
                    State::Established
                };
                opened(state, 40_000 + i)
            })
            .collect()
    }

    fn judge(transitions: &[Transition], seconds: f64) -> Vec<Candidate> {
        let limits = HostLimits::default();
        let outgoing = |port| limits.is_ephemeral(port);
        let mut found = Vec::new();
        arrivals(transitions, outgoing, &mut found);
        let remnants = [socket(State::TimeWait, "10.0.0.1", 40_000, "192.0.2.5", 80)];
        let mut out = Vec::new();
        check(
            &mut found,
            seconds,
            &remnants,
            outgoing,
            &FindingThresholds::default(),
            &mut out,
        );
        out
    }

    #[test]
    fn a_hundred_short_connections_a_second_to_one_endpoint_are_churn() {
        let found = judge(&poll(200, 150), 2.0);
        assert_eq!(found.len(), 1);
        let finding = &found[0].finding;
        assert_eq!(finding.subject.to_string(), "remote 192.0.2.5:80");
        assert_eq!(
            finding.evidence.get("per_second"),
            Some(&Value::Number(100.0))
        );
        assert_eq!(finding.evidence.get("time_wait"), Some(&Value::Count(1)));
        assert_eq!(
            finding.summary,
            "100 new connections a second to 192.0.2.5:80, most of them over within 2.0 s; \
             1 left in TIME_WAIT"
        );
    }

    #[test]
    fn just_under_a_hundred_a_second_is_calm() {
        assert!(judge(&poll(199, 199), 2.0).is_empty());
    }

    #[test]
    fn connections_that_stay_open_are_not_churn_however_many() {
        assert!(
            judge(&poll(500, 250), 1.0).is_empty(),
            "half short is no majority"
        );
        assert_eq!(judge(&poll(500, 251), 1.0).len(), 1);
    }

    #[test]
    fn connections_into_a_listener_are_grouped_by_the_listener() {
        let transitions: Vec<Transition> = (0..120)
            .map(|i| {
                let record = socket(
                    State::Established,
                    "10.0.0.1",
                    8080,
                    "192.0.2.5",
                    40_000 + i,
                );
                Transition::ended(
                    record.endpoints(),
                    State::Closed,
                    crate::tcp::Path::EMPTY,
                    Ending::BetweenPolls,
                    u64::from(i),
                )
            })
            .collect();
        let found = judge(&transitions, 1.0);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].finding.subject.to_string(), "10.0.0.1:8080");
    }
}
