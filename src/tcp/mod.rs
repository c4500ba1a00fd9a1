//! The TCP protocol as data: states, their names and groups.

pub mod state;

pub use state::{Group, State, StateSet, UnknownState};
