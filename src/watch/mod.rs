//! The analyses built on the model, for the live view: for now the bounded history of
//! counts and transitions it draws.
//!
//! Everything here is pure: it takes snapshots and transitions, never the kernel, the
//! clock or the terminal.

pub mod history;
pub mod ring;

pub use history::{Event, History, Poll};
pub use ring::Ring;
