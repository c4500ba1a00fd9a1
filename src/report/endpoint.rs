//! How addresses and endpoints are written in text outputs, the way `ss` writes them:
//! `127.0.0.1:80`, `[::1]:443`, and `*` for the unset port of a listener's peer.
//!
//! Text is formatted into a fixed stack buffer so that a table of 100k rows makes no
//! allocation per row.

use std::fmt::{self, Write};
use std::net::IpAddr;

use crate::snapshot::Endpoints;

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

/// A small text buffer on the stack. Text beyond its capacity is cut off, which
/// cannot happen for the endpoints and timers written here (at most 47 bytes).
pub struct Cell {
    bytes: [u8; 64],
    length: usize,
}

impl Cell {
    pub fn new() -> Cell {
        Cell {
            bytes: [0; 64],
            length: 0,
        }
    }

    /// `value` formatted into a new cell.
    pub fn of(value: impl fmt::Display) -> Cell {
        let mut cell = Cell::new();
        // Writing to a Cell never fails; overflow is truncated instead.
        let _ = write!(cell, "{value}");
        cell
    }

    pub fn as_str(&self) -> &str {
        // Only whole `&str`s are copied in, so the bytes are always valid UTF-8.
        std::str::from_utf8(&self.bytes[..self.length]).unwrap_or("")
    }

    pub fn len(&self) -> usize {
        self.length
    }
}

impl Default for Cell {
    fn default() -> Cell {
        Cell::new()
    }
}

impl Write for Cell {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let room = self.bytes.len() - self.length;
        if text.len() > room {
            return Ok(());
        }
        self.bytes[self.length..self.length + text.len()].copy_from_slice(text.as_bytes());
        self.length += text.len();
        Ok(())
    }
}

/// A connection as the view's prompt and status line name it:
/// `127.0.0.1:80 ⇄ 10.0.0.2:4000`.
pub fn connection_name(endpoints: &Endpoints) -> String {
    format!(
        "{} ⇄ {}",
        Endpoint(endpoints.local.0, endpoints.local.1),
        Endpoint(endpoints.remote.0, endpoints.remote.1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_written_as_ss_writes_them() {
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(Cell::of(Endpoint(v4, 80)).as_str(), "127.0.0.1:80");
        assert_eq!(Cell::of(Endpoint(v6, 443)).as_str(), "[::1]:443");
        assert_eq!(Cell::of(Endpoint(v4, 0)).as_str(), "127.0.0.1:*");
    }

    #[test]
    fn the_longest_ipv6_endpoint_fits_a_cell() {
        let longest: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap();
        assert_eq!(Cell::of(Endpoint(longest, 65535)).len(), 47);
    }
}
