//! What tcpscope reports, as the lab's entries, so that it compares with what `ss`
//! lists: a socket record from the library, or a socket of the `--json` document.
//!
//! The lab's oracle shares no code with tcpscope; these conversions are the one place
//! where tcpscope's names (its states, its JSON keys) meet the lab's.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use serde_json::Value;
use tcpscope::snapshot::SocketRecord;
use tcpscope::tcp::State;

use super::lab::{Entry, TcpState};

/// The lab's view of a record: its state and 4-tuple, a listener without a peer.
pub fn of_record(record: &SocketRecord) -> Result<Entry> {
    let state = TcpState::from_kernel(record.state.kernel_number())
        .context("a state the lab does not know")?;
    let local = SocketAddr::new(record.local_addr, record.local_port);
    let peer = (record.state != State::Listen)
        .then(|| SocketAddr::new(record.remote_addr, record.remote_port));
    Ok(Entry { state, local, peer })
}

/// The lab's view of records, sorted as `ss`'s entries are compared.
pub fn of_records(records: &[SocketRecord]) -> Result<Vec<Entry>> {
    let mut entries = records.iter().map(of_record).collect::<Result<Vec<_>>>()?;
    entries.sort();
    Ok(entries)
}

/// The sockets of a `tcpscope --json` document, sorted.
pub fn of_json(document: &Value) -> Result<Vec<Entry>> {
    let sockets = document["sockets"].as_array().context("no sockets array")?;
    let mut entries = Vec::new();
    for socket in sockets {
        let text = |key: &str| {
            socket[key]
                .as_str()
                .with_context(|| format!("{key} missing"))
        };
        let number = |key: &str| {
            socket[key]
                .as_u64()
                .with_context(|| format!("{key} missing"))
        };
        let state = State::parse(text("state")?).context("unknown state in JSON")?;
        let local = SocketAddr::new(text("local_addr")?.parse()?, number("local_port")? as u16);
        let peer = SocketAddr::new(text("remote_addr")?.parse()?, number("remote_port")? as u16);
        entries.push(Entry {
            state: TcpState::from_kernel(state.kernel_number()).context("lab state")?,
            local,
            peer: (state != State::Listen).then_some(peer),
        });
    }
    entries.sort();
    Ok(entries)
}

/// tcpscope's name for a state the lab built.
pub fn state_of(state: TcpState) -> State {
    let number = (1..=11)
        .find(|n| TcpState::from_kernel(*n) == Some(state))
        .expect("every lab state has a kernel number");
    State::from_kernel(number).expect("lab states are TCP states")
}

/// Sockets per state, by tcpscope's state names, all 11 states present: what the
/// `counts` of a `--json` document should say about `entries`.
pub fn counts_of(entries: &[Entry]) -> BTreeMap<String, u64> {
    let mut counts: BTreeMap<String, u64> = State::ALL
        .iter()
        .map(|state| (state.name().to_owned(), 0))
        .collect();
    for entry in entries {
        *counts
            .entry(state_of(entry.state).name().to_owned())
            .or_default() += 1;
    }
    counts
}
