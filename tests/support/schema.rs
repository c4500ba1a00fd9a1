//! The JSON Schemas shipped in assets/, as the tests check real output against them:
//! the `--json` document's and the `--watch --json` stream's.

use anyhow::{Context, Result};
use jsonschema::Validator;
use serde_json::Value;

/// `assets/tcpscope.schema.json`: one `--json` document.
pub const DOCUMENT: &str = include_str!("../../assets/tcpscope.schema.json");

/// `assets/tcpscope-stream.schema.json`: one line of `--watch --json`.
pub const STREAM: &str = include_str!("../../assets/tcpscope-stream.schema.json");

/// A schema's text, compiled.
pub fn validator(schema: &str) -> Result<Validator> {
    let schema: Value = serde_json::from_str(schema).context("the schema is no JSON")?;
    jsonschema::validator_for(&schema).context("compiling the schema")
}

/// What `validator` finds wrong with `value`, one message each; empty when it is valid.
pub fn errors(validator: &Validator, value: &Value) -> Vec<String> {
    validator
        .iter_errors(value)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect()
}
