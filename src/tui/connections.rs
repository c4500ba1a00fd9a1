//! The connections table's rows: which sockets of the latest snapshot pass the filter
//! line, in which order. Built once per update or when the sort or filter changes,
//! never per frame, so that a frame over 100k sockets only formats the rows on screen.
//!
//! Building them filters and sorts every socket, which at a million sockets takes
//! longer than a key may wait. So the view orders rows elsewhere
//! ([`ConnectionTable::order_elsewhere`]): a change gives a [`RowsJob`] that a worker
//! runs ([`super::ordering`]), and the table keeps showing the rows it has, of the
//! snapshot they index, until the [`OrderedRows`] of its latest change come back.
//! Rows of older changes are dropped. Tests and one-shot uses order at once. A filter
//! line with `cgroup:` words needs the cgroups' names: the job learns those it meets
//! (a walk of the cgroup2 tree when one is new) and hands them back with the rows.
//!
//! Rows are indices into the shared snapshot, not copies of its records. Across
//! namespaces (`--all-netns`) the snapshot holds every namespace's sockets one after
//! the other, and [`NamespaceSpan`]s say where each namespace's start; the ordering
//! also finds the first row of each namespace, so that Enter on a namespace selects
//! its first connection without a pass over the rows on the thread that reads keys.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::time::SystemTime;

use crate::group::Listeners;
use crate::kernel::cgroups::CgroupNames;
use crate::poll::info::{InfoSummary, TcpInfoTable};
use crate::snapshot::{Snapshot, SocketRecord};

use super::query::Query;
use crate::poll::rounds::NamespaceSpan;

/// A column the table can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortColumn {
    State,
    /// Across namespaces: in the namespaces tab's order, then by state.
    Netns,
    Local,
    Peer,
    RecvQ,
    SendQ,
    Timer,
    Uid,
    /// tcp_info, while its columns show (`-i`, `i`): a socket without it sorts last
    /// either way, as does one whose kernel does not keep the count.
    Rtt,
    RttVar,
    Cwnd,
    Retransmits,
    Acked,
    Received,
    Rate,
}

impl SortColumn {
    /// The sort key cycle, in the order of the table's columns.
    pub const ALL: [SortColumn; 15] = [
        SortColumn::State,
        SortColumn::Netns,
        SortColumn::Local,
        SortColumn::Peer,
        SortColumn::RecvQ,
        SortColumn::SendQ,
        SortColumn::Rtt,
        SortColumn::RttVar,
        SortColumn::Cwnd,
        SortColumn::Retransmits,
        SortColumn::Acked,
        SortColumn::Received,
        SortColumn::Rate,
        SortColumn::Timer,
        SortColumn::Uid,
    ];

    pub fn title(self) -> &'static str {
        match self {
            SortColumn::State => "State",
            SortColumn::Netns => "Netns",
            SortColumn::Local => "Local",
            SortColumn::Peer => "Peer",
            SortColumn::RecvQ => "Recv-Q",
            SortColumn::SendQ => "Send-Q",
            SortColumn::Timer => "Timer",
            SortColumn::Uid => "UID",
            SortColumn::Rtt => "RTT",
            SortColumn::RttVar => "RTTvar",
            SortColumn::Cwnd => "Cwnd",
            SortColumn::Retransmits => "Retr",
            SortColumn::Acked => "Acked",
            SortColumn::Received => "Rcvd",
            SortColumn::Rate => "Rate",
        }
    }

    /// Whether rows sort by the socket's tcp_info rather than by its record.
    pub fn is_info(self) -> bool {
        matches!(
            self,
            SortColumn::Rtt
                | SortColumn::RttVar
                | SortColumn::Cwnd
                | SortColumn::Retransmits
                | SortColumn::Acked
                | SortColumn::Received
                | SortColumn::Rate
        )
    }

    /// The column after this one: the namespace only when there are several, the
    /// tcp_info columns only while they show.
    pub fn next(self, across_namespaces: bool, info: bool) -> SortColumn {
        let at = SortColumn::ALL.iter().position(|c| *c == self).unwrap_or(0);
        let next = SortColumn::ALL[(at + 1) % SortColumn::ALL.len()];
        let skipped =
            (next == SortColumn::Netns && !across_namespaces) || (next.is_info() && !info);
        if skipped {
            next.next(across_namespaces, info)
        } else {
            next
        }
    }

    /// The key a tcp_info column sorts by; `None` for the other columns, and for a
    /// count the socket's kernel does not keep.
    fn info_key(self, info: &InfoSummary) -> Option<u64> {
        match self {
            SortColumn::Rtt => Some(u64::from(info.rtt_us)),
            SortColumn::RttVar => Some(u64::from(info.rttvar_us)),
            SortColumn::Cwnd => Some(u64::from(info.cwnd)),
            SortColumn::Retransmits => Some(u64::from(info.retransmits)),
            SortColumn::Acked => info.bytes_acked(),
            SortColumn::Received => info.bytes_received(),
            SortColumn::Rate => info.delivery_rate(),
            _ => None,
        }
    }

    fn compare(self, a: &SocketRecord, b: &SocketRecord) -> Ordering {
        let by_endpoints = || a.endpoints().cmp(&b.endpoints());
        match self {
            // States in the order of a connection's life, as the counts list them.
            SortColumn::State => a.state.index().cmp(&b.state.index()),
            // A record does not know its namespace: the table orders namespaces, and
            // asks for the state order within each.
            SortColumn::Netns => return SortColumn::State.compare(a, b),
            SortColumn::Local => (a.local_addr, a.local_port).cmp(&(b.local_addr, b.local_port)),
            SortColumn::Peer => (a.remote_addr, a.remote_port).cmp(&(b.remote_addr, b.remote_port)),
            SortColumn::RecvQ => a.recv_q.cmp(&b.recv_q),
            SortColumn::SendQ => a.send_q.cmp(&b.send_q),
            SortColumn::Timer => a.expires_ms.cmp(&b.expires_ms),
            SortColumn::Uid => a.uid.cmp(&b.uid),
            // [`order`] sorts by tcp_info itself, with the table at hand.
            _ => Ordering::Equal,
        }
        .then_with(by_endpoints)
    }
}

/// Numbers every change to any table's order, so that rows ordered for one change are
/// never taken for another's, even by a copy of the table (the one a pause freezes).
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

/// What ordering a table's rows needs: the snapshot, the namespaces in it, the filter
/// and the sort, as of one change.
#[derive(Debug, Clone)]
pub struct RowsJob {
    /// Which table asked, in the asker's numbering: a worker may drop a job when a
    /// newer one of the same lane waits.
    pub lane: u8,
    generation: u64,
    snapshot: Arc<Snapshot>,
    namespaces: Vec<NamespaceSpan>,
    query: Query,
    /// Names for the query's `cgroup:` words.
    cgroups: Arc<CgroupNames>,
    /// The tcp_info of the snapshot's sockets, for a sort by a tcp_info column.
    tcp_info: Option<Arc<TcpInfoTable>>,
    sort: SortColumn,
    descending: bool,
}

/// Two jobs are the same when they are for the same change.
impl PartialEq for RowsJob {
    fn eq(&self, other: &RowsJob) -> bool {
        self.generation == other.generation
    }
}

impl Eq for RowsJob {}

/// A job's rows: indices into its snapshot, in table order.
#[derive(Debug, Clone)]
pub struct OrderedRows {
    generation: u64,
    snapshot: Arc<Snapshot>,
    namespaces: Vec<NamespaceSpan>,
    rows: Arc<[u32]>,
    /// The first row of each of `namespaces`' sockets, in their order (none where no
    /// socket of it passes the filter).
    first_rows: Vec<Option<usize>>,
    /// The names the job knew, and those its `cgroup:` words made it learn.
    cgroups: Arc<CgroupNames>,
}

impl OrderedRows {
    /// The cgroup names the rows were filtered with.
    pub fn cgroups(&self) -> &Arc<CgroupNames> {
        &self.cgroups
    }
}

impl RowsJob {
    /// Filters and sorts every socket of the snapshot: O(n log n) in its sockets.
    pub fn run(mut self) -> OrderedRows {
        let rows = order(
            &self.snapshot.sockets,
            &self.namespaces,
            &self.query,
            &mut self.cgroups,
            self.tcp_info.as_deref(),
            self.sort,
            self.descending,
        );
        OrderedRows {
            generation: self.generation,
            first_rows: first_rows(&self.namespaces, &rows),
            snapshot: self.snapshot,
            namespaces: self.namespaces,
            rows: rows.into(),
            cgroups: self.cgroups,
        }
    }
}

/// The sockets the table shows, filtered and sorted.
#[derive(Debug, Clone)]
pub struct ConnectionTable {
    /// The snapshot the rows index, and where each namespace's sockets start in it
    /// (empty for one namespace): the latest one once its rows are ordered.
    shown: Arc<Snapshot>,
    shown_namespaces: Vec<NamespaceSpan>,
    rows: Arc<[u32]>,
    /// The first row of each of `shown_namespaces`, as the ordering found them.
    first_rows: Vec<Option<usize>>,
    /// The latest snapshot and its namespaces, whose rows may still be being ordered.
    latest: Arc<Snapshot>,
    namespaces: Vec<NamespaceSpan>,
    pub sort: SortColumn,
    pub descending: bool,
    query: Query,
    pub query_text: String,
    /// Names for the filter line's `cgroup:` words.
    cgroups: Arc<CgroupNames>,
    /// The latest snapshot's tcp_info, for a sort by a tcp_info column.
    tcp_info: Option<Arc<TcpInfoTable>>,
    /// The change the rows must follow, the one they follow, and the last one a job
    /// was handed out for.
    wanted: u64,
    ordered: u64,
    handed_out: u64,
    /// Whether rows are ordered by a worker rather than at once.
    elsewhere: bool,
}

impl Default for ConnectionTable {
    fn default() -> ConnectionTable {
        let empty = Arc::new(Snapshot::new(SystemTime::UNIX_EPOCH, Vec::new()));
        ConnectionTable {
            shown: Arc::clone(&empty),
            shown_namespaces: Vec::new(),
            rows: Arc::from([]),
            first_rows: Vec::new(),
            latest: empty,
            namespaces: Vec::new(),
            sort: SortColumn::State,
            descending: false,
            query: Query::default(),
            query_text: String::new(),
            cgroups: Arc::default(),
            tcp_info: None,
            wanted: 0,
            ordered: 0,
            handed_out: 0,
            elsewhere: false,
        }
    }
}

impl ConnectionTable {
    /// Shows a new snapshot under the current filter and sort.
    pub fn show(&mut self, snapshot: Arc<Snapshot>) {
        self.latest = snapshot;
        self.changed();
    }

    /// Shows a snapshot holding several namespaces' sockets, in the order `spans`
    /// gives.
    pub fn show_namespaces(&mut self, snapshot: Arc<Snapshot>, spans: Vec<NamespaceSpan>) {
        self.namespaces = spans;
        self.show(snapshot);
    }

    /// Whether the rows come from several namespaces.
    pub fn across_namespaces(&self) -> bool {
        !self.namespaces.is_empty()
    }

    /// The namespace of the socket at `index` in the shown snapshot, across namespaces.
    fn namespace_at(&self, index: u32) -> Option<&NamespaceSpan> {
        self.shown_namespaces
            .get(place_of(&self.shown_namespaces, index)?)
    }

    pub fn set_sort(&mut self, sort: SortColumn, descending: bool) {
        if (sort, descending) != (self.sort, self.descending) {
            self.sort = sort;
            self.descending = descending;
            self.changed();
        }
    }

    /// The cgroup names `cgroup:` words are matched against from the next rebuild on,
    /// unless the table's own are newer (a walk since: names only come from walks).
    pub fn set_cgroups(&mut self, cgroups: Arc<CgroupNames>) {
        if cgroups.walks() >= self.cgroups.walks() {
            self.cgroups = cgroups;
        }
    }

    /// The cgroup names the table knows.
    pub fn cgroups(&self) -> &Arc<CgroupNames> {
        &self.cgroups
    }

    /// The tcp_info of the snapshot [`ConnectionTable::show`] is given next (or of
    /// none): a sort by a tcp_info column follows it from then on.
    pub fn set_tcp_info(&mut self, tcp_info: Option<Arc<TcpInfoTable>>) {
        self.tcp_info = tcp_info;
    }

    /// Whether the filter line names cgroups, which then need names.
    pub fn wants_cgroups(&self) -> bool {
        self.query.has_cgroup_words()
    }

    pub fn set_query(&mut self, text: &str, query: Query) {
        self.query_text = text.to_owned();
        self.query = query;
        self.changed();
    }

    /// From now on, changes hand out a [`RowsJob`] ([`ConnectionTable::take_job`])
    /// instead of ordering the rows at once.
    pub fn order_elsewhere(&mut self) {
        self.elsewhere = true;
    }

    fn changed(&mut self) {
        self.wanted = NEXT_GENERATION.fetch_add(1, AtomicOrdering::Relaxed);
        if !self.elsewhere {
            self.order_now();
        }
    }

    /// The job the latest change needs, once: `None` when rows are ordered at once,
    /// or its job was handed out already.
    pub fn take_job(&mut self) -> Option<RowsJob> {
        if !self.elsewhere || self.handed_out == self.wanted || self.ordered == self.wanted {
            return None;
        }
        self.handed_out = self.wanted;
        Some(self.job())
    }

    /// Hands out the latest change's job again: for a copy of the table, whose
    /// original's job may be dropped for a newer one of the original's.
    pub fn hand_out_again(&mut self) {
        self.handed_out = 0;
    }

    fn job(&self) -> RowsJob {
        RowsJob {
            lane: 0,
            generation: self.wanted,
            snapshot: Arc::clone(&self.latest),
            namespaces: self.namespaces.clone(),
            query: self.query.clone(),
            cgroups: Arc::clone(&self.cgroups),
            tcp_info: self.tcp_info.clone(),
            sort: self.sort,
            descending: self.descending,
        }
    }

    /// Shows `rows` if they follow the latest change; rows of an older one are
    /// dropped. Returns whether they were shown.
    pub fn finish(&mut self, rows: &OrderedRows) -> bool {
        self.finish_replacing(rows).is_some()
    }

    /// As [`ConnectionTable::finish`], returning the snapshot the rows shown before were
    /// of when the new ones are shown, for the caller to let go of where it chooses.
    pub fn finish_replacing(&mut self, rows: &OrderedRows) -> Option<Arc<Snapshot>> {
        if rows.generation != self.wanted {
            return None;
        }
        let replaced = std::mem::replace(&mut self.shown, Arc::clone(&rows.snapshot));
        self.shown_namespaces.clone_from(&rows.namespaces);
        self.rows = Arc::clone(&rows.rows);
        self.first_rows.clone_from(&rows.first_rows);
        self.ordered = rows.generation;
        if rows.cgroups.walks() > self.cgroups.walks() {
            self.cgroups = Arc::clone(&rows.cgroups);
        }
        Some(replaced)
    }

    /// Orders the rows for the latest change here and now, if they do not follow it.
    pub fn order_now(&mut self) {
        if self.ordered != self.wanted {
            let rows = self.job().run();
            self.finish(&rows);
        }
    }

    /// Whether the rows shown are older than the latest change (a sort, a filter or a
    /// snapshot): they are being ordered.
    pub fn is_ordering(&self) -> bool {
        self.ordered != self.wanted
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// All sockets in the snapshot the rows are of, before filtering.
    pub fn total(&self) -> usize {
        self.shown.sockets.len()
    }

    /// The `row`th socket in table order.
    pub fn get(&self, row: usize) -> Option<&SocketRecord> {
        let index = *self.rows.get(row)?;
        self.shown.sockets.get(index as usize)
    }

    /// The first row of namespace `inode`'s sockets, if any passes the filter: found
    /// where the rows were ordered, so work in the number of namespaces only.
    pub fn first_row_in(&self, inode: u64) -> Option<usize> {
        let place = self
            .shown_namespaces
            .iter()
            .position(|span| span.inode == inode)?;
        self.first_rows.get(place).copied().flatten()
    }

    /// The rows `range` in table order: what a frame draws.
    pub fn rows(&self, start: usize, count: usize) -> impl Iterator<Item = &SocketRecord> {
        let end = start.saturating_add(count).min(self.rows.len());
        let start = start.min(end);
        self.rows[start..end]
            .iter()
            .filter_map(|&index| self.shown.sockets.get(index as usize))
    }

    /// The rows `range` in table order with their namespace (none for one namespace).
    pub fn rows_in_namespaces(
        &self,
        start: usize,
        count: usize,
    ) -> impl Iterator<Item = (Option<&NamespaceSpan>, &SocketRecord)> {
        let end = start.saturating_add(count).min(self.rows.len());
        let start = start.min(end);
        self.rows[start..end].iter().filter_map(|&index| {
            let socket = self.shown.sockets.get(index as usize)?;
            Some((self.namespace_at(index), socket))
        })
    }

    /// The `row`th socket in table order and the inode of its namespace (none for one
    /// namespace).
    pub fn get_in_namespace(&self, row: usize) -> Option<(Option<u64>, &SocketRecord)> {
        let index = *self.rows.get(row)?;
        let socket = self.shown.sockets.get(index as usize)?;
        Some((self.namespace_at(index).map(|span| span.inode), socket))
    }

    /// The sockets of namespace `inode` in the latest snapshot (all of them for none).
    pub fn sockets_in(&self, inode: Option<u64>) -> &[SocketRecord] {
        self.latest.sockets.get(self.span_of(inode)).unwrap_or(&[])
    }

    /// Where the sockets of namespace `inode` are in the latest snapshot (all of them
    /// for none); work in the number of namespaces only.
    pub fn span_of(&self, inode: Option<u64>) -> Range<usize> {
        let len = self.latest.sockets.len();
        let Some(inode) = inode else {
            return 0..len;
        };
        let Some(at) = self.namespaces.iter().position(|span| span.inode == inode) else {
            return 0..0;
        };
        let start = self.namespaces[at].start as usize;
        let end = self
            .namespaces
            .get(at + 1)
            .map_or(len, |next| next.start as usize);
        start.min(end)..end
    }

    /// The latest snapshot, shared, whether or not its rows are ordered yet.
    pub fn latest(&self) -> &Arc<Snapshot> {
        &self.latest
    }

    /// Where a connection is in table order now, to keep the selection on it.
    pub fn position(&self, socket: &SocketRecord) -> Option<usize> {
        let wanted = socket.endpoints();
        self.rows.iter().position(|&index| {
            self.shown
                .sockets
                .get(index as usize)
                .is_some_and(|s| s.endpoints() == wanted)
        })
    }

    /// The latest snapshot, whether or not its rows are ordered yet.
    pub fn snapshot(&self) -> &Snapshot {
        &self.latest
    }
}

/// The indices of the sockets that pass `query`, in the order `sort` gives.
fn order(
    sockets: &[SocketRecord],
    spans: &[NamespaceSpan],
    query: &Query,
    cgroups: &mut Arc<CgroupNames>,
    tcp_info: Option<&TcpInfoTable>,
    sort: SortColumn,
    descending: bool,
) -> Vec<u32> {
    // `netns:` words are judged once per namespace, not once per socket.
    let namespace_kept: Vec<bool> = spans
        .iter()
        .map(|span| query.matches_namespace(Some(span)))
        .collect();
    let kept_without_namespace = query.matches_namespace(None);
    let in_a_kept_namespace = |index: u32| match place_of(spans, index) {
        Some(place) => namespace_kept.get(place).copied().unwrap_or(false),
        None => kept_without_namespace,
    };
    // `cgroup:` words are judged once per cgroup; request sockets and TIME_WAIT
    // remnants are in their listener's. A cgroup not looked for yet is named first: a
    // walk names every cgroup there is, so a walk is rare after the first.
    let listeners = query.has_cgroup_words().then(|| Listeners::of(sockets));
    let mut cgroup_kept: HashMap<u64, bool> = HashMap::new();
    let mut in_a_kept_cgroup = |socket: &SocketRecord| {
        let Some(listeners) = &listeners else {
            return true;
        };
        let id = listeners.cgroup_of(socket);
        *cgroup_kept.entry(id).or_insert_with(|| {
            if id != 0 && !cgroups.has_looked_for(id) {
                Arc::make_mut(cgroups).learn([id]);
            }
            query.matches_cgroup(id, cgroups.name(id))
        })
    };
    let mut rows: Vec<u32> = (0..sockets.len())
        .filter(|&i| query.matches(&sockets[i]) && in_a_kept_cgroup(&sockets[i]))
        .filter_map(|i| u32::try_from(i).ok())
        .filter(|&i| in_a_kept_namespace(i))
        .collect();
    if sort.is_info() {
        return by_info(sockets, rows, tcp_info, sort, descending);
    }
    // Unstable sort: ties are broken by endpoints, then (the same endpoints in two
    // namespaces, or SO_REUSEPORT listeners) by place in the snapshot, so the order is
    // total anyway.
    rows.sort_unstable_by(|&a, &b| {
        let by_namespace = match sort {
            SortColumn::Netns => place_of(spans, a).cmp(&place_of(spans, b)),
            _ => Ordering::Equal,
        };
        let order = by_namespace
            .then_with(|| sort.compare(&sockets[a as usize], &sockets[b as usize]))
            .then(a.cmp(&b));
        if descending { order.reverse() } else { order }
    });
    rows
}

/// `rows` sorted by a tcp_info column: each socket's key is looked up once, and a
/// socket without one (no tcp_info, or a count its kernel does not keep) comes last
/// in either direction, as it has nothing to compare.
fn by_info(
    sockets: &[SocketRecord],
    rows: Vec<u32>,
    tcp_info: Option<&TcpInfoTable>,
    sort: SortColumn,
    descending: bool,
) -> Vec<u32> {
    let mut keyed: Vec<(Option<u64>, u32)> = rows
        .into_iter()
        .map(|index| {
            let key = tcp_info
                .zip(sockets.get(index as usize))
                .and_then(|(table, socket)| table.get(socket.cookie))
                .and_then(|info| sort.info_key(info));
            (key, index)
        })
        .collect();
    keyed.sort_unstable_by(|(key_a, a), (key_b, b)| {
        let by_endpoints = || {
            let (a, b) = (&sockets[*a as usize], &sockets[*b as usize]);
            a.endpoints().cmp(&b.endpoints())
        };
        match (key_a, key_b) {
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            _ => {
                let order = key_a.cmp(key_b).then_with(by_endpoints).then(a.cmp(b));
                if descending { order.reverse() } else { order }
            }
        }
    });
    keyed.into_iter().map(|(_, index)| index).collect()
}

/// The first of `rows` (indices into a snapshot of `spans`) in each of `spans`, in
/// their order: one pass over the rows, which ends once every namespace is found.
fn first_rows(spans: &[NamespaceSpan], rows: &[u32]) -> Vec<Option<usize>> {
    let mut firsts = vec![None; spans.len()];
    let mut missing = spans.len();
    for (row, &index) in rows.iter().enumerate() {
        if missing == 0 {
            break;
        }
        if let Some(first @ None) = place_of(spans, index).and_then(|place| firsts.get_mut(place)) {
            *first = Some(row);
            missing -= 1;
        }
    }
    firsts
}

/// Which of `spans` the socket at `index` falls in, by its place among them. Namespaces
/// lie one after the other in the snapshot, in the namespaces tab's order, so the
/// place is also the namespace's place in that order.
fn place_of(spans: &[NamespaceSpan], index: u32) -> Option<usize> {
    spans
        .partition_point(|span| span.start <= index)
        .checked_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::fixtures::socket;
    use crate::tcp::State;

    fn table() -> ConnectionTable {
        let mut first = socket(State::TimeWait, "10.0.0.1", 80, "10.0.0.9", 1000);
        first.recv_q = 5;
        let mut second = socket(State::Listen, "0.0.0.0", 80, "0.0.0.0", 0);
        second.recv_q = 9;
        let third = socket(State::Established, "10.0.0.1", 22, "10.0.0.8", 2000);
        let mut table = ConnectionTable::default();
        table.show(Arc::new(Snapshot::new(
            SystemTime::UNIX_EPOCH,
            vec![first, second, third],
        )));
        table
    }

    fn states(table: &ConnectionTable) -> Vec<State> {
        table.rows(0, 10).map(|s| s.state).collect()
    }

    #[test]
    fn rows_sort_by_state_in_life_order_then_by_any_column_either_way() {
        let mut table = table();
        assert_eq!(
            states(&table),
            [State::Listen, State::Established, State::TimeWait]
        );
        table.set_sort(SortColumn::RecvQ, true);
        assert_eq!(
            states(&table),
            [State::Listen, State::TimeWait, State::Established]
        );
    }

    /// Two sockets of namespace 7 (labelled `7/web`), then two of namespace 3 (`3/db`).
    fn two_namespaces() -> ConnectionTable {
        let span = |start: u32, inode: u64, command: &str| NamespaceSpan {
            start,
            inode,
            label: Arc::from(format!("{inode}/{command}")),
        };
        let mut table = ConnectionTable::default();
        table.show_namespaces(
            Arc::new(Snapshot::new(
                SystemTime::UNIX_EPOCH,
                vec![
                    socket(State::TimeWait, "10.0.0.1", 80, "10.0.0.9", 1000),
                    socket(State::Listen, "0.0.0.0", 80, "0.0.0.0", 0),
                    socket(State::Established, "10.0.0.1", 22, "10.0.0.8", 2000),
                    socket(State::Listen, "0.0.0.0", 22, "0.0.0.0", 0),
                ],
            )),
            vec![span(0, 7, "web"), span(2, 3, "db")],
        );
        table
    }

    fn namespaces(table: &ConnectionTable) -> Vec<(Option<u64>, State)> {
        (0..table.len())
            .filter_map(|row| table.get_in_namespace(row))
            .map(|(netns, socket)| (netns, socket.state))
            .collect()
    }

    #[test]
    fn across_namespaces_rows_sort_by_namespace_in_order_then_by_state() {
        let mut table = two_namespaces();

        table.set_sort(SortColumn::Netns, false);
        assert_eq!(
            namespaces(&table),
            [
                (Some(7), State::Listen),
                (Some(7), State::TimeWait),
                (Some(3), State::Listen),
                (Some(3), State::Established),
            ]
        );
        table.set_sort(SortColumn::Netns, true);
        assert_eq!(
            namespaces(&table).first(),
            Some(&(Some(3), State::Established))
        );
    }

    #[test]
    fn the_first_row_of_each_namespace_comes_with_the_rows_the_worker_ordered() {
        let mut table = two_namespaces();
        table.order_elsewhere();
        let firsts = |table: &ConnectionTable| (table.first_row_in(7), table.first_row_in(3));
        // By state: the listeners of 3 then 7, then 3's connection, then 7's.
        assert_eq!(firsts(&table), (Some(1), Some(0)));
        table.set_sort(SortColumn::Netns, true);
        let job = table.take_job().expect("a sort change needs ordering");
        assert_eq!(
            firsts(&table),
            (Some(1), Some(0)),
            "until the worker answers"
        );
        assert!(table.finish(&job.run()));
        assert_eq!(firsts(&table), (Some(2), Some(0)), "3 first, then 7");

        table.set_sort(SortColumn::State, false);
        let older = table.take_job().expect("a sort change needs ordering");
        table.set_sort(SortColumn::Netns, false);
        let newer = table.take_job().expect("a sort change needs ordering");
        assert!(!table.finish(&older.run()), "an older change's rows");
        assert_eq!(firsts(&table), (Some(2), Some(0)));
        assert!(table.finish(&newer.run()));
        assert_eq!(firsts(&table), (Some(0), Some(2)), "7 first, then 3");

        table.set_query("netns:db", Query::parse("netns:db").unwrap());
        table.order_now();
        assert_eq!(
            (firsts(&table), table.first_row_in(9)),
            ((None, Some(0)), None),
            "none for a namespace filtered out, or not shown"
        );
    }

    #[test]
    fn the_filter_line_keeps_the_namespaces_it_names() {
        let mut table = two_namespaces();

        table.set_query("netns:db", Query::parse("netns:db").unwrap());

        assert_eq!(
            namespaces(&table),
            [(Some(3), State::Listen), (Some(3), State::Established)]
        );
    }

    #[test]
    fn the_sort_moves_to_the_namespace_column_only_when_there_are_several() {
        assert_eq!(SortColumn::State.next(false, false), SortColumn::Local);
        assert_eq!(SortColumn::State.next(true, false), SortColumn::Netns);
        assert_eq!(SortColumn::Netns.next(true, false), SortColumn::Local);
        assert_eq!(SortColumn::Uid.next(true, false), SortColumn::State);
    }

    /// Four connections to port 443 from ports 1 to 4: the first three with tcp_info
    /// (RTT 30, 10 and 20 ms, acked bytes unknown on the third's kernel), the fourth
    /// without (it came after the dump).
    fn with_info() -> ConnectionTable {
        let sockets: Vec<SocketRecord> = (1..=4u16)
            .map(|port| SocketRecord {
                cookie: u64::from(port),
                ..socket(State::Established, "10.0.0.1", port, "10.0.0.9", 443)
            })
            .collect();
        let info = |rtt_ms: u32, acked: Option<u64>| {
            InfoSummary::of(&crate::kernel::tcp_info::TcpInfo {
                rtt_us: rtt_ms * 1000,
                bytes_acked: acked,
                ..Default::default()
            })
        };
        let mut table = ConnectionTable::default();
        table.set_tcp_info(Some(Arc::new(TcpInfoTable::new(vec![
            (1, info(30, Some(5))),
            (2, info(10, Some(900))),
            (3, info(20, None)),
        ]))));
        table.show(Arc::new(Snapshot::new(SystemTime::UNIX_EPOCH, sockets)));
        table
    }

    fn local_ports(table: &ConnectionTable) -> Vec<u16> {
        table.rows(0, 10).map(|s| s.local_port).collect()
    }

    #[test]
    fn rows_sort_by_rtt_either_way_with_the_socket_without_tcp_info_last() {
        let mut table = with_info();
        table.set_sort(SortColumn::Rtt, false);
        assert_eq!(local_ports(&table), [2, 3, 1, 4]);
        table.set_sort(SortColumn::Rtt, true);
        assert_eq!(local_ports(&table), [1, 3, 2, 4]);
    }

    #[test]
    fn a_count_the_kernel_does_not_keep_sorts_last_like_no_tcp_info() {
        let mut table = with_info();
        table.set_sort(SortColumn::Acked, true);
        assert_eq!(local_ports(&table)[..2], [2, 1]);
        table.set_sort(SortColumn::Acked, false);
        assert_eq!(local_ports(&table)[..2], [1, 2]);
    }

    #[test]
    fn a_sort_by_tcp_info_follows_the_table_of_the_latest_snapshot() {
        let mut table = with_info();
        table.order_elsewhere();
        table.set_sort(SortColumn::Rtt, false);
        let job = table.take_job().expect("a sort change needs ordering");
        assert!(table.finish(&job.run()));
        assert_eq!(local_ports(&table), [2, 3, 1, 4]);

        // The next dump: the fourth has tcp_info now, and the quickest RTT.
        let faster = crate::kernel::tcp_info::TcpInfo {
            rtt_us: 1000,
            ..Default::default()
        };
        table.set_tcp_info(Some(Arc::new(TcpInfoTable::new(vec![(
            4,
            InfoSummary::of(&faster),
        )]))));
        let snapshot = Arc::new(table.snapshot().clone());
        table.show(snapshot);
        let job = table.take_job().expect("a new snapshot needs ordering");
        assert!(table.finish(&job.run()));
        assert_eq!(local_ports(&table), [4, 1, 2, 3]);
    }

    #[test]
    fn the_sort_moves_to_tcp_info_columns_only_while_they_show() {
        assert_eq!(SortColumn::SendQ.next(false, false), SortColumn::Timer);
        assert_eq!(SortColumn::SendQ.next(false, true), SortColumn::Rtt);
        assert_eq!(SortColumn::Rtt.next(false, true), SortColumn::RttVar);
        assert_eq!(SortColumn::Rate.next(false, true), SortColumn::Timer);
        let cycle: Vec<SortColumn> = std::iter::successors(Some(SortColumn::State), |sort| {
            Some(sort.next(false, true)).filter(|next| *next != SortColumn::State)
        })
        .collect();
        for sort in [
            SortColumn::Rtt,
            SortColumn::Cwnd,
            SortColumn::Retransmits,
            SortColumn::Rate,
        ] {
            assert!(cycle.contains(&sort), "{sort:?} not in {cycle:?}");
        }
    }

    #[test]
    fn the_filter_line_keeps_only_matching_rows() {
        let mut table = table();
        table.set_query(":80", Query::parse(":80").unwrap());
        assert_eq!(table.len(), 2);
        table.set_query("estab", Query::parse("estab").unwrap());
        assert_eq!(states(&table), [State::Established]);
        assert_eq!(table.total(), 3);
    }

    #[test]
    fn ordered_elsewhere_the_old_rows_stay_until_the_latest_change_is_ordered() {
        let mut table = table();
        table.order_elsewhere();
        table.set_sort(SortColumn::RecvQ, true);
        let by_recv_q = table.take_job().expect("a sort change needs ordering");
        assert!(table.take_job().is_none(), "one job per change");
        table.set_query("estab", Query::parse("estab").unwrap());
        let filtered = table.take_job().expect("a filter change needs ordering");

        assert!(table.is_ordering());
        assert_eq!(
            states(&table),
            [State::Listen, State::Established, State::TimeWait]
        );
        assert!(!table.finish(&by_recv_q.run()), "an older change's rows");
        assert_eq!(states(&table).len(), 3);
        assert!(table.finish(&filtered.run()));
        assert!(!table.is_ordering());
        assert_eq!(states(&table), [State::Established]);
    }

    #[test]
    fn rows_being_ordered_still_index_the_snapshot_they_were_ordered_for() {
        let mut table = table();
        table.order_elsewhere();
        table.show(Arc::new(Snapshot::new(
            SystemTime::UNIX_EPOCH,
            vec![socket(State::CloseWait, "10.0.0.2", 9, "10.0.0.3", 9)],
        )));

        assert_eq!(table.len(), 3);
        assert_eq!(table.total(), 3);
        assert_eq!(table.get(2).map(|s| s.state), Some(State::TimeWait));
        assert_eq!(
            table.sockets_in(None).len(),
            1,
            "the detail follows the latest"
        );
        table.order_now();
        assert_eq!(states(&table), [State::CloseWait]);
    }

    #[test]
    fn asking_for_rows_past_the_end_gives_what_there_is() {
        let table = table();
        assert_eq!(table.rows(2, 10).count(), 1);
        assert_eq!(table.rows(7, 10).count(), 0);
    }
}
