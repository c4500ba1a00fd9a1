//! The `--watch` mode: runs the poller and writes each poll's transitions as they
//! come, until SIGINT or SIGTERM (exit 0) or a closed pipe (quietly).

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, SystemTime};

use anyhow::Context;

use crate::cli::Cli;
use crate::diff::Transition;
use crate::filter::Filter;
use crate::poller::{EventStatus, Message, Poller, PollerConfig};
use crate::report::stream::{Format, StreamWriter};
use crate::snapshot::{Counts, Snapshot};

/// Updates that may wait for the writer; beyond that the poller waits (see
/// [`Poller::spawn`]).
const UPDATES_IN_FLIGHT: usize = 2;
/// How often the loop looks up from the channel to see whether it was told to stop.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// Streams transitions to `out` until a signal asks to stop.
pub fn run(cli: &Cli, out: impl Write) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing the SIGINT/SIGTERM handlers")?;
    }

    let filter = cli.filter();
    let format = if cli.json {
        Format::Ndjson
    } else {
        Format::Text
    };
    let mut writer = StreamWriter::new(out, format, filter.states);
    let (sender, receiver) = mpsc::sync_channel(UPDATES_IN_FLIGHT);
    let _poller = Poller::spawn(
        PollerConfig {
            interval: cli.interval,
            filter: filter.clone(),
            destroy_events: true,
            thresholds: cli.thresholds(),
        },
        sender,
    )
    .context("starting the poller thread")?;

    let mut warned_about_events = false;
    while !stop.load(Ordering::Relaxed) {
        let message = match receiver.recv_timeout(STOP_CHECK) {
            Ok(message) => message,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        match message {
            Message::Update(update) => {
                if let EventStatus::Refused(reason) = &update.events
                    && !warned_about_events
                {
                    warned_about_events = true;
                    let _ = writeln!(
                        io::stderr(),
                        "tcpscope: note: kernel destroy events are unavailable ({reason}); connections that open and close between two polls may be missed"
                    );
                }
                let at = update.snapshot.taken_at;
                if update.event_overflows > 0 {
                    writer.events_lost(at, update.event_overflows)?;
                }
                for transition in update
                    .transitions
                    .iter()
                    .filter(|transition| wanted(&filter, transition))
                {
                    writer.transition(at, transition)?;
                }
                writer.counts(at, &counts(&filter, &update.snapshot))?;
            }
            Message::PollFailed(message) => writer.poll_failed(SystemTime::now(), &message)?,
        }
    }
    writer.flush()?;
    Ok(())
}

/// A transition is shown when the connection matched the filter before or after it.
/// The writer checks the state mask too; this adds the rest of the filter (ports,
/// addresses, state tests under `or` or `not`), since the poller dumps every state.
fn wanted(filter: &Filter, transition: &Transition) -> bool {
    [transition.from, transition.to]
        .into_iter()
        .flatten()
        .any(|state| filter.matches_endpoints(&transition.endpoints, state))
}

/// The per-state counts of the sockets the filter matches.
fn counts(filter: &Filter, snapshot: &Snapshot) -> Counts {
    if filter.condition.is_none() {
        // The dump applied everything but the states, which the writer applies.
        return snapshot.counts();
    }
    let mut counts = Counts::default();
    for socket in snapshot.sockets.iter().filter(|s| filter.matches(s)) {
        counts.add(socket.state);
    }
    counts
}
