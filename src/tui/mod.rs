//! The interactive view: a ratatui + crossterm screen over the live poller.
//!
//! One loop receives every [`Event`] (keys and resizes from a thread reading the
//! terminal, ticks, finished polls from the [`Poller`], process scans and tcp_info
//! replies from their workers, SIGTERM/SIGHUP) from a single channel, hands it to the
//! [`App`], carries out the [`Effect`]s it returns, and redraws. Nothing on this thread
//! waits on the kernel or the disk: with `--record`, polls are appended to the
//! recording by the thread that forwards them. The terminal is restored on every way out: quit, error, signal,
//! and panic on any thread (the hook `ratatui::init` installs restores before printing,
//! and the process then ends: see [`end_on_any_panic`]).
//!
//! `--replay FILE` runs the same loop with no poller: [`playback`] feeds the recorded
//! polls to the same [`App`], paced by their recorded times; nothing touches the kernel.
//!
//! With `--all-netns` there is one poller per network namespace, a thread that looks
//! for namespaces that came or went, and [`namespaces`] puts their polls together.
//!
//! [`app`] holds the state and the key handling, [`model`] what the views read,
//! [`views`] one widget per file, [`keys`] the key table, [`connections`] and [`query`]
//! the table's order and filter, [`theme`] the colours.

pub mod app;
pub mod connections;
pub mod keys;
pub mod model;
pub mod namespaces;
pub mod playback;
pub mod query;
pub mod theme;
pub mod views;

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Mutex, PoisonError, TryLockError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossterm::event::{self as terminal_event, Event as TerminalEvent};
use ratatui::DefaultTerminal;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::cli::Cli;
use crate::kernel::destroy::Destroyer;
use crate::kernel::netns::{self, NetNamespace};
use crate::kernel::procfs::ProcessMap;
use crate::kernel::sockdiag::SockDiag;
use crate::kernel::tcp_info;
use crate::namespaces::Namespaces;
use crate::poller::{Message, Poller, PollerConfig};
use crate::pollers::{Pollers, RESCAN};
use crate::record::{Recorder, Replay, ReplayEnd};
use crate::snapshot::SocketRecord;
use crate::watch::History;

use app::{App, Effect, Event};
use model::{Model, Recording};
use namespaces::NamespaceLabel;
use playback::Playback;
use theme::Theme;

/// How often the view redraws when nothing else happens.
const TICK: Duration = Duration::from_secs(1);

/// How the view ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Quit,
    /// A signal asked it to stop; the exit status is 128 + the signal's number.
    Signal(i32),
}

/// Runs the view until the user quits or a signal arrives.
pub fn run(cli: &Cli) -> anyhow::Result<Ending> {
    // Before the screen is taken: a kernel that cannot answer sock_diag gets a message
    // on the normal screen and exit status 2, not a view that can never fill.
    SockDiag::open()
        .and_then(|mut diag| diag.probe())
        .context("asking the kernel for TCP sockets")?;
    // Also before the screen is taken: a file that cannot be recorded to is refused
    // with exit status 2.
    let record_to = cli.recording();
    let recorder = record_to.as_ref().map(Recorder::open).transpose()?;
    let recording = record_to.map(|to| Recording::To(to.path.display().to_string()));
    let (events, inbox) = mpsc::channel();
    // Signals first, so that a SIGTERM during start-up already finds the handler.
    forward_signals(events.clone())?;
    let interval = cli.interval;
    let config = PollerConfig {
        interval,
        filter: cli.filter(),
        destroy_events: true,
        thresholds: cli.thresholds(),
    };
    // --record goes without --all-netns: a recording holds one namespace.
    let polling = if cli.all_netns {
        Polling::Each(poll_each_namespace(cli, config, &events)?)
    } else {
        // Bounded: a view that cannot keep up makes the poller wait rather than queue.
        let (poll_sender, polls) = mpsc::sync_channel(1);
        let poller = Poller::spawn(config, poll_sender).context("starting the poller thread")?;
        forward_polls(polls, events.clone(), recorder)?;
        Polling::One(poller)
    };
    let workers = Workers::spawn(events.clone(), polling.namespaces())?;
    spawn_ticks_and_input(events)?;

    let theme = Theme::from_no_color(std::env::var_os("NO_COLOR").as_deref());
    let model = Model::new(interval, History::default());
    let mut app = match polling {
        Polling::One(_) => App::new(model, theme),
        Polling::Each(_) => App::across_namespaces(model, theme),
    };
    app.ui.recording = recording;
    let mut terminal = ratatui::init();
    end_on_any_panic();
    let ending = event_loop(&mut terminal, app, &inbox, |effect| match effect {
        Effect::SetInterval(interval) => polling.set_interval(interval),
        Effect::FetchTcpInfo(netns, record) => workers.fetch_tcp_info(netns, record),
        Effect::ScanProcesses => workers.scan_processes(),
        Effect::Close(netns, record) => workers.close(netns, record),
        _ => {}
    });
    give_back_the_terminal(terminal);
    ending
}

/// What polls for the view: one poller in tcpscope's namespace, or one per namespace
/// (`--all-netns`), shared with the thread that follows namespaces as they come and go.
enum Polling {
    One(Poller),
    Each(Arc<Mutex<Pollers>>),
}

impl Polling {
    fn set_interval(&self, interval: Duration) {
        match self {
            Polling::One(poller) => poller.set_interval(interval),
            Polling::Each(pollers) => lock(pollers).set_interval(interval),
        }
    }

    fn namespaces(&self) -> Option<Arc<Mutex<Pollers>>> {
        match self {
            Polling::One(_) => None,
            Polling::Each(pollers) => Some(Arc::clone(pollers)),
        }
    }
}

fn lock(pollers: &Mutex<Pollers>) -> std::sync::MutexGuard<'_, Pollers> {
    pollers.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts one poller per namespace of every process, tells the app which they are
/// first (so that no namespace's poll comes before its name), and starts the thread
/// that looks for namespaces that appeared or went every [`RESCAN`]. Fails, before the
/// screen is taken, if a namespace cannot be entered (no privilege).
fn poll_each_namespace(
    cli: &Cli,
    config: PollerConfig,
    events: &Sender<Event>,
) -> anyhow::Result<Arc<Mutex<Pollers>>> {
    let handles = match Namespaces::chosen(cli)? {
        Namespaces::All(handles) => handles,
        _ => Vec::new(),
    };
    // Bounded: one update per namespace may wait; a view that cannot keep up makes
    // the pollers wait rather than queue.
    let (sender, polls) = mpsc::sync_channel(handles.len().max(1));
    forward(polls, events.clone(), |(netns, message)| {
        Event::NamespacePoll(netns, message)
    })?;
    let labels = handles
        .iter()
        .map(|handle| label(&handle.namespace))
        .collect();
    events
        .send(Event::Namespaces(labels))
        .context("the view stopped before it started")?;
    let mut pollers = Pollers::new(config, sender);
    for handle in handles {
        pollers.start(handle.namespace.inode, Some(handle))?;
    }
    let pollers = Arc::new(Mutex::new(pollers));
    spawn_named("tcpscope-namespaces", {
        let pollers = Arc::clone(&pollers);
        let events = events.clone();
        move || {
            while follow_namespaces(&pollers, &events) {}
        }
    })?;
    Ok(pollers)
}

/// One look for namespaces that appeared or went: the app hears of the namespaces to
/// show before new pollers start and before gone ones stop, so that it never takes a
/// poll from a namespace it cannot name, and ignores the last polls of one that went.
/// Returns whether the view is still there.
fn follow_namespaces(pollers: &Mutex<Pollers>, events: &Sender<Event>) -> bool {
    thread::sleep(RESCAN);
    let Ok(discovery) = netns::discover() else {
        return true;
    };
    let mut labels: Vec<NamespaceLabel> = discovery
        .namespaces
        .iter()
        .map(|handle| label(&handle.namespace))
        .collect();
    labels.retain(|label| !lock(pollers).refuses(label.inode));
    if events.send(Event::Namespaces(labels.clone())).is_err() {
        return false;
    }
    let followed = lock(pollers).follow_discovered(discovery);
    if followed.refused.is_empty() {
        return true;
    }
    labels.retain(|label| {
        !followed
            .refused
            .iter()
            .any(|(inode, _)| *inode == label.inode)
    });
    events.send(Event::Namespaces(labels)).is_ok()
}

/// A namespace's label, with the command name of its process.
fn label(namespace: &NetNamespace) -> NamespaceLabel {
    NamespaceLabel {
        inode: namespace.inode,
        pid: namespace.pid,
        command: (namespace.pid > 0)
            .then(|| netns::command_name(namespace.pid))
            .flatten(),
        container: namespace.container.clone(),
    }
}

/// Shows the recording `cli.replay` names in the view, paced by its recorded times.
/// Reads the whole file first: seeking backwards rebuilds the model from its start.
pub fn run_replay(cli: &Cli) -> anyhow::Result<Ending> {
    let path = cli.replay.as_deref().context("--replay needs a file")?;
    // --filter, --grep and the port flags narrow the recording as they narrow the live
    // view.
    let mut replay = Replay::open(path, cli.thresholds())?.narrowed_to(cli.filter());
    let mut polls = Vec::new();
    while let Some(replayed) = replay.next_poll()? {
        polls.push(replayed);
    }
    let shown = path.display();
    let note = match replay.end() {
        Some(ReplayEnd::Torn { offset, .. }) => Some(format!(
            "{shown} ends with a torn record at byte {offset}; showing what came before"
        )),
        Some(ReplayEnd::Unreadable { offset, reason }) => Some(format!(
            "{shown} has an unreadable record at byte {offset} ({reason}); showing what came before"
        )),
        Some(ReplayEnd::Complete) | None => None,
    };
    let playback =
        Playback::new(polls).with_context(|| format!("{shown} holds no polls to show"))?;

    let (events, inbox) = mpsc::channel();
    forward_signals(events.clone())?;
    let waker = spawn_waker(events.clone())?;
    spawn_ticks_and_input(events)?;

    let theme = Theme::from_no_color(std::env::var_os("NO_COLOR").as_deref());
    let mut app = App::replaying(
        Model::new(cli.interval, History::default()),
        theme,
        playback,
    );
    app.ui.notice = note;
    let first = app.begin();
    let mut terminal = ratatui::init();
    end_on_any_panic();
    let mut carry_out = |effect| {
        if let Effect::WakeForPlayback { generation, after } = effect {
            let _ = waker.send((generation, after));
        }
    };
    first.into_iter().for_each(&mut carry_out);
    let ending = event_loop(&mut terminal, app, &inbox, carry_out);
    give_back_the_terminal(terminal);
    ending
}

/// Leaves the alternate screen and raw mode and shows the cursor. After a hang-up the
/// terminal (and with it stderr) may be gone: then there is nothing to restore and
/// nobody to tell, and ratatui's complaints on stderr (from `restore` and from the
/// terminal's drop) would fail to print and abort the process instead of letting it
/// exit with its status.
fn give_back_the_terminal(mut terminal: DefaultTerminal) {
    let cursor = terminal.show_cursor();
    let _ = ratatui::try_restore();
    if cursor.is_err() {
        // Its drop would try the cursor again and print the failure.
        std::mem::forget(terminal);
    }
}

/// A thread that sends [`Event::PlaybackDue`] once each requested wait is over; a new
/// request replaces the one pending.
fn spawn_waker(events: Sender<Event>) -> anyhow::Result<Sender<(u64, Duration)>> {
    let (requests, inbox) = mpsc::channel::<(u64, Duration)>();
    spawn_named("tcpscope-playback", move || {
        let mut pending: Option<(u64, Instant)> = None;
        loop {
            let request = match pending {
                None => inbox
                    .recv()
                    .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                Some((_, deadline)) => {
                    inbox.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                }
            };
            match request {
                Ok((generation, after)) => pending = Some((generation, Instant::now() + after)),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some((generation, _)) = pending.take()
                        && events.send(Event::PlaybackDue(generation)).is_err()
                    {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
    })?;
    Ok(requests)
}

fn spawn_ticks_and_input(events: Sender<Event>) -> anyhow::Result<()> {
    spawn_named("tcpscope-ticks", {
        let events = events.clone();
        move || {
            while events.send(Event::Tick).is_ok() {
                thread::sleep(TICK);
            }
        }
    })?;
    spawn_named("tcpscope-input", move || read_terminal(&events))
}

/// Held while a frame is written, so that a panic on another thread restores the
/// terminal after the frame rather than in the middle of it.
static DRAWING: Mutex<()> = Mutex::new(());

/// How long a panic waits for a frame being written to finish.
const PANIC_WAITS_FOR_FRAME: Duration = Duration::from_millis(200);

/// A panic on any thread leaves the view without the part that panicked (a view with
/// a dead poller would never change again), so after the hook `ratatui::init`
/// installed has restored the terminal and printed the panic, the process ends with
/// status 101, as a panic on the main thread would. The frame being written, if any,
/// is finished first and no other is started; the cursor is shown again.
fn end_on_any_panic() {
    let restore_and_report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let deadline = Instant::now() + PANIC_WAITS_FOR_FRAME;
        // Never released: no frame may follow the restore. The panicking thread may
        // hold it itself (a panic while drawing): then go on after the wait.
        let _frames_stopped = loop {
            match DRAWING.try_lock() {
                Ok(guard) => break Some(guard),
                Err(TryLockError::Poisoned(poisoned)) => break Some(poisoned.into_inner()),
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(1));
                }
                Err(TryLockError::WouldBlock) => break None,
            }
        };
        // ratatui's restore leaves the cursor hidden: only dropping the terminal, which
        // a panic skips, shows it again.
        let _ = crossterm::execute!(std::io::stdout(), crossterm::cursor::Show);
        restore_and_report(info);
        std::process::exit(101);
    }));
}

fn event_loop(
    terminal: &mut DefaultTerminal,
    mut app: App,
    inbox: &Receiver<Event>,
    mut carry_out: impl FnMut(Effect),
) -> anyhow::Result<Ending> {
    loop {
        {
            let _drawing = DRAWING.lock().unwrap_or_else(PoisonError::into_inner);
            let drawn = terminal.draw(|frame| {
                let area = frame.area();
                app.render(area, frame.buffer_mut());
            });
            match drawn {
                Ok(_) => {}
                // The terminal is gone (its emulator or SSH session closed), which the
                // output may notice before the input does: as on a hang-up.
                Err(error) if matches!(error.raw_os_error(), Some(libc::EIO | libc::ENXIO)) => {
                    return Ok(Ending::Signal(SIGHUP));
                }
                Err(error) => return Err(error).context("drawing the view"),
            }
        }
        let first = inbox.recv().context("every event source stopped")?;
        // Take everything already waiting before drawing again, so that a burst of
        // keys or a slow frame never leaves the view behind.
        for event in std::iter::once(first).chain(inbox.try_iter()) {
            #[cfg(debug_assertions)]
            test_panic(&event);
            for effect in app.handle(event) {
                match effect {
                    Effect::Quit => return Ok(Ending::Quit),
                    Effect::QuitOnSignal(signal) => return Ok(Ending::Signal(signal)),
                    other => carry_out(other),
                }
            }
        }
    }
}

/// A panic on demand, in debug builds only (release builds have no such code), so that
/// tests can check the terminal is restored after one: with `TCPSCOPE_TEST_PANIC=view`
/// the key `!` panics on the view's own thread, with `TCPSCOPE_TEST_PANIC=thread` on a
/// thread of its own.
#[cfg(debug_assertions)]
fn test_panic(event: &Event) {
    let Event::Key(key) = event else {
        return;
    };
    if key.code != crossterm::event::KeyCode::Char('!') {
        return;
    }
    match std::env::var("TCPSCOPE_TEST_PANIC").as_deref() {
        Ok("view") => panic!("test panic on the view's thread (TCPSCOPE_TEST_PANIC=view)"),
        Ok("thread") => {
            let _ = spawn_named("tcpscope-test-panic", || {
                panic!("test panic on another thread (TCPSCOPE_TEST_PANIC=thread)")
            });
        }
        _ => {}
    }
}

fn spawn_named(name: &str, work: impl FnOnce() + Send + 'static) -> anyhow::Result<()> {
    thread::Builder::new()
        .name(name.into())
        .spawn(work)
        .with_context(|| format!("starting the {name} thread"))?;
    Ok(())
}

/// Hands each poll to the view, first appending it to the recording (`--record`) on
/// this thread, so that the view's thread never waits on the disk. A failed write
/// stops the recording and says so in the view; the view goes on.
fn forward<T: Send + 'static>(
    from: Receiver<T>,
    to: Sender<Event>,
    wrap: fn(T) -> Event,
) -> anyhow::Result<()> {
    spawn_named("tcpscope-forward", move || {
        for message in from {
            if to.send(wrap(message)).is_err() {
                return;
            }
        }
    })
}

/// Forwards the poller's messages to the view, appending each to the recording first
/// (`--record`), so that the drawing thread never waits on the disk. A failed write
/// stops the recording and tells the view.
fn forward_polls(
    polls: Receiver<Message>,
    to: Sender<Event>,
    mut recorder: Option<Recorder>,
) -> anyhow::Result<()> {
    spawn_named("tcpscope-forward", move || {
        for message in polls {
            if let Some(active) = &mut recorder
                && let Err(error) = active.record(&message)
            {
                recorder = None;
                if to
                    .send(Event::RecordingStopped(format!("{error:#}")))
                    .is_err()
                {
                    return;
                }
            }
            if to.send(Event::Poll(message)).is_err() {
                return;
            }
        }
    })
}

/// How long the view has, after a signal, to give the terminal back and exit.
///
/// Drawing and restoring both write to the terminal. A terminal that stopped reading (a
/// frozen SSH session, a suspended emulator) blocks those writes for as long as it
/// likes, and the view with them: past this, the process leaves without it.
const SIGNAL_GRACE: Duration = Duration::from_secs(3);

/// Forwards the first SIGTERM, SIGHUP or SIGINT to the event loop; if the process has
/// not ended [`SIGNAL_GRACE`] later, ends it with the status the signal asks for.
fn forward_signals(events: Sender<Event>) -> anyhow::Result<()> {
    let mut signals =
        Signals::new([SIGTERM, SIGHUP, SIGINT]).context("installing the signal handlers")?;
    spawn_named("tcpscope-signals", move || {
        if let Some(signal) = signals.forever().next() {
            let _ = events.send(Event::Signal(signal));
            thread::sleep(SIGNAL_GRACE);
            // Still here: the main thread is stuck on the terminal. `_exit`, not
            // `exit`: flushing stdout on the way out would block on it too.
            // SAFETY: _exit ends the process at once and has no preconditions.
            unsafe { libc::_exit(128 + signal) };
        }
    })
}

fn read_terminal(events: &Sender<Event>) {
    loop {
        let event = match terminal_event::read() {
            Ok(TerminalEvent::Key(key)) => Event::Key(key),
            Ok(TerminalEvent::Resize(..)) => Event::Resize,
            Ok(_) => continue,
            // The terminal went away: behave as on a hang-up.
            Err(_) => Event::Signal(SIGHUP),
        };
        let stop = matches!(event, Event::Signal(_));
        if events.send(event).is_err() || stop {
            return;
        }
    }
}

/// The threads that do the view's occasional kernel work: process scans, tcp_info
/// requests and closing a connection. Each takes requests from its own channel and answers on the event channel.
/// A socket of another namespace is asked about from a thread that entered it.
struct Workers {
    scans: Sender<()>,
    tcp_infos: Sender<(Option<u64>, SocketRecord)>,
    closes: Sender<(Option<u64>, SocketRecord)>,
}

/// Runs `work` in the namespace `netns` (none: tcpscope's own), which must still be
/// polled.
fn in_namespace<T: Send>(
    namespaces: Option<&Mutex<Pollers>>,
    netns: Option<u64>,
    work: impl FnOnce() -> Result<T, String> + Send,
) -> Result<T, String> {
    let Some(inode) = netns else {
        return work();
    };
    let handle = namespaces
        .and_then(|pollers| lock(pollers).netns(inode))
        .ok_or_else(|| format!("network namespace {inode} is no longer polled"))?;
    netns::run_in(&handle, work).map_err(|error| error.to_string())?
}

impl Workers {
    fn spawn(
        events: Sender<Event>,
        namespaces: Option<Arc<Mutex<Pollers>>>,
    ) -> anyhow::Result<Workers> {
        let (scans, scan_requests) = mpsc::channel::<()>();
        let scan_events = events.clone();
        let close_events = events.clone();
        spawn_named("tcpscope-processes", move || {
            for () in scan_requests {
                let result = ProcessMap::scan()
                    .map(Arc::new)
                    .map_err(|e| format!("{e:#}"));
                if scan_events.send(Event::Processes(result)).is_err() {
                    return;
                }
            }
        })?;
        let (tcp_infos, tcp_info_requests) = mpsc::channel::<(Option<u64>, SocketRecord)>();
        let tcp_info_namespaces = namespaces.clone();
        spawn_named("tcpscope-tcp-info", move || {
            for (netns, record) in tcp_info_requests {
                let result = in_namespace(tcp_info_namespaces.as_deref(), netns, || {
                    tcp_info::fetch(&record).map_err(|e| format!("{e:#}"))
                });
                if events
                    .send(Event::TcpInfo(record.endpoints(), result))
                    .is_err()
                {
                    return;
                }
            }
        })?;
        let (closes, close_requests) = mpsc::channel::<(Option<u64>, SocketRecord)>();
        spawn_named("tcpscope-close", move || {
            for (netns, record) in close_requests {
                // SOCK_DESTROY names the socket by endpoints and cookie: a socket that
                // closed meanwhile and whose endpoints were reused is not touched.
                let result = in_namespace(namespaces.as_deref(), netns, || {
                    Destroyer::open()
                        .and_then(|mut destroyer| destroyer.destroy(&record))
                        .map_err(|e| e.to_string())
                });
                if close_events
                    .send(Event::Closed(record.endpoints(), result))
                    .is_err()
                {
                    return;
                }
            }
        })?;
        Ok(Workers {
            scans,
            tcp_infos,
            closes,
        })
    }

    fn scan_processes(&self) {
        let _ = self.scans.send(());
    }

    fn close(&self, netns: Option<u64>, record: SocketRecord) {
        let _ = self.closes.send((netns, record));
    }

    fn fetch_tcp_info(&self, netns: Option<u64>, record: SocketRecord) {
        let _ = self.tcp_infos.send((netns, record));
    }
}
