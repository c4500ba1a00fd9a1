//! A full poll's work over every socket that is not the connections table's order:
//! placing each finding in the cgroup that holds most of its sockets (and naming that
//! cgroup, a walk of the cgroup2 tree when it is new), and finding the connection the
//! detail pane follows in the new snapshot. At a million sockets that is a pass per
//! finding and a search, longer than a key may wait, so the view hands it to its worker
//! ([`super::ordering`]) as a [`PlacingJob`] and takes the [`Placed`] answer in when it
//! comes back; answers for an older poll are dropped.
//!
//! Until the answer comes, the findings shown keep the cgroups placed at the previous
//! poll where the incident is the same ([`Places::reapply`]), so that a finding's
//! `(in nginx.service)` does not come and go with each poll.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::kernel::cgroups::CgroupNames;
use crate::report::groups::{dominant_cgroups, name_places};
use crate::snapshot::{Endpoints, Snapshot, SocketRecord};
use crate::watch::findings::{Finding, Kind, Subject};

/// Numbers every placing, so that the answer for an older poll is never shown.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

/// A new number for a [`PlacingJob`] and the model waiting for it.
pub fn next_generation() -> u64 {
    NEXT_GENERATION.fetch_add(1, Ordering::Relaxed)
}

/// What placing a poll's findings needs, to be done off the view's thread.
#[derive(Debug, Clone)]
pub struct PlacingJob {
    pub generation: u64,
    pub snapshot: Arc<Snapshot>,
    /// The findings as the poll raised them, unplaced.
    pub findings: Vec<Finding>,
    pub cgroups: Arc<CgroupNames>,
    /// The connection the detail pane follows, if open.
    pub follow: Option<Follow>,
}

/// The connection the detail pane follows: its endpoints, in the namespace whose
/// sockets are at `span` in the snapshot (`netns` across namespaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Follow {
    pub endpoints: Endpoints,
    pub netns: Option<u64>,
    pub span: Range<usize>,
}

/// Two jobs are the same when they are for the same poll.
impl PartialEq for PlacingJob {
    fn eq(&self, other: &PlacingJob) -> bool {
        self.generation == other.generation
    }
}

impl Eq for PlacingJob {}

/// A [`PlacingJob`]'s answer.
#[derive(Debug, Clone)]
pub struct Placed {
    pub generation: u64,
    /// The job's findings, and the cgroup of each (see [`dominant_cgroups`]).
    pub findings: Vec<Finding>,
    pub places: Vec<Option<u64>>,
    /// The names the job knew, and those it learnt.
    pub cgroups: Arc<CgroupNames>,
    /// The followed connection, and its record in the snapshot if it still holds it.
    pub followed: Option<(Follow, Option<SocketRecord>)>,
}

impl PlacingJob {
    /// A pass over every socket for the listeners, then one per finding; a walk of
    /// the cgroup2 tree if a cgroup is new; a search of the followed connection's
    /// namespace.
    pub fn run(mut self) -> Placed {
        let followed = self.follow.map(|follow| {
            let found = self
                .snapshot
                .sockets
                .get(follow.span.clone())
                .unwrap_or(&[])
                .iter()
                .find(|socket| socket.endpoints() == follow.endpoints)
                .copied();
            (follow, found)
        });
        let places = dominant_cgroups(&self.findings, &self.snapshot.sockets);
        let ids = || places.iter().flatten().copied();
        if ids().any(|id| id != 0 && !self.cgroups.has_looked_for(id)) {
            Arc::make_mut(&mut self.cgroups).learn(ids());
        }
        Placed {
            generation: self.generation,
            findings: self.findings,
            places,
            cgroups: self.cgroups,
            followed,
        }
    }
}

/// The cgroups the latest answer placed findings in, by incident (kind, subject and
/// namespace), to place the next poll's findings with until its own answer comes.
#[derive(Debug, Clone, Default)]
pub struct Places(Vec<(Kind, Subject, Option<Arc<str>>, u64)>);

impl Places {
    /// Remembers where `findings` were placed.
    pub fn of(findings: &[Finding], places: &[Option<u64>]) -> Places {
        Places(
            findings
                .iter()
                .zip(places)
                .filter_map(|(finding, place)| {
                    let id = (*place)?;
                    Some((
                        finding.kind,
                        finding.subject.clone(),
                        finding.netns.clone(),
                        id,
                    ))
                })
                .collect(),
        )
    }

    /// `findings` (unplaced) named with the cgroups remembered for the same incidents;
    /// a finding new since is left unplaced. Work in the number of findings only.
    pub fn reapply(&self, findings: &[Finding], names: &CgroupNames) -> Vec<Finding> {
        let places: Vec<Option<u64>> = findings
            .iter()
            .map(|finding| {
                self.0
                    .iter()
                    .find(|(kind, subject, netns, _)| {
                        *kind == finding.kind
                            && *subject == finding.subject
                            && *netns == finding.netns
                    })
                    .map(|(.., id)| *id)
            })
            .collect();
        let mut shown = findings.to_vec();
        name_places(&mut shown, &places, names);
        shown
    }
}
