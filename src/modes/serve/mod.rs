//! The `--serve ADDRESS` mode: headless, it polls (one poller per network namespace),
//! keeps the metrics of the latest polls rendered as Prometheus text, and serves that
//! text at `/metrics` until SIGINT or SIGTERM (exit 0).
//!
//! A scrape never triggers a dump: each poll renders the page once, and the HTTP
//! thread ([`http`]) hands every scraper the same bytes. The listening socket is
//! bound here, in tcpscope's own namespace, before any poller enters another one, so
//! Prometheus reaches it where it was started.

mod auth;
pub mod http;
mod tls;
pub mod web_config;

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};

use crate::cli::Cli;
use crate::group::{self, Group, GroupKey};
use crate::kernel::cgroups::CgroupNames;
use crate::kernel::procfs::ProcessMap;
use crate::kernel::sched;
use crate::poll::per_namespace::Followed;
use crate::poll::{Message, Next, Source, Stopping, Update};
use crate::report::groups::GroupNames;
use crate::report::metrics::{self, Metrics};
use crate::report::repeats::{REPEAT_EVERY, Repeats};
use crate::watch::leaks::{self, DEFAULT_WINDOW};
use crate::watch::{LeakWatcher, ListenerTable, Owner};

use http::{Limits, Response, Server};
use web_config::WebConfig;

/// The HTTP thread's nice value when allowed: ahead of the pollers and of ordinary
/// processes, so that scrapes do not wait behind a poll of 100k sockets. It is idle
/// but for the moments it writes a page, so it takes next to nothing from them.
const HTTP_NICE: i32 = -5;

/// How often `-p` scans processes while CLOSE_WAIT sockets have owners the last scan
/// does not know, to name them in the per-process CLOSE_WAIT metrics: at 100k sockets
/// a scan costs about a third of a second of CPU, so at most about 3% of a core, and
/// only while there are such sockets. Scrapes never cause one.
const LEAK_SCAN_EVERY: Duration = Duration::from_secs(10);

/// The shortest time between two renders of the page.
const RENDER_EVERY: Duration = Duration::from_millis(100);

/// Updates that may wait for the render loop; beyond that, pollers wait, so a stalled
/// loop cannot pile up snapshots.
const UPDATES_IN_FLIGHT: usize = 2;

const INDEX_PAGE: &[u8] = b"<!doctype html><title>tcpscope</title><p>tcpscope: TCP connection states as Prometheus metrics at <a href=\"/metrics\">/metrics</a>\n";

/// The rendered metrics the HTTP thread serves: replaced after each poll, read (an
/// `Arc` cloned under the lock) by each scrape.
#[derive(Default)]
struct Page(Mutex<Option<Arc<[u8]>>>);

impl Page {
    fn replace(&self, text: String) {
        let bytes: Arc<[u8]> = Arc::from(text.into_bytes());
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(bytes);
    }

    fn latest(&self) -> Option<Arc<[u8]>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The answer to a request for `path`.
    fn respond(&self, path: &str) -> Response {
        // Scrapers may add a query string (`?name[]=…`); the whole page is the answer.
        let path = path.split_once('?').map_or(path, |(path, _)| path);
        match path {
            "/metrics" => match self.latest() {
                Some(text) => Response::new(200, metrics::CONTENT_TYPE, text),
                None => Response {
                    headers: "Retry-After: 1\r\n",
                    ..Response::text(503, "tcpscope has not finished its first poll yet\n")
                },
            },
            "/" => Response::new(200, "text/html; charset=utf-8", Arc::from(INDEX_PAGE)),
            _ => Response::text(404, "not found; the metrics are at /metrics\n"),
        }
    }
}

/// Listens on `address`; `[::]` (what `--serve :PORT` means) is every interface, IPv4
/// included, whatever the host's `net.ipv6.bindv6only`.
fn bind(address: SocketAddr) -> io::Result<Server> {
    if address.ip() == Ipv6Addr::UNSPECIFIED {
        Server::bind_every_interface(address.port(), Limits::default())
    } else {
        Server::bind(address, Limits::default())
    }
}

/// The one line said on stderr when the endpoint is reachable beyond this host and
/// asks for no password: a reminder, not a refusal, as node_exporter gives none.
fn exposure_reminder(bound: SocketAddr, has_password: bool) -> Option<String> {
    (!bound.ip().is_loopback() && !has_password).then(|| {
        format!(
            "tcpscope: note: {bound} is reachable beyond loopback and the endpoint has no \
             authentication: anyone who reaches it reads every listener's address \
             (--web-config sets a password and TLS)"
        )
    })
}

/// Serves metrics on `address` until a signal asks to stop.
pub fn run(cli: &Cli, address: SocketAddr) -> anyhow::Result<()> {
    let web = match &cli.web_config {
        Some(path) => WebConfig::load(path)?,
        None => WebConfig::default(),
    };
    let scheme = if web.tls.is_some() { "https" } else { "http" };
    let has_password = web.auth.is_some();
    let mut server = bind(address)
        .with_context(|| format!("listening on {address}"))?
        .guarded(web);
    let bound = server.local_addr().context("reading the bound address")?;
    let mut source = Source::live(super::live_config(
        cli,
        Stopping::headless(),
        UPDATES_IN_FLIGHT,
    )?)?;
    let stop = source.stop_flag();

    let page = Arc::new(Page::default());
    let http = thread::Builder::new()
        .name("tcpscope-http".into())
        .spawn({
            let page = Arc::clone(&page);
            let stop = Arc::clone(&stop);
            move || {
                // Best effort: without CAP_SYS_NICE the thread keeps the default.
                let _ = sched::set_thread_nice(HTTP_NICE);
                server.run(&stop, |path| page.respond(path))
            }
        })
        .context("starting the HTTP thread")?;

    let mut metrics = if cli.all_netns {
        Metrics::per_namespace([])
    } else {
        Metrics::single()
    };
    let _ = writeln!(
        io::stderr(),
        "tcpscope: serving Prometheus metrics at {scheme}://{bound}/metrics"
    );
    if let Some(reminder) = exposure_reminder(bound, has_password) {
        let _ = writeln!(io::stderr(), "{reminder}");
    }

    let mut table = ListenerTable::default();
    let mut close_wait = CloseWait::new(cli.processes)?;
    let mut cgroup_names = CgroupNames::open();
    // Each namespace's failures: said once, then with a count now and then.
    let mut repeats = Repeats::new(REPEAT_EVERY);
    let mut last_render: Option<Instant> = None;
    let mut changed = false;
    while !http.is_finished() {
        close_wait.take_scans();
        match source.wait()? {
            Next::Poll { netns, at, message } => {
                match message {
                    Message::Update(update) => {
                        repeats.recovered(netns);
                        metrics.observe(netns, &update, &mut table);
                        close_wait.observe(netns, &update, &mut metrics);
                        observe_cgroups(netns, &update, &mut cgroup_names, &mut metrics);
                    }
                    Message::PollFailed(error) => {
                        metrics.poll_failed(netns);
                        let place = if cli.all_netns {
                            format!(" in network namespace {netns}")
                        } else {
                            String::new()
                        };
                        match repeats.failed(netns, &error, at) {
                            Some(1) => {
                                let _ =
                                    writeln!(io::stderr(), "tcpscope: poll failed{place}: {error}");
                            }
                            Some(times) => {
                                let _ = writeln!(
                                    io::stderr(),
                                    "tcpscope: poll failed{place} {times} times since this was last said: {error}"
                                );
                            }
                            None => {}
                        }
                    }
                }
                changed = true;
            }
            Next::Namespaces(followed) => {
                follow_namespaces(followed, &mut metrics, &mut close_wait);
                changed = true;
            }
            // Scrapes are answered from the rendered page, so they never wait on the
            // disk; a recording that fails stops, and serving goes on.
            Next::RecordingStopped(error) => {
                let _ = writeln!(
                    io::stderr(),
                    "tcpscope: recording stopped: {error}; serving goes on"
                );
            }
            Next::Idle => {}
            Next::Signal(_) | Next::End => break,
        }
        // With many namespaces polls arrive all the time: render at most every
        // RENDER_EVERY, not once per namespace's poll.
        let due = last_render.is_none_or(|at| at.elapsed() >= RENDER_EVERY);
        if changed && due && metrics.has_polled() {
            page.replace(metrics.render());
            last_render = Some(Instant::now());
            changed = false;
        }
    }

    stop.store(true, Ordering::Relaxed);
    drop(source);
    http.join()
        .map_err(|_| anyhow!("the HTTP thread panicked"))?
        .context("serving HTTP")
}

/// Shows the namespaces that appeared since the last look, and stops showing those no
/// process is in any more. A namespace that cannot be entered is left out with a note;
/// the others go on.
fn follow_namespaces(followed: Followed, metrics: &mut Metrics, close_wait: &mut CloseWait) {
    followed.note("polling");
    for namespace in followed.started {
        metrics.add(namespace);
    }
    for inode in followed.gone {
        metrics.remove(inode);
        close_wait.forget(inode);
    }
}

/// CLOSE_WAIT sockets followed across polls, per namespace, and with `-p` the process
/// scans that name their owners, done on a worker thread of their own.
struct CloseWait {
    watchers: HashMap<u64, LeakWatcher>,
    scans: Option<Scans>,
}

struct Scans {
    requests: SyncSender<()>,
    results: Receiver<Result<ProcessMap, String>>,
    latest: Option<ProcessMap>,
    in_flight: bool,
    last_request: Option<Instant>,
    said_partial: bool,
}

impl CloseWait {
    /// Starts the scanning thread when `processes` (`-p`) asks for owners.
    fn new(processes: bool) -> anyhow::Result<CloseWait> {
        let scans = if processes {
            let (requests, inbox) = mpsc::sync_channel::<()>(1);
            let (answers, results) = mpsc::sync_channel(1);
            thread::Builder::new()
                .name("tcpscope-processes".into())
                .spawn(move || {
                    for () in inbox {
                        let scan = ProcessMap::scan().map_err(|error| format!("{error:#}"));
                        if answers.send(scan).is_err() {
                            return;
                        }
                    }
                })
                .context("starting the process scanning thread")?;
            Some(Scans {
                requests,
                results,
                latest: None,
                in_flight: false,
                last_request: None,
                said_partial: false,
            })
        } else {
            None
        };
        Ok(CloseWait {
            watchers: HashMap::new(),
            scans,
        })
    }

    /// Feeds namespace `key`'s poll to its watcher and the reading to the metrics, and
    /// asks for a scan when owners are missing and the last one is old enough.
    fn observe(&mut self, key: u64, update: &Update, metrics: &mut Metrics) {
        // CLOSE_WAIT is read from full dumps only: a fast-lane poll carries the same
        // table again.
        if !update.pace.is_full() {
            return;
        }
        let sockets = &update.snapshot.sockets;
        let processes = self.scans.as_ref().and_then(|scans| scans.latest.as_ref());
        let reading = self
            .watchers
            .entry(key)
            .or_insert_with(|| LeakWatcher::new(DEFAULT_WINDOW))
            .observe(update.snapshot.taken_at, sockets, |inode| {
                let process = processes?.lookup(inode)?;
                Some(Owner {
                    pid: process.pid,
                    name: process.name.clone(),
                })
            });
        metrics.set_close_wait(key, &reading);
        let Some(scans) = &mut self.scans else {
            return;
        };
        let due = scans
            .last_request
            .is_none_or(|at| at.elapsed() >= LEAK_SCAN_EVERY);
        if !scans.in_flight
            && due
            && leaks::owners_unknown(sockets, |inode| {
                scans
                    .latest
                    .as_ref()
                    .is_some_and(|map| map.lookup(inode).is_some())
            })
            && scans.requests.try_send(()).is_ok()
        {
            scans.in_flight = true;
            scans.last_request = Some(Instant::now());
        }
    }

    /// Takes in a finished scan, if one came; its owners show from the next poll on.
    fn take_scans(&mut self) {
        let Some(scans) = &mut self.scans else {
            return;
        };
        let Ok(result) = scans.results.try_recv() else {
            return;
        };
        scans.in_flight = false;
        match result {
            Ok(map) => {
                if map.is_partial() && !scans.said_partial {
                    scans.said_partial = true;
                    let _ = writeln!(
                        io::stderr(),
                        "tcpscope: note: {}; CLOSE_WAIT sockets only they hold count per port only",
                        map.partial_summary()
                    );
                }
                scans.latest = Some(map);
            }
            Err(error) => {
                let _ = writeln!(io::stderr(), "tcpscope: process scan failed: {error}");
            }
        }
    }

    /// Forgets a namespace no longer polled.
    fn forget(&mut self, key: u64) {
        self.watchers.remove(&key);
    }
}

/// Counts namespace `key`'s sockets per cgroup for the metrics, naming cgroups not seen
/// before with one walk of the cgroup2 tree, and names the cgroup behind each finding
/// where one holds most of its sockets.
fn observe_cgroups(key: u64, update: &Update, names: &mut CgroupNames, metrics: &mut Metrics) {
    let rows = group::group(GroupKey::Cgroup, &update.snapshot.sockets, |_| None);
    names.learn(rows.iter().filter_map(|row| match row.group {
        Group::Cgroup(id) => Some(id),
        _ => None,
    }));
    metrics.place_findings(key, &update.snapshot.sockets, names);
    let names = GroupNames {
        cgroups: Some(names),
        processes: None,
    };
    metrics.set_cgroups(key, &rows, names);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_endpoint_beyond_loopback_without_a_password_gets_the_reminder() {
        let every: SocketAddr = "[::]:9464".parse().unwrap();
        let reminder = exposure_reminder(every, false).unwrap();
        assert!(reminder.contains("no authentication"), "{reminder}");
        assert_eq!(reminder.lines().count(), 1);
        assert_eq!(exposure_reminder(every, true), None);
        for loopback in ["127.0.0.1:9464", "[::1]:9464", "127.0.0.2:1"] {
            assert_eq!(exposure_reminder(loopback.parse().unwrap(), false), None);
        }
        assert!(exposure_reminder("10.0.0.5:9464".parse().unwrap(), false).is_some());
    }
}
