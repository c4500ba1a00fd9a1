//! `--completions SHELL` and `--man`: the shell completion scripts and the man page,
//! generated from the one clap definition in [`crate::cli`], so that neither can drift
//! from the flags the binary takes.
//!
//! Writes to the writer it is given and nothing else: no file, no terminal.

use std::io::{self, Write};

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::{Cli, EXAMPLES, STATE_NAMES};

/// Writes the completion script for `shell`.
pub fn completions(shell: Shell, out: &mut impl Write) -> io::Result<()> {
    // clap_complete panics when a write fails: it writes to memory, and a closed pipe
    // (`| head`) is met here, as an error.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "tcpscope", &mut script);
    out.write_all(&script)?;
    out.flush()
}

/// Writes the man page, section 1, in roff: clap's sections, with the examples and
/// the state names in sections of their own where clap would put `--help`'s epilogue.
pub fn man_page(out: &mut impl Write) -> io::Result<()> {
    let man = clap_mangen::Man::new(Cli::command());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    page.extend_from_slice(b".SH EXAMPLES\n");
    for (command, shows) in EXAMPLES {
        page.extend_from_slice(format!(".TP\n.B {}\n{}\n", roff(command), roff(shows)).as_bytes());
    }
    page.extend_from_slice(format!(".SH STATE NAMES\n{}\n", roff(STATE_NAMES)).as_bytes());
    man.render_version_section(&mut page)?;
    out.write_all(&page)?;
    out.flush()
}

/// Text as roff reads it literally: backslashes and dashes escaped (a `\-` is a dash a
/// reader can paste into a shell), and a line that would start a request guarded.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(write: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> String {
        let mut out = Vec::new();
        write(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_shell_gets_a_script_naming_the_flags() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let script = rendered(|out| completions(shell, out));
            for flag in ["grep", "serve", "all-netns", "completions"] {
                assert!(script.contains(flag), "{shell}: {flag} missing");
            }
        }
    }

    #[test]
    fn the_man_page_has_the_usual_sections_and_every_long_flag() {
        let page = rendered(man_page);
        for section in [".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS", ".SH EXAMPLES"] {
            assert!(page.contains(section), "{section} missing");
        }
        for arg in Cli::command().get_arguments() {
            if let Some(long) = arg.get_long() {
                // roff escapes each dash of a flag: `\-\-all\-netns`.
                let escaped = format!("\\-\\-{}", long.replace('-', "\\-"));
                assert!(page.contains(&escaped), "--{long} missing");
            }
        }
    }

    #[test]
    fn text_for_roff_keeps_dashes_and_backslashes_and_starts_no_request() {
        assert_eq!(roff("--grep a\\b"), "\\-\\-grep a\\eb");
        assert_eq!(roff(".SH x"), "\\&.SH x");
        assert_eq!(roff("'x"), "\\&'x");
    }
}
