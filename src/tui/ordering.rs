//! The view's worker: it orders the connections table's rows (finding the first row
//! of each namespace with them), counts the Groups tab's groups (and sorts them anew
//! when there are many) and places the findings in their cgroups, so that the thread
//! that reads keys and draws never filters, sorts or groups every socket: at a million
//! sockets that takes longer than a key may wait. It takes [`RowsJob`]s, [`GroupsJob`]s
//! and [`PlacingJob`]s and hands back [`OrderedRows`], [`CountedGroups`] and
//! [`Placed`]; of the jobs waiting, only the newest of each lane (and the newest
//! placing) is worth running. It also frees the snapshots the view let go of (about
//! 4 ms at a million sockets), which would otherwise be freed on the thread that draws.
//!
//! What it spends, in its own thread's CPU time, goes to `charge`: the live view counts
//! it in the poller's CPU budget.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::mpsc::{self, Sender};
use std::thread;
use std::time::Duration;

use anyhow::Context;

use super::connections::{OrderedRows, RowsJob};
use super::groups::{CountedGroups, GroupsJob};
use super::placing::{Placed, PlacingJob};
use crate::kernel::sched::thread_cpu_time;
use crate::snapshot::Snapshot;

/// What the worker is asked to do.
enum Work {
    Order(Box<RowsJob>),
    Count(Box<GroupsJob>),
    Place(Box<PlacingJob>),
    Release(Arc<Snapshot>),
}

/// What the worker hands back.
#[derive(Debug)]
pub enum Finished {
    Rows(OrderedRows),
    Groups(Box<CountedGroups>),
    Placed(Box<Placed>),
}

/// Where the view sends the jobs; the worker ends when this is dropped or `deliver`
/// says nobody listens any more.
pub struct RowOrderer {
    jobs: Sender<Work>,
}

impl RowOrderer {
    /// A worker that orders rows only (it is never asked to count groups).
    pub fn spawn(deliver: impl Fn(OrderedRows) -> bool + Send + 'static) -> anyhow::Result<Self> {
        Self::spawn_charging(
            move |finished| match finished {
                Finished::Rows(rows) => deliver(rows),
                Finished::Groups(_) | Finished::Placed(_) => true,
            },
            |_| {},
        )
    }

    /// A worker that hands back what it finished to `deliver`, and tells `charge` the
    /// CPU time each batch of work took.
    pub fn spawn_charging(
        deliver: impl Fn(Finished) -> bool + Send + 'static,
        charge: impl Fn(Duration) + Send + 'static,
    ) -> anyhow::Result<Self> {
        let (jobs, inbox) = mpsc::channel::<Work>();
        thread::Builder::new()
            .name("tcpscope-rows".into())
            .spawn(move || {
                while let Ok(first) = inbox.recv() {
                    let started = thread_cpu_time();
                    let mut waiting = Vec::new();
                    let mut counting = Vec::new();
                    let mut placing = None;
                    for work in std::iter::once(first).chain(inbox.try_iter()) {
                        match work {
                            Work::Order(job) => waiting.push(*job),
                            Work::Count(job) => counting.push(job),
                            Work::Place(job) => placing = Some(job),
                            Work::Release(snapshot) => drop(snapshot),
                        }
                    }
                    let mut lanes = HashSet::new();
                    let newest = waiting
                        .into_iter()
                        .rev()
                        .filter(|job| lanes.insert(job.lane));
                    for job in newest {
                        if !deliver(Finished::Rows(job.run())) {
                            return;
                        }
                    }
                    // The findings first: they are on the overview, which shows first.
                    if let Some(job) = placing
                        && !deliver(Finished::Placed(Box::new(job.run())))
                    {
                        return;
                    }
                    let mut lanes = HashSet::new();
                    let newest = counting
                        .into_iter()
                        .rev()
                        .filter(|job| lanes.insert(job.lane));
                    for job in newest {
                        if !deliver(Finished::Groups(Box::new(job.run()))) {
                            return;
                        }
                    }
                    charge(thread_cpu_time().saturating_sub(started));
                }
            })
            .context("starting the tcpscope-rows thread")?;
        Ok(RowOrderer { jobs })
    }

    pub fn order(&self, job: RowsJob) {
        let _ = self.jobs.send(Work::Order(Box::new(job)));
    }

    /// Counts a poll's groups, or sorts the groups shown, on the worker.
    pub fn count(&self, job: Box<GroupsJob>) {
        let _ = self.jobs.send(Work::Count(job));
    }

    /// Places a poll's findings on the worker.
    pub fn place(&self, job: Box<PlacingJob>) {
        let _ = self.jobs.send(Work::Place(job));
    }

    /// Frees `snapshot` on the worker (if nothing else holds it by then).
    pub fn release(&self, snapshot: Arc<Snapshot>) {
        let _ = self.jobs.send(Work::Release(snapshot));
    }
}
