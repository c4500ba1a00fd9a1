//! `--json`: one JSON document with the counts of all 11 states, every matching
//! socket, and the kernel's SYN-cookie and listen-queue counters.
//!
//! The schema is `assets/tcpscope.schema.json`; bump [`SCHEMA_VERSION`] on any change
//! that could break a reader. Sockets are rendered straight from their records into one
//! buffer, with no allocation per socket, batch by batch while the kernel is still
//! dumping; a large dump's are written out as they come, so that a document costs
//! little more memory than the records it counts.

use std::io::{self, Write};
use std::time::SystemTime;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::kernel::netns::NetNamespace;
use crate::kernel::procfs::{COUNTERS, ListenLimits, ProcessMap, TcpExt};
use crate::kernel::tcp_info::TcpInfo;
use crate::report::json_socket::{Pieces, SocketLine};
use crate::snapshot::{Counts, Snapshot, SocketRecord};
use crate::watch::findings::{Evidence, Finding, Kind, Severity, Subject};
use crate::watch::{CloseWaitLeaks, HostNote, ListenerWatch, SynWatch};

pub const SCHEMA_VERSION: u32 = 1;

/// What the kernel says about SYN handling, beside the sockets: every TcpExt counter
/// tcpscope keeps, under its key, then the listen-queue sysctls.
#[derive(Debug, Clone, Copy)]
pub struct KernelCounters {
    pub tcpext: TcpExt,
    pub tcp_max_syn_backlog: u64,
    pub somaxconn: u64,
    pub syncookies: u64,
}

impl KernelCounters {
    pub fn new(tcpext: &TcpExt, limits: &ListenLimits) -> KernelCounters {
        KernelCounters {
            tcpext: *tcpext,
            tcp_max_syn_backlog: u64::from(limits.tcp_max_syn_backlog),
            somaxconn: u64::from(limits.somaxconn),
            syncookies: u64::from(limits.syncookies.sysctl_value()),
        }
    }
}

impl Serialize for KernelCounters {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(COUNTERS.len() + 3))?;
        for counter in COUNTERS {
            map.serialize_entry(counter.key, &counter.get(&self.tcpext))?;
        }
        map.serialize_entry("tcp_max_syn_backlog", &self.tcp_max_syn_backlog)?;
        map.serialize_entry("somaxconn", &self.somaxconn)?;
        map.serialize_entry("syncookies", &self.syncookies)?;
        map.end()
    }
}

/// Everything one `--json` document holds.
///
/// With `--all-netns`, `snapshot` holds every namespace's sockets (its counts are the
/// totals), `kernel` is the namespace tcpscope runs in, and `namespaces` has each
/// namespace's own.
pub struct Document<'a> {
    pub snapshot: &'a Snapshot,
    /// The snapshot's sockets, already rendered (see [`RenderedSockets`]).
    pub sockets: &'a RenderedSockets<'a>,
    pub kernel: KernelCounters,
    /// Half-open connections per listener and the flood verdict.
    pub syn_watch: SynWatchSection<'a>,
    /// With `--all-netns`: each namespace read, with its own counts and counters.
    pub namespaces: Option<&'a [NamespaceEntry]>,
    /// What one reading shows of the findings, most urgent first.
    pub findings: &'a [FindingEntry<'a>],
}

/// A finding's fields as the stream and the JSON document write them.
#[derive(Serialize)]
pub struct FindingFields<'a> {
    pub kind: Kind,
    pub severity: Severity,
    pub subject: &'a Subject,
    pub summary: &'a str,
    pub evidence: &'a Evidence,
    pub remedy: &'a str,
    /// When it was raised; none in a one-shot reading.
    pub since: Option<Rfc3339>,
}

impl FindingFields<'_> {
    pub fn of(finding: &Finding) -> FindingFields<'_> {
        FindingFields {
            kind: finding.kind,
            severity: finding.severity,
            subject: &finding.subject,
            summary: &finding.summary,
            evidence: &finding.evidence,
            remedy: finding.remedy,
            since: finding.since.map(Rfc3339),
        }
    }
}

/// One entry of the document's `findings`, with its namespace's inode across
/// namespaces (`--all-netns`).
#[derive(Serialize)]
pub struct FindingEntry<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<u64>,
    #[serde(flatten)]
    pub finding: FindingFields<'a>,
}

impl FindingEntry<'_> {
    pub fn new(netns: Option<u64>, finding: &Finding) -> FindingEntry<'_> {
        FindingEntry {
            netns,
            finding: FindingFields::of(finding),
        }
    }
}

/// The `syn_watch` object: one namespace's, or the listeners of several namespaces,
/// each tagged with its namespace.
pub enum SynWatchSection<'a> {
    One(&'a SynWatch),
    PerNamespace(Vec<(u64, &'a ListenerWatch)>),
}

impl Serialize for SynWatchSection<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Tagged<'a> {
            netns: u64,
            #[serde(flatten)]
            row: &'a ListenerWatch,
        }
        #[derive(Serialize)]
        struct Section<'a> {
            listeners: Vec<Tagged<'a>>,
            host_notes: [HostNote; 0],
        }
        match self {
            SynWatchSection::One(watch) => watch.serialize(serializer),
            SynWatchSection::PerNamespace(rows) => Section {
                listeners: rows
                    .iter()
                    .map(|&(netns, row)| Tagged { netns, row })
                    .collect(),
                // A one-shot reading has no counter rates, so no host notes.
                host_notes: [],
            }
            .serialize(serializer),
        }
    }
}

/// One network namespace of an `--all-netns` document.
#[derive(Debug, Clone, Serialize)]
pub struct NamespaceEntry {
    /// The namespace's inode, as each socket's `netns` gives it.
    pub netns: u64,
    /// What the other outputs call it: its `ip netns` name, its container, `host`, or
    /// `pid/command` of a process in it.
    pub label: String,
    /// A process in it (the lowest pid); 0 for a named namespace no process is in.
    pub pid: u32,
    pub container: Option<ContainerEntry>,
    #[serde(serialize_with = "counts_by_name")]
    pub counts: Counts,
    pub kernel: KernelCounters,
}

/// The container a namespace belongs to.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerEntry {
    pub runtime: &'static str,
    pub id: String,
}

impl NamespaceEntry {
    pub fn new(
        namespace: &NetNamespace,
        label: &str,
        counts: Counts,
        kernel: KernelCounters,
    ) -> NamespaceEntry {
        NamespaceEntry {
            netns: namespace.inode,
            label: label.to_owned(),
            pid: namespace.pid,
            container: namespace.container.as_ref().map(|c| ContainerEntry {
                runtime: c.runtime,
                id: c.id.clone(),
            }),
            counts,
            kernel,
        }
    }
}

pub(crate) fn counts_by_name<S: Serializer>(
    counts: &Counts,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    CountsByName(*counts).serialize(serializer)
}

/// Writes the start of a document, up to and including the `[` of its `sockets`: what
/// a document that streams its sockets writes before the dump ends. The rest comes from
/// [`Document::write_rest`].
pub fn write_head(out: &mut impl Write, taken_at: SystemTime) -> io::Result<()> {
    out.write_all(b"{\"schema_version\":")?;
    serde_json::to_writer(&mut *out, &SCHEMA_VERSION)?;
    out.write_all(b",\"taken_at\":")?;
    serde_json::to_writer(&mut *out, &Rfc3339(taken_at))?;
    out.write_all(b",\"sockets\":[")
}

impl Document<'_> {
    /// Writes the document and a final newline.
    pub fn write(&self, out: &mut impl Write) -> io::Result<()> {
        self.write_with_leaks(out, None)
    }

    /// Writes the document with a `close_wait_leaks` section (see [`LeaksSection`]).
    pub fn write_with_leaks(
        &self,
        out: &mut impl Write,
        leaks: Option<LeaksSection<'_>>,
    ) -> io::Result<()> {
        self.write_with_sections(out, leaks, None)
    }

    /// Writes the document with a `close_wait_leaks` section and, with `--group-by`, a
    /// `groups` array (see [`super::groups::entries`]).
    pub fn write_with_sections(
        &self,
        out: &mut impl Write,
        leaks: Option<LeaksSection<'_>>,
        groups: Option<&[super::groups::GroupEntry]>,
    ) -> io::Result<()> {
        write_head(out, self.snapshot.taken_at)?;
        self.write_rest(out, leaks, groups)
    }

    /// Writes what follows [`write_head`]: the sockets not yet written out (see
    /// [`RenderedSockets::write_out`]), then the counts and every other section.
    ///
    /// The counts follow the sockets, not precede them, so that a document can stream
    /// its sockets while the kernel still dumps them and count them at the end.
    pub fn write_rest(
        &self,
        out: &mut impl Write,
        leaks: Option<LeaksSection<'_>>,
        groups: Option<&[super::groups::GroupEntry]>,
    ) -> io::Result<()> {
        out.write_all(&self.sockets.bytes)?;
        out.write_all(b"],\"counts\":")?;
        serde_json::to_writer(&mut *out, &CountsByName(self.sockets.counts()))?;
        out.write_all(b",\"kernel\":")?;
        serde_json::to_writer(&mut *out, &self.kernel)?;
        out.write_all(b",\"syn_watch\":")?;
        serde_json::to_writer(&mut *out, &self.syn_watch)?;
        if let Some(namespaces) = self.namespaces {
            out.write_all(b",\"namespaces\":")?;
            serde_json::to_writer(&mut *out, namespaces)?;
        }
        out.write_all(b",\"findings\":")?;
        serde_json::to_writer(&mut *out, self.findings)?;
        if let Some(leaks) = leaks {
            out.write_all(b",\"close_wait_leaks\":")?;
            serde_json::to_writer(&mut *out, &leaks)?;
        }
        if let Some(groups) = groups {
            out.write_all(b",\"groups\":")?;
            serde_json::to_writer(&mut *out, groups)?;
        }
        out.write_all(b"}\n")
    }
}

/// Sockets as the comma-separated JSON objects of the `sockets` array.
///
/// Written by hand rather than through serde (see [`super::json_socket`]): at a million
/// sockets this is the largest part of `--json`'s own work. Process names, which may
/// hold any byte, go through serde_json's string escaping.
pub struct RenderedSockets<'a> {
    bytes: Vec<u8>,
    count: usize,
    counts: Counts,
    pieces: Pieces,
    /// The socket being written.
    line: Box<SocketLine>,
    /// Present with `-p`: adds `pid` and `process` to every socket.
    processes: Option<&'a ProcessMap>,
    /// With `--all-netns`: the `netns` of the sockets pushed from now on.
    netns: Option<u64>,
}

impl<'a> RenderedSockets<'a> {
    pub fn new(processes: Option<&'a ProcessMap>) -> RenderedSockets<'a> {
        RenderedSockets {
            bytes: Vec::new(),
            count: 0,
            counts: Counts::default(),
            pieces: Pieces::new(),
            line: Box::new(SocketLine::new()),
            processes,
            netns: None,
        }
    }

    /// All of `sockets`, rendered.
    #[cfg(test)]
    pub fn of(sockets: &[SocketRecord], processes: Option<&'a ProcessMap>) -> RenderedSockets<'a> {
        let mut rendered = RenderedSockets::new(processes);
        for socket in sockets {
            rendered.push(socket);
        }
        rendered
    }

    /// Gives the sockets pushed from now on a `netns` field: the inode of the network
    /// namespace they were read from (`--all-netns`).
    pub fn set_netns(&mut self, netns: Option<u64>) {
        self.netns = netns;
    }

    /// How many bytes are rendered and not yet written out.
    pub fn pending_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Writes the sockets rendered so far to `out`, after a [`write_head`], and forgets
    /// their bytes: the sockets rendered next continue the same array.
    pub fn write_out(&mut self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(&self.bytes)?;
        self.bytes.clear();
        Ok(())
    }

    /// Forgets every socket rendered so far (the dump started over).
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.count = 0;
        self.counts = Counts::default();
    }

    /// The sockets rendered, counted per state as they were: the document's `counts`
    /// need no pass over the sockets once a dump ends.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn push(&mut self, s: &SocketRecord) {
        self.push_fields(s);
        self.bytes.push(b'}');
    }

    /// A socket with its `info` object (`-i`): `null` when the kernel sent no
    /// tcp_info for it (request sockets, TIME_WAIT remnants).
    pub fn push_with_info(&mut self, s: &SocketRecord, info: Option<&TcpInfo>) {
        self.push_fields(s);
        let b = &mut self.bytes;
        b.extend_from_slice(b",\"info\":");
        match info {
            Some(info) => push_info(b, info),
            None => b.extend_from_slice(b"null"),
        }
        b.push(b'}');
    }

    /// Every field of a socket, without its closing brace.
    fn push_fields(&mut self, s: &SocketRecord) {
        let line = &mut self.line;
        line.clear();
        line.write_fields(&self.pieces, s, self.count == 0);
        self.count += 1;
        self.counts.add(s.state);
        if let Some(netns) = self.netns {
            line.write_netns(netns);
        }
        self.bytes.extend_from_slice(line.as_bytes());
        if let Some(processes) = self.processes {
            let b = &mut self.bytes;
            match processes.lookup(s.inode).filter(|_| s.inode != 0) {
                Some(owner) => {
                    b.extend_from_slice(b",\"pid\":");
                    push_number(b, owner.pid);
                    b.extend_from_slice(b",\"process\":");
                    // Writing into a Vec cannot fail.
                    let _ = serde_json::to_writer(&mut *b, owner.name.as_str());
                }
                None => b.extend_from_slice(b",\"pid\":null,\"process\":null"),
            }
        }
    }
}

/// The `info` object: times in milliseconds to the microsecond, as `ss -i` shows them;
/// counts the kernel's `tcp_info` may end before are `null`.
fn push_info(b: &mut Vec<u8>, info: &TcpInfo) {
    b.extend_from_slice(b"{\"rtt_ms\":");
    push_millis(b, info.rtt_us);
    b.extend_from_slice(b",\"rttvar_ms\":");
    push_millis(b, info.rttvar_us);
    b.extend_from_slice(b",\"rto_ms\":");
    push_millis(b, info.rto_us);
    b.extend_from_slice(b",\"cwnd\":");
    push_number(b, info.snd_cwnd);
    b.extend_from_slice(b",\"mss\":");
    push_number(b, info.snd_mss);
    b.extend_from_slice(b",\"unacked\":");
    push_number(b, info.unacked);
    b.extend_from_slice(b",\"lost\":");
    push_number(b, info.lost);
    b.extend_from_slice(b",\"retransmits\":");
    push_number(b, info.total_retrans);
    for (name, value) in [
        (&b",\"bytes_acked\":"[..], info.bytes_acked),
        (b",\"bytes_received\":", info.bytes_received),
        (b",\"delivery_rate\":", info.delivery_rate),
    ] {
        b.extend_from_slice(name);
        match value {
            Some(value) => push_number(b, value),
            None => b.extend_from_slice(b"null"),
        }
    }
    b.push(b'}');
}

/// Microseconds as milliseconds with three decimals, exactly (no float).
fn push_millis(b: &mut Vec<u8>, micros: u32) {
    push_number(b, micros / 1000);
    let _ = write!(b, ".{:03}", micros % 1000);
}

fn push_number(bytes: &mut Vec<u8>, number: impl itoa::Integer) {
    bytes.extend_from_slice(itoa::Buffer::new().format(number).as_bytes());
}

/// The `close_wait_leaks` object: CLOSE_WAIT sockets per process and per local port.
#[derive(Debug, Clone, Copy)]
pub struct LeaksSection<'a> {
    pub leaks: &'a CloseWaitLeaks,
    /// Whether owners were looked up (`-p`); without, `processes` is empty rather than
    /// one row of unknown owner.
    pub with_processes: bool,
}

impl Serialize for LeaksSection<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Process<'a> {
            pid: Option<i32>,
            process: Option<&'a str>,
            close_wait: u32,
            oldest_seen_ms: u128,
            growing: bool,
            local_ports: &'a [u16],
        }
        #[derive(Serialize)]
        struct Port {
            local_port: u16,
            close_wait: u32,
            oldest_seen_ms: u128,
            growing: bool,
        }
        #[derive(Serialize)]
        struct Section<'a> {
            processes: Vec<Process<'a>>,
            ports: Vec<Port>,
        }
        let processes = if self.with_processes {
            self.leaks
                .processes
                .iter()
                .map(|row| Process {
                    pid: row.owner.as_ref().map(|owner| owner.pid),
                    process: row.owner.as_ref().map(|owner| owner.name.as_str()),
                    close_wait: row.close_wait,
                    oldest_seen_ms: row.oldest.as_millis(),
                    growing: row.growing,
                    local_ports: &row.local_ports,
                })
                .collect()
        } else {
            Vec::new()
        };
        let ports = self
            .leaks
            .ports
            .iter()
            .map(|row| Port {
                local_port: row.local_port,
                close_wait: row.close_wait,
                oldest_seen_ms: row.oldest.as_millis(),
                growing: row.growing,
            })
            .collect();
        Section { processes, ports }.serialize(serializer)
    }
}

/// A time as RFC 3339 in UTC with milliseconds.
pub struct Rfc3339(pub SystemTime);

impl Serialize for Rfc3339 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_rfc3339_millis(self.0))
    }
}

/// All 11 states as keys, zeros included, in the order a connection lives them.
pub struct CountsByName(pub Counts);

impl Serialize for CountsByName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(11))?;
        for (state, count) in self.0.iter() {
            map.serialize_entry(state.name(), &count)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::fixtures::socket;
    use crate::tcp::State;
    use std::time::{Duration, UNIX_EPOCH};

    fn counters() -> KernelCounters {
        KernelCounters {
            tcpext: TcpExt {
                syncookies_sent: 7,
                listen_overflows: 3,
                listen_drops: 3,
                req_q_full_do_cookies: 7,
                ..TcpExt::default()
            },
            tcp_max_syn_backlog: 4096,
            somaxconn: 4096,
            syncookies: 1,
        }
    }

    fn render(snapshot: &Snapshot) -> serde_json::Value {
        let mut out = Vec::new();
        Document {
            snapshot,
            sockets: &RenderedSockets::of(&snapshot.sockets, None),
            kernel: counters(),
            syn_watch: SynWatchSection::One(&SynWatch::of(
                snapshot,
                crate::watch::Thresholds::default(),
            )),
            namespaces: None,
            findings: &[],
        }
        .write(&mut out)
        .unwrap();
        assert_eq!(out.last(), Some(&b'\n'));
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn counts_list_all_eleven_states_with_zeros() {
        let snapshot = Snapshot::new(
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            vec![socket(State::SynRecv, "127.0.0.1", 80, "127.64.0.9", 1234)],
        );
        let json = render(&snapshot);
        let counts = json["counts"].as_object().unwrap();
        assert_eq!(counts.len(), 11);
        assert_eq!(counts["SYN_RECV"], 1);
        assert_eq!(counts["CLOSED"], 0);
        assert_eq!(json["taken_at"], "2023-11-14T22:13:20.123Z");
        assert_eq!(json["schema_version"], 1);
        assert_eq!(json["kernel"]["syncookies_sent"], 7);
        assert_eq!(json["kernel"]["somaxconn"], 4096);
        let listener = &json["syn_watch"]["listeners"][0];
        assert_eq!(listener["local_port"], 80);
        assert_eq!(listener["half_open"], 1);
        assert_eq!(listener["suspected_flood"], false);
        for field in [
            "local_addr",
            "accept_queue",
            "backlog",
            "distinct_sources",
            "distinct_prefixes",
            "verdict",
        ] {
            assert!(
                !listener[field].is_null(),
                "syn_watch listener lacks {field}"
            );
        }
    }

    #[test]
    fn a_socket_carries_every_documented_field() {
        let mut record = socket(State::Established, "::1", 443, "::1", 50000);
        record.cookie = u64::MAX;
        record.inode = 99;
        let json = render(&Snapshot::new(UNIX_EPOCH, vec![record]));
        let socket = &json["sockets"][0];
        assert_eq!(socket["family"], "ipv6");
        assert_eq!(socket["state"], "ESTABLISHED");
        assert_eq!(socket["local_addr"], "::1");
        assert_eq!(socket["local_port"], 443);
        assert_eq!(socket["remote_port"], 50000);
        assert_eq!(socket["timer"], "off");
        assert_eq!(socket["cookie"], u64::MAX);
        assert_eq!(socket["inode"], 99);
        for field in ["recv_q", "send_q", "expires_ms", "retransmits", "uid"] {
            assert!(socket[field].is_u64(), "{field}");
        }
        assert!(socket.get("pid").is_none(), "pid only with -p");
    }

    #[test]
    fn sockets_render_to_exactly_the_json_serde_would_parse_back() {
        let mut record = socket(State::SynRecv, "127.0.0.1", 80, "127.64.255.1", 65535);
        record.timer = crate::snapshot::Timer::On;
        record.expires_ms = 1234;
        record.retransmits = 2;
        let other = socket(State::Listen, "fe80::1:2", 443, "::", 0);
        let rendered = RenderedSockets::of(&[record, other], None);
        assert_eq!(rendered.len(), 2);
        let text = format!("[{}]", String::from_utf8(rendered.bytes.clone()).unwrap());
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed[0]["remote_addr"], "127.64.255.1");
        assert_eq!(parsed[0]["remote_port"], 65535);
        assert_eq!(parsed[0]["timer"], "on");
        assert_eq!(parsed[0]["expires_ms"], 1234);
        assert_eq!(parsed[0]["retransmits"], 2);
        assert_eq!(parsed[1]["local_addr"], "fe80::1:2");
        assert_eq!(parsed[1]["remote_addr"], "::");
    }

    #[test]
    fn close_wait_leaks_name_the_process_only_when_owners_were_looked_up() {
        let mut held = socket(State::CloseWait, "10.0.0.1", 8080, "10.0.0.2", 5000);
        held.inode = 7;
        let snapshot = Snapshot::new(UNIX_EPOCH, vec![held]);
        let leaks = CloseWaitLeaks::single_reading(&snapshot.sockets, |_| {
            Some(crate::watch::Owner {
                pid: 42,
                name: "java".into(),
            })
        });
        let write = |with_processes| {
            let mut out = Vec::new();
            Document {
                snapshot: &snapshot,
                sockets: &RenderedSockets::of(&snapshot.sockets, None),
                kernel: counters(),
                syn_watch: SynWatchSection::One(&SynWatch::of(
                    &snapshot,
                    crate::watch::Thresholds::default(),
                )),
                namespaces: None,
                findings: &[],
            }
            .write_with_leaks(
                &mut out,
                Some(LeaksSection {
                    leaks: &leaks,
                    with_processes,
                }),
            )
            .unwrap();
            serde_json::from_slice::<serde_json::Value>(&out).unwrap()
        };
        let json = write(true);
        let process = &json["close_wait_leaks"]["processes"][0];
        assert_eq!(process["pid"], 42);
        assert_eq!(process["process"], "java");
        assert_eq!(process["close_wait"], 1);
        assert_eq!(process["oldest_seen_ms"], 0);
        assert_eq!(process["growing"], false);
        assert_eq!(process["local_ports"], serde_json::json!([8080]));
        assert_eq!(json["close_wait_leaks"]["ports"][0]["local_port"], 8080);
        let json = write(false);
        assert_eq!(json["close_wait_leaks"]["processes"], serde_json::json!([]));
        assert_eq!(json["close_wait_leaks"]["ports"][0]["close_wait"], 1);
    }

    /// One socket as serde's generic path writes it, field for field in the order the
    /// hand-written writer uses: the reference the writer must match byte for byte.
    #[derive(Serialize)]
    struct SerdeSocket {
        family: &'static str,
        state: &'static str,
        local_addr: String,
        local_port: u16,
        remote_addr: String,
        remote_port: u16,
        recv_q: u32,
        send_q: u32,
        timer: &'static str,
        expires_ms: u32,
        retransmits: u8,
        uid: u32,
        inode: u32,
        cookie: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        netns: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pid: Option<Option<i32>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        process: Option<Option<String>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        info: Option<Option<SerdeInfo>>,
    }

    /// `info` through serde: times as floats, which serde writes in their shortest
    /// form (`1.5`) where the writer keeps three decimals (`1.500`), so documents with
    /// `info` are compared as parsed JSON.
    #[derive(Serialize)]
    struct SerdeInfo {
        rtt_ms: f64,
        rttvar_ms: f64,
        rto_ms: f64,
        cwnd: u32,
        mss: u32,
        unacked: u32,
        lost: u32,
        retransmits: u32,
        bytes_acked: Option<u64>,
        bytes_received: Option<u64>,
        delivery_rate: Option<u64>,
    }

    fn serde_socket(
        s: &SocketRecord,
        netns: Option<u64>,
        processes: Option<&ProcessMap>,
        info: Option<Option<&TcpInfo>>,
    ) -> SerdeSocket {
        let owner = processes.map(|map| map.lookup(s.inode).filter(|_| s.inode != 0));
        let millis = |micros: u32| f64::from(micros) / 1000.0;
        SerdeSocket {
            family: s.family.name(),
            state: s.state.name(),
            local_addr: s.local_addr.to_string(),
            local_port: s.local_port,
            remote_addr: s.remote_addr.to_string(),
            remote_port: s.remote_port,
            recv_q: s.recv_q,
            send_q: s.send_q,
            timer: s.timer.name(),
            expires_ms: s.expires_ms,
            retransmits: s.retransmits,
            uid: s.uid,
            inode: s.inode,
            cookie: s.cookie,
            netns,
            pid: owner.map(|owner| owner.map(|o| o.pid)),
            process: owner.map(|owner| owner.map(|o| o.name.clone())),
            info: info.map(|info| {
                info.map(|i| SerdeInfo {
                    rtt_ms: millis(i.rtt_us),
                    rttvar_ms: millis(i.rttvar_us),
                    rto_ms: millis(i.rto_us),
                    cwnd: i.snd_cwnd,
                    mss: i.snd_mss,
                    unacked: i.unacked,
                    lost: i.lost,
                    retransmits: i.total_retrans,
                    bytes_acked: i.bytes_acked,
                    bytes_received: i.bytes_received,
                    delivery_rate: i.delivery_rate,
                })
            }),
        }
    }

    /// Records covering every state, every timer, both families, IPv6 forms RFC 5952
    /// shortens or not, IPv4-mapped addresses, extreme numbers and cgroup ids.
    fn every_kind_of_socket() -> Vec<SocketRecord> {
        use crate::snapshot::Timer;
        let timers = [
            Timer::Off,
            Timer::On,
            Timer::Keepalive,
            Timer::TimeWait,
            Timer::Persist,
            Timer::Unknown(9),
        ];
        let addresses = [
            ("127.0.0.1", "10.255.0.9"),
            ("0.0.0.0", "255.255.255.255"),
            ("::1", "::"),
            ("2001:db8::1:0:0:1", "fe80::1:2"),
            ("::ffff:192.0.2.128", "2001:db8:85a3:0:0:8a2e:370:7334"),
        ];
        let mut sockets = Vec::new();
        for (n, state) in State::ALL.into_iter().enumerate() {
            for (m, (local, remote)) in addresses.into_iter().enumerate() {
                let mut record = socket(state, local, 80 + m as u16, remote, 65535);
                record.timer = timers[(n + m) % timers.len()];
                record.recv_q = u32::MAX - n as u32;
                record.send_q = n as u32 * 1000;
                record.expires_ms = m as u32 * 12345;
                record.retransmits = u8::MAX - m as u8;
                record.uid = 1000 + m as u32;
                record.inode = (n * addresses.len() + m) as u32 % 4;
                record.cookie = u64::MAX - n as u64;
                record.cgroup_id = 1 << 40 | n as u64;
                record.drops = 7;
                sockets.push(record);
            }
        }
        sockets
    }

    fn in_array(rendered: &RenderedSockets<'_>) -> String {
        format!("[{}]", String::from_utf8(rendered.bytes.clone()).unwrap())
    }

    #[test]
    fn the_socket_writer_writes_byte_for_byte_what_serde_writes() {
        let sockets = every_kind_of_socket();
        // Inodes 1..3 have owners, one of them with a name full of what must be
        // escaped; inode 0 has none, as request sockets and TIME_WAIT remnants.
        let processes = ProcessMap::of(&[
            (7, "nginx", &[1]),
            (8, "x\x1b]0;owned\x07\"\\\n\u{7f}é", &[2]),
            (9, "", &[3]),
        ]);
        for (netns, processes) in [
            (None, None),
            (None, Some(&processes)),
            (Some(4026531840), None),
            (Some(u64::MAX), Some(&processes)),
        ] {
            let mut rendered = RenderedSockets::new(processes);
            rendered.set_netns(netns);
            for record in &sockets {
                rendered.push(record);
            }
            let reference: Vec<SerdeSocket> = sockets
                .iter()
                .map(|s| serde_socket(s, netns, processes, None))
                .collect();
            assert_eq!(
                in_array(&rendered),
                serde_json::to_string(&reference).unwrap(),
                "netns {netns:?}, processes {}",
                processes.is_some()
            );
        }
    }

    #[test]
    fn the_socket_writer_writes_info_as_serde_does_but_with_three_decimals() {
        let sockets = every_kind_of_socket();
        let full = TcpInfo {
            rtt_us: 1_500,
            rttvar_us: 7,
            rto_us: 204_000,
            snd_cwnd: 10,
            snd_mss: 65_483,
            unacked: 1,
            lost: 2,
            total_retrans: u32::MAX,
            bytes_acked: Some(u64::MAX),
            bytes_received: Some(0),
            delivery_rate: Some(123_456_789),
        };
        let old_kernel = TcpInfo {
            rtt_us: 999_999,
            bytes_acked: None,
            bytes_received: None,
            delivery_rate: None,
            ..full
        };
        let infos = [Some(full), Some(old_kernel), None];
        let processes = ProcessMap::of(&[(7, "sshd", &[1, 2])]);
        let mut rendered = RenderedSockets::new(Some(&processes));
        let mut reference = Vec::new();
        for (at, record) in sockets.iter().enumerate() {
            let info = infos[at % infos.len()].as_ref();
            rendered.push_with_info(record, info);
            reference.push(serde_socket(record, None, Some(&processes), Some(info)));
        }
        let written = in_array(&rendered);
        assert!(written.contains("\"rtt_ms\":1.500,\"rttvar_ms\":0.007,\"rto_ms\":204.000"));
        assert!(written.contains("\"rtt_ms\":999.999"));
        let parsed: serde_json::Value = serde_json::from_str(&written).unwrap();
        assert_eq!(parsed, serde_json::to_value(&reference).unwrap());
    }

    #[test]
    fn clearing_forgets_what_was_rendered() {
        let mut rendered = RenderedSockets::new(None);
        rendered.push(&socket(State::Listen, "127.0.0.1", 80, "0.0.0.0", 0));
        rendered.clear();
        rendered.push(&socket(State::Listen, "127.0.0.1", 81, "0.0.0.0", 0));
        let parsed: serde_json::Value =
            serde_json::from_slice(&[b"[", &rendered.bytes[..], b"]"].concat()).unwrap();
        assert_eq!(parsed.as_array().unwrap().len(), 1);
        assert_eq!(parsed[0]["local_port"], 81);
    }
}
