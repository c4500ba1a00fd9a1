//! The Groups tab's rows: the latest snapshot counted per group (port, cgroup, peer,
//! peer network or process, `g` cycles), named, sorted. Built once per update while
//! the tab shows (on the view's worker, as a [`GroupsJob`]), or when the key or sort
//! changes, never per frame. Grouped by peer there may be as many groups as sockets:
//! a new sort of [`SORT_AT_ONCE`] rows or more is a [`GroupsJob`] too, which sorts the
//! rows shown (shared, not copied) on the worker.
//!
//! Enter on a row opens the connections tab filtered to the group: [`drill_filter`]
//! gives the filter line for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::group::{self, Group, GroupCounts, GroupKey};
use crate::kernel::cgroups::CgroupNames;
use crate::kernel::procfs::ProcessMap;
use crate::report::groups::GroupNames;
use crate::snapshot::Snapshot;
use crate::tcp::State;

/// What the groups can be sorted by: their total, their label, or one state's count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupSort {
    Total,
    Label,
    State(State),
}

impl GroupSort {
    /// The column after this one: total, label, then each state in order.
    pub fn next(self) -> GroupSort {
        match self {
            GroupSort::Total => GroupSort::Label,
            GroupSort::Label => GroupSort::State(State::ALL[0]),
            GroupSort::State(state) => match State::ALL.get(state.index() + 1) {
                Some(next) => GroupSort::State(*next),
                None => GroupSort::Total,
            },
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            GroupSort::Total => "Total",
            GroupSort::Label => "Group",
            GroupSort::State(state) => state.name(),
        }
    }
}

/// Below this many rows a new sort is done at once, on the thread that asked: it
/// takes well under a millisecond. From it on, a view with a worker hands it out.
pub const SORT_AT_ONCE: usize = 10_000;

/// One row: the group, its counts and its name.
#[derive(Debug, Clone)]
pub struct GroupRow {
    pub counts: GroupCounts,
    pub label: String,
    /// For a cgroup: its path under the cgroup2 mount, when known.
    pub path: Option<String>,
}

/// The groups the tab shows.
#[derive(Debug, Clone)]
pub struct GroupTable {
    pub key: GroupKey,
    pub sort: GroupSort,
    /// Largest first by default: the point is who holds the most.
    pub descending: bool,
    /// Shared with the worker sorting them, if any: handing them out copies nothing.
    pub rows: Arc<Vec<GroupRow>>,
    /// The sort and direction the rows are in, which differ from those asked for
    /// while a worker sorts them.
    pub rows_sorted: (GroupSort, bool),
    /// Whether some group has sockets in each state, by [`State::index`]: found when
    /// counting, so that a frame does not look through every row for it.
    pub states: [bool; 11],
}

impl Default for GroupTable {
    fn default() -> GroupTable {
        GroupTable {
            key: GroupKey::Port,
            sort: GroupSort::Total,
            descending: true,
            rows: Arc::default(),
            rows_sorted: (GroupSort::Total, true),
            states: [false; 11],
        }
    }
}

impl GroupTable {
    /// Counts `snapshot` per group under the current key, naming cgroups (walking the
    /// cgroup2 tree once if an id is new) and processes.
    pub fn show(
        &mut self,
        snapshot: &Snapshot,
        cgroups: &mut Arc<CgroupNames>,
        processes: Option<&ProcessMap>,
    ) {
        let rows = group::group(self.key, &snapshot.sockets, |inode| {
            Some(processes?.lookup(inode)?.pid)
        });
        if self.key == GroupKey::Cgroup {
            learn(cgroups, &rows);
        }
        let names = GroupNames {
            cgroups: Some(cgroups),
            processes,
        };
        self.rows = Arc::new(
            rows.into_iter()
                .map(|counts| GroupRow {
                    label: names.label(counts.group),
                    path: names.cgroup_path(counts.group).map(str::to_owned),
                    counts,
                })
                .collect(),
        );
        self.states = [false; 11];
        for row in self.rows.iter() {
            for state in State::ALL {
                self.states[state.index()] |= row.counts.counts.get(state) > 0;
            }
        }
        self.order_rows();
    }

    /// Takes the rows of `other` (counted or sorted elsewhere), with what is known of
    /// them.
    pub fn take_rows(&mut self, other: GroupTable) {
        self.rows = other.rows;
        self.rows_sorted = other.rows_sorted;
        self.states = other.states;
    }

    /// No rows, as under a key not counted yet.
    pub fn clear_rows(&mut self) {
        self.rows = Arc::default();
        self.states = [false; 11];
    }

    pub fn set_sort(&mut self, sort: GroupSort, descending: bool) {
        self.sort = sort;
        self.descending = descending;
        self.sort_rows();
    }

    /// A table of `self`'s key and asked sort, sharing its rows: what a worker sorts.
    pub fn share(&self) -> GroupTable {
        GroupTable {
            key: self.key,
            sort: self.sort,
            descending: self.descending,
            rows: Arc::clone(&self.rows),
            rows_sorted: self.rows_sorted,
            states: self.states,
        }
    }

    /// Whether the rows are in another order than the one asked for: a worker is
    /// sorting them. No rows are in every order.
    pub fn is_sorting(&self) -> bool {
        !self.rows.is_empty() && self.rows_sorted != (self.sort, self.descending)
    }

    /// Sorts the rows as asked, unless they are so already. Rows shared with another
    /// table (the one shown, when a worker sorts) are copied first.
    pub fn sort_rows(&mut self) {
        if self.is_sorting() {
            self.order_rows();
        }
    }

    fn order_rows(&mut self) {
        let (sort, descending) = (self.sort, self.descending);
        self.rows_sorted = (sort, descending);
        Arc::make_mut(&mut self.rows).sort_by(|a, b| {
            let order = match sort {
                GroupSort::Total => a.counts.counts.total().cmp(&b.counts.counts.total()),
                GroupSort::Label => a.label.cmp(&b.label),
                GroupSort::State(state) => {
                    a.counts.counts.get(state).cmp(&b.counts.counts.get(state))
                }
            };
            let order = if descending { order.reverse() } else { order };
            // Ties in the groups' own order, whichever way the sort goes.
            order.then_with(|| a.counts.group.cmp(&b.counts.group))
        });
    }
}

/// Numbers every counting of the groups, so that rows counted for an older poll, or
/// under a key since changed, are never shown.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

/// A new number for [`GroupsJob`]s and the tables waiting for them.
pub fn next_generation() -> u64 {
    NEXT_GENERATION.fetch_add(1, Ordering::Relaxed)
}

/// What counting a poll's sockets per group needs, to be done off the view's thread:
/// a pass over every socket and a label for every group. Or, with no snapshot, what
/// sorting the rows shown in a new order needs.
#[derive(Debug, Clone)]
pub struct GroupsJob {
    /// Which model asked (the live one, or the one a pause froze), in the asker's
    /// numbering: a worker may drop a job when a newer one of the same lane waits.
    pub lane: u8,
    pub generation: u64,
    /// The key and sort to count under; its rows are filled by [`GroupsJob::run`].
    /// With no snapshot: the rows to sort, in the order they are shown.
    pub table: GroupTable,
    /// The poll to count; none to sort `table`'s rows only.
    pub snapshot: Option<Arc<Snapshot>>,
    pub cgroups: Arc<CgroupNames>,
    pub processes: Option<Arc<ProcessMap>>,
}

/// Two jobs are the same when they are for the same counting.
impl PartialEq for GroupsJob {
    fn eq(&self, other: &GroupsJob) -> bool {
        self.generation == other.generation
    }
}

impl Eq for GroupsJob {}

/// A [`GroupsJob`]'s answer: the table with its rows (counted, or sorted only), and
/// the cgroup names it learnt.
#[derive(Debug, Clone)]
pub struct CountedGroups {
    pub generation: u64,
    pub table: GroupTable,
    pub cgroups: Arc<CgroupNames>,
}

impl GroupsJob {
    pub fn run(mut self) -> CountedGroups {
        match &self.snapshot {
            Some(snapshot) => {
                self.table
                    .show(snapshot, &mut self.cgroups, self.processes.as_deref());
            }
            None => self.table.sort_rows(),
        }
        CountedGroups {
            generation: self.generation,
            table: self.table,
            cgroups: self.cgroups,
        }
    }
}

/// Names the cgroups of `rows` that have not been seen before.
pub fn learn(cgroups: &mut Arc<CgroupNames>, rows: &[GroupCounts]) {
    let ids = || {
        rows.iter().filter_map(|row| match row.group {
            Group::Cgroup(id) => Some(id),
            _ => None,
        })
    };
    if ids().any(|id| id != 0 && !cgroups.has_looked_for(id)) {
        Arc::make_mut(cgroups).learn(ids());
    }
}

/// The filter line that shows a group's connections, or why there is none.
pub fn drill_filter(row: &GroupRow) -> Result<String, &'static str> {
    Ok(match row.counts.group {
        Group::ListenPort(port) => format!("port:{port}"),
        Group::RemotePort(port) => format!("dport = :{port}"),
        Group::Peer(address) if address.is_unspecified() => "state listening".to_owned(),
        Group::Peer(address) => format!("dst {address}"),
        Group::PeerNet(address, _) if address.is_unspecified() => "state listening".to_owned(),
        Group::PeerNet(address, prefix) => format!("dst {address}/{prefix}"),
        Group::Cgroup(0) => "cgroup:-".to_owned(),
        Group::Cgroup(id) => match &row.path {
            Some(path) => format!("cgroup:{path}"),
            None => format!("cgroup:{id}"),
        },
        Group::Process(_) => return Err("the filter line has no word for a process"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::fixtures::socket;
    use std::time::SystemTime;

    fn snapshot() -> Snapshot {
        let mut sockets = vec![
            socket(State::Listen, "0.0.0.0", 8080, "0.0.0.0", 0),
            socket(State::Established, "10.0.0.1", 8080, "10.0.0.2", 5000),
            socket(State::TimeWait, "10.0.0.1", 8080, "10.0.0.3", 5001),
            socket(State::Established, "10.0.0.1", 40000, "192.0.2.9", 443),
        ];
        sockets[0].cgroup_id = 7;
        sockets[1].cgroup_id = 7;
        Snapshot::new(SystemTime::UNIX_EPOCH, sockets)
    }

    #[test]
    fn groups_are_largest_first_and_sort_by_any_column_either_way() {
        let mut table = GroupTable::default();
        let mut cgroups = Arc::new(CgroupNames::default());
        table.show(&snapshot(), &mut cgroups, None);
        let labels = |t: &GroupTable| t.rows.iter().map(|r| r.label.clone()).collect::<Vec<_>>();
        assert_eq!(labels(&table), ["8080", "to 443"]);
        table.set_sort(GroupSort::Total, false);
        assert_eq!(labels(&table), ["to 443", "8080"]);
        table.set_sort(GroupSort::Label, false);
        assert_eq!(labels(&table), ["8080", "to 443"]);
        table.set_sort(GroupSort::State(State::TimeWait), true);
        assert_eq!(labels(&table), ["8080", "to 443"]);
    }

    #[test]
    fn counting_notes_which_states_some_group_has_sockets_in() {
        let mut table = GroupTable::default();
        let mut cgroups = Arc::new(CgroupNames::default());
        table.show(&snapshot(), &mut cgroups, None);
        let present: Vec<State> = State::ALL
            .into_iter()
            .filter(|state| table.states[state.index()])
            .collect();
        let mut expected = vec![State::Established, State::Listen, State::TimeWait];
        expected.sort_by_key(|state| state.index());
        assert_eq!(present, expected);
        table.clear_rows();
        assert!(table.states.iter().all(|present| !present));
    }

    #[test]
    fn a_group_drills_into_a_filter_line_that_keeps_its_connections() {
        let mut table = GroupTable::default();
        let mut cgroups = Arc::new(CgroupNames::default());
        table.show(&snapshot(), &mut cgroups, None);
        let filters: Vec<_> = table.rows.iter().map(drill_filter).collect();
        assert_eq!(
            filters,
            [Ok("port:8080".to_owned()), Ok("dport = :443".to_owned())]
        );
        table.key = GroupKey::Cgroup;
        table.show(&snapshot(), &mut cgroups, None);
        let filters: Vec<_> = table.rows.iter().map(drill_filter).collect();
        assert_eq!(
            filters,
            [Ok("cgroup:7".to_owned()), Ok("cgroup:-".to_owned())],
            "the TIME_WAIT counts in its listener's cgroup"
        );
    }

    #[test]
    fn sort_columns_cycle_through_total_label_and_every_state() {
        let mut sort = GroupSort::Total;
        let mut seen = 0;
        loop {
            sort = sort.next();
            seen += 1;
            if sort == GroupSort::Total {
                break;
            }
        }
        assert_eq!(seen, 13);
    }
}
