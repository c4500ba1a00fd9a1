//! One live poller per network namespace, for the modes that follow several at once
//! (`--watch`, `--serve` and the interactive view with `--all-netns`): each poller's
//! messages come tagged with its key, and [`Pollers::follow`] starts polling the
//! namespaces that appeared since the last look and stops polling those no process is
//! in any more (containers started or stopped).
//!
//! Only the walk of `/proc` ([`netns::discover`]) and entering namespaces touch the
//! system, both in [`crate::kernel::netns`]; what to do with a namespace that came or
//! went (a metric family, a line in the view) is the caller's.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::Duration;

use super::poller::{Poller, PollerConfig};
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
    pub refused: Vec<(u64, String)>,
    /// Keys of the namespaces no longer polled: no process is in them any more.
    pub gone: Vec<u64>,
}

impl Pollers {
    /// No pollers yet; each one's messages will go to `sender`, tagged with its key.
    pub fn new(config: PollerConfig, sender: SyncSender<(u64, Message)>) -> Pollers {
        Pollers {
            running: HashMap::new(),
            refused: HashSet::new(),
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

    /// Walks `/proc` for the namespaces processes are in now and follows them (see
    /// [`Pollers::follow_discovered`]). A failed walk changes nothing.
    pub fn follow(&mut self) -> Followed {
        match netns::discover() {
            Ok(discovery) => self.follow_discovered(discovery),
            Err(_) => Followed::default(),
        }
    }

    /// Polls the namespaces of `discovery` not polled yet, keyed by their inode, and
    /// stops polling those it does not list. A namespace that cannot be entered is
    /// reported and left out; the others go on.
    pub fn follow_discovered(&mut self, discovery: Discovery) -> Followed {
        let present: HashSet<u64> = discovery
            .namespaces
            .iter()
            .map(|handle| handle.namespace.inode)
            .collect();
        let mut followed = Followed::default();
        for handle in discovery.namespaces {
            let inode = handle.namespace.inode;
            if self.running.contains_key(&inode) || self.refused.contains(&inode) {
                continue;
            }
            let namespace = handle.namespace.clone();
            match self.start(inode, Some(Arc::new(handle))) {
                Ok(()) => followed.started.push(namespace),
                Err(error) => {
                    self.refused.insert(inode);
                    followed.refused.push((inode, format!("{error:#}")));
                }
            }
        }
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

    /// The namespace polled under `key`: none for the caller's own, or a key not
    /// polled (any more).
    pub fn netns(&self, key: u64) -> Option<Arc<NetnsHandle>> {
        self.running.get(&key)?.netns.clone()
    }
}
