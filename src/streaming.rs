//! The `--watch` mode: runs the poller and writes each poll's transitions as they
//! come, until SIGINT or SIGTERM (exit 0) or a closed pipe (quietly, even when there is
//! nothing to write).

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, SystemTime};

use anyhow::Context;

use crate::cli::Cli;
use crate::kernel::sockdiag::SockDiag;
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

    // A kernel that cannot answer sock_diag never will: say so and stop, rather than
    // print a failed poll every interval.
    SockDiag::open()
        .and_then(|mut diag| diag.probe())
        .context("asking the kernel for TCP sockets")?;
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
            filter,
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
            // A quiet stream writes nothing for a long time, so a write would not tell
            // it that its reader (`| head`) left: look.
            Err(RecvTimeoutError::Timeout) if stdout_reader_gone() => return Ok(()),
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
                if update.took > cli.interval {
                    writer.slow_poll(at, update.took, cli.interval)?;
                }
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

/// Whether standard output is a pipe or socket whose reading end is closed: the kernel
/// flags such a writing end with POLLERR or POLLHUP (`pipe_poll` in fs/pipe.c). A
/// terminal or a file never is.
fn stdout_reader_gone() -> bool {
    let mut poll = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, and a zero timeout: it never blocks.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    ready > 0 && poll.revents & (libc::POLLERR | libc::POLLHUP) != 0
}
