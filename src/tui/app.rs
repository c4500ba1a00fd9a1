//! The app's state and what each event does to it. Pure: events come in, the model
//! and UI state change, and anything that needs the outside world (a new interval, a
//! tcp_info request, a process scan, quitting) goes out as an [`Effect`] for the event
//! loop to carry out. That keeps every key testable without a terminal or a kernel.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;

use crate::cli::MIN_INTERVAL;
use crate::kernel::procfs::ProcessMap;
use crate::kernel::tcp_info::TcpInfo;
use crate::poller::Message;
use crate::snapshot::{Endpoints, SocketRecord};
use crate::tcp::State;

use super::keys::{Action, action_for};
use super::model::{Detail, Model, Scroll, Tab, Ui};
use super::query::Query;
use super::theme::Theme;
use super::views::screen;

/// The intervals `+` and `-` step through.
const INTERVALS_MS: [u64; 8] = [100, 250, 500, 1000, 2000, 5000, 10_000, 30_000];
/// Rows PageUp and PageDown move.
const PAGE: usize = 20;
/// How old process names may get while the connections tab is shown. A scan reads
/// every process's descriptors, which at 100k sockets costs a third of a second of CPU;
/// every 30 s keeps that near 1% of a core. Measured by the snapshots' own clock.
const PROCESS_SCAN_EVERY: Duration = Duration::from_secs(30);

/// Everything the event loop hands the app.
#[derive(Debug)]
pub enum Event {
    Key(KeyEvent),
    /// The terminal was resized: redraw.
    Resize,
    /// Time passed: redraw.
    Tick,
    Poll(Message),
    Processes(Result<Arc<ProcessMap>, String>),
    TcpInfo(Endpoints, Result<TcpInfo, String>),
    /// SIGTERM, SIGHUP or SIGINT arrived.
    Signal(i32),
}

/// What the event loop must do for the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Quit,
    /// Quit because of this signal.
    QuitOnSignal(i32),
    SetInterval(Duration),
    FetchTcpInfo(SocketRecord),
    ScanProcesses,
}

pub struct App {
    live: Model,
    /// The model shown while paused; the live one keeps taking updates underneath.
    frozen: Option<Model>,
    pub ui: Ui,
    scroll: Scroll,
    theme: Theme,
    scan_in_flight: bool,
    /// The snapshot time at the last scan request.
    last_scan: Option<SystemTime>,
}

impl App {
    pub fn new(model: Model, theme: Theme) -> App {
        App {
            live: model,
            frozen: None,
            ui: Ui::default(),
            scroll: Scroll::default(),
            theme,
            scan_in_flight: false,
            last_scan: None,
        }
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
        match event {
            Event::Key(key) if key.kind != KeyEventKind::Release => self.key(key),
            Event::Key(_) | Event::Resize | Event::Tick => Vec::new(),
            Event::Poll(Message::Update(update)) => {
                self.live.apply(&update);
                if self.ui.paused {
                    self.ui.behind += 1;
                }
                self.maybe_scan()
            }
            Event::Poll(Message::PollFailed(error)) => {
                self.each_model(|model| model.poll_failed(error.clone()));
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
        }
    }

    fn maybe_scan(&mut self) -> Vec<Effect> {
        let now = self.live.connections.snapshot().taken_at;
        let due = self.last_scan.is_none_or(|last| {
            now.duration_since(last)
                .is_ok_and(|age| age >= PROCESS_SCAN_EVERY)
        });
        if self.ui.tab == Tab::Connections && !self.scan_in_flight && due {
            self.scan_in_flight = true;
            self.last_scan = Some(now);
            vec![Effect::ScanProcesses]
        } else {
            Vec::new()
        }
    }

    fn key(&mut self, key: KeyEvent) -> Vec<Effect> {
        if self.ui.filter_input.is_some() {
            return self.filter_key(key);
        }
        match action_for(&key) {
            Some(action) => self.act(action),
            None => Vec::new(),
        }
    }

    /// Keys while the filter line is open are text.
    fn filter_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let Some(input) = &mut self.ui.filter_input else {
            return Vec::new();
        };
        match key.code {
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                return vec![Effect::Quit];
            }
            KeyCode::Char(c) => input.push(c),
            KeyCode::Backspace => {
                input.pop();
            }
            KeyCode::Esc => self.ui.filter_input = None,
            KeyCode::Enter => {
                let text = input.clone();
                self.ui.filter_input = None;
                match Query::parse(&text) {
                    Ok(query) => {
                        self.ui.filter_error = None;
                        self.each_model(|model| model.connections.set_query(&text, query.clone()));
                        self.scroll = Scroll::default();
                    }
                    Err(error) => self.ui.filter_error = Some(error),
                }
            }
            _ => {}
        }
        Vec::new()
    }

    fn act(&mut self, action: Action) -> Vec<Effect> {
        match action {
            Action::Quit => return vec![Effect::Quit],
            Action::ToggleHelp => self.ui.help = !self.ui.help,
            Action::NextTab => return self.show_tab((self.ui.tab.index() + 1) % Tab::ALL.len()),
            Action::PreviousTab => {
                return self.show_tab((self.ui.tab.index() + Tab::ALL.len() - 1) % Tab::ALL.len());
            }
            Action::ShowTab(index) => return self.show_tab(index),
            Action::Up => self.move_by(-1),
            Action::Down => self.move_by(1),
            Action::PageUp => self.move_by(-(PAGE as isize)),
            Action::PageDown => self.move_by(PAGE as isize),
            Action::Top => self.move_by(isize::MIN / 2),
            Action::Bottom => self.move_by(isize::MAX / 2),
            Action::Select => return self.select(),
            Action::Back => {
                if self.ui.help {
                    self.ui.help = false;
                } else if self.ui.filter_error.is_some() {
                    self.ui.filter_error = None;
                } else {
                    self.each_model(|model| model.detail = None);
                }
            }
            Action::OpenFilter => {
                self.ui.tab = Tab::Connections;
                self.ui.filter_error = None;
                self.ui.filter_input = Some(self.shown().connections.query_text.clone());
                self.each_model(|model| model.detail = None);
            }
            Action::NextSortColumn => {
                let (sort, descending) = (
                    self.shown().connections.sort.next(),
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
            Action::TogglePause => {
                self.ui.paused = !self.ui.paused;
                self.ui.behind = 0;
                self.frozen = self.ui.paused.then(|| self.live.clone());
            }
            Action::SlowerPolling => return self.step_interval(1),
            Action::FasterPolling => return self.step_interval(-1),
        }
        Vec::new()
    }

    fn show_tab(&mut self, index: usize) -> Vec<Effect> {
        self.ui.tab = Tab::ALL[index.min(Tab::ALL.len() - 1)];
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
            Tab::Overview => {}
        }
    }

    fn select(&mut self) -> Vec<Effect> {
        match self.ui.tab {
            Tab::Connections => {
                let Some(record) = self.shown().connections.get(self.scroll.selected).copied()
                else {
                    return Vec::new();
                };
                self.each_model(|model| {
                    model.detail = Some(Detail {
                        endpoints: record.endpoints(),
                        record,
                        present: true,
                        tcp_info: None,
                    });
                });
                vec![Effect::FetchTcpInfo(record)]
            }
            Tab::Timeline => {
                let plotted = &mut self.ui.plotted[self.ui.timeline_cursor];
                *plotted = !*plotted;
                Vec::new()
            }
            Tab::Overview => Vec::new(),
        }
    }

    fn step_interval(&mut self, direction: isize) -> Vec<Effect> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::views::fixtures;

    fn press(app: &mut App, code: KeyCode) -> Vec<Effect> {
        app.handle(Event::Key(KeyEvent::new(code, KeyModifiers::NONE)))
    }

    fn app() -> App {
        App::new(fixtures::flooded(), Theme::MONO)
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
        assert_eq!(app.shown().status.processes_partial, Some(false));
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
                .as_deref()
                .is_some_and(|e| e.contains("`bogus`"))
        );
        assert_eq!(app.shown().connections.len(), before);
    }

    #[test]
    fn enter_on_a_connection_opens_its_detail_and_asks_for_its_tcp_info() {
        let mut app = app();
        press(&mut app, KeyCode::Char('2'));
        press(&mut app, KeyCode::Down);
        let effects = press(&mut app, KeyCode::Enter);
        let Some(detail) = &app.shown().detail else {
            panic!("no detail pane")
        };
        assert_eq!(effects, [Effect::FetchTcpInfo(detail.record)]);
        press(&mut app, KeyCode::Esc);
        assert!(app.shown().detail.is_none());
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
}
