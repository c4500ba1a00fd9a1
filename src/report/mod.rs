//! Outputs built from snapshots and transitions: the `--grep` table, the `--json`
//! document, the `--watch` stream, the `--serve` metrics and the `--check` status line.
//! Pure: they take values and write text.

pub mod endpoint;
pub mod escape;
pub mod json;
pub mod metrics;
pub mod plugin;
pub mod stream;
pub mod table;
