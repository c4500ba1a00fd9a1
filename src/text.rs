//! How values are written as text wherever tcpscope shows them: endpoints as `ss`
//! writes them (`127.0.0.1:80`, `[::1]:443`, `*` for the unset port of a listener's
//! peer), and text that came from outside (process names, messages read from a
//! recording, kernel strings) with its control characters escaped, as `ls` and `ps` do:
//! a process that names itself `\e]2;…\a\e[2J` must not retitle or clear the terminal
//! of whoever reads the output, nor write its clipboard (OSC 52).
//!
//! JSON and the metrics escape by construction and must not use [`Escaped`]: their
//! readers get the text as it was. Nothing here depends on another module of tcpscope,
//! so every layer can write what it shows the same way.

use std::fmt::{self, Display, Write};
use std::net::IpAddr;

/// An endpoint as `ss` prints it.
pub struct Endpoint(pub IpAddr, pub u16);

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(address) => write!(f, "{address}:")?,
            IpAddr::V6(address) => write!(f, "[{address}]:")?,
        }
        match self.1 {
            0 => f.write_char('*'),
            port => write!(f, "{port}"),
        }
    }
}

/// `text` as it is shown: printable characters as they are, control characters (C0,
/// DEL, C1) as C-style escapes (`\e`, `\n`, `\x7f`, `\u{9b}`).
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl Display for Escaped<'_> {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '\x1b' => out.write_str("\\e")?,
                '\x07' => out.write_str("\\a")?,
                '\n' => out.write_str("\\n")?,
                '\r' => out.write_str("\\r")?,
                '\t' => out.write_str("\\t")?,
                c if u32::from(c) < 0x80 && c.is_control() => {
                    write!(out, "\\x{:02x}", u32::from(c))?
                }
                c if c.is_control() => write!(out, "\\u{{{:x}}}", u32::from(c))?,
                c => out.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_plain(text: &str) -> bool {
        !text.chars().any(char::is_control)
    }

    #[test]
    fn a_title_and_clear_sequence_is_shown_as_escapes_and_reaches_no_terminal() {
        let shown = Escaped("\x1b]2;OWN\x07\x1b[2Jname").to_string();
        assert_eq!(shown, "\\e]2;OWN\\a\\e[2Jname");
        assert!(is_plain(&shown));
    }

    #[test]
    fn every_control_character_is_escaped_and_other_text_is_kept() {
        assert_eq!(
            Escaped("a\tb\nc\r\x00\x7f").to_string(),
            "a\\tb\\nc\\r\\x00\\x7f"
        );
        // C1 controls: U+009B is an eight-bit CSI to some terminals.
        assert_eq!(Escaped("x\u{9b}2J").to_string(), "x\\u{9b}2J");
        assert_eq!(
            Escaped("nginx: worker ✓ é").to_string(),
            "nginx: worker ✓ é"
        );
        for code in (0..0x20).chain(0x7f..0xa0) {
            let c = char::from_u32(code).unwrap();
            assert!(is_plain(&Escaped(&c.to_string()).to_string()), "{code:#x}");
        }
    }
}
