//! Outputs built from snapshots and transitions: the `--grep` table, the `--json`
//! document and the `--watch` stream. Pure: they take values and write text.

pub mod endpoint;
pub mod json;
pub mod stream;
pub mod table;
