//! What the tests share: the lab (private network namespaces, the `ss` oracle), the ways
//! of running the built binary (to its end, as a stream, behind a pseudo-terminal, as a
//! metrics server, under refused system calls) and the conversions that let what
//! tcpscope reports be compared with what `ss` lists.
//!
//! The `lab` and `soak` test binaries and every benchmark include this once (with
//! `#[path]`: the benchmarks must be binaries of their own); none of it is a test itself.

// Each binary that includes this uses only part of it (a benchmark needs the lab, not the
// pseudo-terminal); without this each would warn about the parts it happens not to use.
#![allow(dead_code)]

pub mod dump;
pub mod entries;
pub mod fault;
pub mod lab;
pub mod pty;
pub mod schema;
pub mod scrape;
pub mod stream;
pub mod usage;

use std::process::{Command, ExitCode, Output, Stdio};

use anyhow::{Context, Result, ensure};
use serde_json::Value;

/// The binary under test, as cargo built it for this test run. Tests that run it under
/// another program (`setpriv`, `strace`, `unshare -n`) pass this path.
pub const TCPSCOPE: &str = env!("CARGO_BIN_EXE_tcpscope");

/// `tcpscope ARGS`, for the caller to start, with stdin closed: tcpscope reads no input
/// but its terminal's, which a test gives it explicitly (`pty::Terminal`). A child started
/// from a lab's thread runs inside the lab's namespace, as everything that thread starts
/// does.
pub fn tcpscope_command(args: &[&str]) -> Command {
    let mut command = Command::new(TCPSCOPE);
    command.args(args).stdin(Stdio::null());
    command
}

/// Runs `tcpscope ARGS` to its end, with stdin closed, and returns what it printed.
pub fn tcpscope(args: &[&str]) -> Result<Output> {
    tcpscope_command(args)
        .output()
        .with_context(|| format!("running tcpscope {args:?}"))
}

/// Runs `tcpscope ARGS`, which must succeed, and parses the JSON document it prints.
pub fn json(args: &[&str]) -> Result<Value> {
    let output = tcpscope(args)?;
    ensure!(
        output.status.success(),
        "tcpscope {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout)
        .with_context(|| format!("tcpscope {args:?} printed invalid JSON"))
}

/// A benchmark's exit status from its run: success when every target was met (or, in a
/// debug build, when it only printed), failure when one was missed or the run failed,
/// which it says on stderr under the benchmark's `name`.
pub fn bench_exit(name: &str, run: Result<bool>) -> ExitCode {
    match run {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("{name}: {error:#}");
            ExitCode::FAILURE
        }
    }
}
