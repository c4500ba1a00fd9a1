//! `--serve`: the numbers of the latest polls as Prometheus metrics, and the model
//! they are rendered from.
//!
//! [`Metrics`] keeps what a scrape shows: per network namespace, the counts of the
//! latest poll, every listener's queues, the transitions counted since start, the
//! kernel's TcpExt counters and how polling itself is going. [`Metrics::render`] turns
//! it into the Prometheus text format (version 0.0.4) with the `prometheus-client`
//! crate's encoder. Pure: updates come in as values, text goes out; the HTTP side
//! serves the rendered text as it is, so a scrape never costs a dump.
//!
//! Names and labels follow node_exporter's tcpstat collector in spirit
//! (`node_tcp_connection_states{state}` is `tcpscope_connections{state,family}` here),
//! with tcpscope's own state spelling (`SYN_RECV`, as `--grep` and `--json` print it).
//! Every label is bounded: states, families, listeners and namespaces, never a
//! connection's peer. At most [`MAX_LISTENER_SERIES`] listeners per namespace have
//! series of their own, the most urgent (flooded, then fullest queues), the rest are
//! summed into one `other` row. The CLOSE_WAIT series (per local port, and per process with
//! `-p`) exist only for groups holding CLOSE_WAIT sockets, at most
//! [`MAX_CLOSE_WAIT_SERIES`] of each per namespace, growing ones first, then the
//! largest. The finding series (`tcpscope_finding` and its evidence) exist only while a
//! finding is raised, for at most [`MAX_FINDING_SERIES`] findings per namespace, most
//! urgent first; their `subject` label names a listener, a destination, a local port, a
//! process or the namespace, as the finding does.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, prometheus_text};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::diff::Transition;
use crate::group::{self, Group, GroupCounts, GroupKey};
use crate::kernel::netns::NetNamespace;
use crate::kernel::procfs::{COUNTERS, TcpExt};
use crate::poll::update::Update;
use crate::snapshot::{Counts, Family, Snapshot};
use crate::tcp::State;
use crate::watch::findings::{Finding, Value};
use crate::watch::{CloseWaitLeaks, ListenerTable, PortLeak, ProcessLeak, SynWatch};

use super::groups::GroupNames;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The `from` label of a connection seen for the first time.
pub const FROM_NEW: &str = "NEW";
/// The `to` label of a connection that is gone.
pub const TO_GONE: &str = "GONE";

/// What the metrics show, for one or several network namespaces.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// By namespace inode (0 for the single namespace of [`Metrics::single`]), so that
    /// the output's order is stable as namespaces come and go.
    namespaces: BTreeMap<u64, NamespaceMetrics>,
    /// Whether series carry a `netns` label: with `--all-netns`, where several
    /// namespaces share one endpoint.
    labelled: bool,
}

/// One namespace's latest poll and running totals.
#[derive(Debug, Clone)]
struct NamespaceMetrics {
    namespace: Option<NetNamespace>,
    /// Sockets per state and family of the latest poll.
    connections: [[u64; 2]; 11],
    listeners: Vec<ListenerRow>,
    /// CLOSE_WAIT per local port of the latest poll, capped.
    close_wait_ports: Vec<PortLeak>,
    /// CLOSE_WAIT per process of the latest poll (owners known only), capped.
    close_wait_processes: Vec<ProcessLeak>,
    /// The findings raised as of the latest poll, most urgent first, capped.
    findings: Vec<Finding>,
    /// Sockets per state per listening port of the latest poll, capped.
    ports: Vec<(Option<u16>, Counts)>,
    /// Sockets per state per cgroup (path, unit) of the latest poll, capped.
    cgroups: Vec<(Option<(String, String)>, Counts)>,
    /// Transitions since start, by `from` and `to` (`None`: new, gone).
    transitions: BTreeMap<(Option<State>, Option<State>), u64>,
    tcpext: TcpExt,
    polls: u64,
    poll_errors: u64,
    poll_duration: Duration,
    last_poll: Option<SystemTime>,
    /// The time between full dumps as of the latest poll.
    full_every: Option<Duration>,
}

/// One listening endpoint's numbers, or the listeners past [`MAX_LISTENER_SERIES`]
/// folded into one row.
#[derive(Debug, Clone, PartialEq)]
struct ListenerRow {
    /// `None`: the row of the listeners not shown one by one.
    endpoint: Option<(IpAddr, u16)>,
    half_open: u32,
    accept_queue: u32,
    backlog: u32,
    distinct_sources: u32,
    suspected_flood: bool,
}

/// The most CLOSE_WAIT series of each kind (ports, processes) per namespace: a host
/// with CLOSE_WAIT sockets on thousands of ports must not flood the scraper. The groups
/// kept are the growing ones, then the largest.
pub const MAX_CLOSE_WAIT_SERIES: usize = 50;

/// The most listeners with series of their own per namespace: anyone may open
/// thousands of listeners on 127/8, and each costs a series per listener gauge (15,000
/// gave a 6 MB page). The rest are summed into one row labelled
/// `local_addr="other",local_port="other"`, so that totals stay right.
pub const MAX_LISTENER_SERIES: usize = 200;

/// The label values of the row of listeners folded together.
pub const OTHER_LISTENERS: &str = "other";

/// The most listening ports with `tcpscope_port_connections` series of their own per
/// namespace, those with the most connections; the rest are summed into one
/// `port="other"` row. As many as the listener series.
pub const MAX_PORT_SERIES: usize = MAX_LISTENER_SERIES;

/// The most cgroups with `tcpscope_cgroup_connections` series of their own per
/// namespace, those with the most connections; the rest are summed into one
/// `cgroup="other",unit="other"` row.
pub const MAX_CGROUP_SERIES: usize = 50;

/// Keeps the first `most` of `rows` (largest first already) and sums the rest into one
/// row labelled `None`.
fn capped<L>(rows: impl Iterator<Item = (L, Counts)>, most: usize) -> Vec<(Option<L>, Counts)> {
    let mut kept = Vec::new();
    let mut rest: Option<Counts> = None;
    for (label, counts) in rows {
        if kept.len() < most {
            kept.push((Some(label), counts));
        } else {
            rest.get_or_insert_with(Counts::default).merge(&counts);
        }
    }
    kept.extend(rest.map(|counts| (None, counts)));
    kept
}

/// The connections of this host's listening ports (the listener and what it
/// accepted), largest first, capped.
fn port_rows(snapshot: &Snapshot) -> Vec<(Option<u16>, Counts)> {
    let rows = group::group(GroupKey::Port, &snapshot.sockets, |_| None);
    let listening = rows.into_iter().filter_map(|row| match row.group {
        Group::ListenPort(port) => Some((port, row.counts)),
        _ => None,
    });
    capped(listening, MAX_PORT_SERIES)
}

impl ListenerRow {
    /// The listeners in `rest` as one row: their queues summed, flagged when any one
    /// is.
    fn folded(rest: &[ListenerRow]) -> ListenerRow {
        let sum = |value: fn(&ListenerRow) -> u32| {
            rest.iter()
                .fold(0u32, |total, row| total.saturating_add(value(row)))
        };
        ListenerRow {
            endpoint: None,
            half_open: sum(|row| row.half_open),
            accept_queue: sum(|row| row.accept_queue),
            backlog: sum(|row| row.backlog),
            distinct_sources: sum(|row| row.distinct_sources),
            suspected_flood: rest.iter().any(|row| row.suspected_flood),
        }
    }
}

/// The most findings shown per namespace, the most urgent kept: each is one
/// `tcpscope_finding` series, one `tcpscope_finding_since_timestamp_seconds` series and
/// one `tcpscope_finding_evidence` series per numeric evidence field (at most 8 per
/// kind), so a host with thousands of troubled endpoints still gives a bounded scrape.
pub const MAX_FINDING_SERIES: usize = 50;

/// The key of the one namespace of [`Metrics::single`].
pub const SINGLE: u64 = 0;

impl Metrics {
    /// Metrics for the namespace tcpscope runs in (or the one `--netns` named), under
    /// the key [`SINGLE`]: no `netns` label.
    pub fn single() -> Metrics {
        Metrics {
            namespaces: BTreeMap::from([(SINGLE, NamespaceMetrics::new(None))]),
            labelled: false,
        }
    }

    /// Metrics for several namespaces, each series labelled with its namespace, which
    /// is referred to by its inode from then on.
    pub fn per_namespace(namespaces: impl IntoIterator<Item = NetNamespace>) -> Metrics {
        let mut metrics = Metrics {
            namespaces: BTreeMap::new(),
            labelled: true,
        };
        for namespace in namespaces {
            metrics.add(namespace);
        }
        metrics
    }

    /// Starts showing a namespace that appeared.
    pub fn add(&mut self, namespace: NetNamespace) {
        self.namespaces
            .insert(namespace.inode, NamespaceMetrics::new(Some(namespace)));
    }

    /// Stops showing a namespace that is gone, with its series.
    pub fn remove(&mut self, inode: u64) {
        self.namespaces.remove(&inode);
    }

    /// Records a finished poll of namespace `key`. `table` is a reusable buffer for
    /// grouping the snapshot's listeners.
    pub fn observe(&mut self, key: u64, update: &Update, table: &mut ListenerTable) {
        if let Some(namespace) = self.namespaces.get_mut(&key) {
            namespace.observe(update, table);
        }
    }

    /// Records the CLOSE_WAIT reading of namespace `key`'s latest poll (from a
    /// [`crate::watch::LeakWatcher`] fed every poll). Sockets whose owner is not known
    /// are counted per port only.
    pub fn set_close_wait(&mut self, key: u64, leaks: &CloseWaitLeaks) {
        if let Some(namespace) = self.namespaces.get_mut(&key) {
            namespace.close_wait_ports = leaks
                .ports
                .iter()
                .take(MAX_CLOSE_WAIT_SERIES)
                .cloned()
                .collect();
            namespace.close_wait_processes = leaks
                .processes
                .iter()
                .filter(|leak| leak.owner.is_some())
                .take(MAX_CLOSE_WAIT_SERIES)
                .cloned()
                .collect();
        }
    }

    /// Records namespace `key`'s sockets per cgroup (from [`crate::group::group`] by
    /// [`GroupKey::Cgroup`], largest first), named by `names`; the largest
    /// [`MAX_CGROUP_SERIES`] get series of their own.
    pub fn set_cgroups(&mut self, key: u64, rows: &[GroupCounts], names: GroupNames<'_>) {
        if let Some(namespace) = self.namespaces.get_mut(&key) {
            let named = rows.iter().map(|row| {
                let unit = names.label(row.group);
                let path = names
                    .cgroup_path(row.group)
                    .map_or_else(|| unit.clone(), str::to_owned);
                ((path, unit), row.counts)
            });
            namespace.cgroups = capped(named, MAX_CGROUP_SERIES);
        }
    }

    /// Names, in namespace `key`'s findings of the latest poll, the cgroup that holds
    /// most of each one's sockets (see [`super::groups::place_findings`]).
    pub fn place_findings(
        &mut self,
        key: u64,
        sockets: &[crate::snapshot::SocketRecord],
        names: &mut crate::kernel::cgroups::CgroupNames,
    ) {
        if let Some(namespace) = self.namespaces.get_mut(&key) {
            super::groups::place_findings(&mut namespace.findings, sockets, names);
        }
    }

    /// Records a failed poll of namespace `key`.
    pub fn poll_failed(&mut self, key: u64) {
        if let Some(namespace) = self.namespaces.get_mut(&key) {
            namespace.poll_errors += 1;
        }
    }

    /// Whether any namespace has been polled successfully: before that there is
    /// nothing worth a scrape.
    pub fn has_polled(&self) -> bool {
        self.namespaces
            .values()
            .any(|namespace| namespace.polls > 0)
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Exposition(self.clone())));
        let mut text = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail, and every label here is valid.
        let _ = prometheus_text::encode(&mut text, &registry);
        text
    }
}

impl NamespaceMetrics {
    fn new(namespace: Option<NetNamespace>) -> NamespaceMetrics {
        NamespaceMetrics {
            namespace,
            connections: [[0; 2]; 11],
            listeners: Vec::new(),
            close_wait_ports: Vec::new(),
            close_wait_processes: Vec::new(),
            findings: Vec::new(),
            ports: Vec::new(),
            cgroups: Vec::new(),
            transitions: BTreeMap::new(),
            tcpext: TcpExt::default(),
            polls: 0,
            poll_errors: 0,
            poll_duration: Duration::ZERO,
            last_poll: None,
            full_every: None,
        }
    }

    fn observe(&mut self, update: &Update, table: &mut ListenerTable) {
        match &update.pace.lane {
            None => {
                self.connections = connections(&update.snapshot);
                self.listeners = listener_rows(&update.snapshot, &update.syn_watch, table);
                self.ports = port_rows(&update.snapshot);
            }
            // Between full dumps the fast lane's listeners and SYN_RECV are fresher
            // than the table's; the other states stay as the last full dump left them.
            Some(lane) => {
                let fresh = connections(lane);
                for state in [State::Listen, State::SynRecv] {
                    self.connections[state.index()] = fresh[state.index()];
                }
                self.listeners = listener_rows(lane, &update.syn_watch, table);
            }
        }
        self.full_every = update.pace.full_every;
        // Already most urgent first: the cap drops the least urgent.
        self.findings.clear();
        self.findings
            .extend(update.findings.iter().take(MAX_FINDING_SERIES).cloned());
        for transition in &update.transitions {
            *self.transitions.entry(step(transition)).or_default() += 1;
        }
        self.tcpext = update.counters;
        self.polls += 1;
        self.poll_duration = update.took;
        self.last_poll = Some(update.pace.at);
    }
}

fn connections(snapshot: &Snapshot) -> [[u64; 2]; 11] {
    let mut counts = [[0; 2]; 11];
    for socket in &snapshot.sockets {
        counts[socket.state.index()][family_index(socket.family)] += 1;
    }
    counts
}

fn family_index(family: Family) -> usize {
    match family {
        Family::Ipv4 => 0,
        Family::Ipv6 => 1,
    }
}

const FAMILIES: [Family; 2] = [Family::Ipv4, Family::Ipv6];

/// Every listener of the snapshot, quiet ones included (a scrape wants a series that
/// stays, not one that appears when trouble starts), with the SYN watch's verdict,
/// which remembers a flood across polls.
fn listener_rows(
    snapshot: &Snapshot,
    syn_watch: &SynWatch,
    table: &mut ListenerTable,
) -> Vec<ListenerRow> {
    let mut rows: Vec<ListenerRow> = table
        .group(snapshot)
        .into_iter()
        // Half-open connections whose listener was not in the dump are the SYN
        // watch's business; a listener metric needs a listener.
        .filter(|listener| listener.listen_sockets > 0)
        .map(|listener| ListenerRow {
            endpoint: Some((listener.local_addr, listener.local_port)),
            half_open: listener.half_open,
            accept_queue: listener.accept_queue,
            backlog: listener.backlog,
            distinct_sources: listener.distinct_sources,
            suspected_flood: syn_watch
                .listeners
                .iter()
                .any(|row| row.suspected_flood && row.listener.endpoint() == listener.endpoint()),
        })
        .collect();
    if rows.len() > MAX_LISTENER_SERIES {
        // The most urgent first; among equals the lowest ports, so that the quiet
        // listeners shown stay the same from scrape to scrape.
        rows.sort_by_key(|row| {
            (
                Reverse(row.suspected_flood),
                Reverse(u64::from(row.half_open) + u64::from(row.accept_queue)),
                row.endpoint,
            )
        });
        let rest = rows.split_off(MAX_LISTENER_SERIES);
        rows.sort_by_key(|row| row.endpoint.map(|(addr, port)| (port, addr)));
        rows.push(ListenerRow::folded(&rest));
    } else {
        rows.sort_by_key(|row| row.endpoint.map(|(addr, port)| (port, addr)));
    }
    rows
}

fn step(transition: &Transition) -> (Option<State>, Option<State>) {
    (transition.from, transition.to)
}

/// Renders a [`Metrics`] through `prometheus-client`'s encoder.
#[derive(Debug)]
struct Exposition(Metrics);

/// A label set: `(name, value)` pairs.
type Labels<'a> = Vec<(&'static str, Cow<'a, str>)>;

impl Exposition {
    /// The labels every series of `namespace` starts with.
    fn base<'a>(&self, namespace: &NamespaceMetrics) -> Labels<'a> {
        match (&namespace.namespace, self.0.labelled) {
            (Some(netns), true) => vec![("netns", Cow::Owned(netns.inode.to_string()))],
            _ => Vec::new(),
        }
    }

    /// Writes one metric family: its descriptor, then one sample per namespace and
    /// per label set `samples` yields for it.
    fn family<'n, V>(
        &'n self,
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        kind: MetricType,
        samples: impl Fn(&'n NamespaceMetrics) -> Vec<(Labels<'n>, V)>,
    ) -> fmt::Result
    where
        V: Sample,
    {
        let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
        for namespace in self.0.namespaces.values() {
            for (labels, value) in samples(namespace) {
                let mut all = self.base(namespace);
                all.extend(labels);
                value.encode(metric.encode_family(&all)?)?;
            }
        }
        Ok(())
    }
}

impl Exposition {
    /// The finding series: one per raised finding, with when it was raised and its
    /// numeric evidence.
    fn findings(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        self.family(
            encoder,
            "tcpscope_finding",
            "1 while a finding is raised (an incident tcpscope names, about its subject); the series is gone once the finding clears.",
            MetricType::Gauge,
            |ns| {
                ns.findings
                    .iter()
                    .map(|finding| {
                        let mut labels = finding_labels(finding);
                        labels.insert(1, ("severity", Cow::Borrowed(finding.severity.name())));
                        (labels, gauge(1.0))
                    })
                    .collect()
            },
        )?;
        self.family(
            encoder,
            "tcpscope_finding_since_timestamp_seconds",
            "When the raised finding was raised, in seconds since the Unix epoch.",
            MetricType::Gauge,
            |ns| {
                ns.findings
                    .iter()
                    .filter_map(|finding| {
                        let since = finding.since?.duration_since(UNIX_EPOCH).ok()?;
                        Some((finding_labels(finding), gauge(since.as_secs_f64())))
                    })
                    .collect()
            },
        )?;
        self.family(
            encoder,
            "tcpscope_finding_evidence",
            "A number behind a raised finding (the name label: half_open, used, time_wait_share, drops_per_second, ...); flags are 1 or 0.",
            MetricType::Gauge,
            |ns| {
                ns.findings
                    .iter()
                    .flat_map(|finding| {
                        finding.evidence.iter().filter_map(move |(name, value)| {
                            let value = match value {
                                // Counts stay exact below 2^53.
                                Value::Count(count) => *count as f64,
                                Value::Number(number) => *number,
                                Value::Flag(flag) => f64::from(u8::from(*flag)),
                                Value::Text(_) => return None,
                            };
                            let mut labels = finding_labels(finding);
                            labels.push(("name", Cow::Borrowed(name)));
                            Some((labels, gauge(value)))
                        })
                    })
                    .collect()
            },
        )
    }
}

/// The labels that name a finding: its kind and subject.
/// The label value of the row that sums the groups past the cap.
pub const OTHER_GROUP: &str = "other";

/// One sample per group and state with sockets: the group's labels and the state.
fn group_samples<'n, L>(
    rows: &'n [(Option<L>, Counts)],
    labels: impl Fn(&'n Option<L>) -> Labels<'n>,
) -> Vec<(Labels<'n>, Gauge)> {
    rows.iter()
        .flat_map(|(group, counts)| {
            let labels = &labels;
            counts
                .iter()
                .filter(|(_, count)| *count > 0)
                .map(move |(state, count)| {
                    let mut all = labels(group);
                    all.push(("state", Cow::Borrowed(state.name())));
                    (all, gauge(count))
                })
        })
        .collect()
}

fn finding_labels(finding: &Finding) -> Labels<'_> {
    vec![
        ("kind", Cow::Borrowed(finding.kind.id())),
        ("subject", Cow::Owned(finding.subject.to_string())),
    ]
}

/// A value as a gauge or a counter sample.
trait Sample {
    fn encode(self, encoder: prometheus_client::encoding::MetricEncoder) -> fmt::Result;
}

struct Gauge(f64);
struct Counter(u64);

impl Sample for Gauge {
    fn encode(self, encoder: prometheus_client::encoding::MetricEncoder) -> fmt::Result {
        ConstGauge::new(self.0).encode(encoder)
    }
}

impl Sample for Counter {
    fn encode(self, encoder: prometheus_client::encoding::MetricEncoder) -> fmt::Result {
        ConstCounter::new(self.0).encode(encoder)
    }
}

fn gauge(value: impl Into<f64>) -> Gauge {
    Gauge(value.into())
}

/// Only namespaces polled at least once have numbers to show.
fn polled<T>(namespace: &NamespaceMetrics, samples: impl FnOnce() -> Vec<T>) -> Vec<T> {
    if namespace.polls > 0 {
        samples()
    } else {
        Vec::new()
    }
}

/// A metric's name and help, and how to read its value from a `T`.
type Described<T, V> = (&'static str, &'static str, fn(&T) -> V);

/// The per-listener gauges: name, help, value.
const LISTENER_GAUGES: [Described<ListenerRow, f64>; 5] = [
    (
        "tcpscope_listener_half_open",
        "Half-open (SYN_RECV) connections waiting on the listener.",
        |row| f64::from(row.half_open),
    ),
    (
        "tcpscope_listener_accept_queue",
        "Connections that completed the handshake and wait for accept() (Recv-Q of LISTEN).",
        |row| f64::from(row.accept_queue),
    ),
    (
        "tcpscope_listener_backlog",
        "The accept queue's limit (Send-Q of LISTEN: listen()'s backlog, capped by somaxconn).",
        |row| f64::from(row.backlog),
    ),
    (
        "tcpscope_listener_distinct_sources",
        "Distinct source addresses among the listener's half-open connections.",
        |row| f64::from(row.distinct_sources),
    ),
    (
        "tcpscope_listener_suspected_flood",
        "1 when the SYN watch suspects a SYN flood on the listener, else 0.",
        |row| if row.suspected_flood { 1.0 } else { 0.0 },
    ),
];

/// The per-port CLOSE_WAIT gauges: name, help, value.
const CLOSE_WAIT_PORT_GAUGES: [Described<PortLeak, f64>; 3] = [
    (
        "tcpscope_close_wait_sockets",
        "CLOSE_WAIT sockets on the local port (the peer closed, the application has not); only ports with some.",
        |leak| f64::from(leak.close_wait),
    ),
    (
        "tcpscope_close_wait_oldest_seconds",
        "How long the oldest CLOSE_WAIT socket on the local port has been seen in that state (a lower bound).",
        |leak| leak.oldest.as_secs_f64(),
    ),
    (
        "tcpscope_close_wait_growing",
        "1 when the port's CLOSE_WAIT count keeps growing while its oldest sockets stay (an application not closing sockets), else 0.",
        |leak| if leak.growing { 1.0 } else { 0.0 },
    ),
];

/// The per-process CLOSE_WAIT gauges (with `-p`): name, help, value.
const CLOSE_WAIT_PROCESS_GAUGES: [Described<ProcessLeak, f64>; 3] = [
    (
        "tcpscope_process_close_wait_sockets",
        "CLOSE_WAIT sockets the process holds (the peer closed, the process has not); only processes with some.",
        |leak| f64::from(leak.close_wait),
    ),
    (
        "tcpscope_process_close_wait_oldest_seconds",
        "How long the oldest CLOSE_WAIT socket of the process has been seen in that state (a lower bound).",
        |leak| leak.oldest.as_secs_f64(),
    ),
    (
        "tcpscope_process_close_wait_growing",
        "1 when the process's CLOSE_WAIT count keeps growing while its oldest sockets stay (application not closing sockets), else 0.",
        |leak| if leak.growing { 1.0 } else { 0.0 },
    ),
];

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        // As every exporter does (node_exporter's `node_exporter_build_info`): which
        // build answers, so a dashboard can show versions across a fleet.
        encoder
            .encode_descriptor(
                "tcpscope_build",
                "The tcpscope build serving these metrics: its version and the architecture it was built for.",
                None,
                MetricType::Info,
            )?
            .encode_info(&[
                ("version", env!("CARGO_PKG_VERSION")),
                ("arch", std::env::consts::ARCH),
            ])?;
        if self.0.labelled {
            let mut metric = encoder.encode_descriptor(
                "tcpscope_netns",
                "A network namespace tcpscope watches: its inode (the netns label), a process in it, its container when the cgroup path names one, its `ip netns` name when it has one, and host=\"true\" for the initial namespace.",
                None,
                MetricType::Info,
            )?;
            for namespace in self.0.namespaces.values() {
                if let Some(netns) = &namespace.namespace {
                    let mut labels: Labels = vec![
                        ("netns", Cow::Owned(netns.inode.to_string())),
                        ("pid", Cow::Owned(netns.pid.to_string())),
                    ];
                    if let Some(container) = &netns.container {
                        labels.push(("container", Cow::Borrowed(container.id.as_str())));
                        labels.push(("runtime", Cow::Borrowed(container.runtime)));
                    }
                    if let Some(name) = &netns.name {
                        labels.push(("name", Cow::Borrowed(name.as_str())));
                    }
                    if netns.host {
                        labels.push(("host", Cow::Borrowed("true")));
                    }
                    metric.encode_info(&labels)?;
                }
            }
        }

        self.family(
            &mut encoder,
            "tcpscope_connections",
            "TCP sockets in each state, as of the latest poll (SYN_RECV includes request sockets).",
            MetricType::Gauge,
            |ns| {
                polled(ns, || {
                    State::ALL
                        .into_iter()
                        .flat_map(|state| {
                            FAMILIES.into_iter().map(move |family| {
                                let count =
                                    ns.connections[state.index()][family_index(family)] as f64;
                                let labels: Labels = vec![
                                    ("state", Cow::Borrowed(state.name())),
                                    ("family", Cow::Borrowed(family.name())),
                                ];
                                (labels, gauge(count))
                            })
                        })
                        .collect()
                })
            },
        )?;

        for (name, help, value) in LISTENER_GAUGES {
            self.family(&mut encoder, name, help, MetricType::Gauge, |ns| {
                ns.listeners
                    .iter()
                    .map(|row| {
                        let labels: Labels = match row.endpoint {
                            Some((addr, port)) => vec![
                                ("local_addr", Cow::Owned(addr.to_string())),
                                ("local_port", Cow::Owned(port.to_string())),
                            ],
                            None => vec![
                                ("local_addr", Cow::Borrowed(OTHER_LISTENERS)),
                                ("local_port", Cow::Borrowed(OTHER_LISTENERS)),
                            ],
                        };
                        (labels, gauge(value(row)))
                    })
                    .collect()
            })?;
        }

        for (name, help, value) in CLOSE_WAIT_PORT_GAUGES {
            self.family(&mut encoder, name, help, MetricType::Gauge, |ns| {
                ns.close_wait_ports
                    .iter()
                    .map(|leak| {
                        let labels: Labels =
                            vec![("local_port", Cow::Owned(leak.local_port.to_string()))];
                        (labels, gauge(value(leak)))
                    })
                    .collect()
            })?;
        }
        for (name, help, value) in CLOSE_WAIT_PROCESS_GAUGES {
            self.family(&mut encoder, name, help, MetricType::Gauge, |ns| {
                ns.close_wait_processes
                    .iter()
                    .filter_map(|leak| {
                        let owner = leak.owner.as_ref()?;
                        let labels: Labels = vec![
                            ("pid", Cow::Owned(owner.pid.to_string())),
                            ("process", Cow::Borrowed(owner.name.as_str())),
                        ];
                        Some((labels, gauge(value(leak))))
                    })
                    .collect()
            })?;
        }

        self.family(
            &mut encoder,
            "tcpscope_port_connections",
            "TCP sockets in each state per listening port of this host: the listener and the connections it accepted, request sockets and TIME_WAIT included (the largest ports; port=\"other\" sums the rest). States with no socket have no series.",
            MetricType::Gauge,
            |ns| {
                group_samples(&ns.ports, |port| match port {
                    Some(port) => vec![("port", Cow::Owned(port.to_string()))],
                    None => vec![("port", Cow::Borrowed(OTHER_GROUP))],
                })
            },
        )?;
        self.family(
            &mut encoder,
            "tcpscope_cgroup_connections",
            "TCP sockets in each state per cgroup v2 (path) and its systemd unit, container or pod (unit); request sockets and TIME_WAIT count in their listener's cgroup, \"-\" is none (the largest cgroups; cgroup=\"other\" sums the rest). States with no socket have no series.",
            MetricType::Gauge,
            |ns| {
                group_samples(&ns.cgroups, |cgroup| match cgroup {
                    Some((path, unit)) => vec![
                        ("cgroup", Cow::Borrowed(path.as_str())),
                        ("unit", Cow::Borrowed(unit.as_str())),
                    ],
                    None => vec![
                        ("cgroup", Cow::Borrowed(OTHER_GROUP)),
                        ("unit", Cow::Borrowed(OTHER_GROUP)),
                    ],
                })
            },
        )?;

        self.findings(&mut encoder)?;

        self.family(
            &mut encoder,
            "tcpscope_transitions",
            "Connection state changes seen since tcpscope started; from=\"NEW\" for a connection first seen, to=\"GONE\" for one that is gone.",
            MetricType::Counter,
            |ns| {
                ns.transitions
                    .iter()
                    .map(|(&(from, to), &count)| {
                        let labels: Labels = vec![
                            ("from", Cow::Borrowed(from.map_or(FROM_NEW, State::name))),
                            ("to", Cow::Borrowed(to.map_or(TO_GONE, State::name))),
                        ];
                        (labels, Counter(count))
                    })
                    .collect()
            },
        )?;

        for counter in COUNTERS {
            let name = format!("tcpscope_tcpext_{}", counter.key);
            let help = format!("{} (TcpExt {}).", counter.help, counter.kernel_name);
            self.family(&mut encoder, &name, &help, MetricType::Counter, |ns| {
                polled(ns, || {
                    vec![(Labels::new(), Counter(counter.get(&ns.tcpext)))]
                })
            })?;
        }

        self.family(
            &mut encoder,
            "tcpscope_poll_duration_seconds",
            "How long the latest poll (dump, diff and analysis) took.",
            MetricType::Gauge,
            |ns| {
                polled(ns, || {
                    vec![(Labels::new(), gauge(ns.poll_duration.as_secs_f64()))]
                })
            },
        )?;
        self.family(
            &mut encoder,
            "tcpscope_poll_interval_seconds",
            "The time between full dumps of the socket table: --interval, or longer to keep within --max-cpu (listeners, SYN_RECV and the counters are still read every --interval).",
            MetricType::Gauge,
            |ns| {
                polled(ns, || {
                    ns.full_every
                        .map(|every| (Labels::new(), gauge(every.as_secs_f64())))
                        .into_iter()
                        .collect()
                })
            },
        )?;
        self.family(
            &mut encoder,
            "tcpscope_last_poll_timestamp_seconds",
            "When the latest successful poll was taken, in seconds since the Unix epoch.",
            MetricType::Gauge,
            |ns| {
                ns.last_poll
                    .map(|at| {
                        let seconds = at
                            .duration_since(UNIX_EPOCH)
                            .unwrap_or_default()
                            .as_secs_f64();
                        (Labels::new(), gauge(seconds))
                    })
                    .into_iter()
                    .collect()
            },
        )?;
        self.family(
            &mut encoder,
            "tcpscope_polls",
            "Successful polls since tcpscope started.",
            MetricType::Counter,
            |ns| vec![(Labels::new(), Counter(ns.polls))],
        )?;
        self.family(
            &mut encoder,
            "tcpscope_poll_errors",
            "Failed polls since tcpscope started; polling goes on at the next tick.",
            MetricType::Counter,
            |ns| vec![(Labels::new(), Counter(ns.poll_errors))],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::Transition;
    use crate::kernel::netns::Container;
    use crate::poll::update::EventStatus;
    use crate::snapshot::fixtures::socket;
    use crate::watch::Thresholds;
    use std::sync::Arc;

    fn update(sockets: Vec<crate::snapshot::SocketRecord>) -> Update {
        let snapshot = Snapshot::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000), sockets);
        let syn_watch = SynWatch::of(&snapshot, Thresholds::default());
        Update {
            tcp_info: None,
            pace: crate::poll::update::Pace::full(&snapshot, None),
            snapshot: Arc::new(snapshot),
            transitions: Vec::new(),
            counters: TcpExt {
                syncookies_sent: 12,
                ..TcpExt::default()
            },
            rates: None,
            findings: Vec::new(),
            finding_events: Vec::new(),
            syn_watch,
            took: Duration::from_millis(3),
            events: EventStatus::Off,
            event_overflows: 0,
        }
    }

    fn listen(addr: &str, port: u16, queue: u32, backlog: u32) -> crate::snapshot::SocketRecord {
        let mut record = socket(State::Listen, addr, port, "0.0.0.0", 0);
        record.recv_q = queue;
        record.send_q = backlog;
        record
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().filter(|line| !line.starts_with('#')).collect()
    }

    #[test]
    fn every_state_and_family_has_a_connections_gauge_zeros_included() {
        let mut metrics = Metrics::single();
        let sockets = vec![
            socket(State::Established, "127.0.0.1", 80, "127.0.0.2", 4000),
            socket(State::Established, "::1", 80, "::1", 4000),
            listen("0.0.0.0", 80, 0, 128),
        ];
        metrics.observe(SINGLE, &update(sockets), &mut ListenerTable::default());
        let text = metrics.render();
        let samples = lines(&text);
        let connections: Vec<_> = samples
            .iter()
            .filter(|line| line.starts_with("tcpscope_connections{"))
            .collect();
        assert_eq!(connections.len(), 22, "{text}");
        assert!(
            samples.contains(&"tcpscope_connections{state=\"ESTABLISHED\",family=\"ipv4\"} 1.0"),
            "{text}"
        );
        assert!(
            samples.contains(&"tcpscope_connections{state=\"ESTABLISHED\",family=\"ipv6\"} 1.0")
        );
        assert!(samples.contains(&"tcpscope_connections{state=\"TIME_WAIT\",family=\"ipv6\"} 0.0"));
        assert!(text.contains("# TYPE tcpscope_connections gauge\n"));
    }

    #[test]
    fn listening_ports_have_connections_per_state_and_outgoing_ones_none() {
        let mut metrics = Metrics::single();
        let sockets = vec![
            listen("0.0.0.0", 8080, 0, 128),
            socket(State::Established, "10.0.0.1", 8080, "10.0.0.2", 4000),
            socket(State::SynRecv, "10.0.0.1", 8080, "10.0.0.3", 4001),
            socket(State::Established, "10.0.0.1", 50000, "10.0.0.9", 443),
        ];
        metrics.observe(SINGLE, &update(sockets), &mut ListenerTable::default());
        let text = metrics.render();
        let ports: Vec<_> = lines(&text)
            .into_iter()
            .filter(|line| line.starts_with("tcpscope_port_connections{"))
            .collect();
        assert_eq!(
            ports,
            [
                "tcpscope_port_connections{port=\"8080\",state=\"LISTEN\"} 1.0",
                "tcpscope_port_connections{port=\"8080\",state=\"SYN_RECV\"} 1.0",
                "tcpscope_port_connections{port=\"8080\",state=\"ESTABLISHED\"} 1.0",
            ],
            "{text}"
        );
    }

    #[test]
    fn the_fifty_largest_cgroups_have_series_and_the_rest_one_other_row() {
        let mut metrics = Metrics::single();
        metrics.observe(SINGLE, &update(Vec::new()), &mut ListenerTable::default());
        let sockets: Vec<_> = (1..=80u64)
            .flat_map(|id| {
                (0..id).map(move |n| {
                    let mut record =
                        socket(State::Established, "10.0.0.1", n as u16, "10.0.0.2", 1);
                    record.cgroup_id = id;
                    record
                })
            })
            .collect();
        let rows = group::group(GroupKey::Cgroup, &sockets, |_| None);
        metrics.set_cgroups(SINGLE, &rows, GroupNames::default());
        let text = metrics.render();
        let cgroups: Vec<_> = lines(&text)
            .into_iter()
            .filter(|line| line.starts_with("tcpscope_cgroup_connections{"))
            .collect();
        assert_eq!(cgroups.len(), MAX_CGROUP_SERIES + 1, "{text}");
        assert_eq!(
            cgroups[0],
            "tcpscope_cgroup_connections{cgroup=\"cgroup 80\",unit=\"cgroup 80\",state=\"ESTABLISHED\"} 80.0"
        );
        // Cgroups 1 to 30 hold 465 sockets between them.
        assert_eq!(
            cgroups[MAX_CGROUP_SERIES],
            "tcpscope_cgroup_connections{cgroup=\"other\",unit=\"other\",state=\"ESTABLISHED\"} 465.0"
        );
    }

    #[test]
    fn thousands_of_listeners_give_the_most_urgent_series_and_one_row_for_the_rest() {
        let mut metrics = Metrics::single();
        let mut sockets: Vec<_> = (0..5_000u16)
            .map(|n| listen("127.0.0.1", 20_000 + n, 0, 128))
            .collect();
        // The one listener with a full accept queue is kept, however high its port.
        sockets.push(listen("127.0.0.1", 60_000, 7, 8));
        metrics.observe(SINGLE, &update(sockets), &mut ListenerTable::default());
        let text = metrics.render();
        let backlogs: Vec<_> = lines(&text)
            .into_iter()
            .filter(|line| line.starts_with("tcpscope_listener_backlog{"))
            .collect();
        assert_eq!(
            backlogs.len(),
            MAX_LISTENER_SERIES + 1,
            "{}",
            backlogs.len()
        );
        assert!(text.contains(
            "tcpscope_listener_accept_queue{local_addr=\"127.0.0.1\",local_port=\"60000\"} 7.0"
        ));
        // The 4,801 listeners not shown: their backlogs summed, so totals stay right.
        let folded = 128.0 * (5_001 - MAX_LISTENER_SERIES) as f64;
        assert!(
            backlogs.contains(&format!(
                "tcpscope_listener_backlog{{local_addr=\"other\",local_port=\"other\"}} {folded:.1}"
            ).as_str()),
            "{backlogs:?}"
        );
        assert!(text.len() < 200 * 1024, "a page of {} bytes", text.len());
    }

    #[test]
    fn every_listener_gets_its_queues_even_when_quiet() {
        let mut metrics = Metrics::single();
        let mut half_open = socket(State::SynRecv, "127.0.0.1", 8080, "127.64.0.1", 999);
        half_open.retransmits = 1;
        let sockets = vec![
            listen("0.0.0.0", 22, 0, 128),
            listen("127.0.0.1", 8080, 3, 4096),
            half_open,
        ];
        metrics.observe(SINGLE, &update(sockets), &mut ListenerTable::default());
        let text = metrics.render();
        let samples = lines(&text);
        for expected in [
            "tcpscope_listener_half_open{local_addr=\"0.0.0.0\",local_port=\"22\"} 0.0",
            "tcpscope_listener_backlog{local_addr=\"0.0.0.0\",local_port=\"22\"} 128.0",
            "tcpscope_listener_half_open{local_addr=\"127.0.0.1\",local_port=\"8080\"} 1.0",
            "tcpscope_listener_accept_queue{local_addr=\"127.0.0.1\",local_port=\"8080\"} 3.0",
            "tcpscope_listener_distinct_sources{local_addr=\"127.0.0.1\",local_port=\"8080\"} 1.0",
            "tcpscope_listener_suspected_flood{local_addr=\"127.0.0.1\",local_port=\"8080\"} 0.0",
        ] {
            assert!(
                samples.contains(&expected),
                "{expected} missing from\n{text}"
            );
        }
    }

    #[test]
    fn transitions_add_up_across_polls_with_new_and_gone_as_endpoints() {
        let mut metrics = Metrics::single();
        let connection = socket(State::Established, "127.0.0.1", 80, "127.0.0.2", 4000);
        let mut first = update(vec![connection]);
        first.transitions = vec![Transition::opened(
            connection.endpoints(),
            State::Established,
            1,
        )];
        let mut second = update(vec![]);
        second.transitions = vec![
            Transition::opened(connection.endpoints(), State::Established, 2),
            Transition::closed(connection.endpoints(), State::Established, 1),
        ];
        let mut table = ListenerTable::default();
        metrics.observe(SINGLE, &first, &mut table);
        metrics.observe(SINGLE, &second, &mut table);
        let text = metrics.render();
        let samples = lines(&text);
        assert!(
            samples.contains(&"tcpscope_transitions_total{from=\"NEW\",to=\"ESTABLISHED\"} 2"),
            "{text}"
        );
        assert!(
            samples.contains(&"tcpscope_transitions_total{from=\"ESTABLISHED\",to=\"GONE\"} 1")
        );
        assert!(text.contains("# TYPE tcpscope_transitions_total counter\n"));
        assert!(samples.contains(&"tcpscope_polls_total 2"));
    }

    #[test]
    fn the_poller_reports_on_itself() {
        let mut metrics = Metrics::single();
        assert!(!metrics.has_polled());
        metrics.poll_failed(SINGLE);
        metrics.observe(SINGLE, &update(vec![]), &mut ListenerTable::default());
        assert!(metrics.has_polled());
        let text = metrics.render();
        let samples = lines(&text);
        assert!(samples.contains(&"tcpscope_poll_errors_total 1"), "{text}");
        assert!(
            samples.contains(&"tcpscope_poll_duration_seconds 0.003"),
            "{text}"
        );
        assert!(samples.contains(&"tcpscope_last_poll_timestamp_seconds 1700000000.0"));
        assert!(samples.contains(&"tcpscope_tcpext_syncookies_sent_total 12"));
        assert!(samples.contains(&"tcpscope_tcpext_req_q_full_drop_total 0"));
    }

    #[test]
    fn the_time_between_full_dumps_is_a_gauge_and_a_fast_lane_poll_refreshes_listeners_only() {
        let mut metrics = Metrics::single();
        let mut table = ListenerTable::default();
        let listener = socket(State::Listen, "127.0.0.1", 80, "0.0.0.0", 0);
        let established = socket(State::Established, "127.0.0.1", 80, "10.0.0.1", 5000);
        let mut full = update(vec![listener, established]);
        full.pace.full_every = Some(Duration::from_secs(4));
        metrics.observe(SINGLE, &full, &mut table);
        let text = metrics.render();
        assert!(
            lines(&text).contains(&"tcpscope_poll_interval_seconds 4.0"),
            "{text}"
        );

        // Between full dumps: two half-open connections, the table as it was.
        let half_open: Vec<_> = (0..2)
            .map(|port| socket(State::SynRecv, "127.0.0.1", 80, "10.9.9.9", 2000 + port))
            .collect();
        let lane = Snapshot::new(
            UNIX_EPOCH + Duration::from_secs(1_700_000_001),
            [vec![listener], half_open].concat(),
        );
        let mut fast = update(vec![listener, established]);
        fast.syn_watch = SynWatch::of(&lane, Thresholds::default());
        fast.pace.lane = Some(Arc::new(lane));
        fast.pace.at = UNIX_EPOCH + Duration::from_secs(1_700_000_001);
        fast.pace.full_every = Some(Duration::from_secs(4));
        // A close the lane resolved from a destroy event counts at once.
        fast.transitions = vec![Transition::closed(
            established.endpoints(),
            State::Established,
            2,
        )];
        metrics.observe(SINGLE, &fast, &mut table);
        let text = metrics.render();
        let samples = lines(&text);
        for expected in [
            "tcpscope_transitions_total{from=\"ESTABLISHED\",to=\"GONE\"} 1",
            "tcpscope_connections{state=\"SYN_RECV\",family=\"ipv4\"} 2.0",
            "tcpscope_connections{state=\"ESTABLISHED\",family=\"ipv4\"} 1.0",
            "tcpscope_listener_half_open{local_addr=\"127.0.0.1\",local_port=\"80\"} 2.0",
            "tcpscope_last_poll_timestamp_seconds 1700000001.0",
        ] {
            assert!(samples.contains(&expected), "{expected} in {text}");
        }
    }

    #[test]
    fn close_wait_is_shown_per_port_and_per_known_process_only_where_there_is_some() {
        use crate::watch::{LeakWatcher, Owner};
        let mut metrics = Metrics::single();
        metrics.observe(SINGLE, &update(vec![]), &mut ListenerTable::default());
        let mut watcher = LeakWatcher::new(2);
        let mut sockets = Vec::new();
        let mut leaks = CloseWaitLeaks::default();
        for poll in 0..4u16 {
            let mut kept = socket(State::CloseWait, "10.0.0.1", 7301, "10.0.0.2", 4000 + poll);
            kept.cookie = u64::from(poll) + 1;
            kept.inode = 100 + u32::from(poll);
            sockets.push(kept);
            let mut unknown = socket(State::CloseWait, "10.0.0.1", 7400, "10.0.0.3", 5000 + poll);
            unknown.cookie = 1000 + u64::from(poll);
            unknown.inode = 9999;
            let mut now = sockets.clone();
            now.push(unknown);
            let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000 + u64::from(poll));
            leaks = watcher.observe(at, &now, |inode| {
                (inode < 9999).then(|| Owner {
                    pid: 4242,
                    name: "leaky \"api\"".into(),
                })
            });
        }
        metrics.set_close_wait(SINGLE, &leaks);
        let text = metrics.render();
        let samples = lines(&text);
        for expected in [
            "tcpscope_close_wait_sockets{local_port=\"7301\"} 4.0",
            "tcpscope_close_wait_oldest_seconds{local_port=\"7301\"} 3.0",
            "tcpscope_close_wait_growing{local_port=\"7301\"} 1.0",
            "tcpscope_close_wait_sockets{local_port=\"7400\"} 1.0",
            "tcpscope_close_wait_growing{local_port=\"7400\"} 0.0",
            "tcpscope_process_close_wait_sockets{pid=\"4242\",process=\"leaky \\\"api\\\"\"} 4.0",
            "tcpscope_process_close_wait_growing{pid=\"4242\",process=\"leaky \\\"api\\\"\"} 1.0",
        ] {
            assert!(
                samples.contains(&expected),
                "{expected} missing from\n{text}"
            );
        }
        assert_eq!(
            samples
                .iter()
                .filter(|l| l.starts_with("tcpscope_process_close_wait_sockets"))
                .count(),
            1,
            "sockets of unknown owners make no process series:\n{text}"
        );

        // Once the sockets are closed, the series go.
        metrics.set_close_wait(SINGLE, &CloseWaitLeaks::default());
        let text = metrics.render();
        assert!(
            !lines(&text).iter().any(|l| l.contains("close_wait")),
            "{text}"
        );
    }

    #[test]
    fn close_wait_series_are_capped_keeping_the_growing_and_largest() {
        let mut metrics = Metrics::single();
        metrics.observe(SINGLE, &update(vec![]), &mut ListenerTable::default());
        let ports = (0..500u16)
            .map(|port| PortLeak {
                local_port: 10_000 + port,
                close_wait: 1,
                oldest: Duration::ZERO,
                growing: false,
            })
            .collect();
        metrics.set_close_wait(
            SINGLE,
            &CloseWaitLeaks {
                processes: Vec::new(),
                ports,
            },
        );
        let text = metrics.render();
        let series = lines(&text)
            .iter()
            .filter(|l| l.starts_with("tcpscope_close_wait_sockets{"))
            .count();
        assert_eq!(series, MAX_CLOSE_WAIT_SERIES);
    }

    fn flood_on(port: u16) -> Finding {
        use crate::watch::findings::{Evidence, Kind, Severity, Subject};
        let mut finding = Finding::new(
            Kind::SynFlood,
            Severity::Critical,
            Subject::Listener {
                addr: "10.0.0.1".parse().expect("address"),
                port,
            },
            "SYN flood".to_owned(),
            Evidence::default()
                .count("half_open", 300u32)
                .number("share", 0.25)
                .flag("held_by_syn_cookies", true)
                .text("note", "words are no gauge".to_owned()),
        );
        finding.since = Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        finding
    }

    #[test]
    fn a_raised_finding_is_a_series_with_its_evidence_until_it_clears() {
        let mut metrics = Metrics::single();
        let mut table = ListenerTable::default();
        let mut raised = update(vec![]);
        raised.findings = vec![flood_on(443)];
        metrics.observe(SINGLE, &raised, &mut table);
        let text = metrics.render();
        let samples = lines(&text);
        for expected in [
            "tcpscope_finding{kind=\"syn_flood\",severity=\"critical\",subject=\"10.0.0.1:443\"} 1.0",
            "tcpscope_finding_since_timestamp_seconds{kind=\"syn_flood\",subject=\"10.0.0.1:443\"} 1700000000.0",
            "tcpscope_finding_evidence{kind=\"syn_flood\",subject=\"10.0.0.1:443\",name=\"half_open\"} 300.0",
            "tcpscope_finding_evidence{kind=\"syn_flood\",subject=\"10.0.0.1:443\",name=\"share\"} 0.25",
            "tcpscope_finding_evidence{kind=\"syn_flood\",subject=\"10.0.0.1:443\",name=\"held_by_syn_cookies\"} 1.0",
        ] {
            assert!(
                samples.contains(&expected),
                "{expected} missing from\n{text}"
            );
        }
        assert!(
            !text.contains("name=\"note\""),
            "text evidence is no gauge:\n{text}"
        );
        assert!(text.contains("# TYPE tcpscope_finding gauge\n"));
        assert!(text.contains("# HELP tcpscope_finding 1 while a finding is raised"));

        // The next poll finds it cleared: its series go, the description stays.
        metrics.observe(SINGLE, &update(vec![]), &mut table);
        let text = metrics.render();
        assert!(
            !lines(&text)
                .iter()
                .any(|l| l.starts_with("tcpscope_finding")),
            "{text}"
        );
        assert!(text.contains("# TYPE tcpscope_finding gauge\n"));
    }

    #[test]
    fn finding_series_are_capped_keeping_the_most_urgent() {
        let mut metrics = Metrics::single();
        let mut many = update(vec![]);
        many.findings = (0..500).map(|port| flood_on(1000 + port)).collect();
        metrics.observe(SINGLE, &many, &mut ListenerTable::default());
        let text = metrics.render();
        let samples = lines(&text);
        let count = |prefix: &str| samples.iter().filter(|l| l.starts_with(prefix)).count();
        assert_eq!(count("tcpscope_finding{"), MAX_FINDING_SERIES);
        assert_eq!(count("tcpscope_finding_evidence{"), 3 * MAX_FINDING_SERIES);
        assert!(
            samples
                .iter()
                .any(|l| l.contains("subject=\"10.0.0.1:1000\""))
        );
        assert!(
            !samples
                .iter()
                .any(|l| l.contains("subject=\"10.0.0.1:1050\""))
        );
    }

    #[test]
    fn the_build_is_named_in_one_info_series() {
        let text = Metrics::single().render();
        let expected = format!(
            "tcpscope_build_info{{version=\"{}\",arch=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::ARCH
        );
        assert!(lines(&text).contains(&expected.as_str()), "{text}");
    }

    #[test]
    fn before_the_first_poll_there_are_no_connection_numbers_to_show() {
        let text = Metrics::single().render();
        assert!(
            !lines(&text)
                .iter()
                .any(|l| l.starts_with("tcpscope_connections"))
        );
        assert!(lines(&text).contains(&"tcpscope_polls_total 0"));
    }

    #[test]
    fn several_namespaces_are_told_apart_by_a_netns_label_and_described_once() {
        let mut metrics = Metrics::per_namespace([
            NetNamespace {
                inode: 4026531840,
                pid: 1,
                container: None,
                name: None,
                host: true,
            },
            NetNamespace {
                inode: 4026532999,
                pid: 4242,
                container: Some(Container {
                    runtime: "docker",
                    id: "0123456789ab".repeat(5) + "cdef",
                }),
                name: Some("blue".into()),
                host: false,
            },
        ]);
        let mut table = ListenerTable::default();
        metrics.observe(
            4026531840,
            &update(vec![listen("0.0.0.0", 80, 0, 128)]),
            &mut table,
        );
        metrics.observe(
            4026532999,
            &update(vec![listen("0.0.0.0", 80, 5, 64)]),
            &mut table,
        );
        let text = metrics.render();
        let samples = lines(&text);
        assert!(samples.contains(
            &"tcpscope_listener_backlog{netns=\"4026531840\",local_addr=\"0.0.0.0\",local_port=\"80\"} 128.0"
        ), "{text}");
        assert!(samples.contains(
            &"tcpscope_listener_backlog{netns=\"4026532999\",local_addr=\"0.0.0.0\",local_port=\"80\"} 64.0"
        ));
        assert!(
            samples
                .contains(&"tcpscope_netns_info{netns=\"4026531840\",pid=\"1\",host=\"true\"} 1")
        );
        let described = format!(
            "tcpscope_netns_info{{netns=\"4026532999\",pid=\"4242\",container=\"{}\",runtime=\"docker\",name=\"blue\"}} 1",
            "0123456789ab".repeat(5) + "cdef"
        );
        assert!(samples.contains(&described.as_str()), "{text}");
        assert!(samples.contains(&"tcpscope_polls_total{netns=\"4026532999\"} 1"));

        let mut flooded = update(vec![]);
        flooded.findings = vec![flood_on(443)];
        metrics.observe(4026532999, &flooded, &mut table);
        let text = metrics.render();
        assert!(lines(&text).contains(
            &"tcpscope_finding{netns=\"4026532999\",kind=\"syn_flood\",severity=\"critical\",subject=\"10.0.0.1:443\"} 1.0"
        ), "{text}");
    }
}
