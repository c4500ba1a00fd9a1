//! `--group-by`: counts per state per group, named for people, as the `--grep` table
//! and the `groups` array of `--json`.
//!
//! The grouping is [`crate::group`]'s; this module only names the groups (a cgroup by
//! its unit, a process by `pid/command`) and writes them. Cgroup paths and process
//! names came from outside: the table escapes them, JSON escapes by construction.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::IpAddr;

use serde::Serialize;

use crate::group::{self, Group, GroupCounts, GroupKey, Listeners};
use crate::kernel::cgroups::CgroupNames;
use crate::kernel::procfs::ProcessMap;
use crate::snapshot::{Counts, SocketRecord};
use crate::tcp::State;
use crate::text::Escaped;
use crate::watch::findings::{Finding, Kind, Subject};

/// What names the groups: the cgroup tree and the process map, where there are any.
#[derive(Clone, Copy, Default)]
pub struct GroupNames<'a> {
    pub cgroups: Option<&'a CgroupNames>,
    pub processes: Option<&'a ProcessMap>,
}

impl GroupNames<'_> {
    /// The group as a person calls it: `8080`, `to 443`, `10.0.0.0/24`, `412/nginx`,
    /// `nginx.service`; `-` for sockets with no process or no cgroup.
    pub fn label(&self, group: Group) -> String {
        match group {
            Group::ListenPort(port) => port.to_string(),
            Group::RemotePort(port) => format!("to {port}"),
            Group::Peer(address) => address_label(address),
            Group::PeerNet(address, _) if address.is_unspecified() => "*".to_owned(),
            Group::PeerNet(address, prefix) => format!("{address}/{prefix}"),
            Group::Process(None) | Group::Cgroup(0) => "-".to_owned(),
            Group::Process(Some(pid)) => match self.processes.and_then(|p| p.process(pid)) {
                Some(process) => format!("{pid}/{}", process.name),
                None => pid.to_string(),
            },
            Group::Cgroup(id) => match self.cgroups.and_then(|c| c.name(id)) {
                Some(name) => name.label.clone(),
                None => format!("cgroup {id}"),
            },
        }
    }

    /// A cgroup group's path under the cgroup2 mount, when it is known.
    pub fn cgroup_path(&self, group: Group) -> Option<&str> {
        match group {
            Group::Cgroup(id) => Some(self.cgroups?.name(id)?.path.as_str()),
            _ => None,
        }
    }
}

fn address_label(address: IpAddr) -> String {
    if address.is_unspecified() {
        "*".to_owned()
    } else {
        address.to_string()
    }
}

/// The table's first column header for each key.
fn header(key: GroupKey) -> &'static str {
    match key {
        GroupKey::Port => "Port",
        GroupKey::Peer => "Peer",
        GroupKey::PeerNet => "Peer network",
        GroupKey::Process => "Process",
        GroupKey::Cgroup => "Cgroup",
    }
}

/// Writes the per-group table: the group, a column for each state some group has a
/// socket in, the total, and for cgroups the path under the mount.
pub fn write_table(
    out: &mut impl Write,
    key: GroupKey,
    rows: &[GroupCounts],
    names: GroupNames<'_>,
) -> io::Result<()> {
    let states: Vec<State> = State::ALL
        .into_iter()
        .filter(|state| rows.iter().any(|row| row.counts.get(*state) > 0))
        .collect();
    let labels: Vec<String> = rows
        .iter()
        .map(|row| Escaped(&names.label(row.group)).to_string())
        .collect();
    let label_width = labels
        .iter()
        .map(|l| l.chars().count())
        .chain([header(key).len()])
        .max()
        .unwrap_or(0);
    let widths: Vec<usize> = states
        .iter()
        .map(|state| {
            let widest = rows.iter().map(|r| digits(r.counts.get(*state))).max();
            widest.unwrap_or(0).max(state.name().len())
        })
        .collect();
    let total_width = rows
        .iter()
        .map(|r| digits(r.counts.total()))
        .max()
        .unwrap_or(0)
        .max("Total".len());
    let with_paths = key == GroupKey::Cgroup;

    let mut line = String::new();
    let _ = write!(line, "{:<label_width$}", header(key));
    for (state, width) in states.iter().zip(&widths) {
        let _ = write!(line, "  {:>width$}", state.name());
    }
    let _ = write!(line, "  {:>total_width$}", "Total");
    if with_paths {
        line.push_str("  Path");
    }
    writeln!(out, "{}", line.trim_end())?;
    for (row, label) in rows.iter().zip(&labels) {
        line.clear();
        let pad = label_width.saturating_sub(label.chars().count());
        let _ = write!(line, "{label}{:pad$}", "");
        for (state, width) in states.iter().zip(&widths) {
            let _ = write!(line, "  {:>width$}", row.counts.get(*state));
        }
        let _ = write!(line, "  {:>total_width$}", row.counts.total());
        if with_paths {
            let path = names.cgroup_path(row.group).unwrap_or("-");
            let _ = write!(line, "  {}", Escaped(path));
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

fn digits(count: u32) -> usize {
    count.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// One entry of the document's `groups` array.
#[derive(Serialize)]
pub struct GroupEntry {
    pub key: &'static str,
    pub label: String,
    /// For a cgroup: its path under the cgroup2 mount, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(serialize_with = "super::json::counts_by_name")]
    pub counts: Counts,
    pub total: u32,
}

/// The `groups` array's entries, largest group first.
pub fn entries(key: GroupKey, rows: &[GroupCounts], names: GroupNames<'_>) -> Vec<GroupEntry> {
    rows.iter()
        .map(|row| GroupEntry {
            key: key.name(),
            label: names.label(row.group),
            cgroup: names.cgroup_path(row.group).map(str::to_owned),
            counts: row.counts,
            total: row.counts.total(),
        })
        .collect()
}

/// The cgroup ids among `rows` (grouped by [`GroupKey::Cgroup`]), for
/// [`CgroupNames::learn`].
pub fn cgroup_ids(rows: &[GroupCounts]) -> impl Iterator<Item = u64> + '_ {
    rows.iter().filter_map(|row| match row.group {
        Group::Cgroup(id) => Some(id),
        _ => None,
    })
}

/// Names, in each finding's summary and evidence, the cgroup that holds most of its
/// sockets (`… (in nginx.service)`, evidence `cgroup`), where one holds more than half.
/// Only those cgroups are looked up in `names` (a walk of the cgroup2 tree when one is
/// new), so that naming findings never needs every socket grouped by cgroup first.
pub fn place_findings(findings: &mut [Finding], sockets: &[SocketRecord], names: &mut CgroupNames) {
    let places = dominant_cgroups(findings, sockets);
    names.learn(places.iter().flatten().copied());
    name_places(findings, &places, names);
}

/// The cgroup holding more than half of each finding's sockets, finding for finding:
/// `None` where none does, and for findings about a process, which is named already.
pub fn dominant_cgroups(findings: &[Finding], sockets: &[SocketRecord]) -> Vec<Option<u64>> {
    if findings.is_empty() {
        return Vec::new();
    }
    let listeners = Listeners::of(sockets);
    findings
        .iter()
        .map(|finding| {
            if matches!(finding.subject, Subject::Process { .. }) {
                return None;
            }
            group::dominant_cgroup(sockets, &listeners, |socket| {
                in_state_of(finding.kind, socket) && about(&finding.subject, socket)
            })
            .map(|(id, _, _)| id)
        })
        .collect()
}

/// Names each finding's cgroup from [`dominant_cgroups`] where `names` knows it. The
/// root cgroup says nothing and is not named.
pub fn name_places(findings: &mut [Finding], places: &[Option<u64>], names: &CgroupNames) {
    for (finding, id) in findings.iter_mut().zip(places) {
        let Some(name) = id
            .and_then(|id| names.name(id))
            .filter(|name| name.path != "/")
        else {
            continue;
        };
        finding.summary.push_str(&format!(" (in {})", name.label));
        finding.evidence = std::mem::take(&mut finding.evidence).text("cgroup", name.label.clone());
    }
}

/// Whether a socket is in the states a finding of `kind` counts.
fn in_state_of(kind: Kind, socket: &SocketRecord) -> bool {
    use crate::tcp::State;
    match kind {
        Kind::SynFlood => socket.state == State::SynRecv,
        Kind::CloseWaitLeak => socket.state == State::CloseWait,
        Kind::TimeWaitPressure => socket.state == State::TimeWait,
        Kind::ConnectStalled => socket.state == State::SynSent,
        _ => true,
    }
}

/// Whether a socket is among those a finding's subject names.
fn about(subject: &Subject, socket: &SocketRecord) -> bool {
    match subject {
        Subject::Listener { addr, port } => {
            socket.local_port == *port
                && (addr.is_unspecified()
                    || addr.to_canonical() == socket.local_addr.to_canonical())
        }
        Subject::Destination {
            local_addr,
            remote_addr,
            remote_port,
        } => {
            socket.local_addr == *local_addr
                && socket.remote_addr == *remote_addr
                && socket.remote_port == *remote_port
        }
        Subject::LocalPort(port) => socket.local_port == *port,
        Subject::Remote { addr, port } => {
            socket.remote_addr == *addr && socket.remote_port == *port
        }
        Subject::Network { addr, prefix } => in_network(socket.remote_addr, *addr, *prefix),
        Subject::Namespace => true,
        Subject::Process { .. } => false,
    }
}

fn in_network(address: IpAddr, network: IpAddr, prefix: u8) -> bool {
    let (address, network, width) = match (address.to_canonical(), network.to_canonical()) {
        (IpAddr::V4(a), IpAddr::V4(n)) => (u128::from(a.to_bits()), u128::from(n.to_bits()), 32),
        (IpAddr::V6(a), IpAddr::V6(n)) => (a.to_bits(), n.to_bits(), 128),
        _ => return false,
    };
    let shift = width - u32::from(prefix.min(width as u8));
    shift >= 128 || address >> shift == network >> shift
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::group;
    use crate::snapshot::SocketRecord;
    use crate::snapshot::fixtures::socket;

    fn table(key: GroupKey, sockets: &[SocketRecord]) -> String {
        let rows = group(key, sockets, |_| None);
        let mut out = Vec::new();
        write_table(&mut out, key, &rows, GroupNames::default()).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_port_table_has_a_column_per_state_seen_and_a_total() {
        let sockets = [
            socket(State::Listen, "0.0.0.0", 8080, "0.0.0.0", 0),
            socket(State::Established, "10.0.0.1", 8080, "10.0.0.2", 5000),
            socket(State::TimeWait, "10.0.0.1", 8080, "10.0.0.3", 5001),
            socket(State::Established, "10.0.0.1", 40000, "10.0.0.9", 443),
        ];
        assert_eq!(
            table(GroupKey::Port, &sockets),
            "\
Port    LISTEN  ESTABLISHED  TIME_WAIT  Total
8080         1            1          1      3
to 443       0            1          0      1
"
        );
    }

    #[test]
    fn a_finding_names_the_cgroup_that_holds_most_of_its_sockets() {
        use crate::kernel::cgroups::CgroupNames;
        use crate::watch::findings::{Evidence, Severity};
        let root = std::env::temp_dir().join(format!("tcpscope-place-{}", std::process::id()));
        let service = root.join("system.slice/nginx.service");
        std::fs::create_dir_all(&service).unwrap();
        let id = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&service).unwrap());
        let mut names = CgroupNames::at(Some(root.clone()));

        let mut sockets: Vec<SocketRecord> = (0..7)
            .map(|n| {
                let mut s = socket(State::CloseWait, "10.0.0.1", 9000, "10.0.0.2", 5000 + n);
                s.cgroup_id = id;
                s
            })
            .collect();
        sockets.push(socket(State::CloseWait, "10.0.0.1", 9000, "10.0.0.3", 1));
        let finding = |subject| {
            Finding::new(
                Kind::CloseWaitLeak,
                Severity::Warning,
                subject,
                "local port 9000: 8 sockets in CLOSE_WAIT".to_owned(),
                Evidence::default(),
            )
        };
        let mut findings = vec![
            finding(Subject::LocalPort(9000)),
            finding(Subject::LocalPort(9001)),
            finding(Subject::Process {
                pid: 1,
                name: "nginx".into(),
            }),
        ];
        place_findings(&mut findings, &sockets, &mut names);
        assert_eq!(
            findings[0].summary,
            "local port 9000: 8 sockets in CLOSE_WAIT (in nginx.service)"
        );
        assert!(
            !findings[1].summary.contains("(in "),
            "no sockets, no cgroup"
        );
        assert!(
            !findings[2].summary.contains("(in "),
            "a process is named already"
        );
        assert_eq!(
            names.walks(),
            1,
            "the finding's cgroup, named with one walk"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn sockets_without_a_cgroup_are_a_dash_and_unknown_ids_are_numbered() {
        let mut named = socket(State::Established, "10.0.0.1", 1, "10.0.0.2", 2);
        named.cgroup_id = 42;
        let none = socket(State::Established, "10.0.0.1", 3, "10.0.0.2", 4);
        assert_eq!(
            table(GroupKey::Cgroup, &[named, none]),
            "\
Cgroup     ESTABLISHED  Total  Path
-                    1      1  -
cgroup 42            1      1  -
"
        );
    }
}
