//! The `--watch` mode: runs the poller and writes each poll's transitions as they
//! come, until SIGINT or SIGTERM (exit 0) or a closed pipe (quietly). With
//! `--all-netns`, one poller per network namespace, and every line names its own.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TrySendError};
use std::time::{Duration, SystemTime};

use anyhow::Context;

use crate::cli::Cli;
use crate::kernel::netns::NetnsHandle;
use crate::namespaces::Namespaces;
use crate::poller::{EventStatus, Message, Poller, PollerConfig};
use crate::report::stream::{Format, StreamWriter};

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
    // With --all-netns one poller per namespace, each message tagged with its
    // namespace's inode; otherwise one poller in the namespace this thread is in.
    let targets: Vec<Option<Arc<NetnsHandle>>> = if cli.all_netns {
        match Namespaces::chosen(cli)? {
            Namespaces::All(handles) => handles.into_iter().map(Some).collect(),
            _ => vec![None],
        }
    } else {
        vec![None]
    };
    let (sender, receiver) = mpsc::sync_channel(UPDATES_IN_FLIGHT * targets.len());
    let config = PollerConfig {
        interval: cli.interval,
        filter,
        destroy_events: true,
        thresholds: cli.thresholds(),
    };
    let mut pollers = Vec::with_capacity(targets.len());
    for netns in targets {
        let key = netns.as_ref().map(|handle| handle.namespace.inode);
        let sender = sender.clone();
        pollers.push(Poller::spawn_in(netns, config.clone(), move |message| {
            sender
                .try_send((key, message))
                .map_err(|error| match error {
                    TrySendError::Full((_, message)) => TrySendError::Full(message),
                    TrySendError::Disconnected((_, message)) => TrySendError::Disconnected(message),
                })
        })?);
    }
    drop(sender);

    let mut warned_about_events = false;
    while !stop.load(Ordering::Relaxed) {
        let (netns, message) = match receiver.recv_timeout(STOP_CHECK) {
            Ok(tagged) => tagged,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        writer.set_netns(netns);
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
                for transition in &update.transitions {
                    writer.transition(at, transition)?;
                }
                writer.counts(at, &update.snapshot.counts())?;
            }
            Message::PollFailed(message) => writer.poll_failed(SystemTime::now(), &message)?,
        }
    }
    writer.flush()?;
    Ok(())
}
