//! `--completions SHELL` and `--man`: the shell completion scripts and the man page,
//! generated from the one clap definition in [`crate::cli`], so that neither can drift
//! from the flags the binary takes.
//!
//! Writes to the writer it is given and nothing else: no file, no terminal.

use std::io::{self, Write};

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// Writes the completion script for `shell`.
pub fn completions(shell: Shell, out: &mut impl Write) -> io::Result<()> {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "tcpscope", out);
    out.flush()
}

/// Writes the man page, section 1, in roff.
pub fn man_page(out: &mut impl Write) -> io::Result<()> {
    clap_mangen::Man::new(Cli::command()).render(out)?;
    out.flush()
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
        for section in [".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS"] {
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
}
