//! The `tcpscope` binary: parse the command line, pick a mode, and map the outcome to
//! an exit status (0 matched, 1 nothing matched, 2 error). Nothing else.

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use tcpscope::cli::{Cli, Mode};
use tcpscope::kernel::process;
use tcpscope::modes::{Outcome, oneshot, serve, watch};
use tcpscope::poll::namespaces;
use tcpscope::tui;

const EXIT_NO_MATCH: u8 = 1;
const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(error) = cli.check() {
        error.exit();
    }
    process::keep_large_allocations_out_of_the_heap();
    // --serve enters namespaces on its poller threads only: its HTTP socket stays here.
    if cli.mode() != Mode::Serve
        && let Err(error) = namespaces::enter(cli.netns.as_ref())
    {
        return exit_status(Err(error));
    }
    match cli.mode() {
        Mode::Interactive if !io::stdout().is_terminal() => {
            eprintln!(
                "tcpscope: stdout is not a terminal; the interactive view needs one. \
                 Use --json for a JSON document or --grep STATES for a table."
            );
            ExitCode::from(EXIT_ERROR)
        }
        Mode::Interactive => run_interactive(tui::run(&cli)),
        // Standard output is line-buffered: each stream line reaches the reader at once.
        Mode::Watch => {
            exit_status(watch::run(&cli, io::stdout().lock()).map(|()| Outcome::Matched))
        }
        // On a terminal and without --json, a recording opens in the interactive view.
        Mode::Replay if !cli.json && io::stdout().is_terminal() => {
            run_interactive(tui::run_replay(&cli))
        }
        Mode::Replay => exit_status(watch::replay(&cli, io::stdout().lock())),
        Mode::Serve => exit_status(
            cli.serve
                .map_or(Ok(()), |address| serve::run(&cli, address))
                .map(|()| Outcome::Matched),
        ),
        _ => {
            let mut out = io::BufWriter::with_capacity(64 * 1024, io::stdout().lock());
            let outcome = oneshot::run(&cli, &mut out);
            if outcome.is_err() {
                let _ = out.flush();
            }
            exit_status(outcome)
        }
    }
}

fn run_interactive(ending: anyhow::Result<tui::Ending>) -> ExitCode {
    match ending {
        Ok(tui::Ending::Quit) => ExitCode::SUCCESS,
        // As a shell reports a process a signal ended: 128 + its number.
        Ok(tui::Ending::Signal(signal)) => ExitCode::from(128u8.saturating_add(signal as u8)),
        Err(error) => {
            let _ = writeln!(io::stderr(), "tcpscope: error: {error:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn exit_status(outcome: anyhow::Result<Outcome>) -> ExitCode {
    match outcome {
        Ok(Outcome::Matched) => ExitCode::SUCCESS,
        Ok(Outcome::NothingMatched) => ExitCode::from(EXIT_NO_MATCH),
        // The reader (`| head`) has what it wanted: end quietly.
        Err(error) if is_closed_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(io::stderr(), "tcpscope: error: {error:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn is_closed_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}
