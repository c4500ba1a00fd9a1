//! The worker that orders the connections table's rows, so that the thread that reads
//! keys and draws never filters or sorts every socket: at a million sockets that takes
//! longer than a key may wait. It takes [`RowsJob`]s and hands back [`OrderedRows`];
//! of the jobs waiting, only the newest of each lane is worth running.

use std::collections::HashSet;
use std::sync::mpsc::{self, Sender};
use std::thread;

use anyhow::Context;

use super::connections::{OrderedRows, RowsJob};

/// Where the view sends the jobs; the worker ends when this is dropped or `deliver`
/// says nobody listens any more.
pub struct RowOrderer {
    jobs: Sender<RowsJob>,
}

impl RowOrderer {
    pub fn spawn(deliver: impl Fn(OrderedRows) -> bool + Send + 'static) -> anyhow::Result<Self> {
        let (jobs, inbox) = mpsc::channel::<RowsJob>();
        thread::Builder::new()
            .name("tcpscope-rows".into())
            .spawn(move || {
                while let Ok(first) = inbox.recv() {
                    let waiting: Vec<RowsJob> =
                        std::iter::once(first).chain(inbox.try_iter()).collect();
                    let mut lanes = HashSet::new();
                    let newest = waiting
                        .into_iter()
                        .rev()
                        .filter(|job| lanes.insert(job.lane));
                    for job in newest {
                        if !deliver(job.run()) {
                            return;
                        }
                    }
                }
            })
            .context("starting the tcpscope-rows thread")?;
        Ok(RowOrderer { jobs })
    }

    pub fn order(&self, job: RowsJob) {
        let _ = self.jobs.send(job);
    }
}
