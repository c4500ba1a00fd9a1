//! One-shot outputs built from a snapshot: the `--grep` table and the `--json`
//! document. Pure: they take values and write text.

pub mod endpoint;
pub mod json;
pub mod table;
