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

use crate::group::{Group, GroupCounts, GroupKey};
use crate::kernel::cgroups::CgroupNames;
use crate::kernel::procfs::ProcessMap;
use crate::snapshot::Counts;
use crate::tcp::State;
use crate::text::Escaped;

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
