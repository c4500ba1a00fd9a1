//! The live layer's lower half: a poll as data ([`update`]), the poller thread that
//! takes one every interval ([`poller`]), one poller per network namespace
//! ([`per_namespace`], with [`namespaces`] choosing them and [`rounds`] putting their polls
//! together for the view), and the one [`source`] every live mode starts from, live or
//! replayed ([`replay`]).
//!
//! Nothing here writes an output or knows a mode: polls go out as values.

pub mod budget;
pub mod info;
pub mod namespaces;
pub(crate) mod per_namespace;
pub(crate) mod poller;
pub mod replay;
pub(crate) mod rounds;
pub(crate) mod source;
pub mod update;

pub use poller::TakenIn;
pub use source::{Control, LiveConfig, Next, OWN, Source, Stopping};
pub use update::{EventStatus, Message, Pace, Update};
