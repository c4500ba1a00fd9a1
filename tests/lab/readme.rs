//! What README.md claims, checked against the truth, so that it cannot drift unseen:
//! the number of polls in the demo recording (read with tcpscope's own reader), the
//! JSON document's field lists against its schema, and the stream's type table against
//! the stream's schema. These need no privileges.

use std::collections::BTreeSet;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use tcpscope::poll::replay::Replaying;
use tcpscope::watch::Thresholds;
use tcpscope::watch::findings::FindingThresholds;

const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/synflood.rec");
const DOCUMENT_SCHEMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/tcpscope.schema.json");
const STREAM_SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/tcpscope-stream.schema.json"
);

/// The README with every run of white space made one space, so that a sentence is
/// found whatever its line breaks.
fn readme() -> Result<String> {
    let text = std::fs::read_to_string(README).context("reading README.md")?;
    Ok(text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The README's table row whose first cell is `first` (as written, backticks and all).
fn row(readme_lines: &str, first: &str) -> Result<String> {
    let start = format!("| {first} |");
    readme_lines
        .lines()
        .find(|line| line.starts_with(&start))
        .map(str::to_owned)
        .with_context(|| format!("README.md has no table row {start}"))
}

fn schema(path: &str) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {path}"))
}

/// The property names of the object at `pointer` in `schema`.
fn properties(schema: &Value, pointer: &str) -> Result<BTreeSet<String>> {
    let object = schema
        .pointer(pointer)
        .and_then(|object| object.get("properties"))
        .and_then(Value::as_object)
        .with_context(|| format!("the schema has no properties at {pointer}"))?;
    Ok(object.keys().cloned().collect())
}

/// The names among `fields` that `text` does not name in backticks (an array as
/// `name[]` too).
fn unnamed<'a>(fields: &'a BTreeSet<String>, text: &str, except: &[&str]) -> Vec<&'a str> {
    let named = |field: &str| {
        text.contains(&format!("`{field}`")) || text.contains(&format!("`{field}[]`"))
    };
    fields
        .iter()
        .map(String::as_str)
        .filter(|field| !except.contains(field) && !named(field))
        .collect()
}

#[test]
fn the_demo_recording_holds_as_many_polls_as_the_readme_says() -> Result<()> {
    let (polls, _) = Replaying::open(
        DEMO.as_ref(),
        None,
        Thresholds::default(),
        FindingThresholds::default(),
    )
    .and_then(Replaying::read_to_end)?;
    let readme = readme()?;
    let (_, after) = readme
        .split_once("The demo recording (")
        .context("README.md no longer says how many polls the demo recording holds")?;
    let said = after
        .split_once(" polls")
        .and_then(|(count, _)| count.parse::<usize>().ok())
        .with_context(|| format!("no poll count after 'The demo recording (': {after:.40}"))?;
    ensure!(
        said == polls.len(),
        "README.md says the demo recording holds {said} polls; assets/synflood.rec holds {}",
        polls.len()
    );
    Ok(())
}

#[test]
fn every_field_of_the_json_documents_objects_is_in_the_readmes_field_lists() -> Result<()> {
    let text = std::fs::read_to_string(README)?;
    let readme = readme()?;
    let schema = schema(DOCUMENT_SCHEMA)?;
    // `netns` is added with --all-netns, and said in its section.
    ensure!(
        readme.contains("adds `netns` to each socket and listener"),
        "README.md's --all-netns section no longer says which objects gain netns"
    );
    let namespaces = readme
        .split_once("a `namespaces[]` array with each namespace's")
        .and_then(|(_, after)| after.split_once(';'))
        .map(|(fields, _)| fields.to_owned())
        .context("README.md's --all-netns section no longer lists the namespaces' fields")?;
    for (object, documented, except) in [
        (
            "/$defs/listener",
            row(&text, "`syn_watch`")?,
            &["netns"][..],
        ),
        ("/$defs/socket", row(&text, "`sockets[]`")?, &["netns"]),
        ("/$defs/tcp_info", row(&text, "`sockets[]`")?, &[]),
        ("/properties/kernel", row(&text, "`kernel`")?, &[]),
        (
            "/properties/close_wait_leaks",
            row(&text, "`close_wait_leaks`")?,
            &[],
        ),
        ("/$defs/namespace", namespaces, &[]),
    ] {
        let fields = properties(&schema, object)?;
        let missing = unnamed(&fields, &documented, except);
        ensure!(
            missing.is_empty(),
            "README.md's field list for {object} does not name {missing:?}"
        );
    }
    Ok(())
}

#[test]
fn every_line_type_of_the_stream_has_a_row_in_the_readmes_type_table() -> Result<()> {
    let text = std::fs::read_to_string(README)?;
    let schema = schema(STREAM_SCHEMA)?;
    let lines = schema["oneOf"]
        .as_array()
        .context("the stream schema has no oneOf")?;
    let mut types = Vec::new();
    for line in lines {
        let reference = line["$ref"].as_str().context("a oneOf without $ref")?;
        let pointer = reference.trim_start_matches('#');
        let kind = schema
            .pointer(&format!("{pointer}/properties/type/const"))
            .and_then(Value::as_str)
            .with_context(|| format!("{reference} has no constant type"))?;
        types.push(kind.to_owned());
    }
    ensure!(types.len() >= 6, "too few line types: {types:?}");
    let table = text
        .split_once("| `type` | fields |")
        .map(|(_, after)| after)
        .context("README.md has no table of the stream's line types")?;
    let table: String = table
        .lines()
        .skip(1)
        .take_while(|line| line.starts_with('|'))
        .collect::<Vec<_>>()
        .join("\n");
    let missing: Vec<&String> = types
        .iter()
        .filter(|kind| row(&table, &format!("`{kind}`")).is_err())
        .collect();
    ensure!(
        missing.is_empty(),
        "README.md's stream type table has no row for {missing:?}"
    );
    Ok(())
}
