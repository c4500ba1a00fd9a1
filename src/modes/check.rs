//! The `--check` mode, a monitoring plugin: polls through the live source for
//! `--window`, then answers once with the findings raised at its end, as one status line
//! with perfdata ([`crate::report::plugin`]) and the plugin convention's exit code.
//!
//! A finding is raised once its condition held for two polls in a row (the first poll
//! of a rate is only its baseline), so the window is polled every quarter of it: a
//! condition that holds through the window is named, and one that a single reading
//! shows for a moment is not, as in every other mode. The check waits, past the window
//! if it must, until each namespace has had [`POLLS_NEEDED`] polls, and never longer
//! than twice the window plus [`GRACE`]. It must not print anything but its answer on
//! stdout: a monitoring system keeps the first line.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};

use crate::cli::Cli;
use crate::poll::poller::MIN_INTERVAL;
use crate::poll::{Message, Next, OWN, Source, Stopping};
use crate::report::plugin::{Reading, Status};
use crate::snapshot::Counts;
use crate::watch::findings::Finding;

/// Updates per namespace that may wait; the loop only keeps the latest.
const UPDATES_IN_FLIGHT: usize = 2;

/// How many polls of the window: a finding needs two in a row, a rate one more before.
const POLLS_PER_WINDOW: u32 = 4;

/// Polls of each namespace the answer waits for: a rate's baseline, then the two polls
/// in a row that raise a finding.
pub const POLLS_NEEDED: u32 = 3;

/// How long past twice the window a slow host (a poll of 100k sockets takes about a
/// tenth of a second) may take to give the polls needed, before the check answers with
/// what it has.
pub const GRACE: Duration = Duration::from_secs(2);

/// The latest poll of one namespace.
#[derive(Debug, Default)]
struct Latest {
    polls: u32,
    counts: Counts,
    findings: Vec<Finding>,
}

/// Polls for the window and says what it found: the status and the plugin's output.
/// An error (no sock_diag, a namespace that cannot be entered, no poll that succeeded,
/// a signal) is the caller's to report as UNKNOWN.
pub fn run(cli: &Cli) -> anyhow::Result<(Status, String)> {
    let mut config = super::live_config(cli, Stopping::headless(), UPDATES_IN_FLIGHT)?;
    config.interval = interval(cli.window, cli.interval);
    // A check lasts one window and needs two full polls in it for the rates: no fast
    // lane in between, whatever --max-cpu says.
    config.max_cpu = 0.0;
    let mut source = Source::live(config)?;
    let started = Instant::now();
    let window_ends = started + cli.window;
    let give_up = window_ends + cli.window + GRACE;

    // The namespaces polled, by key: tcpscope's own, or with --all-netns those the
    // source reports.
    let mut latest: BTreeMap<u64, Latest> = BTreeMap::new();
    if !cli.all_netns {
        latest.insert(OWN, Latest::default());
    }
    let mut last_error = None;
    loop {
        let now = Instant::now();
        let enough = latest
            .values()
            .all(|namespace| namespace.polls >= POLLS_NEEDED);
        if (now >= window_ends && enough) || now >= give_up {
            break;
        }
        match source.wait()? {
            Next::Poll { netns, message, .. } => match message {
                Message::Update(update) => {
                    let namespace = latest.entry(netns).or_default();
                    namespace.polls += 1;
                    namespace.counts = update.pace.counts;
                    namespace.findings.clone_from(&update.findings);
                }
                Message::PollFailed(error) => last_error = Some(error),
            },
            Next::Namespaces(followed) => {
                followed.note("checking");
                for namespace in followed.started {
                    latest.entry(namespace.inode).or_default();
                }
                for inode in followed.gone {
                    latest.remove(&inode);
                }
            }
            // No recording goes with --check.
            Next::RecordingStopped(_) | Next::Idle => {}
            Next::Signal(signal) => bail!("stopped by signal {signal} before the window ended"),
            Next::End => break,
        }
    }

    let polled: Vec<&Latest> = latest.values().filter(|ns| ns.polls > 0).collect();
    if polled.is_empty() {
        return Err(match last_error {
            Some(error) => anyhow!("no poll succeeded: {error}"),
            None => anyhow!("no poll came in {:?}", started.elapsed()),
        });
    }
    let mut reading = Reading::default();
    for namespace in polled {
        reading.add(&namespace.counts, &namespace.findings);
    }
    Ok(reading.render())
}

/// The poll interval of a window: a quarter of it, or `--interval` if that is shorter.
pub fn interval(window: Duration, interval: Duration) -> Duration {
    (window / POLLS_PER_WINDOW).min(interval).max(MIN_INTERVAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_window_is_polled_every_half_second() {
        assert_eq!(
            interval(Duration::from_secs(2), Duration::from_secs(1)),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn a_shorter_interval_is_kept_and_the_shortest_window_still_polls_four_times() {
        assert_eq!(
            interval(Duration::from_secs(10), Duration::from_millis(250)),
            Duration::from_millis(250)
        );
        let shortest = interval(crate::cli::MIN_WINDOW, Duration::from_secs(1));
        assert_eq!(shortest, MIN_INTERVAL);
        assert!(crate::cli::MIN_WINDOW >= shortest * POLLS_PER_WINDOW);
    }
}
