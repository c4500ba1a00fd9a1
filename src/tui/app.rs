//! The app's state and what each event does to it. Pure: events come in, the model
//! and UI state change, and anything that needs the outside world (a new interval, a
//! tcp_info request, a process scan, quitting) goes out as an [`Effect`] for the event
//! loop to carry out. That keeps every key testable without a terminal or a kernel.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;

use crate::kernel::procfs::ProcessMap;
use crate::kernel::tcp_info::TcpInfo;
use crate::poll::poller::MIN_INTERVAL;
use crate::poll::update::{Message, Update};
use crate::report::endpoint::connection_name;
use crate::snapshot::{Endpoints, Snapshot, SocketRecord};
use crate::tcp::State;
use crate::watch::findings::Kind;
use crate::watch::leaks::{self, DEFAULT_WINDOW};
use crate::watch::{LeakWatcher, Owner};

use super::connections::{OrderedRows, RowsJob, SortColumn};
use super::groups::{self, CountedGroups, GroupsJob};
use super::keys::{Action, action_for};
use super::line_editor::{self, LineEditor};
use super::model::{Detail, Model, Recording, Scroll, SocketKind, Tab, Ui};
use super::placing::{Placed, PlacingJob};
use super::playback::Playback;
use super::query::Query;
use super::theme::Theme;
use super::views::screen;
use crate::poll::rounds::{NamespaceLabel, Round, Rounds};

/// The intervals `+` and `-` step through.
const INTERVALS_MS: [u64; 8] = [100, 250, 500, 1000, 2000, 5000, 10_000, 30_000];
/// The lane of the paused table's [`RowsJob`]s; the live table's are lane 0.
const PAUSED_LANE: u8 = 1;
/// Rows PageUp and PageDown move.
const PAGE: usize = 20;
/// How old process names may get while the connections tab is shown. A scan reads
/// every process's descriptors, which at 100k sockets costs a third of a second of CPU;
/// every 30 s keeps that near 1% of a core. Measured by the snapshots' own clock.
const PROCESS_SCAN_EVERY: Duration = Duration::from_secs(30);
/// How often processes are scanned, whatever the tab, while CLOSE_WAIT sockets have
/// owners the last scan does not know, so that the leak panel can name them: about 3%
/// of a core at 100k sockets, and only while there are such sockets.
const LEAK_SCAN_EVERY: Duration = Duration::from_secs(10);

/// Everything the event loop hands the app.
#[derive(Debug)]
pub enum Event {
    Key(KeyEvent),
    /// The terminal was resized: redraw.
    Resize,
    /// Time passed: redraw.
    Tick,
    Poll(Message),
    /// A poll of the namespace with this inode (`--all-netns`).
    NamespacePoll(u64, Message),
    /// The namespaces polled from now on (`--all-netns`), in order; sent before their
    /// pollers start, and again when namespaces come or go.
    Namespaces(Vec<NamespaceLabel>),
    Processes(Result<Arc<ProcessMap>, String>),
    TcpInfo(Endpoints, Result<TcpInfo, String>),
    /// SIGTERM, SIGHUP, SIGINT or SIGQUIT arrived.
    Signal(i32),
    /// SIGTSTP arrived (`kill -TSTP`; Ctrl-Z typed in the view is a key).
    Suspend,
    /// The wait asked for by [`Effect::WakeForPlayback`] with this generation is over.
    PlaybackDue(u64),
    /// The answer to [`Effect::Close`]: the connection's endpoints, and whether it closed.
    Closed(Endpoints, Result<(), String>),
    /// Appending a poll to the recording failed (the error); recording has stopped.
    RecordingStopped(String),
    /// Something the view should say once on its status line: namespaces it could not
    /// enter or had no descriptors left for (`--all-netns`).
    Notice(String),
    /// The connections table's rows, ordered as [`Effect::OrderRows`] asked.
    Rows(OrderedRows),
    /// The Groups tab's rows, counted as [`Effect::CountGroups`] asked.
    Groups(Box<CountedGroups>),
    /// The findings' cgroups, placed as [`Effect::PlaceFindings`] asked.
    Placed(Box<Placed>),
    /// A round of polls across namespaces, put together off this thread (the thread
    /// that forwards the polls keeps the [`Rounds`]).
    Round(Box<Round>),
}

/// What the event loop must do for the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Quit,
    /// Give the terminal back, stop until continued, then take it again and redraw.
    Suspend,
    /// Quit because of this signal.
    QuitOnSignal(i32),
    SetInterval(Duration),
    /// Ask the pollers for every socket's tcp_info with each full dump, or stop asking.
    SetTcpInfo(bool),
    /// Ask the kernel for this socket's tcp_info, in its namespace (none: tcpscope's).
    FetchTcpInfo(Option<u64>, SocketRecord),
    ScanProcesses,
    /// Send [`Event::PlaybackDue`] with `generation` after `after`; a newer request
    /// replaces an older one.
    WakeForPlayback {
        generation: u64,
        after: Duration,
    },
    /// Close this socket with SOCK_DESTROY, in its namespace, off the UI thread.
    Close(Option<u64>, SocketRecord),
    /// Filter and sort the connections table's rows off the UI thread, and send them
    /// back as [`Event::Rows`]; a newer job makes an older one not worth finishing.
    OrderRows(RowsJob),
    /// Count a poll's groups off the UI thread, and send them back as
    /// [`Event::Groups`].
    CountGroups(Box<GroupsJob>),
    /// Place a poll's findings in their cgroups off the UI thread, and send them back
    /// as [`Event::Placed`].
    PlaceFindings(Box<PlacingJob>),
    /// Free this snapshot, which nothing else holds any more, off the UI thread: at a
    /// million sockets that is megabytes given back to the system.
    Release(Arc<Snapshot>),
}

/// A recording being shown instead of the live poller.
struct Replaying {
    playback: Playback,
    /// The model before any poll, to rebuild from when seeking backwards.
    start: Model,
    /// The poll the live model has taken in last.
    shown: Option<usize>,
}

pub struct App {
    live: Model,
    /// Follows CLOSE_WAIT sockets across the polls taken in (not `Clone`, so it lives
    /// here rather than in the model, which is copied to pause).
    leaks: LeakWatcher,
    /// The model shown while paused; the live one keeps taking updates underneath.
    frozen: Option<Model>,
    pub ui: Ui,
    scroll: Scroll,
    theme: Theme,
    scan_in_flight: bool,
    /// The snapshot time at the last scan request.
    last_scan: Option<SystemTime>,
    replaying: Option<Replaying>,
    /// Across namespaces: each one's latest poll, until a round is complete.
    rounds: Option<Rounds>,
    /// The namespace (inode, label) whose first connection to select once the rows
    /// sorted by namespace arrive.
    select_namespace: Option<(u64, String)>,
}

impl App {
    pub fn new(model: Model, theme: Theme) -> App {
        App {
            live: model,
            leaks: LeakWatcher::new(DEFAULT_WINDOW),
            frozen: None,
            ui: Ui::default(),
            scroll: Scroll::default(),
            theme,
            scan_in_flight: false,
            last_scan: None,
            replaying: None,
            rounds: None,
            select_namespace: None,
        }
    }

    /// An app showing several namespaces (`--all-netns`): it takes
    /// [`Event::Namespaces`] and [`Event::NamespacePoll`]s.
    pub fn across_namespaces(model: Model, theme: Theme) -> App {
        let mut app = App::new(model.across_namespaces(), theme);
        app.rounds = Some(Rounds::default());
        app
    }

    /// An app showing a recording's polls over `model`, starting on the first poll and
    /// playing. Call [`App::begin`] for the first wake-up.
    pub fn replaying(model: Model, theme: Theme, mut playback: Playback) -> App {
        let start = model.clone();
        playback.toggle_playing();
        let mut app = App::new(model, theme);
        app.replaying = Some(Replaying {
            playback,
            start,
            shown: None,
        });
        app.show_replayed(0);
        app
    }

    /// What the event loop must do before the first event: for a replay, wait for the
    /// second poll.
    pub fn begin(&mut self) -> Vec<Effect> {
        self.wake_for_playback()
    }

    /// From now on the connections table's rows are ordered off the thread that
    /// handles events: a change to them gives an [`Effect::OrderRows`], and the
    /// table shows its previous rows until the [`Event::Rows`] come back.
    pub fn order_rows_elsewhere(&mut self) {
        let elsewhere = |model: &mut Model| {
            model.connections.order_elsewhere();
            model.count_groups_elsewhere();
            model.place_elsewhere();
        };
        self.each_model(elsewhere);
        // A seek backwards in a replay starts again from this model.
        if let Some(replaying) = &mut self.replaying {
            elsewhere(&mut replaying.start);
        }
    }

    /// Orders, here and now, the rows still being ordered elsewhere: what a test does
    /// instead of waiting for the worker.
    pub fn order_rows_now(&mut self) {
        self.each_model(|model| {
            model.connections.order_now();
            model.count_groups_now();
            model.place_now();
        });
        self.rows_arrived();
    }

    /// Whether the rows shown wait for an ordering.
    pub fn ordering_rows(&self) -> bool {
        self.shown().connections.is_ordering()
    }

    /// The model the views draw.
    pub fn shown(&self) -> &Model {
        self.frozen.as_ref().unwrap_or(&self.live)
    }

    /// Draws the screen into `buf`.
    pub fn render(&mut self, area: Rect, buf: &mut Buffer) {
        let model = self.frozen.as_ref().unwrap_or(&self.live);
        screen::render(model, &self.ui, &mut self.scroll, &self.theme, area, buf);
    }

    /// Applies a change the user made to the shown model, and to the live one so that
    /// it survives un-pausing.
    fn each_model(&mut self, change: impl Fn(&mut Model)) {
        change(&mut self.live);
        if let Some(frozen) = &mut self.frozen {
            change(frozen);
        }
    }

    pub fn handle(&mut self, event: Event) -> Vec<Effect> {
        let mut effects = self.take(event);
        // Groups are counted only while their tab shows (a pass over every socket).
        let on_groups = self.ui.tab == Tab::Groups;
        self.each_model(|model| model.show_groups(on_groups));
        effects.extend(
            self.live
                .take_groups_job()
                .map(|job| Effect::CountGroups(Box::new(job))),
        );
        if let Some(frozen) = &mut self.frozen {
            effects.extend(frozen.take_groups_job().map(|mut job| {
                job.lane = PAUSED_LANE;
                Effect::CountGroups(Box::new(job))
            }));
        }
        effects.extend(
            self.live
                .take_placing_job()
                .map(|job| Effect::PlaceFindings(Box::new(job))),
        );
        effects.extend(self.live.connections.take_job().map(Effect::OrderRows));
        if let Some(frozen) = &mut self.frozen {
            effects.extend(frozen.connections.take_job().map(|mut job| {
                job.lane = PAUSED_LANE;
                Effect::OrderRows(job)
            }));
        }
        effects
    }

    fn take(&mut self, event: Event) -> Vec<Effect> {
        match event {
            Event::Key(key) if key.kind != KeyEventKind::Release => self.key(key),
            Event::Key(_) | Event::Resize | Event::Tick => Vec::new(),
            Event::Poll(Message::Update(update)) => {
                let replaced = take_in(&mut self.live, &mut self.leaks, &update);
                drop(update);
                if self.ui.paused {
                    self.ui.behind += 1;
                }
                let mut effects = self.maybe_scan();
                effects.extend(released(replaced));
                effects
            }
            Event::Poll(Message::PollFailed(error)) => {
                self.each_model(|model| model.poll_failed(error.clone()));
                Vec::new()
            }
            Event::NamespacePoll(netns, message) => self.namespace_poll(netns, message),
            Event::Namespaces(labels) => {
                self.set_namespaces(labels);
                Vec::new()
            }
            Event::Notice(text) => {
                self.ui.notice = Some(text);
                Vec::new()
            }
            Event::Processes(result) => {
                self.scan_in_flight = false;
                match result {
                    Ok(processes) => {
                        self.each_model(|model| model.set_processes(Arc::clone(&processes)))
                    }
                    Err(error) => {
                        self.each_model(|model| model.poll_failed(format!("process scan: {error}")))
                    }
                }
                Vec::new()
            }
            Event::TcpInfo(endpoints, result) => {
                self.each_model(|model| {
                    if let Some(detail) = &mut model.detail
                        && detail.endpoints == endpoints
                    {
                        detail.tcp_info = Some(result.clone());
                    }
                });
                Vec::new()
            }
            Event::Signal(signal) => vec![Effect::QuitOnSignal(signal)],
            Event::Suspend => vec![Effect::Suspend],
            Event::RecordingStopped(error) => {
                self.ui.recording = Some(Recording::Stopped(error));
                Vec::new()
            }
            Event::Closed(endpoints, result) => {
                let named = connection_name(&endpoints);
                self.ui.notice = Some(match result {
                    Ok(()) => format!("closed {named}"),
                    Err(error) => format!("could not close {named}: {error}"),
                });
                Vec::new()
            }
            Event::Rows(rows) => {
                // For the live table, the paused one, or both (a pause copies the
                // table with its change under way).
                let mut replaced = vec![self.live.finish_rows(&rows)];
                if let Some(frozen) = &mut self.frozen {
                    replaced.push(frozen.finish_rows(&rows));
                }
                drop(rows);
                self.rows_arrived();
                replaced.into_iter().flat_map(released).collect()
            }
            Event::Groups(counted) => {
                // A pause copies the model with its counting under way: both may want
                // it, and only then are the rows copied.
                if let Some(frozen) = &mut self.frozen
                    && frozen.wants_groups(&counted)
                {
                    frozen.finish_groups((*counted).clone());
                }
                self.live.finish_groups(*counted);
                Vec::new()
            }
            Event::Round(round) => self.take_round(*round),
            Event::Placed(placed) => {
                self.each_model(|model| model.finish_placing((*placed).clone()));
                Vec::new()
            }
            Event::PlaybackDue(generation) => {
                let Some(replaying) = &mut self.replaying else {
                    return Vec::new();
                };
                if replaying.playback.generation() != generation || !replaying.playback.playing {
                    return Vec::new();
                }
                let position = replaying.playback.position();
                self.show_replayed(position + 1);
                self.wake_for_playback()
            }
        }
    }

    /// One namespace's poll: shown when it completes a round. A failed poll is said at
    /// once.
    fn namespace_poll(&mut self, netns: u64, message: Message) -> Vec<Effect> {
        let Some(rounds) = &mut self.rounds else {
            return Vec::new();
        };
        let events = observe_round(rounds, netns, message);
        events
            .into_iter()
            .flat_map(|event| self.take(event))
            .collect()
    }

    /// Shows a complete round across namespaces.
    fn take_round(&mut self, round: Round) -> Vec<Effect> {
        let replaced = self.live.apply_round(&round);
        follow_close_wait(&mut self.live, &mut self.leaks, &round.update);
        drop(round);
        if self.ui.paused {
            self.ui.behind += 1;
        }
        let mut effects = self.maybe_scan();
        effects.extend(released(replaced));
        effects
    }

    /// Follows the namespaces that came and went. A namespace that went is not
    /// polled any more; its sockets leave the view with the next round, and the
    /// status line says so rather than the view calling them closed.
    fn set_namespaces(&mut self, labels: Vec<NamespaceLabel>) {
        let Some(rounds) = &mut self.rounds else {
            return;
        };
        if let Some(notice) = gone_notice(&rounds.set_namespaces(labels)) {
            self.ui.notice = Some(notice);
        }
    }

    /// Shows recorded poll `index`: the next one is applied as the live poller's would
    /// be; any other is reached by applying every poll from the start again, because
    /// the model's history and rates build up poll by poll. The table's sort, filter
    /// and detail pane are kept.
    fn show_replayed(&mut self, index: usize) {
        let Some(replaying) = &mut self.replaying else {
            return;
        };
        let index = replaying.playback.seek(index);
        // The polls to apply, up to and including `index`.
        let from = match replaying.shown {
            Some(shown) if shown == index => index + 1,
            Some(shown) if shown + 1 == index => index,
            _ => {
                let mut rebuilt = replaying.start.clone();
                rebuilt.connections = self.live.connections.clone();
                rebuilt.detail = self.live.detail.take();
                self.live = rebuilt;
                self.leaks = LeakWatcher::new(DEFAULT_WINDOW);
                0
            }
        };
        replaying.shown = Some(index);
        for replayed in &replaying.playback.polls()[from..=index] {
            match &replayed.message {
                Message::Update(update) => _ = take_in(&mut self.live, &mut self.leaks, update),
                Message::PollFailed(error) => self.live.poll_failed(error.clone()),
            }
        }
        if replaying.playback.at_end() {
            replaying.playback.playing = false;
        }
        self.ui.playback = Some(replaying.playback.status());
    }

    fn wake_for_playback(&mut self) -> Vec<Effect> {
        let Some(replaying) = &self.replaying else {
            return Vec::new();
        };
        match replaying.playback.wait_before_next() {
            Some(after) => vec![Effect::WakeForPlayback {
                generation: replaying.playback.generation(),
                after,
            }],
            None => Vec::new(),
        }
    }

    /// Runs `change` on the playback, shows where it left the position, and asks for
    /// the next wake-up. Outside a replay, says these keys are for one.
    fn on_playback(&mut self, change: impl FnOnce(&mut Playback)) -> Vec<Effect> {
        let Some(replaying) = &mut self.replaying else {
            self.ui.notice = Some("timeline keys work in a replay (--replay FILE)".into());
            return Vec::new();
        };
        change(&mut replaying.playback);
        let position = replaying.playback.position();
        self.show_replayed(position);
        self.wake_for_playback()
    }

    fn maybe_scan(&mut self) -> Vec<Effect> {
        // A recording's processes are long gone, or on another machine.
        if self.replaying.is_some() {
            return Vec::new();
        }
        let now = self.live.connections.snapshot().taken_at;
        let due = |every: Duration| {
            self.last_scan
                .is_none_or(|last| now.duration_since(last).is_ok_and(|age| age >= every))
        };
        let for_table =
            matches!(self.ui.tab, Tab::Connections | Tab::Groups) && due(PROCESS_SCAN_EVERY);
        let for_leaks = due(LEAK_SCAN_EVERY) && self.close_wait_owners_unknown();
        let for_findings = due(LEAK_SCAN_EVERY) && self.stalled_connects_unnamed();
        if !self.scan_in_flight && (for_table || for_leaks || for_findings) {
            self.scan_in_flight = true;
            self.last_scan = Some(now);
            vec![Effect::ScanProcesses]
        } else {
            Vec::new()
        }
    }

    /// Whether some CLOSE_WAIT socket of the latest poll belongs to a process the last
    /// scan does not know (inode 0 belongs to none: not accepted yet).
    /// Whether a `connect_stalled` finding is up without the processes waiting: the
    /// pollers name them from the view's latest walk over `/proc`.
    fn stalled_connects_unnamed(&self) -> bool {
        self.live.findings.iter().any(|finding| {
            finding.kind == Kind::ConnectStalled && finding.evidence.get("processes").is_none()
        })
    }

    fn close_wait_owners_unknown(&self) -> bool {
        if self.live.counts.get(State::CloseWait) == 0 {
            return false;
        }
        let processes = self.live.processes.as_deref();
        leaks::owners_unknown(&self.live.close_wait_sockets, |inode| {
            processes.is_some_and(|map| map.lookup(inode).is_some())
        })
    }

    fn key(&mut self, key: KeyEvent) -> Vec<Effect> {
        self.ui.notice = None;
        if let Some(record) = self.ui.confirm_close.take() {
            return self.confirm_close(record, key);
        }
        if self.ui.filter_input.is_some() {
            return self.filter_key(key);
        }
        match action_for(&key) {
            Some(action) => self.act(action),
            None => Vec::new(),
        }
    }

    /// The answer to "Close …? y/N": only `y` closes; any other key keeps the socket.
    fn confirm_close(&mut self, record: SocketRecord, key: KeyEvent) -> Vec<Effect> {
        let named = connection_name(&record.endpoints());
        if matches!(key.code, KeyCode::Char('y' | 'Y')) {
            self.ui.notice = Some(format!("closing {named}…"));
            let netns = self.shown().detail.as_ref().and_then(|detail| detail.netns);
            vec![Effect::Close(netns, record)]
        } else {
            self.ui.notice = Some(format!("kept {named}"));
            Vec::new()
        }
    }

    /// `K` in the detail pane: ask before closing its connection. Listening sockets
    /// are refused here: closing one stops a service, which deserves a command line.
    fn ask_to_close(&mut self) {
        let refusal = match &self.shown().detail {
            _ if self.replaying.is_some() => {
                Some("a recording's connections cannot be closed".into())
            }
            None => Some("open a connection (Enter) to close it".into()),
            Some(detail) if !detail.present => Some("this connection is gone already".into()),
            Some(detail) if detail.record.state == State::Listen => Some(
                "listening sockets are not closed from the view: use --kill 'state listen …'"
                    .into(),
            ),
            Some(detail) => {
                self.ui.confirm_close = Some(detail.record);
                None
            }
        };
        self.ui.notice = refusal;
    }

    /// Keys while the filter line is open edit it ([`LineEditor`]); Enter applies it,
    /// Esc closes it, Ctrl-C quits as everywhere.
    fn filter_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let Some(input) = &mut self.ui.filter_input else {
            return Vec::new();
        };
        match key.code {
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                return vec![Effect::Quit];
            }
            KeyCode::Esc => self.ui.filter_input = None,
            KeyCode::Enter => {
                let text = input.text();
                self.ui.filter_input = None;
                line_editor::remember(&mut self.ui.filter_history, &text);
                match Query::parse(&text) {
                    Ok(query) => {
                        self.ui.filter_error = None;
                        self.each_model(|model| model.set_connections_query(&text, query.clone()));
                        self.scroll = Scroll::default();
                    }
                    Err(error) => self.ui.filter_error = Some(error),
                }
            }
            _ => input.key(&key, &self.ui.filter_history),
        }
        Vec::new()
    }

    fn act(&mut self, action: Action) -> Vec<Effect> {
        match action {
            Action::Quit => return vec![Effect::Quit],
            Action::Suspend => return vec![Effect::Suspend],
            Action::ToggleHelp => self.ui.help = !self.ui.help,
            Action::NextTab => return self.step_tab(1),
            Action::PreviousTab => return self.step_tab(-1),
            Action::ShowTab(index) => return self.show_tab(index),
            Action::Up => self.move_by(-1),
            Action::Down => self.move_by(1),
            Action::PageUp => self.move_by(-(PAGE as isize)),
            Action::PageDown => self.move_by(PAGE as isize),
            Action::Top if self.ui.tab == Tab::Groups => self.cycle_group_key(),
            Action::Top => self.move_by(isize::MIN / 2),
            Action::Bottom => self.move_by(isize::MAX / 2),
            Action::Select => return self.select(),
            Action::Back => {
                if self.ui.help {
                    self.ui.help = false;
                } else if self.ui.filter_error.is_some() {
                    self.ui.filter_error = None;
                } else if self.ui.tab == Tab::Overview && self.ui.finding_open.is_some() {
                    self.ui.finding_open = None;
                } else {
                    self.each_model(|model| model.detail = None);
                }
            }
            Action::OpenFilter => {
                self.ui.tab = Tab::Connections;
                // After a refused line, edit that line rather than start over.
                let text = match self.ui.filter_error.take() {
                    Some(error) => error.text,
                    None => self.shown().connections.query_text.clone(),
                };
                self.ui.filter_input = Some(LineEditor::new(&text));
                self.each_model(|model| model.detail = None);
            }
            Action::NextSortColumn | Action::ReverseSort if self.ui.tab == Tab::Groups => {
                let table = &self.shown().groups;
                let (sort, descending) = if action == Action::ReverseSort {
                    (table.sort, !table.descending)
                } else {
                    (table.sort.next(), table.descending)
                };
                self.each_model(|model| model.sort_groups(sort, descending));
            }
            Action::NextSortColumn => {
                let (sort, descending) = (
                    self.shown().connections.sort.next(
                        self.shown().connections.across_namespaces(),
                        self.ui.info_columns,
                    ),
                    self.shown().connections.descending,
                );
                self.each_model(|model| model.connections.set_sort(sort, descending));
            }
            Action::ReverseSort => {
                let (sort, descending) = (
                    self.shown().connections.sort,
                    !self.shown().connections.descending,
                );
                self.each_model(|model| model.connections.set_sort(sort, descending));
            }
            Action::TogglePause if self.replaying.is_some() => {
                return self.on_playback(|playback| {
                    if playback.at_end() && !playback.playing {
                        playback.seek(0);
                    }
                    playback.toggle_playing();
                });
            }
            Action::CloseConnection => self.ask_to_close(),
            Action::ToggleInfo => return self.toggle_info(),
            Action::PlaybackBack => return self.on_playback(|playback| _ = playback.step(-1)),
            Action::PlaybackForward => return self.on_playback(|playback| _ = playback.step(1)),
            Action::PlaybackFirst => return self.on_playback(|playback| _ = playback.seek(0)),
            Action::PlaybackLast => {
                return self.on_playback(|playback| _ = playback.seek(usize::MAX));
            }
            Action::PlaybackSlower => return self.on_playback(|p| p.change_speed(-1)),
            Action::PlaybackFaster => return self.on_playback(|p| p.change_speed(1)),
            Action::TogglePause => {
                self.ui.paused = !self.ui.paused;
                self.ui.behind = 0;
                self.frozen = self.ui.paused.then(|| {
                    let mut frozen = self.live.clone();
                    frozen.connections.hand_out_again();
                    frozen
                });
            }
            Action::SlowerPolling => return self.step_interval(1),
            Action::FasterPolling => return self.step_interval(-1),
        }
        Vec::new()
    }

    /// `i`: shows or hides the connections table's tcp_info columns, on the
    /// connections tab. Live, the pollers ask the kernel for tcp_info from their next
    /// full dump on, and stop asking once the columns are hidden, so that a view
    /// without them costs what it always did.
    fn toggle_info(&mut self) -> Vec<Effect> {
        if self.replaying.is_some() {
            self.ui.notice = Some("a recording holds no tcp_info: -i shows it live".into());
            return Vec::new();
        }
        if self.rounds.is_some() {
            self.ui.notice =
                Some("tcp_info columns show one namespace: not with --all-netns".into());
            return Vec::new();
        }
        let on = !self.ui.info_columns;
        self.ui.info_columns = on;
        self.ui.tab = Tab::Connections;
        if !on {
            self.each_model(Model::hide_tcp_info);
        }
        vec![Effect::SetTcpInfo(on)]
    }

    /// Shows the tab numbered `index + 1` (see [`Tab::NUMBERED`]).
    fn show_tab(&mut self, index: usize) -> Vec<Effect> {
        let tabs = Tab::of(&self.live);
        match Tab::NUMBERED.get(index).filter(|tab| tabs.contains(tab)) {
            Some(tab) => self.ui.tab = *tab,
            None => {
                self.ui.notice =
                    Some("one network namespace: --all-netns shows each one's counts".into());
            }
        }
        self.maybe_scan()
    }

    fn step_tab(&mut self, step: isize) -> Vec<Effect> {
        let tabs = Tab::of(&self.live);
        let at = tabs.iter().position(|tab| *tab == self.ui.tab).unwrap_or(0);
        let next = (at as isize + step).rem_euclid(tabs.len() as isize) as usize;
        self.ui.tab = tabs[next];
        self.maybe_scan()
    }

    fn move_by(&mut self, rows: isize) {
        match self.ui.tab {
            Tab::Connections => {
                let len = self.shown().connections.len();
                self.scroll.selected = self
                    .scroll
                    .selected
                    .saturating_add_signed(rows)
                    .min(len.saturating_sub(1));
            }
            Tab::Timeline => {
                self.ui.timeline_cursor = self
                    .ui
                    .timeline_cursor
                    .saturating_add_signed(rows)
                    .min(State::ALL.len() - 1);
            }
            Tab::Namespaces => {
                let len = self.shown().namespaces.as_ref().map_or(0, |n| n.rows.len());
                self.ui.namespace_row = self
                    .ui
                    .namespace_row
                    .saturating_add_signed(rows)
                    .min(len.saturating_sub(1));
            }
            Tab::Groups => {
                let len = self.shown().groups.rows.len();
                self.ui.group_row = self
                    .ui
                    .group_row
                    .saturating_add_signed(rows)
                    .min(len.saturating_sub(1));
            }
            Tab::Overview => {
                let len = self.shown().findings.len();
                self.ui.finding_row = self
                    .ui
                    .finding_row
                    .saturating_add_signed(rows)
                    .min(len.saturating_sub(1));
            }
        }
    }

    fn select(&mut self) -> Vec<Effect> {
        match self.ui.tab {
            Tab::Connections => {
                let Some((netns, record)) = self
                    .shown()
                    .connections
                    .get_in_namespace(self.scroll.selected)
                    .map(|(netns, record)| (netns, *record))
                else {
                    return Vec::new();
                };
                // tcp_info is asked of the kernel at the moment, unless the table's
                // columns hold it already; a recording has none.
                let replayed = self.replaying.is_some();
                let from_table = self
                    .shown()
                    .tcp_info
                    .as_deref()
                    .and_then(|table| table.get(record.cookie))
                    .copied();
                self.each_model(|model| {
                    model.detail = Some(Detail {
                        endpoints: record.endpoints(),
                        netns,
                        record,
                        present: true,
                        tcp_info: replayed.then(|| Err("not in the recording".to_owned())),
                        from_table,
                    });
                });
                // A listener, a handshake or a TIME_WAIT remnant has none worth asking.
                if replayed || from_table.is_some() || !SocketKind::of(&record).has_tcp_info() {
                    Vec::new()
                } else {
                    vec![Effect::FetchTcpInfo(netns, record)]
                }
            }
            Tab::Timeline => {
                let plotted = &mut self.ui.plotted[self.ui.timeline_cursor];
                *plotted = !*plotted;
                Vec::new()
            }
            Tab::Namespaces => self.show_namespace_connections(),
            Tab::Groups => self.show_group_connections(),
            Tab::Overview => {
                let findings = &self.shown().findings;
                match findings.get(self.ui.finding_row.min(findings.len().saturating_sub(1))) {
                    Some(finding) => self.ui.finding_open = Some(finding.clone()),
                    None => self.ui.notice = Some("no finding to open: none is raised".into()),
                }
                Vec::new()
            }
        }
    }

    /// `g` on the Groups tab: the next key (process only with a process map).
    fn cycle_group_key(&mut self) {
        let model = self.shown();
        let key = model.groups.key.next(model.processes.is_some());
        self.each_model(|model| {
            model.groups.key = key;
            // Rows of the old key would be mislabelled until the new ones are counted.
            model.groups.clear_rows();
            model.regroup();
        });
        self.ui.group_row = 0;
    }

    /// Enter on a group: the connections tab, filtered to the group's connections.
    fn show_group_connections(&mut self) -> Vec<Effect> {
        let rows = &self.shown().groups.rows;
        let Some(row) = rows.get(self.ui.group_row.min(rows.len().saturating_sub(1))) else {
            return Vec::new();
        };
        let text = match groups::drill_filter(row) {
            Ok(text) => text,
            Err(why) => {
                self.ui.notice = Some(why.to_owned());
                return Vec::new();
            }
        };
        match Query::parse(&text) {
            Ok(query) => {
                self.ui.filter_error = None;
                self.each_model(|model| model.set_connections_query(&text, query.clone()));
                self.scroll = Scroll::default();
            }
            Err(error) => {
                self.ui.filter_error = Some(error);
                return Vec::new();
            }
        }
        self.ui.tab = Tab::Connections;
        self.maybe_scan()
    }

    /// Enter on a namespace: its connections, with the table sorted by namespace so
    /// that they are together, the first of them selected.
    fn show_namespace_connections(&mut self) -> Vec<Effect> {
        let Some((inode, label)) = self
            .shown()
            .namespaces
            .as_ref()
            .and_then(|summary| summary.rows.get(self.ui.namespace_row))
            .map(|row| (row.label.inode, row.label.short()))
        else {
            return Vec::new();
        };
        let descending = self.shown().connections.descending;
        self.each_model(|model| model.connections.set_sort(SortColumn::Netns, descending));
        self.select_namespace = Some((inode, label));
        if self.shown().connections.is_ordering() {
            self.ui.tab = Tab::Connections;
        } else {
            self.rows_arrived();
        }
        self.maybe_scan()
    }

    /// Once the rows sorted by namespace are there, selects the first connection of
    /// the namespace Enter chose, or says there is none.
    fn rows_arrived(&mut self) {
        if self.shown().connections.is_ordering() {
            return;
        }
        let Some((inode, label)) = self.select_namespace.take() else {
            return;
        };
        match self.shown().connections.first_row_in(inode) {
            Some(first) => {
                self.scroll.selected = first;
                self.ui.tab = Tab::Connections;
            }
            None => {
                self.ui.notice = Some(format!("no connection of {label} passes the filter"));
            }
        }
    }

    fn step_interval(&mut self, direction: isize) -> Vec<Effect> {
        if self.replaying.is_some() {
            self.ui.notice =
                Some("a replay keeps its recorded interval; < and > change the speed".into());
            return Vec::new();
        }
        let current = self.live.status.interval;
        let next = if direction > 0 {
            INTERVALS_MS
                .iter()
                .map(|&ms| Duration::from_millis(ms))
                .find(|&d| d > current)
        } else {
            INTERVALS_MS
                .iter()
                .rev()
                .map(|&ms| Duration::from_millis(ms))
                .find(|&d| d < current)
        };
        match next {
            Some(interval) => {
                let interval = interval.max(MIN_INTERVAL);
                self.each_model(|model| model.status.interval = interval);
                vec![Effect::SetInterval(interval)]
            }
            None => Vec::new(),
        }
    }
}

/// What the status line says of namespaces no longer shown, with how many sockets each
/// had; none when none went.
pub(crate) fn gone_notice(gone: &[(NamespaceLabel, usize)]) -> Option<String> {
    if gone.is_empty() {
        return None;
    }
    let named: Vec<String> = gone
        .iter()
        .map(|(label, sockets)| format!("{} ({sockets} sockets)", label.short()))
        .collect();
    Some(format!(
        "namespace gone, no longer shown: {}",
        named.join(", ")
    ))
}

/// Takes in one namespace's poll into `rounds`: the events the view is sent for it
/// (its failure, named by the namespace, and the round it completes). This is where
/// every namespace's sockets are copied into one snapshot, so it runs off the thread
/// that draws.
pub(crate) fn observe_round(rounds: &mut Rounds, netns: u64, message: Message) -> Vec<Event> {
    let failed = match (&message, rounds.label_of(netns)) {
        (Message::PollFailed(error), Some(label)) => Some(format!("netns {label}: {error}")),
        _ => None,
    };
    let round = rounds.observe(netns, message);
    let mut events: Vec<Event> = failed
        .map(|error| Event::Poll(Message::PollFailed(error)))
        .into_iter()
        .collect();
    events.extend(round.map(|round| Event::Round(Box::new(round))));
    events
}

/// Takes in one poll: the model, and the CLOSE_WAIT sockets followed across polls.
/// Returns the snapshot the model held before, as [`Model::apply`] does.
fn take_in(model: &mut Model, leaks: &mut LeakWatcher, update: &Update) -> Option<Arc<Snapshot>> {
    let replaced = model.apply(update);
    follow_close_wait(model, leaks, update);
    replaced
}

/// A snapshot no longer shown: freed off this thread when nothing else holds it,
/// else only let go of here.
fn released(snapshot: Option<Arc<Snapshot>>) -> Option<Effect> {
    snapshot
        .filter(|snapshot| Arc::strong_count(snapshot) == 1)
        .map(Effect::Release)
}

/// Follows the CLOSE_WAIT sockets of a poll (or of a round across namespaces, whose
/// cookies and inodes are unique host-wide), their owners looked up in the latest
/// process scan. The poller picked them out of the table: nothing here goes over every
/// socket.
fn follow_close_wait(model: &mut Model, leaks: &mut LeakWatcher, update: &Update) {
    let snapshot = &update.snapshot;
    let reading = leaks.observe(snapshot.taken_at, &update.pace.close_wait, |inode| {
        let process = model.processes.as_deref()?.lookup(inode)?;
        Some(Owner {
            pid: process.pid,
            name: process.name.clone(),
        })
    });
    model.close_wait = reading;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::model::ProcessesSeen;
    use crate::tui::views::fixtures;
    use crate::tui::views::testing::text;

    fn press(app: &mut App, code: KeyCode) -> Vec<Effect> {
        app.handle(Event::Key(KeyEvent::new(code, KeyModifiers::NONE)))
    }

    fn app() -> App {
        App::new(fixtures::flooded(), Theme::MONO)
    }

    #[test]
    fn i_shows_the_tcp_info_columns_and_asks_the_pollers_for_it_then_stops_asking() {
        let mut app = app();
        assert!(!app.ui.info_columns);
        assert_eq!(
            press(&mut app, KeyCode::Char('i')),
            vec![Effect::SetTcpInfo(true)]
        );
        assert!(app.ui.info_columns);
        assert_eq!(app.ui.tab, Tab::Connections);
        app.live.tcp_info = Some(Arc::default());
        assert_eq!(
            press(&mut app, KeyCode::Char('i')),
            vec![Effect::SetTcpInfo(false)]
        );
        assert!(!app.ui.info_columns);
        assert!(
            app.shown().tcp_info.is_none(),
            "hidden columns keep no table"
        );
    }

    /// The sort columns `s` steps through from the state back to it.
    fn sort_cycle(app: &mut App) -> Vec<SortColumn> {
        let mut seen = Vec::new();
        for _ in 0..SortColumn::ALL.len() {
            press(app, KeyCode::Char('s'));
            let sort = app.shown().connections.sort;
            if sort == SortColumn::State {
                break;
            }
            seen.push(sort);
        }
        seen
    }

    #[test]
    fn s_sorts_by_the_tcp_info_columns_only_while_they_show() {
        let mut app = app();
        press(&mut app, KeyCode::Char('2'));
        let without = sort_cycle(&mut app);
        assert!(!without.contains(&SortColumn::Rtt), "{without:?}");
        press(&mut app, KeyCode::Char('i'));
        let with = sort_cycle(&mut app);
        for sort in [
            SortColumn::Rtt,
            SortColumn::Cwnd,
            SortColumn::Retransmits,
            SortColumn::Rate,
        ] {
            assert!(with.contains(&sort), "{sort:?} not in {with:?}");
        }
    }

    #[test]
    fn hiding_the_tcp_info_columns_sorted_by_one_sorts_by_state_again() {
        let mut app = app();
        press(&mut app, KeyCode::Char('i'));
        while app.shown().connections.sort != SortColumn::Cwnd {
            press(&mut app, KeyCode::Char('s'));
        }
        press(&mut app, KeyCode::Char('r'));
        press(&mut app, KeyCode::Char('i'));
        assert_eq!(
            (
                app.shown().connections.sort,
                app.shown().connections.descending
            ),
            (SortColumn::State, false)
        );
    }

    /// The tcp_info table of a full dump that held `record`, with this RTT.
    fn table_holding(record: &SocketRecord, rtt_us: u32) -> Arc<crate::poll::info::TcpInfoTable> {
        let info = TcpInfo {
            rtt_us,
            snd_cwnd: 10,
            ..TcpInfo::default()
        };
        Arc::new(crate::poll::info::TcpInfoTable::new(vec![(
            record.cookie,
            crate::poll::info::InfoSummary::of(&info),
        )]))
    }

    #[test]
    fn enter_with_the_columns_holding_its_tcp_info_asks_the_kernel_nothing() {
        let mut app = app();
        press(&mut app, KeyCode::Char('i'));
        filter(&mut app, "estab");
        let Some(record) = app.shown().connections.get(0).copied() else {
            panic!("no established connection")
        };
        app.live.tcp_info = Some(table_holding(&record, 2500));

        let effects = press(&mut app, KeyCode::Enter);

        assert_eq!(effects, [], "asked the kernel again");
        let Some(detail) = &app.shown().detail else {
            panic!("no detail pane")
        };
        assert_eq!(detail.from_table.map(|info| info.rtt_us), Some(2500));
        let screen = text(120, 40, |area, buf| app.render(area, buf));
        assert!(screen.contains("rtt 2.5ms"), "{screen}");
        assert!(screen.contains("latest full poll"), "{screen}");
        assert!(!screen.contains("asking the kernel"), "{screen}");
    }

    #[test]
    fn enter_with_the_columns_lacking_its_tcp_info_still_asks_the_kernel() {
        let mut app = app();
        press(&mut app, KeyCode::Char('i'));
        filter(&mut app, "estab");
        app.live.tcp_info = Some(Arc::default());

        let effects = press(&mut app, KeyCode::Enter);

        let Some(detail) = &app.shown().detail else {
            panic!("no detail pane")
        };
        assert_eq!(detail.from_table, None);
        assert_eq!(effects, [Effect::FetchTcpInfo(None, detail.record)]);
    }

    #[test]
    fn i_while_paused_says_tcp_info_comes_on_resuming_and_it_does() {
        let mut app = app();
        press(&mut app, KeyCode::Char('2'));
        press(&mut app, KeyCode::Char(' '));
        press(&mut app, KeyCode::Char('i'));
        let screen = text(100, 30, |area, buf| app.render(area, buf));
        assert!(screen.contains("tcp_info shows on resuming"), "{screen}");

        // The live view underneath takes the next full dump's tcp_info meanwhile.
        let mut update = fixtures::next_update();
        let Some(record) = update.snapshot.sockets.first().copied() else {
            panic!("an empty update")
        };
        update.tcp_info = Some(table_holding(&record, 1000));
        app.handle(Event::Poll(Message::Update(Box::new(update))));
        press(&mut app, KeyCode::Char(' '));
        let screen = text(100, 30, |area, buf| app.render(area, buf));
        assert!(!screen.contains("resuming"), "{screen}");
        assert!(!screen.contains("next full poll"), "{screen}");
    }

    #[test]
    fn across_namespaces_i_says_the_columns_are_for_one_namespace() {
        let mut app = App::across_namespaces(fixtures::across_namespaces(), Theme::MONO);
        assert!(press(&mut app, KeyCode::Char('i')).is_empty());
        assert!(!app.ui.info_columns);
        let notice = app.ui.notice.clone().unwrap_or_default();
        assert!(notice.contains("--all-netns"), "{notice}");
    }

    /// Narrows the connections table with the filter line.
    fn filter(app: &mut App, line: &str) {
        press(app, KeyCode::Char('/'));
        for c in line.chars() {
            press(app, KeyCode::Char(c));
        }
        press(app, KeyCode::Enter);
    }

    #[test]
    fn enter_on_the_overview_opens_the_selected_finding_and_esc_closes_it() {
        let mut app = App::new(fixtures::leaking(), Theme::MONO);
        let kinds: Vec<&str> = app.shown().findings.iter().map(|f| f.kind.id()).collect();
        assert_eq!(kinds, ["syn_flood", "close_wait_leak"]);
        press(&mut app, KeyCode::Down);
        press(&mut app, KeyCode::Down);
        assert!(press(&mut app, KeyCode::Enter).is_empty());
        let opened = app.ui.finding_open.as_ref().map(|f| f.kind.id());
        assert_eq!(
            opened,
            Some("close_wait_leak"),
            "the last row stays selected"
        );
        let screen = crate::tui::views::testing::text(80, 24, |area, buf| app.render(area, buf));
        assert!(screen.contains("  close_wait: 7"), "{screen}");
        assert!(screen.contains("Remedy"), "{screen}");
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.ui.finding_open, None);
    }

    #[test]
    fn g_on_the_groups_tab_changes_the_key_and_enter_drills_into_the_groups_connections() {
        let mut app = app();
        press(&mut app, KeyCode::Char('5'));
        assert_eq!(app.ui.tab, Tab::Groups);
        assert_eq!(app.shown().groups.key, crate::group::GroupKey::Port);
        let port_rows = app.shown().groups.rows.len();
        assert!(port_rows > 0);
        press(&mut app, KeyCode::Char('g'));
        assert_eq!(app.shown().groups.key, crate::group::GroupKey::Cgroup);
        // The fixture's sockets carry no cgroup: one group, `-`, holding all.
        let rows = &app.shown().groups.rows;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].label, "-");
        let total = rows[0].counts.counts.total() as usize;
        press(&mut app, KeyCode::Enter);
        assert_eq!(app.ui.tab, Tab::Connections);
        assert_eq!(app.shown().connections.query_text, "cgroup:-");
        assert_eq!(app.shown().connections.len(), total);

        press(&mut app, KeyCode::Char('5'));
        press(&mut app, KeyCode::Char('g'));
        assert_eq!(app.shown().groups.key, crate::group::GroupKey::Peer);
    }

    #[test]
    fn enter_on_a_calm_overview_says_there_is_no_finding_to_open() {
        let mut app = App::new(fixtures::first_poll(), Theme::MONO);
        press(&mut app, KeyCode::Enter);
        assert_eq!(app.ui.finding_open, None);
        assert!(app.ui.notice.is_some());
    }

    /// The job among `effects`, which must hold one.
    fn rows_job(effects: Vec<Effect>) -> RowsJob {
        let mut jobs = effects.into_iter().filter_map(|effect| match effect {
            Effect::OrderRows(job) => Some(job),
            _ => None,
        });
        let job = jobs.next().expect("a job to order the rows");
        assert!(jobs.next().is_none(), "one job per table");
        job
    }

    fn first_rows(app: &App) -> Vec<SocketRecord> {
        app.shown().connections.rows(0, 5).copied().collect()
    }

    #[test]
    fn a_sort_key_is_answered_at_once_with_the_old_rows_while_the_worker_sorts() {
        let mut sorted_here = app();
        press(&mut sorted_here, KeyCode::Char('s'));
        let mut app = app();
        app.order_rows_elsewhere();
        press(&mut app, KeyCode::Char('2'));
        let unsorted = first_rows(&app);
        assert_ne!(
            unsorted,
            first_rows(&sorted_here),
            "a sort that changes the order"
        );

        let job = rows_job(press(&mut app, KeyCode::Char('s')));
        assert!(app.ordering_rows());
        assert_eq!(first_rows(&app), unsorted);
        let screen = crate::tui::views::testing::text(120, 30, |area, buf| app.render(area, buf));
        assert!(screen.contains("sorting…"), "{screen}");
        // Moving the cursor waits for nothing and asks for nothing.
        assert!(press(&mut app, KeyCode::Down).is_empty());
        assert_eq!(app.scroll.selected, 1);

        app.handle(Event::Rows(job.run()));
        assert!(!app.ordering_rows());
        assert_eq!(first_rows(&app), first_rows(&sorted_here));
        let screen = crate::tui::views::testing::text(120, 30, |area, buf| app.render(area, buf));
        assert!(!screen.contains("sorting…"), "{screen}");
    }

    #[test]
    fn rows_of_a_change_overtaken_by_another_are_dropped() {
        let mut app = app();
        app.order_rows_elsewhere();
        press(&mut app, KeyCode::Char('2'));
        let by_local = rows_job(press(&mut app, KeyCode::Char('s')));
        let by_peer = rows_job(press(&mut app, KeyCode::Char('s')));

        app.handle(Event::Rows(by_local.run()));
        assert!(app.ordering_rows());
        app.handle(Event::Rows(by_peer.run()));
        assert!(!app.ordering_rows());
        assert_eq!(app.shown().connections.sort, SortColumn::Peer);
    }

    #[test]
    fn a_pause_while_rows_are_being_ordered_asks_for_the_paused_table_s_own() {
        let mut app = app();
        app.order_rows_elsewhere();
        press(&mut app, KeyCode::Char('2'));
        let live = rows_job(press(&mut app, KeyCode::Char('s')));
        let paused = rows_job(press(&mut app, KeyCode::Char(' ')));
        assert_eq!((live.lane, paused.lane), (0, PAUSED_LANE));

        app.handle(Event::Rows(paused.run()));
        assert!(!app.ordering_rows(), "the paused table has its rows");
        app.order_rows_now();
        press(&mut app, KeyCode::Char(' '));
        assert!(!app.ordering_rows());
    }

    #[test]
    fn q_quits_and_a_signal_quits_naming_it() {
        let mut app = app();
        assert_eq!(press(&mut app, KeyCode::Char('q')), [Effect::Quit]);
        assert_eq!(app.handle(Event::Signal(15)), [Effect::QuitOnSignal(15)]);
    }

    #[test]
    fn processes_are_scanned_on_entering_connections_and_not_again_for_30_seconds() {
        let mut app = app();
        assert_eq!(press(&mut app, KeyCode::Char('2')), [Effect::ScanProcesses]);
        app.handle(Event::Processes(Ok(Arc::new(ProcessMap::default()))));
        assert_eq!(press(&mut app, KeyCode::Char('2')), []);
        assert_eq!(app.shown().status.processes, Some(ProcessesSeen::All));
    }

    #[test]
    fn plus_and_minus_step_the_interval() {
        let mut app = app();
        assert_eq!(
            press(&mut app, KeyCode::Char('+')),
            [Effect::SetInterval(Duration::from_secs(2))]
        );
        assert_eq!(
            press(&mut app, KeyCode::Char('-')),
            [Effect::SetInterval(Duration::from_secs(1))]
        );
        assert_eq!(app.shown().status.interval, Duration::from_secs(1));
    }

    #[test]
    fn the_filter_line_takes_text_and_applies_it_on_enter() {
        let mut app = app();
        press(&mut app, KeyCode::Char('/'));
        for c in "syn-recv :8080".chars() {
            press(&mut app, KeyCode::Char(c));
        }
        // `q` typed in the filter is text, not quit.
        assert!(app.ui.filter_input.is_some());
        press(&mut app, KeyCode::Enter);
        assert_eq!(app.ui.tab, Tab::Connections);
        assert_eq!(app.shown().connections.len(), 100);
    }

    #[test]
    fn a_bad_filter_says_why_and_keeps_the_old_rows() {
        let mut app = app();
        let before = app.shown().connections.len();
        press(&mut app, KeyCode::Char('/'));
        for c in "bogus".chars() {
            press(&mut app, KeyCode::Char(c));
        }
        press(&mut app, KeyCode::Enter);
        assert!(
            app.ui
                .filter_error
                .as_ref()
                .is_some_and(|e| e.message.contains("`bogus`"))
        );
        assert_eq!(app.shown().connections.len(), before);
    }

    #[test]
    fn enter_on_a_connection_opens_its_detail_and_asks_for_its_tcp_info() {
        let mut app = app();
        press(&mut app, KeyCode::Char('2'));
        filter(&mut app, "estab");
        let effects = press(&mut app, KeyCode::Enter);
        let Some(detail) = &app.shown().detail else {
            panic!("no detail pane")
        };
        assert_eq!(detail.record.state, State::Established);
        assert_eq!(effects, [Effect::FetchTcpInfo(None, detail.record)]);
        press(&mut app, KeyCode::Esc);
        assert!(app.shown().detail.is_none());
    }

    #[test]
    fn enter_on_a_listener_asks_the_kernel_nothing_it_has_no_tcp_info() {
        let mut app = app();
        press(&mut app, KeyCode::Char('2'));
        filter(&mut app, "listen");
        let effects = press(&mut app, KeyCode::Enter);
        let Some(detail) = &app.shown().detail else {
            panic!("no detail pane")
        };
        assert_eq!(detail.record.state, State::Listen);
        assert_eq!(effects, []);
    }

    #[test]
    fn pausing_freezes_the_view_while_updates_keep_arriving() {
        let mut app = app();
        press(&mut app, KeyCode::Char(' '));
        let polls = app.shown().status.polls;
        let update = Message::Update(Box::new(fixtures::next_update()));
        app.handle(Event::Poll(update));
        assert_eq!(app.shown().status.polls, polls);
        assert_eq!(app.ui.behind, 1);
        press(&mut app, KeyCode::Char('p'));
        assert!(!app.ui.paused);
        assert_eq!(app.shown().status.polls, polls + 1);
    }

    fn open_detail_of(app: &mut App, state: State) {
        press(app, KeyCode::Char('2'));
        let row = (0..app.shown().connections.len())
            .find(|&row| {
                app.shown()
                    .connections
                    .get(row)
                    .is_some_and(|r| r.state == state)
            })
            .unwrap_or_else(|| panic!("no {state:?} row"));
        app.scroll.selected = row;
        press(app, KeyCode::Enter);
    }

    #[test]
    fn capital_k_in_the_detail_asks_and_y_closes_exactly_that_socket() {
        let mut app = app();
        open_detail_of(&mut app, State::Established);
        let Some(record) = app.shown().detail.as_ref().map(|d| d.record) else {
            panic!("no detail pane")
        };
        assert!(press(&mut app, KeyCode::Char('K')).is_empty());
        assert_eq!(app.ui.confirm_close, Some(record));
        assert_eq!(
            press(&mut app, KeyCode::Char('y')),
            [Effect::Close(None, record)]
        );
        assert_eq!(app.ui.confirm_close, None);
        app.handle(Event::Closed(record.endpoints(), Ok(())));
        let notice = app.ui.notice.clone().unwrap_or_default();
        assert!(
            notice.starts_with("closed ") && notice.contains('⇄'),
            "{notice}"
        );
    }

    #[test]
    fn any_key_but_y_keeps_the_connection() {
        let mut app = app();
        open_detail_of(&mut app, State::Established);
        press(&mut app, KeyCode::Char('K'));
        assert!(
            press(&mut app, KeyCode::Char('q')).is_empty(),
            "q answered no, not quit"
        );
        assert!(
            press(&mut app, KeyCode::Char('y')).is_empty(),
            "a later y closed it"
        );
    }

    #[test]
    fn a_listening_socket_is_not_offered_for_closing() {
        let mut app = app();
        open_detail_of(&mut app, State::Listen);
        press(&mut app, KeyCode::Char('K'));
        assert_eq!(app.ui.confirm_close, None);
        assert!(
            app.ui
                .notice
                .as_deref()
                .is_some_and(|n| n.contains("--kill 'state listen"))
        );
    }

    #[test]
    fn a_failed_close_says_why_in_the_status_line() {
        let mut app = app();
        let record = fixtures::flooded().connections.get(0).copied();
        let Some(record) = record else {
            panic!("no rows")
        };
        let error = "closing sockets needs the CAP_NET_ADMIN capability".to_owned();
        app.handle(Event::Closed(record.endpoints(), Err(error)));
        assert!(
            app.ui
                .notice
                .as_deref()
                .is_some_and(|n| n.contains("CAP_NET_ADMIN"))
        );
    }

    mod across_namespaces {
        use super::*;
        use crate::tui::views::fixtures::{self, namespace_labels};

        fn app() -> App {
            let mut app = App::new(fixtures::across_namespaces(), Theme::MONO);
            app.rounds = Some(Rounds::default());
            app.handle(Event::Namespaces(namespace_labels()));
            app
        }

        #[test]
        fn four_and_n_show_the_namespaces_tab_and_tab_cycles_through_five() {
            let mut app = app();
            press(&mut app, KeyCode::Char('4'));
            assert_eq!(app.ui.tab, Tab::Namespaces);
            press(&mut app, KeyCode::Tab);
            assert_eq!(app.ui.tab, Tab::Groups);
            press(&mut app, KeyCode::Tab);
            assert_eq!(app.ui.tab, Tab::Overview);
            press(&mut app, KeyCode::BackTab);
            press(&mut app, KeyCode::BackTab);
            assert_eq!(app.ui.tab, Tab::Namespaces);
            press(&mut app, KeyCode::Char('1'));
            press(&mut app, KeyCode::Char('n'));
            assert_eq!(app.ui.tab, Tab::Namespaces);
            press(&mut app, KeyCode::Down);
            press(&mut app, KeyCode::Down);
            press(&mut app, KeyCode::Down);
            assert_eq!(app.ui.namespace_row, 2, "the last of three rows");
        }

        #[test]
        fn enter_on_a_namespace_shows_its_connections_together_the_first_selected() {
            let mut app = app();
            press(&mut app, KeyCode::Char('4'));
            // The third namespace: nginx's.
            press(&mut app, KeyCode::Down);
            press(&mut app, KeyCode::Down);
            press(&mut app, KeyCode::Enter);

            assert_eq!(app.ui.tab, Tab::Connections);
            let table = &app.live.connections;
            assert_eq!(table.sort, SortColumn::Netns);
            let nginx = namespace_labels()[2].inode;
            let selected = table.get_in_namespace(app.scroll.selected);
            assert_eq!(selected.map(|(netns, _)| netns), Some(Some(nginx)));
            let before = app.scroll.selected.checked_sub(1);
            assert!(
                before
                    .and_then(|row| table.get_in_namespace(row))
                    .map(|(netns, _)| netns)
                    != Some(Some(nginx)),
                "the selection is the namespace's first row"
            );
        }

        #[test]
        fn enter_on_a_namespace_selects_its_first_row_once_the_worker_sorted_them() {
            let mut sorted_here = app();
            press(&mut sorted_here, KeyCode::Char('4'));
            press(&mut sorted_here, KeyCode::Down);
            press(&mut sorted_here, KeyCode::Down);
            press(&mut sorted_here, KeyCode::Enter);
            let mut app = app();
            app.order_rows_elsewhere();
            press(&mut app, KeyCode::Char('4'));
            press(&mut app, KeyCode::Down);
            press(&mut app, KeyCode::Down);

            let job = rows_job(press(&mut app, KeyCode::Enter));
            assert_eq!(app.ui.tab, Tab::Connections);
            assert!(app.ordering_rows());
            app.handle(Event::Rows(job.run()));

            assert_ne!(
                sorted_here.scroll.selected, 0,
                "a namespace after the first"
            );
            assert_eq!(app.scroll.selected, sorted_here.scroll.selected);
        }

        #[test]
        fn in_one_namespace_four_says_what_would_show_each_and_stays() {
            let mut app = super::app();
            press(&mut app, KeyCode::Char('4'));
            assert_eq!(app.ui.tab, Tab::Overview);
            assert!(
                app.ui
                    .notice
                    .as_deref()
                    .is_some_and(|n| n.contains("--all-netns")),
                "{:?}",
                app.ui.notice
            );
            press(&mut app, KeyCode::Char('3'));
            press(&mut app, KeyCode::Tab);
            assert_eq!(
                app.ui.tab,
                Tab::Groups,
                "no namespaces tab in one namespace"
            );
            press(&mut app, KeyCode::Tab);
            assert_eq!(app.ui.tab, Tab::Overview, "four tabs in one namespace");
            press(&mut app, KeyCode::Char('5'));
            assert_eq!(app.ui.tab, Tab::Groups);
        }

        #[test]
        fn enter_on_a_connection_asks_for_its_tcp_info_in_its_own_namespace() {
            let mut app = app();
            press(&mut app, KeyCode::Char('2'));
            super::filter(&mut app, "estab");
            let effects = press(&mut app, KeyCode::Enter);
            let Some(detail) = app.shown().detail.clone() else {
                panic!("no detail pane")
            };
            assert_eq!(detail.record.state, State::Established);
            assert_eq!(detail.netns, Some(4_026_531_840));
            assert_eq!(
                effects,
                [Effect::FetchTcpInfo(Some(4_026_531_840), detail.record)]
            );
        }

        #[test]
        fn a_round_put_together_off_the_views_thread_shows_as_one_put_together_on_it() {
            let update = fixtures::next_update();
            let polls = || {
                namespace_labels()
                    .into_iter()
                    .map(|label| (label.inode, Message::Update(Box::new(update.clone()))))
            };
            let mut here = app();
            for (netns, message) in polls() {
                here.handle(Event::NamespacePoll(netns, message));
            }
            // Where the polls are forwarded: only the last namespace's completes a round.
            let mut rounds = Rounds::default();
            rounds.set_namespaces(namespace_labels());
            let events: Vec<Event> = polls()
                .flat_map(|(netns, message)| observe_round(&mut rounds, netns, message))
                .collect();
            assert!(matches!(events.as_slice(), [Event::Round(_)]), "{events:?}");
            let mut forwarded = App::new(fixtures::across_namespaces(), Theme::MONO);
            for event in events {
                forwarded.handle(event);
            }
            assert_eq!(forwarded.shown().namespaces, here.shown().namespaces);
            assert_eq!(
                forwarded.shown().connections.total(),
                here.shown().connections.total()
            );
            assert_eq!(
                forwarded.shown().connections.total(),
                3 * update.snapshot.sockets.len(),
                "every namespace's sockets, in one snapshot"
            );
            // A failed poll is named by its namespace.
            let nginx = namespace_labels()[2].inode;
            let failed = observe_round(&mut rounds, nginx, Message::PollFailed("boom".into()));
            assert!(
                matches!(failed.as_slice(), [Event::Poll(Message::PollFailed(error))] if error == "netns 5120/nginx: boom"),
                "{failed:?}"
            );
        }

        #[test]
        fn a_namespace_that_went_is_named_on_the_status_line() {
            let mut app = app();
            let update = fixtures::next_update();
            let sockets = update.snapshot.sockets.len();
            let nginx = namespace_labels()[2].inode;
            app.handle(Event::NamespacePoll(
                nginx,
                Message::Update(Box::new(update)),
            ));
            app.handle(Event::Namespaces(namespace_labels()[..2].to_vec()));
            let notice = app.ui.notice.clone().unwrap_or_default();
            assert_eq!(
                notice,
                format!("namespace gone, no longer shown: 5120/nginx ({sockets} sockets)")
            );
        }
    }

    /// A poll at second `second` holding `close_wait` CLOSE_WAIT sockets on :9000
    /// (inodes 700…), all kept from the polls before.
    fn close_wait_poll(second: u64, close_wait: u16) -> Event {
        let sockets = (0..close_wait)
            .map(|i| {
                let mut socket = crate::snapshot::fixtures::socket(
                    State::CloseWait,
                    "10.0.0.1",
                    9000,
                    "10.0.0.2",
                    40000 + i,
                );
                socket.cookie = u64::from(i) + 1;
                socket.inode = 700 + u32::from(i);
                socket
            })
            .collect();
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + second);
        let snapshot = crate::snapshot::Snapshot::new(at, sockets);
        Event::Poll(Message::Update(Box::new(Update {
            tcp_info: None,
            pace: crate::poll::update::Pace::full(&snapshot, None),
            snapshot: Arc::new(snapshot),
            transitions: Vec::new(),
            counters: crate::kernel::procfs::TcpExt::default(),
            rates: None,
            findings: Vec::new(),
            finding_events: Vec::new(),
            syn_watch: crate::watch::SynWatch {
                listeners: Vec::new(),
                host_notes: Vec::new(),
            },
            took: Duration::from_millis(1),
            events: crate::poll::update::EventStatus::Subscribed,
            event_overflows: 0,
        })))
    }

    #[test]
    fn close_wait_of_unknown_owners_asks_for_a_scan_at_most_every_ten_seconds_on_any_tab() {
        let mut app = App::new(
            Model::new(Duration::from_secs(1), crate::watch::History::default()),
            Theme::MONO,
        );
        // Each poll but the first also hands out the snapshot it replaced, to be freed.
        let asked = |effects: Vec<Effect>| -> Vec<Effect> {
            effects
                .into_iter()
                .filter(|effect| !matches!(effect, Effect::Release(_)))
                .collect()
        };
        assert_eq!(
            asked(app.handle(close_wait_poll(0, 1))),
            [Effect::ScanProcesses]
        );
        assert_eq!(
            asked(app.handle(close_wait_poll(1, 2))),
            [],
            "a scan is under way"
        );
        app.handle(Event::Processes(Ok(Arc::new(ProcessMap::default()))));
        assert_eq!(
            asked(app.handle(close_wait_poll(5, 3))),
            [],
            "scanned 5 s ago"
        );
        assert_eq!(
            asked(app.handle(close_wait_poll(10, 4))),
            [Effect::ScanProcesses]
        );
        assert_eq!(app.ui.tab, Tab::Overview);
    }

    #[test]
    fn groups_are_counted_only_while_their_tab_shows_and_again_when_it_comes_back() {
        let mut app = App::new(
            Model::new(Duration::from_secs(1), crate::watch::History::default()),
            Theme::MONO,
        );
        // The sockets counted in every group.
        let totals = |app: &App| -> Vec<u32> {
            let rows = &app.shown().groups.rows;
            if rows.is_empty() {
                return Vec::new();
            }
            vec![rows.iter().map(|row| row.counts.counts.total()).sum()]
        };
        app.handle(close_wait_poll(0, 3));
        assert!(totals(&app).is_empty(), "not counted on the overview");
        press(&mut app, KeyCode::Char('5'));
        assert_eq!(app.ui.tab, Tab::Groups);
        assert_eq!(totals(&app), [3], "counted when the tab shows");
        app.handle(close_wait_poll(1, 4));
        assert_eq!(totals(&app), [4], "and at each poll while it shows");
        press(&mut app, KeyCode::Char('1'));
        app.handle(close_wait_poll(2, 6));
        assert_eq!(totals(&app), [4], "not while another tab shows");
        press(&mut app, KeyCode::Char('5'));
        assert_eq!(totals(&app), [6], "the latest poll, once back");
    }

    #[test]
    fn while_the_groups_tab_shows_each_poll_is_counted_off_the_views_thread() {
        let mut app = App::new(
            Model::new(Duration::from_secs(1), crate::watch::History::default()),
            Theme::MONO,
        );
        app.order_rows_elsewhere();
        let counting = |effects: Vec<Effect>| {
            effects.into_iter().find_map(|effect| match effect {
                Effect::CountGroups(job) => Some(job),
                _ => None,
            })
        };
        let total = |app: &App| -> u32 {
            let rows = &app.shown().groups.rows;
            rows.iter().map(|row| row.counts.counts.total()).sum()
        };
        assert!(counting(app.handle(close_wait_poll(0, 3))).is_none());
        // Even the tab coming is no count on this thread: the worker counts, and the
        // tab says so until it answers.
        let job = counting(press(&mut app, KeyCode::Char('5'))).expect("the tab to count");
        assert_eq!(total(&app), 0);
        assert!(app.shown().counting_groups());
        app.handle(Event::Groups(Box::new(job.run())));
        assert_eq!(total(&app), 3, "counted once the worker answers");
        assert!(!app.shown().counting_groups());
        let job = counting(app.handle(close_wait_poll(1, 4))).expect("a poll to count");
        assert_eq!(
            total(&app),
            3,
            "the previous poll's groups until the count comes"
        );
        app.handle(Event::Groups(Box::new(job.run())));
        assert_eq!(total(&app), 4);

        // A count that comes back after the key changed is not shown.
        let job = counting(app.handle(close_wait_poll(2, 5))).expect("a poll to count");
        let by_cgroup = counting(press(&mut app, KeyCode::Char('g'))).expect("a new key");
        assert_eq!(app.shown().groups.key, crate::group::GroupKey::Cgroup);
        assert!(app.shown().groups.rows.is_empty(), "no rows of the old key");
        app.handle(Event::Groups(Box::new(job.run())));
        assert!(
            app.shown().groups.rows.is_empty(),
            "rows of the new key only"
        );
        app.handle(Event::Groups(Box::new(by_cgroup.run())));
        // By cgroup, the five sockets are one group (of none); by port they were five.
        assert_eq!(app.shown().groups.rows.len(), 1);
        assert_eq!(total(&app), 5);
    }

    #[test]
    fn a_sort_of_many_groups_is_handed_to_the_worker_and_an_older_sorts_answer_is_dropped() {
        let mut app = App::new(
            Model::new(Duration::from_secs(1), crate::watch::History::default()),
            Theme::MONO,
        );
        app.order_rows_elsewhere();
        let many = u16::try_from(super::super::groups::SORT_AT_ONCE).unwrap() + 1;
        app.handle(close_wait_poll(0, many));
        let handed_out = |effects: Vec<Effect>| -> Vec<Box<GroupsJob>> {
            effects
                .into_iter()
                .filter_map(|effect| match effect {
                    Effect::CountGroups(job) => Some(job),
                    _ => None,
                })
                .collect()
        };
        for job in handed_out(press(&mut app, KeyCode::Char('5'))) {
            app.handle(Event::Groups(Box::new(job.run())));
        }
        let first = |app: &App| app.shown().groups.rows.first().map(|r| r.label.clone());
        assert_eq!(app.shown().groups.rows.len(), usize::from(many));
        assert_eq!(first(&app).as_deref(), Some("to 40000"));

        // `s`: by group name, largest first; the rows keep their order meanwhile.
        let jobs = handed_out(press(&mut app, KeyCode::Char('s')));
        assert_eq!(jobs.len(), 1, "one sort for the worker");
        assert!(jobs[0].snapshot.is_none(), "a sort, not a count");
        assert_eq!(first(&app).as_deref(), Some("to 40000"), "not sorted here");
        assert!(app.shown().sorting_groups());
        for job in jobs {
            app.handle(Event::Groups(Box::new(job.run())));
        }
        assert_eq!(first(&app).as_deref(), Some("to 50000"), "the answer shown");
        assert!(!app.shown().sorting_groups());

        // `r` then `r` again: the first answer comes after the second key and is dropped.
        let older = handed_out(press(&mut app, KeyCode::Char('r')));
        assert_eq!(older.len(), 1);
        assert!(handed_out(press(&mut app, KeyCode::Char('r'))).is_empty());
        assert!(!app.shown().sorting_groups(), "back to the order shown");
        for job in older {
            app.handle(Event::Groups(Box::new(job.run())));
        }
        assert_eq!(first(&app).as_deref(), Some("to 50000"));
        assert!(app.shown().groups.descending);
    }

    #[test]
    fn a_sort_of_few_groups_is_done_at_once_even_with_a_worker() {
        let mut app = App::new(
            Model::new(Duration::from_secs(1), crate::watch::History::default()),
            Theme::MONO,
        );
        app.order_rows_elsewhere();
        app.handle(close_wait_poll(0, 3));
        for effect in press(&mut app, KeyCode::Char('5')) {
            if let Effect::CountGroups(job) = effect {
                app.handle(Event::Groups(Box::new(job.run())));
            }
        }
        let effects = press(&mut app, KeyCode::Char('s'));
        assert!(
            !effects
                .iter()
                .any(|effect| matches!(effect, Effect::CountGroups(_)))
        );
        let labels: Vec<&str> = app
            .shown()
            .groups
            .rows
            .iter()
            .map(|row| row.label.as_str())
            .collect();
        assert_eq!(labels, ["to 40002", "to 40001", "to 40000"]);
    }

    #[test]
    fn paused_the_groups_tab_is_counted_by_the_worker_in_a_lane_of_its_own() {
        let mut app = App::new(
            Model::new(Duration::from_secs(1), crate::watch::History::default()),
            Theme::MONO,
        );
        app.order_rows_elsewhere();
        app.handle(close_wait_poll(0, 3));
        press(&mut app, KeyCode::Char(' '));
        app.handle(close_wait_poll(1, 4));
        let jobs: Vec<Box<GroupsJob>> = press(&mut app, KeyCode::Char('5'))
            .into_iter()
            .filter_map(|effect| match effect {
                Effect::CountGroups(job) => Some(job),
                _ => None,
            })
            .collect();
        let lanes: Vec<u8> = jobs.iter().map(|job| job.lane).collect();
        assert_eq!(
            lanes,
            [0, PAUSED_LANE],
            "the live model's and the paused one's"
        );
        for job in jobs {
            app.handle(Event::Groups(Box::new(job.run())));
        }
        let total: u32 = app
            .shown()
            .groups
            .rows
            .iter()
            .map(|row| row.counts.counts.total())
            .sum();
        assert_eq!(total, 3, "the paused poll's sockets");
    }

    #[test]
    fn a_snapshot_no_longer_shown_is_handed_out_to_be_freed_off_the_views_thread() {
        let mut app = App::new(
            Model::new(Duration::from_secs(1), crate::watch::History::default()),
            Theme::MONO,
        );
        app.order_rows_elsewhere();
        let released = |effects: &[Effect]| -> Vec<usize> {
            effects
                .iter()
                .filter_map(|effect| match effect {
                    Effect::Release(snapshot) => {
                        assert_eq!(Arc::strong_count(snapshot), 1, "nothing else holds it");
                        Some(snapshot.sockets.len())
                    }
                    _ => None,
                })
                .collect()
        };
        let job = |effects: Vec<Effect>| {
            effects
                .into_iter()
                .find_map(|effect| match effect {
                    Effect::OrderRows(job) => Some(job),
                    _ => None,
                })
                .expect("rows to order")
        };
        let first = app.handle(close_wait_poll(0, 1));
        assert!(released(&first).is_empty());
        app.handle(Event::Rows(job(first).run()));
        let second = app.handle(close_wait_poll(1, 2));
        // The table still shows the first poll's rows until the second's are ordered.
        assert!(released(&second).is_empty());
        let shown = app.handle(Event::Rows(job(second).run()));
        assert_eq!(
            released(&shown),
            [1],
            "the first poll's snapshot, of one socket"
        );
    }

    #[test]
    fn a_port_whose_close_wait_keeps_growing_raises_the_leak_flag() {
        let mut app = App::new(
            Model::new(Duration::from_secs(1), crate::watch::History::default()),
            Theme::MONO,
        );
        for second in 0..6u16 {
            app.handle(close_wait_poll(u64::from(second), second + 1));
            assert_eq!(app.shown().close_wait_leak(), second >= 5, "poll {second}");
        }
        let port = &app.shown().close_wait.ports[0];
        assert_eq!((port.local_port, port.close_wait), (9000, 6));
        assert_eq!(port.oldest, Duration::from_secs(5));
    }

    mod replay {
        use super::*;
        use crate::filter::Filter;
        use crate::poll::replay::Replaying;
        use crate::tui::playback::Playback;
        use crate::tui::views::testing::text;
        use crate::watch::findings::FindingThresholds;
        use crate::watch::{History, Thresholds};

        /// The demo recording README points to, replayed as `tcpscope --replay` does.
        fn demo() -> App {
            demo_narrowed_to(Filter::default())
        }

        /// The demo recording as `tcpscope --replay FILE` with filter flags shows it.
        fn demo_narrowed_to(filter: Filter) -> App {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/synflood.rec");
            let (polls, _) = Replaying::open(
                path.as_ref(),
                Some(filter),
                Thresholds::default(),
                FindingThresholds::default(),
            )
            .and_then(Replaying::read_to_end)
            .unwrap_or_else(|e| panic!("{e:#}"));
            let playback = Playback::new(polls).unwrap_or_else(|| panic!("an empty recording"));
            let model = Model::new(Duration::from_secs(1), History::default());
            App::replaying(model, Theme::MONO, playback)
        }

        fn screen(app: &mut App) -> String {
            text(80, 24, |area, buf| app.render(area, buf))
        }

        #[test]
        fn i_in_a_replay_says_a_recording_holds_no_tcp_info() {
            let mut app = demo();
            let effects = press(&mut app, KeyCode::Char('i'));
            assert!(!effects.contains(&Effect::SetTcpInfo(true)), "{effects:?}");
            assert!(!app.ui.info_columns);
            let notice = app.ui.notice.clone().unwrap_or_default();
            assert!(notice.contains("no tcp_info"), "{notice}");
        }

        #[test]
        fn the_demo_recording_replays_to_a_flood_verdict_at_80x24() {
            let mut app = demo();
            press(&mut app, KeyCode::Char('}'));
            let screen = screen(&mut app);
            insta::assert_snapshot!(screen);
            assert!(screen.contains("SYN flood suspected"), "{screen}");
            assert!(
                screen
                    .lines()
                    .next()
                    .is_some_and(|tabs| tabs.contains("CRITICAL syn_flood")),
                "the replay computes findings: {screen}"
            );
            assert!(screen.contains("CRIT SYN flood on 127.0.0.1:"), "{screen}");
            assert!(screen.contains("REPLAY"), "{screen}");
        }

        #[test]
        fn filter_flags_narrow_a_replay_as_they_narrow_the_live_view() {
            let mut whole = demo();
            press(&mut whole, KeyCode::Char('}'));
            let half_open = whole.shown().counts.get(State::SynRecv);
            assert!(half_open > 0);

            let mut established = demo_narrowed_to(
                crate::filter::parse("state established").unwrap_or_else(|e| panic!("{e}")),
            );
            press(&mut established, KeyCode::Char('}'));
            let shown = established.shown();
            assert_eq!(shown.counts.get(State::SynRecv), 0);
            assert_eq!(shown.counts.total(), shown.counts.get(State::Established));
            assert!(!shown.syn_watch.suspected_flood());
            assert_eq!(shown.findings, []);
            assert!((0..shown.connections.len()).all(|row| {
                shown
                    .connections
                    .get(row)
                    .is_some_and(|r| r.state == State::Established)
            }));

            // A port nothing in the recording uses leaves nothing to show.
            let mut nothing = demo_narrowed_to(Filter {
                condition: Some(crate::filter::Condition::either_port(1)),
                ..Filter::default()
            });
            press(&mut nothing, KeyCode::Char('}'));
            assert_eq!(nothing.shown().counts.total(), 0);
        }

        #[test]
        fn a_replay_starts_playing_and_advances_when_its_wait_is_over() {
            let mut app = demo();
            let Some(Effect::WakeForPlayback { generation, .. }) = app.begin().pop() else {
                panic!("no wake-up asked for")
            };
            assert_eq!(app.shown().status.polls, 1);
            assert!(app.handle(Event::PlaybackDue(generation + 1)).is_empty());
            assert_eq!(
                app.shown().status.polls,
                1,
                "a stale wake-up moved the replay"
            );
            let next = app.handle(Event::PlaybackDue(generation));
            assert_eq!(app.shown().status.polls, 2);
            assert!(matches!(next[..], [Effect::WakeForPlayback { .. }]));
        }

        #[test]
        fn space_pauses_a_replay_and_nothing_asks_the_kernel() {
            let mut app = demo();
            app.begin();
            assert!(press(&mut app, KeyCode::Char(' ')).is_empty());
            assert_eq!(app.ui.playback.as_ref().map(|p| p.playing), Some(false));
            assert!(
                press(&mut app, KeyCode::Char('2')).is_empty(),
                "no process scan"
            );
            let effects = press(&mut app, KeyCode::Enter);
            assert!(effects.is_empty(), "tcp_info asked for: {effects:?}");
            assert!(press(&mut app, KeyCode::Char('+')).is_empty());
        }

        #[test]
        fn stepping_back_and_forth_shows_the_same_poll_as_going_straight_there() {
            let mut app = demo();
            press(&mut app, KeyCode::Char('}'));
            let (counts, polls) = (app.shown().counts, app.shown().status.polls);
            press(&mut app, KeyCode::Char('['));
            press(&mut app, KeyCode::Char('['));
            assert_eq!(app.shown().status.polls, polls - 2);
            press(&mut app, KeyCode::Char(']'));
            press(&mut app, KeyCode::Char(']'));
            press(&mut app, KeyCode::Char(']'));
            assert_eq!(
                (app.shown().counts, app.shown().status.polls),
                (counts, polls)
            );
            press(&mut app, KeyCode::Char('{'));
            assert_eq!(app.shown().status.polls, 1);
        }

        #[test]
        fn after_a_seek_back_a_replay_still_counts_groups_off_the_views_thread() {
            let mut app = demo();
            app.order_rows_elsewhere();
            press(&mut app, KeyCode::Char('}'));
            press(&mut app, KeyCode::Char('{'));
            let effects = press(&mut app, KeyCode::Char('5'));
            assert!(
                effects
                    .iter()
                    .any(|effect| matches!(effect, Effect::CountGroups(_))),
                "{effects:?}"
            );
        }

        #[test]
        fn speed_keys_change_the_replay_speed_and_are_refused_live() {
            let mut app = demo();
            press(&mut app, KeyCode::Char('>'));
            assert_eq!(app.ui.playback.as_ref().map(|p| p.speed), Some(2.0));
            let mut live = super::app();
            assert!(press(&mut live, KeyCode::Char('>')).is_empty());
            assert!(live.ui.notice.is_some());
        }
    }
}
