//! What the views draw: the latest poll turned into numbers to show ([`Model`]), and
//! what the user chose to look at ([`Ui`]).
//!
//! The app updates these from events; views only read them. Nothing here polls, locks
//! or reads the clock: time differences come from the snapshots' own timestamps.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::kernel::procfs::{ProcessMap, TcpExt};
use crate::kernel::tcp_info::TcpInfo;
use crate::poll::info::{InfoSummary, TcpInfoTable};
use crate::poll::update::{EventStatus, Update};
use crate::snapshot::{Counts, Endpoints, Snapshot, SocketRecord};
use crate::tcp::State;
use crate::watch::findings::Finding;
use crate::watch::{CloseWaitLeaks, CounterRates, History, SynWatch};

use super::connections::{ConnectionTable, OrderedRows, SortColumn};
use super::groups::{self, CountedGroups, GroupSort, GroupTable, GroupsJob};
use super::line_editor::LineEditor;
use super::placing::{self, Follow, Placed, Places, PlacingJob};
use super::playback::PlaybackStatus;
use super::query::QueryError;
use crate::group::GroupKey;
use crate::kernel::cgroups::CgroupNames;
use crate::poll::rounds::{NamespaceSpan, NamespaceSummary, Round};

/// The numbers from the latest polls.
#[derive(Debug, Clone)]
pub struct Model {
    pub counts: Counts,
    /// Change of each state's count since the previous poll, in [`State::ALL`] order;
    /// `None` before the second poll.
    pub changes: Option<[i64; 11]>,
    /// Change per second, over the time between the two polls' snapshots.
    pub rates: [f64; 11],
    pub ipv4_total: u32,
    pub ipv6_total: u32,
    pub syn_watch: SynWatch,
    /// The findings raised at the latest poll, most urgent first (across namespaces,
    /// each names its own), each named with the cgroup that holds most of its sockets
    /// once placed.
    pub findings: Vec<Finding>,
    /// The same, as the poll raised them (unplaced).
    raised: Vec<Finding>,
    /// Where the latest placing put findings, by incident.
    places: Places,
    /// Whether findings are placed by a worker ([`Model::take_placing_job`]), the
    /// placing the findings must follow, and the job not handed out yet.
    placing_elsewhere: bool,
    placing_wanted: u64,
    placing_job: Option<PlacingJob>,
    /// CLOSE_WAIT sockets per process and local port, followed across polls by the
    /// app's leak watcher (owners from the latest process scan).
    pub close_wait: CloseWaitLeaks,
    /// Per-second growth of the TcpExt counters the SYN watch reads; `None` before the
    /// second poll.
    pub counter_rates: Option<CounterRates>,
    pub history: History,
    pub connections: ConnectionTable,
    /// The Groups tab: the latest snapshot counted per group.
    pub groups: GroupTable,
    /// Whether the Groups tab shows: only then is each full poll counted per group
    /// (a pass over every socket); else [`Model::groups_stale`] is set, and the rows are
    /// counted again when the tab shows.
    groups_shown: bool,
    groups_stale: bool,
    /// Whether each poll's groups are counted on a worker ([`Model::take_groups_job`]),
    /// the counting the rows must follow, and the job not handed out yet.
    groups_elsewhere: bool,
    groups_wanted: u64,
    groups_job: Option<GroupsJob>,
    /// The counting the rows shown follow.
    groups_counted: u64,
    /// The sort of the rows shown handed out to a worker, if any (0: none): there may
    /// be as many groups as sockets.
    groups_sort_wanted: u64,
    /// The latest full dump's CLOSE_WAIT sockets, which the poller picked out.
    pub close_wait_sockets: Arc<[SocketRecord]>,
    /// Cgroup names, learnt as new cgroup ids appear (for the Groups tab and the
    /// filter line's `cgroup:` words).
    pub cgroups: Arc<CgroupNames>,
    pub processes: Option<Arc<ProcessMap>>,
    pub status: Status,
    pub detail: Option<Detail>,
    /// Across namespaces (`--all-netns`): each one's counts and whose each SYN watch
    /// row is; `None` for one namespace.
    pub namespaces: Option<NamespaceSummary>,
    /// When the first poll was taken, so that a quiet log can say for how long it has
    /// been quiet.
    pub first_taken_at: Option<SystemTime>,
    /// The latest full dump's tcp_info by socket cookie, while the connections table
    /// shows its tcp_info columns (`-i`, `i`); `None` otherwise.
    pub tcp_info: Option<Arc<TcpInfoTable>>,
    previous: Option<(Arc<Snapshot>, TcpExt)>,
}

/// What the status line owns up to.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub interval: Duration,
    /// How long the last poll took; `None` before the first.
    pub took: Option<Duration>,
    pub events: EventStatus,
    pub event_overflows: u32,
    /// Whether process names miss processes this user may not inspect; `None` before
    /// the first scan.
    pub processes: Option<ProcessesSeen>,
    /// The last poll's error, cleared by the next poll that succeeds.
    pub error: Option<String>,
    pub polls: u64,
    /// The CPU budget in percent of one core (`--max-cpu`; 0: none).
    pub max_cpu: f64,
    /// The time between full dumps, when the poller says (see
    /// [`crate::poll::Pace::full_every`]).
    pub full_every: Option<Duration>,
    /// When the latest poll, full or fast lane, was taken.
    pub polled_at: Option<SystemTime>,
    /// When SYN_RECV sockets were last dumped (see [`crate::poll::Pace::syn_recv_at`]).
    pub syn_recv_at: Option<SystemTime>,
}

impl Status {
    /// How long before the latest poll SYN_RECV sockets were dumped, when a fast-lane
    /// poll left them out; none when they are as fresh as the rest.
    pub fn syn_recv_age(&self) -> Option<Duration> {
        let age = self.polled_at?.duration_since(self.syn_recv_at?).ok()?;
        (age > Duration::ZERO).then_some(age)
    }

    /// How long ago the connections table was dumped, when the latest poll was only
    /// the fast lane; none when the table is as fresh as the rest.
    pub fn table_age(&self, table_taken_at: Option<SystemTime>) -> Option<Duration> {
        let age = self.polled_at?.duration_since(table_taken_at?).ok()?;
        (age > Duration::ZERO).then_some(age)
    }
}

/// What the last process scan could read, for the status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessesSeen {
    All,
    /// Some processes could not be read: how many and what would help, in the words
    /// the one-shot `-p` uses ([`ProcessMap::partial_brief`]).
    Partial(String),
}

/// What kind of kernel object a record is, which decides the fields that mean
/// something for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    /// A full socket with a peer: queues, owner, and `tcp_info`.
    Connection,
    /// A LISTEN socket: its queues are the accept queue and the backlog
    /// (`inet_diag`'s `idiag_rqueue`/`idiag_wqueue` for a listener), plus its drops.
    Listener,
    /// A request socket (SYN_RECV with no file: the kernel's `request_sock`): a
    /// handshake in progress, with its SYN-ACK timer and retransmissions only.
    Request,
    /// A TIME_WAIT remnant (`inet_timewait_sock`): addresses and a timer, nothing else.
    TimeWait,
}

impl SocketKind {
    pub fn of(record: &SocketRecord) -> SocketKind {
        match record.state {
            State::Listen => SocketKind::Listener,
            // A SYN_RECV socket with a file is a full socket (Fast Open, a simultaneous
            // open); without one it is the mini socket of a handshake.
            State::SynRecv if record.inode == 0 => SocketKind::Request,
            State::TimeWait => SocketKind::TimeWait,
            _ => SocketKind::Connection,
        }
    }

    /// Whether the kernel's `tcp_info` says anything about it: only a connection's.
    pub fn has_tcp_info(self) -> bool {
        self == SocketKind::Connection
    }
}

/// The connection the detail pane follows, found again in each new snapshot by its
/// endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct Detail {
    pub endpoints: Endpoints,
    /// The inode of its network namespace, across namespaces.
    pub netns: Option<u64>,
    /// The latest record seen for it.
    pub record: SocketRecord,
    /// Whether the latest snapshot still holds it.
    pub present: bool,
    /// The kernel's answer for this socket alone; `None` while the request is under
    /// way, or when it was not asked because of `from_table`.
    pub tcp_info: Option<Result<TcpInfo, String>>,
    /// The connections table's tcp_info for it when the pane opened (`-i`, `i`): the
    /// kernel is not asked again, and the pane shows the latest full dump's, or this
    /// once a dump no longer holds it.
    pub from_table: Option<InfoSummary>,
}

impl Model {
    pub fn new(interval: Duration, history: History) -> Model {
        Model {
            counts: Counts::default(),
            changes: None,
            rates: [0.0; 11],
            ipv4_total: 0,
            ipv6_total: 0,
            syn_watch: SynWatch {
                listeners: Vec::new(),
                host_notes: Vec::new(),
            },
            findings: Vec::new(),
            raised: Vec::new(),
            places: Places::default(),
            placing_elsewhere: false,
            placing_wanted: 0,
            placing_job: None,
            close_wait: CloseWaitLeaks::default(),
            counter_rates: None,
            history,
            connections: ConnectionTable::default(),
            groups: GroupTable::default(),
            groups_shown: false,
            groups_stale: false,
            groups_elsewhere: false,
            groups_wanted: 0,
            groups_job: None,
            groups_counted: 0,
            groups_sort_wanted: 0,
            close_wait_sockets: Arc::from([]),
            cgroups: Arc::new(CgroupNames::open()),
            processes: None,
            status: Status {
                interval,
                took: None,
                events: EventStatus::Off,
                event_overflows: 0,
                processes: None,
                error: None,
                polls: 0,
                max_cpu: 0.0,
                full_every: None,
                polled_at: None,
                syn_recv_at: None,
            },
            detail: None,
            namespaces: None,
            first_taken_at: None,
            tcp_info: None,
            previous: None,
        }
    }

    /// A model for several namespaces, before their first round.
    pub fn across_namespaces(mut self) -> Model {
        self.namespaces = Some(NamespaceSummary::default());
        self
    }

    /// Takes in one finished poll. Returns the snapshot it replaces, for the caller
    /// to free where freeing it costs no key a wait (at a million sockets, about 4 ms).
    pub fn apply(&mut self, update: &Update) -> Option<Arc<Snapshot>> {
        self.take_in(update, None, &[])
    }

    /// Takes in a round of polls across namespaces; returns the snapshot it replaces,
    /// as [`Model::apply`] does.
    pub fn apply_round(&mut self, round: &Round) -> Option<Arc<Snapshot>> {
        let replaced = self.take_in(
            &round.update,
            Some(round.spans.clone()),
            &round.transition_netns,
        );
        self.namespaces = Some(round.summary.clone());
        self.status.error.clone_from(&round.error);
        replaced
    }

    /// `transition_netns` names the namespace of each transition, when there are several.
    fn take_in(
        &mut self,
        update: &Update,
        spans: Option<Vec<NamespaceSpan>>,
        transition_netns: &[u64],
    ) -> Option<Arc<Snapshot>> {
        self.status.full_every = update.pace.full_every;
        self.status.polled_at = Some(update.pace.at);
        self.status.syn_recv_at = Some(update.pace.syn_recv_at);
        if !update.pace.is_full() {
            self.take_in_lane(update);
            self.history
                .note(update.pace.at, &update.transitions, transition_netns);
            return None;
        }
        self.tcp_info.clone_from(&update.tcp_info);
        self.connections.set_tcp_info(update.tcp_info.clone());
        let snapshot = &update.snapshot;
        // The poller counted the states and families in its one pass over the table:
        // nothing here goes over every socket.
        let counts = update.pace.counts;
        let seconds = self.previous.as_ref().and_then(|(before, _)| {
            let elapsed = snapshot.taken_at.duration_since(before.taken_at).ok()?;
            (elapsed > Duration::ZERO).then_some(elapsed.as_secs_f64())
        });
        if self.previous.is_some() {
            let mut changes = [0i64; 11];
            let mut rates = [0.0; 11];
            for state in State::ALL {
                let change = i64::from(counts.get(state)) - i64::from(self.counts.get(state));
                changes[state.index()] = change;
                rates[state.index()] = seconds.map_or(0.0, |s| change as f64 / s);
            }
            self.changes = Some(changes);
            self.rates = rates;
        }
        if update.rates.is_some() {
            self.counter_rates = update.rates;
        }
        self.counts = counts;
        self.ipv4_total = update.pace.families.ipv4;
        self.ipv6_total = update.pace.families.ipv6;
        self.close_wait_sockets = Arc::clone(&update.pace.close_wait);
        self.syn_watch = update.syn_watch.clone();
        self.take_in_findings(&update.findings);
        self.history.record(
            snapshot.taken_at,
            counts,
            &update.transitions,
            transition_netns,
        );
        if self.groups_shown && self.groups_elsewhere {
            self.hand_out_groups(Arc::clone(snapshot));
        } else if self.groups_shown {
            self.groups
                .show(snapshot, &mut self.cgroups, self.processes.as_deref());
        }
        self.groups_stale = !self.groups_shown;
        self.connections.set_cgroups(Arc::clone(&self.cgroups));
        match spans {
            Some(spans) => self
                .connections
                .show_namespaces(Arc::clone(snapshot), spans),
            None => self.connections.show(Arc::clone(snapshot)),
        }
        // Rows ordered at once (no worker) may have named cgroups already.
        let named = Arc::clone(self.connections.cgroups());
        self.adopt_cgroups(&named);
        self.hand_out_placing();
        self.status.took = Some(update.took);
        self.status.events = update.events.clone();
        self.status.event_overflows = update.event_overflows;
        self.status.error = None;
        self.status.polls += 1;
        self.first_taken_at.get_or_insert(snapshot.taken_at);
        self.previous
            .replace((Arc::clone(snapshot), update.counters))
            .map(|(replaced, _)| replaced)
    }

    /// Drops the tcp_info the columns showed, once `i` hid them; a sort by one of them
    /// goes back to the state, as the column it named is gone.
    pub fn hide_tcp_info(&mut self) {
        self.tcp_info = None;
        self.connections.set_tcp_info(None);
        if self.connections.sort.is_info() {
            self.connections.set_sort(SortColumn::State, false);
        }
    }

    /// Hands out the counting of `snapshot` under the current key, for a worker.
    fn hand_out_groups(&mut self, snapshot: Arc<Snapshot>) {
        self.groups_wanted = groups::next_generation();
        self.groups_sort_wanted = 0;
        self.groups_job = Some(GroupsJob {
            lane: 0,
            generation: self.groups_wanted,
            table: GroupTable {
                key: self.groups.key,
                sort: self.groups.sort,
                descending: self.groups.descending,
                ..GroupTable::default()
            },
            snapshot: Some(snapshot),
            cgroups: Arc::clone(&self.cgroups),
            processes: self.processes.clone(),
        });
    }

    /// Whether the Groups tab's rows wait for a worker's counting (of a new poll, or
    /// under a new key).
    pub fn counting_groups(&self) -> bool {
        self.groups_elsewhere && self.groups_wanted != self.groups_counted
    }

    /// Counts the latest snapshot again, after the Groups tab's key changed or when it
    /// shows again: on the worker when there is one, else here and now. A counting
    /// under way is dropped.
    pub fn regroup(&mut self) {
        self.groups_stale = false;
        self.groups_sort_wanted = 0;
        if self.groups_elsewhere {
            match &self.previous {
                Some((snapshot, _)) => self.hand_out_groups(Arc::clone(snapshot)),
                None => self.groups_job = None,
            }
            return;
        }
        self.groups_wanted = groups::next_generation();
        self.groups_job = None;
        if let Some((snapshot, _)) = &self.previous {
            let snapshot = Arc::clone(snapshot);
            self.groups
                .show(&snapshot, &mut self.cgroups, self.processes.as_deref());
        }
    }

    /// From now on, each poll's groups are counted by a worker: a poll hands out a
    /// [`GroupsJob`] ([`Model::take_groups_job`]) while the tab shows, and the rows
    /// shown are the previous poll's until its [`CountedGroups`] come back.
    pub fn count_groups_elsewhere(&mut self) {
        self.groups_elsewhere = true;
    }

    /// Counts, here and now, the groups still waiting to be counted elsewhere: what a
    /// test does instead of waiting for the worker.
    pub fn count_groups_now(&mut self) {
        // A counting's answer may need sorting again.
        while let Some(job) = self.take_groups_job() {
            self.finish_groups(job.run());
        }
    }

    /// The counting the latest poll needs, once.
    pub fn take_groups_job(&mut self) -> Option<GroupsJob> {
        self.groups_job.take()
    }

    /// Shows the counted groups if they follow the latest poll and key, or the rows
    /// shown sorted anew if they answer the latest sort handed out; the sort chosen
    /// since is applied to them ([`Model::sort_groups`]). The rows are taken, not
    /// copied, and sorted again only if the sort changed since the job began: there
    /// may be as many groups as sockets (by peer).
    pub fn finish_groups(&mut self, counted: CountedGroups) {
        if !self.wants_groups(&counted) {
            return;
        }
        if counted.generation == self.groups_wanted {
            self.groups_counted = counted.generation;
        }
        self.groups_sort_wanted = 0;
        if counted.table.key == GroupKey::Cgroup {
            self.adopt_cgroups(&counted.cgroups);
        }
        self.groups.take_rows(counted.table);
        self.resort_groups();
    }

    /// Whether `counted` follows the latest poll and key, or is the latest sort of the
    /// rows shown; an answer to an older request is not.
    pub fn wants_groups(&self, counted: &CountedGroups) -> bool {
        let latest = counted.generation == self.groups_wanted
            || (self.groups_sort_wanted != 0 && counted.generation == self.groups_sort_wanted);
        latest && counted.table.key == self.groups.key
    }

    /// Sorts the Groups tab by `sort`, either way: at once when its rows are few or
    /// there is no worker, else on the worker ([`Model::take_groups_job`]), the rows
    /// shown keeping their order until it answers ([`Model::sorting_groups`]). While a
    /// counting is under way, its answer is sorted so.
    pub fn sort_groups(&mut self, sort: GroupSort, descending: bool) {
        self.groups.sort = sort;
        self.groups.descending = descending;
        if !self.counting_groups() {
            self.resort_groups();
        }
    }

    /// Puts the rows shown in the order asked for, if they are not: here and now when
    /// they are few, else by handing the sort out. A sort handed out before is dropped.
    fn resort_groups(&mut self) {
        if !self.groups.is_sorting() {
            self.groups_sort_wanted = 0;
            return;
        }
        if !self.groups_elsewhere || self.groups.rows.len() < groups::SORT_AT_ONCE {
            self.groups_sort_wanted = 0;
            self.groups.sort_rows();
            return;
        }
        self.groups_sort_wanted = groups::next_generation();
        self.groups_job = Some(GroupsJob {
            lane: 0,
            generation: self.groups_sort_wanted,
            table: self.groups.share(),
            snapshot: None,
            cgroups: Arc::clone(&self.cgroups),
            processes: None,
        });
    }

    /// Whether the Groups tab's rows wait for a worker to put them in the order asked.
    pub fn sorting_groups(&self) -> bool {
        self.groups.is_sorting()
    }

    /// Says whether the Groups tab shows: while it does, each full poll is counted per
    /// group; when it comes back, the latest poll is counted if it was not.
    pub fn show_groups(&mut self, shown: bool) {
        self.groups_shown = shown;
        if shown && self.groups_stale {
            self.regroup();
        }
    }

    /// Sets the filter line of the connections table. The cgroups its `cgroup:` words
    /// meet are named where the rows are ordered ([`RowsJob`](super::connections::RowsJob)).
    pub fn set_connections_query(&mut self, text: &str, query: super::query::Query) {
        self.connections.set_query(text, query);
    }

    /// Shows the rows ordered for the connections table if they follow its latest
    /// change, taking the cgroup names their ordering learnt; returns the snapshot the
    /// rows shown before were of, as [`ConnectionTable::finish_replacing`] does.
    pub fn finish_rows(&mut self, rows: &OrderedRows) -> Option<Arc<Snapshot>> {
        let replaced = self.connections.finish_replacing(rows);
        if replaced.is_some() {
            self.adopt_cgroups(rows.cgroups());
        }
        replaced
    }

    /// Takes in a poll of the fast lane: the SYN watch, the findings, the counter
    /// rates and the LISTEN and SYN_RECV counts are fresh; the connections table, the
    /// other counts and the timeline stay as the last full dump left them (no work in
    /// the number of sockets here).
    fn take_in_lane(&mut self, update: &Update) {
        if update.rates.is_some() {
            self.counter_rates = update.rates;
        }
        for state in [State::Listen, State::SynRecv] {
            self.counts.set(state, update.pace.counts.get(state));
        }
        self.syn_watch = update.syn_watch.clone();
        self.take_in_findings(&update.findings);
        self.status.took = Some(update.took);
        self.status.events = update.events.clone();
        self.status.error = None;
        self.status.polls += 1;
    }

    /// Shows a poll's findings with the cgroups the latest placing put the same
    /// incidents in (work in the number of findings only).
    fn take_in_findings(&mut self, raised: &[Finding]) {
        self.raised = raised.to_vec();
        self.findings = self.places.reapply(&self.raised, &self.cgroups);
    }

    /// Places the latest findings in the latest snapshot's cgroups and finds the
    /// connection the detail pane follows in it: hands out a [`PlacingJob`] when a
    /// worker does that, else does it here and now.
    fn hand_out_placing(&mut self) {
        self.placing_wanted = placing::next_generation();
        self.placing_job = None;
        if self.raised.is_empty() {
            self.places = Places::default();
        }
        let follow = self.detail.as_ref().map(|detail| Follow {
            endpoints: detail.endpoints,
            netns: detail.netns,
            span: self.connections.span_of(detail.netns),
        });
        if self.raised.is_empty() && follow.is_none() {
            return;
        }
        let job = PlacingJob {
            generation: self.placing_wanted,
            snapshot: Arc::clone(self.connections.latest()),
            findings: self.raised.clone(),
            cgroups: Arc::clone(&self.cgroups),
            follow,
        };
        if self.placing_elsewhere {
            self.placing_job = Some(job);
        } else {
            self.finish_placing(job.run());
        }
    }

    /// From now on, findings are placed, and the detail pane's connection found, by a
    /// worker: a full poll with findings or the pane open hands out a [`PlacingJob`]
    /// ([`Model::take_placing_job`]), and until its [`Placed`] comes back the findings
    /// show the cgroups placed for the previous poll and the pane its previous record.
    pub fn place_elsewhere(&mut self) {
        self.placing_elsewhere = true;
    }

    /// The placing the latest full poll needs, once.
    pub fn take_placing_job(&mut self) -> Option<PlacingJob> {
        self.placing_job.take()
    }

    /// Places, here and now, the findings still waiting to be placed elsewhere: what a
    /// test does instead of waiting for the worker.
    pub fn place_now(&mut self) {
        if let Some(job) = self.take_placing_job() {
            self.finish_placing(job.run());
        }
    }

    /// Shows where the latest full poll's findings are, if `placed` answers for it;
    /// the findings of the fast-lane polls since are placed likewise, by incident.
    pub fn finish_placing(&mut self, placed: Placed) {
        if placed.generation != self.placing_wanted {
            return;
        }
        self.adopt_cgroups(&placed.cgroups);
        self.places = Places::of(&placed.findings, &placed.places);
        self.findings = self.places.reapply(&self.raised, &self.cgroups);
        // The pane may have been closed, or opened on another connection, since.
        if let (Some(detail), Some((follow, found))) = (&mut self.detail, placed.followed)
            && (detail.endpoints, detail.netns) == (follow.endpoints, follow.netns)
        {
            match found {
                Some(socket) => {
                    detail.record = socket;
                    detail.present = true;
                }
                None => detail.present = false,
            }
        }
    }

    /// Takes the cgroup names a worker learnt, unless the model's own are newer (a
    /// walk since): names are only ever added by walks.
    fn adopt_cgroups(&mut self, cgroups: &Arc<CgroupNames>) {
        if Arc::ptr_eq(cgroups, &self.cgroups) || cgroups.walks() < self.cgroups.walks() {
            return;
        }
        self.cgroups = Arc::clone(cgroups);
        self.connections.set_cgroups(Arc::clone(&self.cgroups));
    }

    /// Whether a process is not closing its sockets: its CLOSE_WAIT count keeps
    /// growing, or that of a local port does (which needs no process scan). Sockets
    /// whose owner is not known (not accepted yet, or opened since the last scan) are
    /// counted, never flagged as a process.
    pub fn close_wait_leak(&self) -> bool {
        self.close_wait
            .growing_processes()
            .any(|leak| leak.owner.is_some())
            || self.close_wait.ports.iter().any(|leak| leak.growing)
    }

    pub fn poll_failed(&mut self, error: String) {
        self.status.error = Some(error);
    }

    pub fn set_processes(&mut self, processes: Arc<ProcessMap>) {
        self.status.processes = Some(if processes.is_partial() {
            ProcessesSeen::Partial(processes.partial_brief())
        } else {
            ProcessesSeen::All
        });
        self.processes = Some(processes);
    }

    /// The process name for a socket, if its inode was found in the last scan.
    pub fn process_of(&self, socket: &SocketRecord) -> Option<(i32, &str)> {
        if socket.inode == 0 {
            return None;
        }
        let process = self.processes.as_ref()?.lookup(socket.inode)?;
        Some((process.pid, process.name.as_str()))
    }

    /// How long before the latest poll the connections table was dumped, when the
    /// latest poll was only the fast lane.
    pub fn table_age(&self) -> Option<Duration> {
        let table = self
            .previous
            .as_ref()
            .map(|(snapshot, _)| snapshot.taken_at);
        self.status.table_age(table)
    }

    /// When the latest poll was taken; what the views measure ages against, since
    /// they never read the clock.
    pub fn taken_at(&self) -> Option<SystemTime> {
        self.history.latest().map(|poll| poll.taken_at)
    }

    /// The finding raised now that is the same incident as `opened` (same kind,
    /// subject and namespace), with its latest numbers.
    pub fn finding_like(&self, opened: &Finding) -> Option<&Finding> {
        self.findings.iter().find(|finding| {
            finding.kind == opened.kind
                && finding.subject == opened.subject
                && finding.netns == opened.netns
        })
    }

    /// What to call the namespace `inode` across namespaces: its short label, or its
    /// inode once it has gone and is shown no more.
    pub fn netns_label(&self, inode: u64) -> String {
        self.namespaces
            .as_ref()
            .and_then(|namespaces| namespaces.label_of(inode))
            .unwrap_or_else(|| inode.to_string())
    }
}

/// Which screen is shown: three always, and the per-namespace counts across
/// namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Overview,
    Connections,
    Timeline,
    Namespaces,
    Groups,
}

impl Tab {
    pub const ALL: [Tab; 4] = [Tab::Overview, Tab::Connections, Tab::Timeline, Tab::Groups];
    pub const ACROSS_NAMESPACES: [Tab; 5] = [
        Tab::Overview,
        Tab::Connections,
        Tab::Timeline,
        Tab::Namespaces,
        Tab::Groups,
    ];
    /// The tabs by the number their key shows them by (`1` to `5`), whether or not a
    /// model has them.
    pub const NUMBERED: [Tab; 5] = Tab::ACROSS_NAMESPACES;

    /// The tabs a model has: the namespaces tab only across namespaces.
    pub fn of(model: &Model) -> &'static [Tab] {
        if model.namespaces.is_some() {
            &Tab::ACROSS_NAMESPACES
        } else {
            &Tab::ALL
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Tab::Overview => "1 Overview",
            Tab::Connections => "2 Connections",
            Tab::Timeline => "3 Timeline",
            Tab::Namespaces => "4 Namespaces",
            Tab::Groups => "5 Groups",
        }
    }
}

/// A list's selected row and the first row on screen, kept across frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scroll {
    pub selected: usize,
    pub offset: usize,
}

impl Scroll {
    /// Moves the offset as little as possible to keep the selection among `height` rows
    /// of `len`.
    pub fn fit(&mut self, len: usize, height: usize) {
        self.selected = self.selected.min(len.saturating_sub(1));
        if height == 0 {
            return;
        }
        if self.selected < self.offset {
            self.offset = self.selected;
        } else if self.selected >= self.offset + height {
            self.offset = self.selected + 1 - height;
        }
        self.offset = self.offset.min(len.saturating_sub(height));
    }
}

/// What the user chose to look at.
#[derive(Debug, Clone, PartialEq)]
pub struct Ui {
    pub tab: Tab,
    pub help: bool,
    /// The filter line being edited, if open.
    pub filter_input: Option<LineEditor>,
    /// The filter lines entered in this session, oldest first, for ↑/↓.
    pub filter_history: Vec<String>,
    pub filter_error: Option<QueryError>,
    pub table: Scroll,
    /// The state selected in the timeline's legend.
    pub timeline_cursor: usize,
    /// The row selected in the namespaces tab.
    pub namespace_row: usize,
    /// The row selected in the Groups tab.
    pub group_row: usize,
    /// The finding selected on the overview.
    pub finding_row: usize,
    /// The finding Enter opened on the overview, as it was then: shown with its
    /// latest numbers while it is raised, and as cleared once it is not.
    pub finding_open: Option<Finding>,
    /// Which states the timeline plots, by [`State::index`].
    pub plotted: [bool; 11],
    pub paused: bool,
    /// Updates received while paused.
    pub behind: u64,
    /// Where a replay is in its recording; `None` when live.
    pub playback: Option<PlaybackStatus>,
    /// A one-off message for the status line (a refused key, a kill's result).
    pub notice: Option<String>,
    /// The connection `K` asked to close, while the status line asks "y/N".
    pub confirm_close: Option<SocketRecord>,
    /// Whether polls are being recorded (`--record FILE`); `None` when not asked to.
    pub recording: Option<Recording>,
    /// The label of the namespace `--netns` named; `None` for tcpscope's own.
    pub netns: Option<String>,
    /// Whether the connections table shows each socket's tcp_info (`-i`, `i`).
    pub info_columns: bool,
}

/// What became of `--record FILE` in the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recording {
    /// Every poll is appended to this file (as shown).
    To(String),
    /// Writing failed with this error; polls are no longer recorded.
    Stopped(String),
}

impl Default for Ui {
    fn default() -> Ui {
        let mut plotted = [false; 11];
        for state in [
            State::SynRecv,
            State::Established,
            State::TimeWait,
            State::CloseWait,
        ] {
            plotted[state.index()] = true;
        }
        Ui {
            tab: Tab::Overview,
            help: false,
            filter_input: None,
            filter_history: Vec::new(),
            filter_error: None,
            table: Scroll::default(),
            timeline_cursor: State::SynRecv.index(),
            namespace_row: 0,
            group_row: 0,
            finding_row: 0,
            finding_open: None,
            plotted,
            paused: false,
            behind: 0,
            playback: None,
            notice: None,
            confirm_close: None,
            recording: None,
            netns: None,
            info_columns: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fast_lane_poll_refreshes_the_syn_watch_and_leaves_the_table_and_timeline_alone() {
        let mut model = crate::tui::views::fixtures::flooded();
        let full = crate::tui::views::fixtures::next_update();
        model.apply(&full);
        let rows = model.connections.total();
        let timeline = model.taken_at();
        let mut lane = full.clone();
        lane.transitions.clear();
        lane.pace.at = full.pace.at + Duration::from_millis(2500);
        lane.pace.lane = Some(Arc::new(Snapshot::new(lane.pace.at, Vec::new())));
        lane.pace.counts.set(State::SynRecv, 7);
        lane.syn_watch.listeners.clear();
        model.apply(&lane);
        assert_eq!(model.counts.get(State::SynRecv), 7);
        assert!(model.syn_watch.listeners.is_empty());
        assert_eq!(model.connections.total(), rows);
        assert_eq!(
            model.taken_at(),
            timeline,
            "the timeline takes full dumps only"
        );
        assert_eq!(model.table_age(), Some(Duration::from_millis(2500)));
        // The next full dump makes the table as fresh as the rest again.
        model.apply(&full);
        assert_eq!(model.table_age(), None);
    }

    #[test]
    fn a_close_a_fast_lane_resolved_joins_the_timelines_events_at_once() {
        let mut model = crate::tui::views::fixtures::flooded();
        let full = crate::tui::views::fixtures::next_update();
        model.apply(&full);
        let polls = model.history.polls().len();
        let mut lane = full.clone();
        let socket = full.snapshot.sockets[0];
        lane.transitions = vec![crate::diff::Transition::closed(
            socket.endpoints(),
            socket.state,
            socket.cookie,
        )];
        lane.pace.at = full.pace.at + Duration::from_millis(1000);
        lane.pace.lane = Some(Arc::new(Snapshot::new(lane.pace.at, Vec::new())));
        model.apply(&lane);
        let last = model.history.events().next_back().expect("an event");
        assert_eq!(last.seen_at, lane.pace.at);
        assert_eq!(last.transition, lane.transitions[0]);
        assert_eq!(
            model.history.polls().len(),
            polls,
            "no poll of counts added"
        );
    }

    #[test]
    fn tcp_info_comes_with_full_dumps_and_stays_through_the_fast_lane_between_them() {
        let mut model = crate::tui::views::fixtures::flooded();
        let mut full = crate::tui::views::fixtures::next_update();
        full.tcp_info = Some(Arc::new(TcpInfoTable::default()));
        model.apply(&full);
        assert!(model.tcp_info.is_some());
        let mut lane = full.clone();
        lane.tcp_info = None;
        lane.pace.lane = Some(Arc::new(Snapshot::new(lane.pace.at, Vec::new())));
        model.apply(&lane);
        assert!(
            model.tcp_info.is_some(),
            "a lane has no tcp_info of its own"
        );
        // A full dump that did not ask (the columns were hidden) takes it away.
        full.tcp_info = None;
        model.apply(&full);
        assert!(model.tcp_info.is_none());
    }

    /// A cgroup2 tree under a temporary directory with one unit, and its id.
    fn cgroup_tree(name: &str) -> (std::path::PathBuf, u64) {
        let root = std::env::temp_dir().join(format!("tcpscope-{name}-{}", std::process::id()));
        let unit = root.join("system.slice/nginx.service");
        std::fs::create_dir_all(&unit).unwrap();
        let id = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&unit).unwrap());
        (root, id)
    }

    /// A full poll of CLOSE_WAIT sockets on local port 9000 in cgroup `id`, with a
    /// finding about each of `ports`.
    fn leaking_poll(second: u64, id: u64, ports: &[u16]) -> Update {
        use crate::snapshot::fixtures::socket;
        use crate::watch::findings::{Evidence, Kind, Severity, Subject};
        let mut update = crate::tui::views::fixtures::next_update();
        let taken_at = update.snapshot.taken_at + Duration::from_secs(second);
        let sockets = (0..5)
            .map(|n| {
                let mut s = socket(State::CloseWait, "10.0.0.1", 9000, "10.0.0.2", 5000 + n);
                s.cgroup_id = id;
                s
            })
            .collect();
        let snapshot = Snapshot::new(taken_at, sockets);
        update.pace = crate::poll::Pace::full(&snapshot, None);
        update.snapshot = Arc::new(snapshot);
        update.findings = ports
            .iter()
            .map(|port| {
                Finding::new(
                    Kind::CloseWaitLeak,
                    Severity::Warning,
                    Subject::LocalPort(*port),
                    format!("local port {port}: 5 sockets in CLOSE_WAIT"),
                    Evidence::default(),
                )
            })
            .collect();
        update
    }

    #[test]
    fn findings_are_placed_in_their_cgroup_by_the_workers_answer_not_while_taking_in_a_poll() {
        let (root, id) = cgroup_tree("placing");
        let mut model = Model::new(Duration::from_secs(1), History::default());
        model.cgroups = Arc::new(CgroupNames::at(Some(root.clone())));
        model.place_elsewhere();
        model.apply(&leaking_poll(0, id, &[9000]));
        assert_eq!(
            model.findings[0].summary,
            "local port 9000: 5 sockets in CLOSE_WAIT"
        );
        assert_eq!(
            model.cgroups.walks(),
            0,
            "no walk of the tree on the drawing thread"
        );
        let job = model.take_placing_job().expect("a placing for the worker");
        assert!(model.take_placing_job().is_none(), "handed out once");
        model.finish_placing(job.run());
        assert_eq!(
            model.findings[0].summary,
            "local port 9000: 5 sockets in CLOSE_WAIT (in nginx.service)"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn until_the_worker_answers_a_finding_keeps_the_cgroup_of_the_same_incident_and_a_new_one_has_none()
     {
        let (root, id) = cgroup_tree("keeping");
        let mut model = Model::new(Duration::from_secs(1), History::default());
        model.cgroups = Arc::new(CgroupNames::at(Some(root.clone())));
        model.place_elsewhere();
        model.apply(&leaking_poll(0, id, &[9000]));
        model.place_now();
        model.apply(&leaking_poll(1, id, &[9000, 9001]));
        let older = model.take_placing_job().expect("a placing for the worker");
        let summaries = |model: &Model| -> Vec<String> {
            model.findings.iter().map(|f| f.summary.clone()).collect()
        };
        assert_eq!(
            summaries(&model),
            [
                "local port 9000: 5 sockets in CLOSE_WAIT (in nginx.service)",
                "local port 9001: 5 sockets in CLOSE_WAIT",
            ]
        );
        // An answer for a poll that is no longer the latest is not shown.
        let mut moved = leaking_poll(2, 0, &[9000]);
        moved.findings[0].summary = "local port 9000: 6 sockets in CLOSE_WAIT".into();
        model.apply(&moved);
        model.finish_placing(older.run());
        assert_eq!(
            summaries(&model),
            ["local port 9000: 6 sockets in CLOSE_WAIT (in nginx.service)"],
            "the previous placing still holds: the answer for poll 1 was dropped"
        );
        // The latest poll's answer: its sockets left the cgroup.
        model.place_now();
        assert_eq!(
            summaries(&model),
            ["local port 9000: 6 sockets in CLOSE_WAIT"]
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_cgroup_filter_names_its_cgroups_where_the_rows_are_ordered_not_while_taking_in_a_poll() {
        let (root, id) = cgroup_tree("filtering");
        let mut model = Model::new(Duration::from_secs(1), History::default());
        model.cgroups = Arc::new(CgroupNames::at(Some(root.clone())));
        model.connections.order_elsewhere();
        model.apply(&leaking_poll(0, id, &[]));
        let text = "cgroup:nginx.service";
        model.set_connections_query(text, super::super::query::Query::parse(text).unwrap());
        model.apply(&leaking_poll(1, id, &[]));
        assert_eq!(
            model.cgroups.walks(),
            0,
            "no walk of the tree on the drawing thread"
        );
        let job = model.connections.take_job().expect("rows to order");
        assert!(model.finish_rows(&job.run()).is_some());
        assert_eq!(
            model.connections.len(),
            5,
            "the unit's sockets, named by the worker"
        );
        assert_eq!(model.cgroups.walks(), 1);
        model.apply(&leaking_poll(2, id, &[]));
        let job = model.connections.take_job().expect("rows to order");
        model.finish_rows(&job.run());
        assert_eq!(model.connections.len(), 5);
        assert_eq!(model.cgroups.walks(), 1, "a cgroup is named once");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_detail_pane_follows_its_connection_by_the_workers_answer_not_by_a_search_while_taking_in()
     {
        let mut model = Model::new(Duration::from_secs(1), History::default());
        model.place_elsewhere();
        let first = leaking_poll(0, 0, &[]);
        model.apply(&first);
        let record = first.snapshot.sockets[1];
        model.detail = Some(Detail {
            endpoints: record.endpoints(),
            netns: None,
            record,
            present: true,
            tcp_info: None,
            from_table: None,
        });
        let mut grown = leaking_poll(1, 0, &[]);
        let mut sockets = grown.snapshot.sockets.clone();
        sockets[1].recv_q = 4096;
        grown.snapshot = Arc::new(Snapshot::new(grown.snapshot.taken_at, sockets.clone()));
        model.apply(&grown);
        let shown = |model: &Model| model.detail.as_ref().map(|d| (d.record.recv_q, d.present));
        assert_eq!(
            shown(&model),
            Some((0, true)),
            "as it was until the worker answers"
        );
        model.place_now();
        assert_eq!(shown(&model), Some((4096, true)));
        sockets.remove(1);
        let mut closed = leaking_poll(2, 0, &[]);
        closed.snapshot = Arc::new(Snapshot::new(closed.snapshot.taken_at, sockets));
        model.apply(&closed);
        model.place_now();
        assert_eq!(
            shown(&model),
            Some((4096, false)),
            "gone, with its last record"
        );
    }

    /// A full poll of one connection to each of `ports` peer ports (10000 on), and a
    /// second one to port 15000: grouped by port, one group per peer port.
    fn many_peers(second: u64, ports: u16) -> Update {
        use crate::snapshot::fixtures::socket;
        let mut update = crate::tui::views::fixtures::next_update();
        let taken_at = update.snapshot.taken_at + Duration::from_secs(second);
        let mut sockets: Vec<SocketRecord> = (0..ports)
            .map(|n| socket(State::Established, "10.0.0.1", 30000, "10.0.0.2", 10000 + n))
            .collect();
        sockets.push(socket(
            State::Established,
            "10.0.0.1",
            30001,
            "10.0.0.3",
            15000,
        ));
        let snapshot = Snapshot::new(taken_at, sockets);
        update.pace = crate::poll::Pace::full(&snapshot, None);
        update.snapshot = Arc::new(snapshot);
        update.findings.clear();
        update
    }

    #[test]
    fn a_sort_asked_while_many_groups_are_counted_is_done_by_the_worker_after_the_count() {
        let mut model = Model::new(Duration::from_secs(1), History::default());
        model.count_groups_elsewhere();
        model.show_groups(true);
        let ports = u16::try_from(groups::SORT_AT_ONCE).unwrap();
        model.apply(&many_peers(0, ports));
        let count = model.take_groups_job().expect("a count for the worker");
        let first = |model: &Model| model.groups.rows.first().map(|r| r.label.clone());
        model.sort_groups(GroupSort::Label, true);
        assert!(
            model.take_groups_job().is_none(),
            "the count will be sorted"
        );
        model.finish_groups(count.run());
        assert_eq!(
            first(&model).as_deref(),
            Some("to 15000"),
            "the counted rows, largest first as they were counted"
        );
        assert!(model.sorting_groups());
        let sort = model.take_groups_job().expect("a sort for the worker");
        assert!(sort.snapshot.is_none());
        // A poll meanwhile: its count is sorted as asked, and the sort is dropped.
        model.apply(&many_peers(1, ports));
        let count = model.take_groups_job().expect("a count for the worker");
        model.finish_groups(sort.run());
        assert_eq!(first(&model).as_deref(), Some("to 15000"), "dropped");
        model.finish_groups(count.run());
        assert_eq!(first(&model).as_deref(), Some("to 19999"));
        assert!(!model.sorting_groups());
    }

    #[test]
    fn scrolling_keeps_the_selection_on_screen_and_moves_the_view_as_little_as_possible() {
        let mut scroll = Scroll {
            selected: 30,
            offset: 0,
        };
        scroll.fit(100, 10);
        assert_eq!(scroll.offset, 21);
        scroll.selected = 25;
        scroll.fit(100, 10);
        assert_eq!(scroll.offset, 21);
        scroll.selected = 5;
        scroll.fit(100, 10);
        assert_eq!(scroll.offset, 5);
    }

    #[test]
    fn a_selection_past_a_shrunken_list_moves_to_its_last_row() {
        let mut scroll = Scroll {
            selected: 50,
            offset: 45,
        };
        scroll.fit(12, 10);
        assert_eq!((scroll.selected, scroll.offset), (11, 2));
    }
}
