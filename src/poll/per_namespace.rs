//! One live poller per network namespace, for the modes that follow several at once
//! (`--watch`, `--serve` and the interactive view with `--all-netns`): each poller's
//! messages come tagged with its key, and [`Pollers::follow`] starts polling the
//! namespaces that appeared since the last look and stops polling those no process is
//! in and no `ip netns` name holds any more (containers started or stopped). It
//! starts no more pollers than the descriptors left can hold
//! ([`super::namespaces::room_for_namespaces`]), and says once which it left out.
//!
//! Only the walk of `/proc` ([`netns::discover`]) and entering namespaces touch the
//! system, both in [`crate::kernel::netns`]; what to do with a namespace that came or
//! went (a metric family, a line in the view) is the caller's.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::Duration;

use super::namespaces::{TOO_FEW_DESCRIPTORS, left_out, open_within, room_for_namespaces};
use super::poller::{Poller, PollerConfig, TakenIn};
use super::update::Message;
use crate::kernel::netns::{self, Discovery, NetNamespace, NetnsHandle};

/// How often `--all-netns` looks for namespaces that appeared or went.
pub const RESCAN: Duration = Duration::from_secs(5);

/// The running pollers, by key: a namespace's inode, or the caller's own key for the
/// one namespace of a run without `--all-netns`.
pub struct Pollers {
    running: HashMap<u64, Running>,
    /// Namespaces that could not be entered: not tried again.
    refused: HashSet<u64>,
    /// Namespaces left out for want of descriptors, already said: said again only if
    /// they were polled in between.
    left_out: HashSet<u64>,
    config: PollerConfig,
    sender: SyncSender<(u64, Message)>,
}

struct Running {
    poller: Poller,
    /// Kept to do more in the namespace than poll it (a tcp_info request, closing a
    /// socket); none for the caller's own.
    netns: Option<Arc<NetnsHandle>>,
}

/// What [`Pollers::follow`] changed.
#[derive(Debug, Default)]
pub struct Followed {
    /// Namespaces polled from now on.
    pub started: Vec<NetNamespace>,
    /// Namespaces that could not be entered, with why; they are not tried again.
    pub refused: Vec<(NetNamespace, String)>,
    /// Namespaces not polled because the descriptors left would not hold them, not
    /// said before; they are tried again at the next look.
    pub left_out: Vec<NetNamespace>,
    /// Keys of the namespaces no longer polled: no process is in them and no
    /// `ip netns` name holds them any more.
    pub gone: Vec<u64>,
}

impl Followed {
    /// Says once on stderr which namespaces are not `doing` (a verb: `streaming`), and
    /// why: those that could not be entered, those left out for want of descriptors.
    pub fn note(&self, doing: &str) {
        for text in self.notes(doing) {
            let _ = writeln!(io::stderr(), "tcpscope: note: {text}");
        }
    }

    /// What [`Followed::note`] says, for a caller that shows it elsewhere (the view's
    /// status line).
    pub fn notes(&self, doing: &str) -> Vec<String> {
        let refused: Vec<NetNamespace> = self.refused.iter().map(|(n, _)| n.clone()).collect();
        let why = self.refused.first().map_or("", |(_, why)| why.as_str());
        [
            left_out(doing, why, &refused),
            left_out(doing, TOO_FEW_DESCRIPTORS, &self.left_out),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

impl Pollers {
    /// No pollers yet; each one's messages will go to `sender`, tagged with its key.
    pub fn new(config: PollerConfig, sender: SyncSender<(u64, Message)>) -> Pollers {
        Pollers {
            running: HashMap::new(),
            refused: HashSet::new(),
            left_out: HashSet::new(),
            config,
            sender,
        }
    }

    /// Starts polling a namespace (none: the caller's); its messages come tagged with
    /// `key`. Fails if the namespace cannot be entered.
    pub fn start(&mut self, key: u64, netns: Option<Arc<NetnsHandle>>) -> anyhow::Result<()> {
        let sender = self.sender.clone();
        let poller = Poller::spawn_in(netns.clone(), self.config.clone(), move |message| {
            sender
                .try_send((key, message))
                .map_err(|error| match error {
                    TrySendError::Full((_, message)) => TrySendError::Full(message),
                    TrySendError::Disconnected((_, message)) => TrySendError::Disconnected(message),
                })
        })?;
        self.running.insert(key, Running { poller, netns });
        Ok(())
    }

    /// Starts polling each of `handles`, keyed by its inode, and reports the
    /// namespaces `left_out` for want of descriptors (once: a later look leaves them
    /// out quietly). A namespace that cannot be entered is left out and reported; the
    /// others go on.
    pub fn start_all(
        &mut self,
        handles: Vec<Arc<NetnsHandle>>,
        left_out: Vec<NetNamespace>,
    ) -> Followed {
        let mut followed = self.start_each(handles);
        self.left_out
            .extend(left_out.iter().map(|namespace| namespace.inode));
        followed.left_out = left_out;
        followed
    }

    fn start_each(&mut self, handles: Vec<Arc<NetnsHandle>>) -> Followed {
        let mut followed = Followed::default();
        for handle in handles {
            let namespace = handle.namespace.clone();
            match self.start(namespace.inode, Some(handle)) {
                Ok(()) => followed.started.push(namespace),
                Err(error) => {
                    self.refused.insert(namespace.inode);
                    followed.refused.push((namespace, format!("{error:#}")));
                }
            }
        }
        followed
    }

    /// Walks `/proc` and `/run/netns` for the namespaces there are now and follows
    /// them (see [`Pollers::follow_discovered`]), as many as the descriptors left
    /// hold. A failed walk changes nothing.
    pub fn follow(&mut self) -> Followed {
        match netns::discover() {
            Ok(discovery) => {
                let room = room_for_namespaces(self.running.len());
                self.follow_discovered(discovery, room)
            }
            Err(_) => Followed::default(),
        }
    }

    /// Polls at most `room` of the namespaces of `discovery` not polled yet, keyed by
    /// their inode, and stops polling those it does not list. A namespace that cannot
    /// be entered, or does not fit, is reported and left out; the others go on.
    pub fn follow_discovered(&mut self, discovery: Discovery, room: usize) -> Followed {
        let present: HashSet<u64> = discovery
            .namespaces
            .iter()
            .map(|found| found.namespace.inode)
            .collect();
        let new = discovery
            .namespaces
            .into_iter()
            .filter(|found| {
                let inode = found.namespace.inode;
                !self.running.contains_key(&inode) && !self.refused.contains(&inode)
            })
            .collect();
        let (handles, left_out) = open_within(new, room);
        let mut followed = self.start_each(handles.into_iter().map(Arc::new).collect());
        for namespace in &followed.started {
            self.left_out.remove(&namespace.inode);
        }
        followed.left_out = left_out
            .into_iter()
            .filter(|namespace| self.left_out.insert(namespace.inode))
            .collect();
        self.left_out.retain(|inode| present.contains(inode));
        followed.gone = self
            .running
            .keys()
            .copied()
            .filter(|inode| !present.contains(inode))
            .collect();
        followed.gone.sort_unstable();
        for inode in &followed.gone {
            // Dropping a poller stops its thread; what it sent before stays queued.
            self.running.remove(inode);
        }
        followed
    }

    /// Changes every poller's interval from its next tick on.
    pub fn set_interval(&self, interval: Duration) {
        for running in self.running.values() {
            running.poller.set_interval(interval);
        }
    }

    /// Counts `cpu`, spent by the consumer on a poll of the namespace `key` (none:
    /// work for no one poll), in the pollers' budgets: each is charged its share, and
    /// only `key`'s counts a poll taken in. Across namespaces the view shows a round
    /// when the last namespace's poll arrives; so each poller is charged a share of
    /// every round's cost, once a round.
    pub fn charge(&self, key: Option<u64>, cpu: Duration, what: TakenIn) {
        let Ok(pollers) = u32::try_from(self.running.len()) else {
            return;
        };
        if pollers == 0 {
            return;
        }
        for (running_key, running) in &self.running {
            let counted = key.is_none_or(|key| key == *running_key);
            running.poller.charge(cpu / pollers, what, counted);
        }
    }

    /// Whether every poller's full dumps, and those of pollers started later, ask for
    /// tcp_info, from the next one on.
    pub fn set_info(&mut self, info: bool) {
        self.config.info = info;
        for running in self.running.values() {
            running.poller.set_info(info);
        }
    }

    /// The namespace polled under `key`: none for the caller's own, or a key not
    /// polled (any more).
    pub fn netns(&self, key: u64) -> Option<Arc<NetnsHandle>> {
        self.running.get(&key)?.netns.clone()
    }
}
