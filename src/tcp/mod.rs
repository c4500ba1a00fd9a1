//! The TCP protocol as data: states, their names and groups, and the state machine that
//! says which state may follow which.

pub(crate) mod machine;
pub(crate) mod state;

pub use machine::{Path, is_legal, shortest_path};
pub use state::{Group, State, StateSet, UnknownState};
