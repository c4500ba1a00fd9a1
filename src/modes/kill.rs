//! The `--kill` mode: find the sockets an expression matches and close them with
//! `SOCK_DESTROY`, as `ss -K` does, or (without `--yes`) print which it would close.
//!
//! A LISTEN socket is closed only when the expression names the LISTEN state itself
//! (`state listen`, not a group such as `all`): closing a listener takes a service
//! down, which a filter written for connections should never do by accident.
//!
//! stdout carries the table of sockets (to be closed, or closed); what happened is
//! said on stderr. Exit status: 0 when something matched (and, with `--yes`, was
//! closed), 1 when nothing matched, 2 on an error, including a kernel or a process
//! that may not close sockets.

use std::io::{self, Write};

use anyhow::{Context, anyhow};

use super::{Outcome, scan_processes};
use crate::cli::Cli;
use crate::kernel::destroy::{DestroyError, Destroyer};
use crate::kernel::sockdiag::SockDiag;
use crate::report::endpoint::Endpoint;
use crate::report::table;
use crate::snapshot::SocketRecord;
use crate::tcp::State;

/// Runs `--kill`, writing the table to `out` and messages to stderr.
pub fn run(cli: &Cli, out: &mut impl Write) -> anyhow::Result<Outcome> {
    let expression = cli
        .kill
        .as_ref()
        .ok_or_else(|| anyhow!("--kill needs an expression"))?;
    let filter = cli.filter().and(expression.filter());
    let mut diag = SockDiag::open().context("opening the netlink sock_diag socket")?;
    let snapshot = diag
        .snapshot(&filter)
        .context("dumping TCP sockets over netlink sock_diag")?;
    let listeners_named = expression.named_states.contains(State::Listen);
    let Targets {
        close,
        listeners_kept,
    } = Targets::choose(snapshot.sockets, listeners_named);

    if listeners_kept > 0 {
        note(&format!(
            "{listeners_kept} listening socket{} matched and {} left alone; name the state (state listen and …) to close listeners",
            plural(listeners_kept),
            if listeners_kept == 1 { "is" } else { "are" },
        ));
    }
    if close.is_empty() {
        note("no socket matches; nothing to close");
        return Ok(Outcome::NothingMatched);
    }
    let processes = cli.processes.then(scan_processes).transpose()?;
    if !cli.yes {
        table::write_table(out, &close, processes.as_ref())?;
        note(&format!(
            "dry run: {} socket{} would be closed; add --yes to close {}",
            close.len(),
            plural(close.len()),
            if close.len() == 1 { "it" } else { "them" }
        ));
        return Ok(Outcome::Matched);
    }

    let mut destroyer = Destroyer::open().context("opening a netlink socket for SOCK_DESTROY")?;
    let mut closed = Vec::with_capacity(close.len());
    let mut gone = 0;
    for socket in &close {
        match destroyer.destroy(socket) {
            Ok(()) => closed.push(*socket),
            Err(DestroyError::Gone) => gone += 1,
            Err(error) => {
                // Say what was closed before the failure, then fail.
                if !closed.is_empty() {
                    table::write_table(out, &closed, processes.as_ref())?;
                    out.flush()?;
                }
                return Err(error).with_context(|| {
                    format!(
                        "closing {} {} → {}",
                        socket.state,
                        Endpoint(socket.local_addr, socket.local_port),
                        Endpoint(socket.remote_addr, socket.remote_port)
                    )
                });
            }
        }
    }
    if gone > 0 {
        note(&format!(
            "{gone} socket{} closed by {} before tcpscope got to {}",
            plural(gone),
            if gone == 1 { "itself" } else { "themselves" },
            if gone == 1 { "it" } else { "them" }
        ));
    }
    if closed.is_empty() {
        return Ok(Outcome::NothingMatched);
    }
    table::write_table(out, &closed, processes.as_ref())?;
    note(&format!(
        "closed {} socket{}",
        closed.len(),
        plural(closed.len())
    ));
    Ok(Outcome::Matched)
}

/// The sockets to close, and how many listeners matched but are kept.
#[derive(Debug, PartialEq, Eq)]
struct Targets {
    close: Vec<SocketRecord>,
    listeners_kept: usize,
}

impl Targets {
    fn choose(mut sockets: Vec<SocketRecord>, listeners_named: bool) -> Targets {
        let before = sockets.len();
        if !listeners_named {
            sockets.retain(|socket| socket.state != State::Listen);
        }
        Targets {
            listeners_kept: before - sockets.len(),
            close: sockets,
        }
    }
}

fn note(message: &str) {
    let _ = writeln!(io::stderr(), "tcpscope: {message}");
}

fn plural(count: usize) -> &'static str {
    if count == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::fixtures;

    fn sockets() -> Vec<SocketRecord> {
        vec![
            fixtures::socket(State::Listen, "0.0.0.0", 8080, "0.0.0.0", 0),
            fixtures::socket(State::Established, "10.0.0.1", 8080, "10.0.0.2", 5000),
            fixtures::socket(State::CloseWait, "10.0.0.1", 8080, "10.0.0.3", 5001),
        ]
    }

    #[test]
    fn listeners_are_kept_unless_the_expression_names_listen() {
        let targets = Targets::choose(sockets(), false);
        assert_eq!(targets.listeners_kept, 1);
        assert_eq!(targets.close.len(), 2);
        assert!(targets.close.iter().all(|s| s.state != State::Listen));
    }

    #[test]
    fn a_named_listen_state_lets_listeners_be_closed() {
        let targets = Targets::choose(sockets(), true);
        assert_eq!(targets.listeners_kept, 0);
        assert_eq!(targets.close.len(), 3);
    }
}
