//! Findings: rules over the socket table that each name an incident, what it is about,
//! the numbers behind it and what an operator can do, in one value type, [`Finding`],
//! that every output can show the same way.
//!
//! The kinds are described once, in [`KINDS`]: id, default severity, remedy, which
//! modes can see them. Each kind's rule is a pure function in [`rules`] that turns one
//! poll's tallies into candidate findings; [`Analyst`] takes one poll's inputs, tallies
//! the sockets in one pass for all rules, runs them, and passes the candidates through
//! [`hysteresis`] so that a flapping value does not flap the finding. A one-shot output
//! uses [`single_reading`] instead: the rules that need no history, no hysteresis.
//!
//! Pure, like the rest of `watch`: snapshots, sysctl values ([`HostLimits`]), counter
//! readings and earlier analyses come in as values; nothing here reads the kernel or
//! the clock.

mod analyst;
pub mod hysteresis;
pub mod limits;
pub mod rules;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Serialize, Serializer};

pub(crate) use crate::text::{Endpoint, Escaped};
pub use analyst::{Analyst, Observation, Report, single_reading, single_reading_tallied};
pub use hysteresis::{FindingEvent, Hysteresis};
pub use limits::HostLimits;

/// How urgent a finding is. Declared most urgent first, so sorting puts it on top.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Connections are being lost now, or are about to be.
    Critical,
    /// A resource is running low or an application is falling behind.
    Warning,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
        }
    }
}

/// What kind of incident a finding names. Declared in the order findings of equal
/// severity are listed: causes before their symptoms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    SynFlood,
    ListenDrops,
    AcceptQueueFull,
    PortExhaustion,
    TimeWaitPressure,
    CloseWaitLeak,
    ConnectStalled,
    PeerNotReading,
    RetransmittingPath,
    ConnectionChurn,
}

/// Which outputs can see a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Every mode, one-shot ones (`--json`) included: one snapshot shows it.
    EveryMode,
    /// Live modes only (the view, `--watch`, `--serve`): it needs a rate or a trend,
    /// hence two polls or more.
    LiveOnly,
}

/// One kind of finding, described once: everything an output or the README needs.
#[derive(Debug)]
pub struct KindInfo {
    pub kind: Kind,
    /// The stable snake_case id outputs and alerts use.
    pub id: &'static str,
    /// The severity every finding of this kind has, or `None` when thresholds decide
    /// (see [`FindingThresholds`]).
    pub severity: Option<Severity>,
    /// What an operator can do, in one or two sentences.
    pub remedy: &'static str,
    pub seen: Seen,
}

/// Every kind, in [`Kind`] order.
pub const KINDS: [KindInfo; 10] = [
    KindInfo {
        kind: Kind::SynFlood,
        id: "syn_flood",
        severity: Some(Severity::Critical),
        remedy: "Keep net.ipv4.tcp_syncookies at 1 so real clients still get through, and \
                 filter the forged traffic upstream (rate limits, DDoS protection); a larger \
                 backlog only delays the overflow.",
        seen: Seen::EveryMode,
    },
    KindInfo {
        kind: Kind::ListenDrops,
        id: "listen_drops",
        severity: Some(Severity::Critical),
        remedy: "Clients are being turned away here: make the application accept() faster \
                 (more workers, no blocking in the accept loop) or give it a larger listen() \
                 backlog, which net.core.somaxconn caps.",
        seen: Seen::LiveOnly,
    },
    KindInfo {
        kind: Kind::AcceptQueueFull,
        id: "accept_queue_full",
        severity: Some(Severity::Warning),
        remedy: "The application is not calling accept() fast enough: look for a stalled \
                 or saturated process or worker pool; a larger listen() backlog only buys \
                 time.",
        seen: Seen::EveryMode,
    },
    KindInfo {
        kind: Kind::PortExhaustion,
        id: "port_exhaustion",
        severity: None,
        remedy: "Reuse connections to this destination (keep-alive, a connection pool) \
                 instead of opening one per request; or set net.ipv4.tcp_tw_reuse=1, widen \
                 net.ipv4.ip_local_port_range, or connect from more source addresses.",
        seen: Seen::EveryMode,
    },
    KindInfo {
        kind: Kind::TimeWaitPressure,
        id: "time_wait_pressure",
        severity: None,
        remedy: "Reuse connections (keep-alive, pooling) so fewer are closed, and let \
                 clients close first so that TIME_WAIT stays with them; raise \
                 net.ipv4.tcp_max_tw_buckets if memory allows.",
        seen: Seen::EveryMode,
    },
    KindInfo {
        kind: Kind::CloseWaitLeak,
        id: "close_wait_leak",
        severity: Some(Severity::Warning),
        remedy: "The application does not close() connections its peers have closed: \
                 find the path that skips the close (an error path, a stuck worker); \
                 restarting it frees them for now.",
        seen: Seen::LiveOnly,
    },
    KindInfo {
        kind: Kind::ConnectStalled,
        id: "connect_stalled",
        severity: Some(Severity::Warning),
        remedy: "Nothing answers these connection attempts: check that the service at this \
                 address is up, and that the route and the firewalls between let its SYNs \
                 through (a dropped SYN looks the same as a host that is down).",
        seen: Seen::EveryMode,
    },
    KindInfo {
        kind: Kind::PeerNotReading,
        id: "peer_not_reading",
        severity: Some(Severity::Warning),
        remedy: "The application at the other end is stuck or too slow to read what is sent \
                 to it: look at that process (blocked, overloaded, waiting on something else); \
                 the senders here block or buffer until it reads.",
        seen: Seen::EveryMode,
    },
    KindInfo {
        kind: Kind::RetransmittingPath,
        id: "retransmitting_path",
        severity: Some(Severity::Warning),
        remedy: "Segments to these hosts are being lost: check the path to them (a congested \
                 or faulty link, a firewall or load balancer dropping a flow, an MTU black \
                 hole) with mtr or by capturing on both ends.",
        seen: Seen::EveryMode,
    },
    KindInfo {
        kind: Kind::ConnectionChurn,
        id: "connection_churn",
        severity: Some(Severity::Warning),
        remedy: "A client opens a new connection per request: make it keep connections \
                 open and reuse them (HTTP keep-alive, a connection pool); each short \
                 connection costs a handshake and leaves a TIME_WAIT behind.",
        seen: Seen::LiveOnly,
    },
];

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::SynFlood,
        Kind::ListenDrops,
        Kind::AcceptQueueFull,
        Kind::PortExhaustion,
        Kind::TimeWaitPressure,
        Kind::CloseWaitLeak,
        Kind::ConnectStalled,
        Kind::PeerNotReading,
        Kind::RetransmittingPath,
        Kind::ConnectionChurn,
    ];

    pub fn info(self) -> &'static KindInfo {
        &KINDS[self as usize]
    }

    pub fn id(self) -> &'static str {
        self.info().id
    }

    pub fn remedy(self) -> &'static str {
        self.info().remedy
    }
}

impl Serialize for Kind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.id())
    }
}

/// What a finding is about. Within one network namespace, a kind and a subject name
/// one incident across polls.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    /// A listening endpoint (all the sockets of an `SO_REUSEPORT` group together).
    Listener { addr: IpAddr, port: u16 },
    /// Outgoing connections from one local address to one remote endpoint.
    Destination {
        local_addr: IpAddr,
        remote_addr: IpAddr,
        remote_port: u16,
    },
    /// The sockets on one local port, whoever holds them.
    LocalPort(u16),
    /// A process, as `ps` names it.
    Process { pid: i32, name: String },
    /// The network namespace as a whole (its TIME_WAIT table).
    Namespace,
    /// A remote endpoint this host connects to, from whichever local address.
    Remote { addr: IpAddr, port: u16 },
    /// Remote hosts in one network: a /24 for IPv4, a /64 for IPv6.
    Network { addr: IpAddr, prefix: u8 },
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Listener { addr, port } => write!(f, "{}", Endpoint(*addr, *port)),
            Subject::Destination {
                local_addr,
                remote_addr,
                remote_port,
            } => write!(
                f,
                "{local_addr} -> {}",
                Endpoint(*remote_addr, *remote_port)
            ),
            Subject::LocalPort(port) => write!(f, "local port {port}"),
            Subject::Process { pid, name } => write!(f, "{} (pid {pid})", Escaped(name)),
            Subject::Namespace => f.write_str("this network namespace"),
            Subject::Remote { addr, port } => write!(f, "remote {}", Endpoint(*addr, *port)),
            Subject::Network { addr, prefix } => write!(f, "{addr}/{prefix}"),
        }
    }
}

impl Serialize for Subject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// One number or word behind a finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Count(u64),
    /// A rate or a share (0.5 = half).
    Number(f64),
    Text(String),
    Flag(bool),
}

/// The numbers behind a finding, as named fields in the order they were added.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Evidence(Vec<(&'static str, Value)>);

impl Evidence {
    pub fn count(mut self, name: &'static str, value: impl Into<u64>) -> Evidence {
        self.0.push((name, Value::Count(value.into())));
        self
    }

    pub fn number(mut self, name: &'static str, value: f64) -> Evidence {
        self.0.push((name, Value::Number(value)));
        self
    }

    pub fn text(mut self, name: &'static str, value: String) -> Evidence {
        self.0.push((name, Value::Text(value)));
        self
    }

    pub fn flag(mut self, name: &'static str, value: bool) -> Evidence {
        self.0.push((name, Value::Flag(value)));
        self
    }

    /// The value named `name`, if there is one.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|(field, _)| *field == name)
            .map(|(_, value)| value)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Value)> {
        self.0.iter().map(|(name, value)| (*name, value))
    }
}

impl Serialize for Evidence {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(name, value)| (*name, value)))
    }
}

/// An incident, named: what, how bad, about what, in words, with the numbers, and what
/// to do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub kind: Kind,
    pub severity: Severity,
    pub subject: Subject,
    /// The network namespace the subject is in, when several are watched
    /// (`--all-netns`); part of the subject.
    #[serde(serialize_with = "optional_text")]
    pub netns: Option<Arc<str>>,
    /// One line, in words, with the numbers.
    pub summary: String,
    pub evidence: Evidence,
    pub remedy: &'static str,
    /// When the finding was raised; `None` in a one-shot reading.
    #[serde(serialize_with = "unix_seconds")]
    pub since: Option<SystemTime>,
}

impl Finding {
    /// A finding of `kind` with its remedy, not raised yet.
    pub fn new(
        kind: Kind,
        severity: Severity,
        subject: Subject,
        summary: String,
        evidence: Evidence,
    ) -> Finding {
        Finding {
            kind,
            severity,
            subject,
            netns: None,
            summary,
            evidence,
            remedy: kind.remedy(),
            since: None,
        }
    }

    /// The order outputs list findings in: most severe first, then by kind and subject.
    pub fn urgency(&self) -> (Severity, Kind, &Subject) {
        (self.severity, self.kind, &self.subject)
    }
}

fn optional_text<S: Serializer>(text: &Option<Arc<str>>, serializer: S) -> Result<S::Ok, S::Error> {
    match text {
        Some(text) => serializer.serialize_str(text),
        None => serializer.serialize_none(),
    }
}

fn unix_seconds<S: Serializer>(
    since: &Option<SystemTime>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match since.and_then(|at| at.duration_since(SystemTime::UNIX_EPOCH).ok()) {
        Some(elapsed) => serializer.serialize_f64(elapsed.as_secs_f64()),
        None => serializer.serialize_none(),
    }
}

/// Where findings begin and end. The defaults suit a busy server; see each field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FindingThresholds {
    /// Polls in a row a condition must hold to raise its finding. Default 2: one odd
    /// reading (a burst caught mid-way) raises nothing.
    pub raise_after_polls: u32,
    /// How long a condition must be gone before its finding clears. Default 30 s: a
    /// value flapping around its threshold keeps one finding, not a new one each time.
    pub clear_after: Duration,
    /// A listener's drops per second that count as dropping. Default 1.0: the kernel
    /// drops only when a queue is full, so anything steadier than a stray event a
    /// second is a queue staying full.
    pub listen_drops_per_second: f64,
    /// Share of the ephemeral port range one destination uses that is a warning
    /// (default 0.5) and critical (default 0.8): at 100% `connect()` fails with
    /// EADDRNOTAVAIL, and well before that it slows, searching for a free port.
    pub port_exhaustion_warning: f64,
    pub port_exhaustion_critical: f64,
    /// TIME_WAIT sockets, as a share of `tcp_max_tw_buckets`, that are a warning
    /// (default 0.5) and critical (default 0.9): at 100% closing connections skip
    /// TIME_WAIT, and a late segment can corrupt a new connection.
    pub time_wait_warning: f64,
    pub time_wait_critical: f64,
    /// SYN_SENT sockets toward one remote endpoint that make `connect_stalled`
    /// (default 5), once the oldest has waited `connect_stalled_age` (default 1 s, the
    /// kernel's first SYN timeout) or a SYN has been sent again
    /// `connect_stalled_retransmits` times (default 2).
    pub connect_stalled_count: u32,
    pub connect_stalled_age: Duration,
    pub connect_stalled_retransmits: u8,
    /// How long a Send-Q may stay without draining before its peer counts as not
    /// reading (default 10 s). A zero window counts at once.
    pub peer_not_reading_after: Duration,
    /// Retransmissions in a row of one segment that count a connection as
    /// retransmitting (default 3: the timer has doubled twice without an answer).
    pub path_retransmits: u8,
    /// New connections a second to one remote endpoint or into one local listener,
    /// most of them over within a poll, that make `connection_churn` (default 100).
    pub churn_per_second: f64,
}

impl Default for FindingThresholds {
    fn default() -> FindingThresholds {
        FindingThresholds {
            raise_after_polls: 2,
            clear_after: Duration::from_secs(30),
            listen_drops_per_second: 1.0,
            port_exhaustion_warning: 0.5,
            port_exhaustion_critical: 0.8,
            time_wait_warning: 0.5,
            time_wait_critical: 0.9,
            connect_stalled_count: 5,
            connect_stalled_age: Duration::from_secs(1),
            connect_stalled_retransmits: 2,
            peer_not_reading_after: Duration::from_secs(10),
            path_retransmits: 3,
            churn_per_second: 100.0,
        }
    }
}

/// `part` as a share of `whole`, 0 when `whole` is 0.
pub(crate) fn share(part: u32, whole: u32) -> f64 {
    if whole == 0 {
        0.0
    } else {
        f64::from(part) / f64::from(whole)
    }
}

/// A share as a whole percentage, rounded down so that 79.9% never reads as 80%.
pub(crate) fn percent(share: f64) -> u32 {
    // Shares are finite and non-negative; `as` saturates anything else.
    (share * 100.0).floor() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_table_is_in_kind_order_with_unique_snake_case_ids() {
        for (index, kind) in Kind::ALL.into_iter().enumerate() {
            assert_eq!(KINDS[index].kind, kind);
            assert!(
                kind.id()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_')
            );
        }
        let mut ids: Vec<&str> = Kind::ALL.map(Kind::id).to_vec();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), KINDS.len());
    }

    #[test]
    fn the_issue_s_default_severities_hold() {
        assert_eq!(Kind::SynFlood.info().severity, Some(Severity::Critical));
        assert_eq!(Kind::ListenDrops.info().severity, Some(Severity::Critical));
        assert_eq!(
            Kind::AcceptQueueFull.info().severity,
            Some(Severity::Warning)
        );
        assert_eq!(Kind::CloseWaitLeak.info().severity, Some(Severity::Warning));
        assert_eq!(Kind::PortExhaustion.info().severity, None);
        assert_eq!(Kind::TimeWaitPressure.info().severity, None);
        assert_eq!(Kind::ConnectionChurn.info().seen, Seen::LiveOnly);
        assert_eq!(Kind::ConnectStalled.info().seen, Seen::EveryMode);
    }

    #[test]
    fn the_subjects_about_peers_and_paths_read_as_ss_writes_addresses() {
        let v6: IpAddr = "2001:db8::".parse().expect("address");
        let remote = Subject::Remote {
            addr: v6,
            port: 443,
        };
        assert_eq!(remote.to_string(), "remote [2001:db8::]:443");
        let network = Subject::Network {
            addr: v6,
            prefix: 64,
        };
        assert_eq!(network.to_string(), "2001:db8::/64");
    }

    #[test]
    fn a_finding_in_json_has_its_id_severity_subject_and_named_evidence() {
        let finding = Finding::new(
            Kind::ListenDrops,
            Severity::Critical,
            Subject::Listener {
                addr: "::".parse().expect("address"),
                port: 443,
            },
            "dropping".to_owned(),
            Evidence::default()
                .number("drops_per_second", 2.5)
                .count("backlog", 128u32),
        );
        let json = serde_json::to_value(&finding).expect("serialises");
        assert_eq!(json["kind"], "listen_drops");
        assert_eq!(json["severity"], "critical");
        assert_eq!(json["subject"], "[::]:443");
        assert_eq!(json["evidence"]["drops_per_second"], 2.5);
        assert_eq!(json["evidence"]["backlog"], 128);
        assert_eq!(json["since"], serde_json::Value::Null);
        assert_eq!(json["remedy"], Kind::ListenDrops.remedy());
    }

    #[test]
    fn a_process_name_with_control_characters_is_shown_escaped() {
        let subject = Subject::Process {
            pid: 7,
            name: "evil\x1b[2Jname\n".to_owned(),
        };
        assert_eq!(subject.to_string(), "evil\\e[2Jname\\n (pid 7)");
    }

    #[test]
    fn a_share_just_under_a_threshold_never_reads_as_the_threshold() {
        assert_eq!(percent(share(799, 1000)), 79);
        assert_eq!(percent(share(800, 1000)), 80);
        assert_eq!(share(5, 0), 0.0);
    }
}
