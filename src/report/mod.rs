//! Outputs built from snapshots and transitions: the `--grep` table, the `--json`
//! document, the `--watch` stream, the `--serve` metrics and the `--check` status line.
//! Pure: they take values and write text.

pub(crate) mod endpoint;
pub(crate) mod groups;
pub(crate) mod json;
pub(crate) mod json_socket;
pub(crate) mod metrics;
pub mod plugin;
pub(crate) mod repeats;
pub(crate) mod stream;
pub(crate) mod table;
