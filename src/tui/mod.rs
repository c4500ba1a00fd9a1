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
//! [`views`] one widget per file, [`keys`] the key table, [`line_editor`] the filter
//! line's editing, [`connections`] and [`query`] the table's order and filter,
//! [`ordering`] the worker that sorts and filters the table's rows, counts the Groups
//! tab's groups, places the findings in their cgroups ([`placing`]) and frees the
//! snapshots let go of, off this thread,
//! [`theme`] the colours.

pub mod app;
pub(crate) mod connections;
pub(crate) mod groups;
pub(crate) mod keys;
pub(crate) mod line_editor;
pub mod model;
pub mod ordering;
pub(crate) mod placing;
pub(crate) mod playback;
pub(crate) mod query;
pub mod theme;
pub(crate) mod views;

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Mutex, PoisonError, TryLockError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossterm::event::{self as terminal_event, Event as TerminalEvent};
use ratatui::DefaultTerminal;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGTSTP};
use signal_hook::iterator::Signals;

use crate::cli::Cli;
use crate::kernel::destroy::Destroyer;
use crate::kernel::netns::{self, NetnsHandle};
use crate::kernel::process;
use crate::kernel::procfs::ProcessMap;
use crate::kernel::sched::{self, thread_cpu_time};
use crate::kernel::tcp_info;
use crate::modes;
use crate::poll::namespaces;
use crate::poll::replay::Timed;
use crate::poll::rounds::{NamespaceLabel, Rounds};
use crate::poll::update::Message;
use crate::poll::update::SharedProcesses;
use crate::poll::{Control, Next, Source, Stopping, TakenIn};
use crate::record::ReplayEnd;
use crate::snapshot::SocketRecord;
use crate::watch::History;

use app::{App, Effect, Event};
use model::{Model, Recording};
use ordering::{Finished, RowOrderer};
use playback::Playback;
use theme::Theme;

/// How often the view redraws when nothing else happens.
const TICK: Duration = Duration::from_secs(1);

/// The nice value of the threads that read keys and draw, when allowed: ahead of the
/// pollers, the row worker and ordinary processes, so that a key is not answered after
/// a poll of a million sockets is parsed. They are idle but for a key or a frame.
const VIEW_NICE: i32 = -5;

/// How the view ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Quit,
    /// A signal asked it to stop; the exit status is 128 + the signal's number.
    Signal(i32),
}

/// The signals that end the view; SIGHUP too, as its terminal going away does, and
/// SIGQUIT, which would otherwise end it with the terminal left in raw mode.
const SIGNALS: &[i32] = &[SIGTERM, SIGHUP, SIGINT, SIGQUIT];

/// Ends the view on [`SIGNALS`]: the signal comes to the event loop as an event, and
/// the source ends the process if the view has not ended by itself in time (it may be
/// stuck writing to a terminal that stopped reading).
fn stopping(events: &Sender<Event>) -> Stopping {
    let events = events.clone();
    Stopping {
        signals: SIGNALS,
        notify: Some(Box::new(move |signal| {
            let _ = events.send(Event::Signal(signal));
        })),
    }
}

/// Runs the view until the user quits or a signal arrives.
pub fn run(cli: &Cli) -> anyhow::Result<Ending> {
    let (events, inbox) = mpsc::channel();
    // Before the screen is taken: a kernel that cannot answer sock_diag, a file that
    // cannot be recorded to or a namespace that cannot be entered gets a message on the
    // normal screen and exit status 2, not a view that can never fill. Signals are
    // caught first, so that a SIGTERM during start-up already finds the handler.
    // Bounded: one poll per namespace may wait; a view that cannot keep up makes the
    // pollers wait rather than queue.
    // Every walk over `/proc` the view makes is shared with the pollers, whose findings
    // then name the processes behind sockets (a stalled connect's waiting processes).
    let processes = SharedProcesses::default();
    let mut config = modes::live_config(cli, stopping(&events), 1)?;
    config.processes = Some(Arc::clone(&processes));
    let mut source = Source::live(config)?;
    // The polls are taken in on the view's thread and its workers, which report what
    // that costs themselves: not on the thread that forwards them.
    source.consumer_charges_itself();
    let recording = modes::recording(cli).map(|to| Recording::To(to.path.display().to_string()));
    let control = source.control();
    forward_source(source, events.clone(), cli.all_netns, control.clone())?;
    let workers = Workers::spawn(events.clone(), control.clone(), processes)?;
    spawn_ticks_and_input(events.clone())?;

    let theme = Theme::from_no_color(std::env::var_os("NO_COLOR").as_deref());
    let mut model = Model::new(cli.interval, History::default());
    model.status.max_cpu = cli.max_cpu;
    let mut app = if cli.all_netns {
        App::across_namespaces(model, theme)
    } else {
        App::new(model, theme)
    };
    app.ui.recording = recording;
    // The pollers ask for tcp_info from their first dump (`LiveConfig::info`); `-i`
    // asks to see it, in the connections table.
    if cli.info {
        app.ui.info_columns = true;
        app.ui.tab = model::Tab::Connections;
    }
    app.order_rows_elsewhere();
    // What the view spends on the polls counts in the pollers' CPU budget.
    let orderer = {
        let control = control.clone();
        row_orderer(&events, move |cpu| {
            control.charge(None, cpu, TakenIn::AfterFull);
        })?
    };
    // Already entered (main does), so it opened before: say which one it is.
    app.ui.netns = match &cli.netns {
        Some(spec) => Some(namespaces::label(&NetnsHandle::open(spec)?.namespace).short()),
        None => None,
    };
    let mut terminal = ratatui::init();
    end_on_any_panic();
    let charge = |netns, cpu, what| control.charge(netns, cpu, what);
    let ending = event_loop(&mut terminal, app, &inbox, charge, |effect| match effect {
        Effect::SetInterval(interval) => control.set_interval(interval),
        Effect::SetTcpInfo(on) => control.set_info(on),
        Effect::FetchTcpInfo(netns, record) => workers.fetch_tcp_info(netns, record),
        Effect::ScanProcesses => workers.scan_processes(),
        Effect::Close(netns, record) => workers.close(netns, record),
        Effect::OrderRows(job) => orderer.order(job),
        Effect::CountGroups(job) => orderer.count(job),
        Effect::PlaceFindings(job) => orderer.place(job),
        Effect::Release(snapshot) => orderer.release(snapshot),
        _ => {}
    });
    give_back_the_terminal(terminal);
    ending
}

/// Hands what the source delivers to the view, on a thread of its own so that the
/// view's thread never waits on the disk (`--record` appends there) or on a rescan of
/// namespaces. Across namespaces (`--all-netns`) the rounds are put together here too
/// ([`app::observe_round`]): copying every namespace's sockets into one snapshot is
/// work in the number of sockets, which the thread that draws must not do; what it
/// costs is charged to the pollers as the view's own work is. The rounds hear of
/// namespaces before their first poll, and of one that went before its last polls,
/// which they then ignore.
fn forward_source(
    mut source: Source,
    to: Sender<Event>,
    across: bool,
    control: Control,
) -> anyhow::Result<()> {
    spawn_named("tcpscope-forward", move || {
        let mut labels: Vec<NamespaceLabel> = Vec::new();
        let mut rounds = Rounds::default();
        loop {
            let event = match source.wait() {
                Ok(Next::Poll { message, .. }) if !across => Event::Poll(message),
                Ok(Next::Poll { netns, message, .. }) => {
                    let started = thread_cpu_time();
                    let what = match &message {
                        Message::Update(update) if !update.pace.is_full() => TakenIn::Lane,
                        _ => TakenIn::Full,
                    };
                    let events = app::observe_round(&mut rounds, netns, message);
                    control.charge(Some(netns), thread_cpu_time().saturating_sub(started), what);
                    if events.into_iter().any(|event| to.send(event).is_err()) {
                        return;
                    }
                    continue;
                }
                Ok(Next::Namespaces(followed)) => {
                    let notes = followed.notes("shown");
                    if !notes.is_empty() && to.send(Event::Notice(notes.join("; "))).is_err() {
                        return;
                    }
                    labels.retain(|label| !followed.gone.contains(&label.inode));
                    labels.extend(followed.started.iter().map(namespaces::label));
                    // As discovered: by lowest pid, then the names no process is in.
                    labels.sort_by_key(|label| (label.pid == 0, label.pid, label.inode));
                    match app::gone_notice(&rounds.set_namespaces(labels.clone())) {
                        Some(notice) => Event::Notice(notice),
                        None => continue,
                    }
                }
                Ok(Next::RecordingStopped(error)) => Event::RecordingStopped(error),
                Ok(Next::Idle) => continue,
                // The signal reached the view through its notification.
                Ok(Next::Signal(_) | Next::End) | Err(_) => return,
            };
            if to.send(event).is_err() {
                return;
            }
        }
    })
}

/// Shows the recording `cli.replay` names in the view, paced by its recorded times.
/// Reads the whole file first: seeking backwards rebuilds the model from its start.
pub fn run_replay(cli: &Cli) -> anyhow::Result<Ending> {
    let path = cli.replay.as_deref().context("--replay needs a file")?;
    let (events, inbox) = mpsc::channel();
    // --filter, --grep and the port flags narrow the recording as they narrow the live
    // view.
    let mut source = Source::replay(
        path,
        Some(cli.filter()),
        cli.thresholds(),
        cli.finding_thresholds(),
        stopping(&events),
    )?;
    let mut polls = Vec::new();
    loop {
        match source.wait()? {
            Next::Poll { at, message, .. } => polls.push(Timed { at, message }),
            Next::Signal(signal) => return Ok(Ending::Signal(signal)),
            Next::End => break,
            _ => {}
        }
    }
    let shown = path.display();
    let note = match source.replay_end() {
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

    let waker = spawn_waker(events.clone())?;
    let orderer = row_orderer(&events, |_| {})?;
    spawn_ticks_and_input(events)?;

    let theme = Theme::from_no_color(std::env::var_os("NO_COLOR").as_deref());
    let mut app = App::replaying(
        Model::new(cli.interval, History::default()),
        theme,
        playback,
    );
    app.ui.notice = note;
    app.order_rows_elsewhere();
    let first = app.begin();
    let mut terminal = ratatui::init();
    end_on_any_panic();
    let mut carry_out = |effect| match effect {
        Effect::WakeForPlayback { generation, after } => {
            let _ = waker.send((generation, after));
        }
        Effect::OrderRows(job) => orderer.order(job),
        Effect::CountGroups(job) => orderer.count(job),
        Effect::PlaceFindings(job) => orderer.place(job),
        Effect::Release(snapshot) => orderer.release(snapshot),
        _ => {}
    };
    first.into_iter().for_each(&mut carry_out);
    let ending = event_loop(&mut terminal, app, &inbox, |_, _, _| {}, carry_out);
    give_back_the_terminal(terminal);
    ending
}

/// The worker that orders the connections table's rows and counts the Groups tab's
/// groups, answering on the event channel, and telling `charge` what it spent.
fn row_orderer(
    events: &Sender<Event>,
    charge: impl Fn(Duration) + Send + 'static,
) -> anyhow::Result<RowOrderer> {
    let events = events.clone();
    let deliver = move |finished| {
        let event = match finished {
            Finished::Rows(rows) => Event::Rows(rows),
            Finished::Groups(groups) => Event::Groups(groups),
            Finished::Placed(placed) => Event::Placed(placed),
        };
        events.send(event).is_ok()
    };
    RowOrderer::spawn_charging(deliver, charge)
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
    // SIGTSTP (`kill -TSTP`, or Ctrl-Z where the terminal is not raw) suspends like the
    // Ctrl-Z key does in the view: the terminal is given back first.
    let mut suspends = Signals::new([SIGTSTP]).context("installing the SIGTSTP handler")?;
    spawn_named("tcpscope-suspend", {
        let events = events.clone();
        move || {
            for _ in suspends.forever() {
                if events.send(Event::Suspend).is_err() {
                    return;
                }
            }
        }
    })?;
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

/// What a poll event is for the CPU budget: whose it is (none: the only namespace's)
/// and whether it is a full poll or a fast lane's; none for an event that is no poll.
fn poll_of(event: &Event) -> Option<(Option<u64>, TakenIn)> {
    let (netns, update) = match event {
        Event::Poll(Message::Update(update)) => (None, update),
        Event::NamespacePoll(netns, Message::Update(update)) => (Some(*netns), update),
        // Each namespace's poll was charged where the round was put together: the
        // round's taking in is work for them all.
        Event::Round(_) => return Some((None, TakenIn::AfterFull)),
        _ => return None,
    };
    let what = if update.pace.is_full() {
        TakenIn::Full
    } else {
        TakenIn::Lane
    };
    Some((netns, what))
}

/// The view's loop: draw, then handle every event waiting. The CPU time this thread
/// spends taking in each poll, and drawing the frame after it, goes to `charge`.
fn event_loop(
    terminal: &mut DefaultTerminal,
    mut app: App,
    inbox: &Receiver<Event>,
    mut charge: impl FnMut(Option<u64>, Duration, TakenIn),
    mut carry_out: impl FnMut(Effect),
) -> anyhow::Result<Ending> {
    // Best effort: without CAP_SYS_NICE the thread keeps the default. Set here, after
    // the other threads started, which would otherwise inherit it.
    let _ = sched::set_thread_nice(VIEW_NICE);
    // The polls of the last batch of events, with what taking each in cost; the frame
    // drawn after them is added to the last.
    let mut taken_in: Vec<(Option<u64>, Duration, TakenIn)> = Vec::new();
    loop {
        let frame_started = thread_cpu_time();
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
        if let Some(last) = taken_in.last_mut() {
            last.1 += thread_cpu_time().saturating_sub(frame_started);
        }
        for (netns, cpu, what) in taken_in.drain(..) {
            charge(netns, cpu, what);
        }
        let first = inbox.recv().context("every event source stopped")?;
        // Take everything already waiting before drawing again, so that a burst of
        // keys or a slow frame never leaves the view behind.
        for event in std::iter::once(first).chain(inbox.try_iter()) {
            #[cfg(debug_assertions)]
            test_panic(&event);
            let poll = poll_of(&event);
            let started = thread_cpu_time();
            for effect in app.handle(event) {
                match effect {
                    Effect::Quit => return Ok(Ending::Quit),
                    Effect::QuitOnSignal(signal) => return Ok(Ending::Signal(signal)),
                    Effect::Suspend => suspend(terminal).context("suspending the view")?,
                    other => carry_out(other),
                }
            }
            if let Some((netns, what)) = poll {
                taken_in.push((netns, thread_cpu_time().saturating_sub(started), what));
            }
        }
    }
}

/// Gives the terminal back and stops, as `htop` and `vim` do on Ctrl-Z: the shell gets
/// a usable terminal while the view is stopped, and `fg` (SIGCONT) comes back here, to
/// take it again and draw a whole frame. The polls that arrived meanwhile wait in the
/// channel, bounded as ever.
fn suspend(terminal: &mut DefaultTerminal) -> std::io::Result<()> {
    {
        let _drawing = DRAWING.lock().unwrap_or_else(PoisonError::into_inner);
        terminal.show_cursor()?;
        ratatui::try_restore()?;
    }
    process::stop_self();
    let _drawing = DRAWING.lock().unwrap_or_else(PoisonError::into_inner);
    crossterm::terminal::enable_raw_mode()?;
    crossterm::execute!(
        std::io::stdout(),
        crossterm::terminal::EnterAlternateScreen,
        crossterm::terminal::Clear(crossterm::terminal::ClearType::All),
        crossterm::cursor::Hide
    )?;
    // The screen is blank: so must be what the next frame is compared with, or only
    // what changed would be drawn. (`Terminal::clear` would ask the terminal for the
    // cursor, whose answer the input thread may read first.)
    terminal.swap_buffers();
    Ok(())
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

fn read_terminal(events: &Sender<Event>) {
    let _ = sched::set_thread_nice(VIEW_NICE);
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
    control: &Control,
    netns: Option<u64>,
    work: impl FnOnce() -> Result<T, String> + Send,
) -> Result<T, String> {
    let Some(inode) = netns else {
        return work();
    };
    let handle = control
        .netns(inode)
        .ok_or_else(|| format!("network namespace {inode} is no longer polled"))?;
    netns::run_in(&handle, work).map_err(|error| error.to_string())?
}

impl Workers {
    fn spawn(
        events: Sender<Event>,
        control: Control,
        shared_processes: SharedProcesses,
    ) -> anyhow::Result<Workers> {
        let (scans, scan_requests) = mpsc::channel::<()>();
        let scan_events = events.clone();
        let close_events = events.clone();
        spawn_named("tcpscope-processes", move || {
            for () in scan_requests {
                let result = ProcessMap::scan()
                    .map(Arc::new)
                    .map_err(|e| format!("{e:#}"));
                if let (Ok(map), Ok(mut latest)) = (&result, shared_processes.lock()) {
                    *latest = Some(Arc::clone(map));
                }
                if scan_events.send(Event::Processes(result)).is_err() {
                    return;
                }
            }
        })?;
        let (tcp_infos, tcp_info_requests) = mpsc::channel::<(Option<u64>, SocketRecord)>();
        let tcp_info_control = control.clone();
        spawn_named("tcpscope-tcp-info", move || {
            for (netns, record) in tcp_info_requests {
                let result = in_namespace(&tcp_info_control, netns, || {
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
                let result = in_namespace(&control, netns, || {
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
