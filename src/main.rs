//! The `tcpscope` binary: parse the command line, pick a mode, and map the outcome to
//! an exit status (0 matched, 1 nothing matched, 2 error). Nothing else. `--check` is a
//! monitoring plugin and exits as plugins do: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN,
//! its usage errors included.

use std::io::{self, IsTerminal, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;

use clap::Parser;
use tcpscope::cli::{self, Cli, Mode};
use tcpscope::kernel::process;
use tcpscope::modes::{Outcome, check, manual, oneshot, serve, watch};
use tcpscope::poll::namespaces;
use tcpscope::report::plugin::{self, Status};
use tcpscope::tui;

const EXIT_NO_MATCH: u8 = 1;
const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse().and_then(|cli| cli.check().map(|()| cli)) {
        Ok(cli) => cli,
        // Plugin runners read 2 as CRITICAL: a check they cannot run is UNKNOWN.
        Err(error) if error.use_stderr() && cli::asks_for_check(std::env::args_os()) => {
            let _ = error.print();
            let rendered = error.render().to_string();
            let first = rendered.lines().next().unwrap_or_default();
            let reason = first.strip_prefix("error: ").unwrap_or(first);
            print!("{}", plugin::unknown(&format!("usage: {reason}")));
            return ExitCode::from(Status::Unknown.code());
        }
        Err(error) => error.exit(),
    };
    // Text about tcpscope itself: no kernel, no namespace, no limits to raise.
    match cli.mode() {
        Mode::Completions(shell) => {
            return exit_status(
                manual::completions(shell, &mut io::stdout().lock())
                    .map(|()| Outcome::Matched)
                    .map_err(anyhow::Error::from),
            );
        }
        Mode::Man => {
            return exit_status(
                manual::man_page(&mut io::stdout().lock())
                    .map(|()| Outcome::Matched)
                    .map_err(anyhow::Error::from),
            );
        }
        _ => {}
    }
    process::keep_large_allocations_out_of_the_heap();
    // Each namespace --all-netns follows holds descriptors of its own.
    process::raise_descriptor_limit();
    // --serve and --check enter namespaces on their poller threads only (--serve's HTTP
    // socket stays here).
    if !matches!(cli.mode(), Mode::Serve | Mode::Check)
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
        Mode::Check => run_check(&cli),
        _ => {
            let mut out = io::BufWriter::with_capacity(64 * 1024, stdout_without_line_buffer());
            let outcome = oneshot::run(&cli, &mut out);
            if outcome.is_err() {
                let _ = out.flush();
            }
            exit_status(outcome)
        }
    }
}

/// Standard output written straight to its descriptor (a duplicate of it), past std's
/// line buffer: a `--json` document is megabytes on one line, which the line buffer
/// searches for a newline, chunk by chunk, before each write. The one-shot modes
/// buffer their output themselves and flush it before they end.
fn stdout_without_line_buffer() -> Box<dyn Write> {
    match io::stdout().as_fd().try_clone_to_owned() {
        Ok(descriptor) => Box::new(std::fs::File::from(descriptor)),
        Err(_) => Box::new(io::stdout().lock()),
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

/// A monitoring plugin's answer goes to stdout, whatever it is, UNKNOWN included.
fn run_check(cli: &Cli) -> ExitCode {
    let (status, text) = match check::run(cli) {
        Ok(answer) => answer,
        Err(error) => (Status::Unknown, plugin::unknown(&format!("{error:#}"))),
    };
    let mut out = io::stdout().lock();
    if out
        .write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::from(Status::Unknown.code());
    }
    ExitCode::from(status.code())
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
