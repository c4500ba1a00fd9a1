//! Outputs built from snapshots and transitions: the `--grep` table, the `--json`
//! document, the `--watch` stream and the `--serve` metrics. Pure: they take values and write text.

pub mod endpoint;
pub mod escape;
pub mod json;
pub mod metrics;
pub mod stream;
pub mod table;
