//! Address prefixes (`10.0.0.0/8`, `::1`) and the host words of `src` and `dst`
//! (`10.0.0.1:80`, `[::1]:443`, `*:8080`, `:22`), with the kernel's matching rules.
//!
//! Matching follows `inet_diag_bc_run` and `bitstring_match` in `net/ipv4/inet_diag.c`
//! exactly, because the same prefix is also handed to the kernel as an
//! `INET_DIAG_BC_S_COND`/`D_COND` test and both must agree: an IPv4 prefix matches an
//! IPv4 address, and an IPv6 socket's v4-mapped address (`::ffff:a.b.c.d`); an IPv6
//! prefix never matches an IPv4 socket; a zero-length prefix matches every address of
//! its family.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// An address prefix: the first `prefix_len` bits of `addr`. Bits past the prefix are
/// kept as typed (so that the prefix prints back as the user wrote it) but never
/// compared, as in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Network {
    addr: IpAddr,
    prefix_len: u8,
}

impl Network {
    /// A prefix, or a message when `prefix_len` is longer than the address.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<Network, String> {
        let bits = address_bits(addr);
        if prefix_len > bits {
            let family = if addr.is_ipv4() { "IPv4" } else { "IPv6" };
            return Err(format!(
                "/{prefix_len} is longer than an {family} address ({bits} bits)"
            ));
        }
        Ok(Network { addr, prefix_len })
    }

    /// The prefix that holds exactly `addr`.
    pub fn host(addr: IpAddr) -> Network {
        Network {
            addr,
            prefix_len: address_bits(addr),
        }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether `ip` lies in this prefix, by the kernel's rules (see the module docs).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                prefix_matches(&network.octets(), &ip.octets(), self.prefix_len)
            }
            (IpAddr::V4(network), IpAddr::V6(ip)) => v4_mapped(ip)
                .is_some_and(|ip| prefix_matches(&network.octets(), &ip, self.prefix_len)),
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                prefix_matches(&network.octets(), &ip.octets(), self.prefix_len)
            }
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }

    /// Parses `10.0.0.0/8`, `127.0.0.1`, `::1`, `2001:db8::/32`.
    pub fn parse(text: &str) -> Result<Network, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = address
            .parse()
            .map_err(|_| format!("'{address}' is not an IPv4 or IPv6 address"))?;
        match prefix {
            None => Ok(Network::host(addr)),
            Some(prefix) => {
                let prefix_len = prefix.parse::<u8>().map_err(|_| {
                    format!("'/{prefix}' is not a prefix length (a number of bits, as in /24)")
                })?;
                Network::new(addr, prefix_len)
            }
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.addr)?;
        if self.prefix_len != address_bits(self.addr) {
            write!(f, "/{}", self.prefix_len)?;
        }
        Ok(())
    }
}

fn address_bits(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// The IPv4 address inside `::ffff:a.b.c.d`, the only form the kernel accepts for an
/// IPv4 prefix against an IPv6 socket (not the deprecated `::a.b.c.d`).
fn v4_mapped(ip: Ipv6Addr) -> Option<[u8; 4]> {
    ip.to_ipv4_mapped().map(|v4| v4.octets())
}

/// Whether the first `bits` bits of `a` and `b` agree.
fn prefix_matches(a: &[u8], b: &[u8], bits: u8) -> bool {
    let whole = usize::from(bits / 8);
    let rest = bits % 8;
    if a[..whole] != b[..whole] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (a[whole] ^ b[whole]) & mask == 0
}

/// What a `src`/`dst` word names: an address prefix, a port, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host {
    pub network: Option<Network>,
    pub port: Option<u16>,
}

impl Host {
    /// Parses the host words `ss` takes: `10.0.0.0/8`, `10.0.0.1:80`, `::1`,
    /// `[::1]:443`, `[2001:db8::]/32`, `*:8080`, `:22`.
    ///
    /// An IPv6 address with a port needs brackets: `::1:80` is an address.
    pub fn parse(text: &str) -> Result<Host, String> {
        let (address, port) = split_port(text)?;
        let port = port.map(parse_port).transpose()?;
        let network = match address.as_str() {
            "" | "*" => None,
            address => Some(Network::parse(address)?),
        };
        if network.is_none() && port.is_none() {
            return Err(format!(
                "'{text}' names no address and no port; write an address (10.0.0.0/8), a port (:80) or both"
            ));
        }
        Ok(Host { network, port })
    }
}

/// Splits `address:port` into its parts, removing the brackets around an IPv6 address
/// (and keeping a prefix length written after them: `[2001:db8::]/32:80`).
fn split_port(text: &str) -> Result<(String, Option<&str>), String> {
    if let Some(inside) = text.strip_prefix('[') {
        let Some((address, after)) = inside.split_once(']') else {
            return Err(format!("'{text}' opens '[' but never closes it"));
        };
        let (prefix, port) = match after.split_once(':') {
            Some((prefix, port)) => (prefix, Some(port)),
            None => (after, None),
        };
        if !prefix.is_empty() && !prefix.starts_with('/') {
            return Err(format!(
                "unexpected '{prefix}' after ']' in '{text}'; write [address]:port"
            ));
        }
        return Ok((format!("{address}{prefix}"), port));
    }
    match text.split_once(':') {
        // `*`, `10.0.0.0/8`
        None => Ok((text.to_string(), None)),
        // An IPv6 address without brackets, hence without a port.
        Some((_, rest)) if rest.contains(':') => Ok((text.to_string(), None)),
        // `:80`, `*:80`, `10.0.0.1:80`
        Some((address, port)) => Ok((address.to_string(), Some(port))),
    }
}

/// Parses a port as `ss` writes it in a condition: `:443` or `443`.
pub fn parse_port(text: &str) -> Result<u16, String> {
    let digits = text.strip_prefix(':').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "'{text}' is not a port; write a number from 0 to 65535, as :443 or 443"
        ));
    }
    digits
        .parse()
        .map_err(|_| format!("port {digits} is out of range (0 to 65535)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_ipv4_prefix_matches_addresses_sharing_its_leading_bits() {
        let network = Network::parse("10.0.0.0/8").unwrap();
        assert!(network.contains(ip("10.255.1.2")));
        assert!(!network.contains(ip("11.0.0.1")));
        let odd = Network::parse("127.64.0.0/10").unwrap();
        assert!(odd.contains(ip("127.127.255.255")));
        assert!(!odd.contains(ip("127.128.0.0")));
        assert!(!odd.contains(ip("127.63.0.0")));
    }

    #[test]
    fn an_ipv4_prefix_matches_v4_mapped_ipv6_sockets_as_the_kernel_does() {
        let network = Network::parse("127.0.0.0/8").unwrap();
        assert!(network.contains(ip("::ffff:127.0.0.1")));
        assert!(!network.contains(ip("::ffff:10.0.0.1")));
        assert!(!network.contains(ip("::1")));
        // The deprecated v4-compatible form is not v4-mapped.
        assert!(!network.contains(ip("::127.0.0.1")));
        assert!(
            Network::parse("0.0.0.0/0")
                .unwrap()
                .contains(ip("::ffff:1.2.3.4"))
        );
        assert!(!Network::parse("0.0.0.0/0").unwrap().contains(ip("::2")));
    }

    #[test]
    fn an_ipv6_prefix_never_matches_an_ipv4_socket() {
        assert!(!Network::parse("::/0").unwrap().contains(ip("127.0.0.1")));
        assert!(
            !Network::parse("::ffff:0:0/96")
                .unwrap()
                .contains(ip("127.0.0.1"))
        );
        assert!(
            Network::parse("::ffff:0:0/96")
                .unwrap()
                .contains(ip("::ffff:127.0.0.1"))
        );
        assert!(Network::parse("::/0").unwrap().contains(ip("::1")));
    }

    #[test]
    fn bits_past_the_prefix_are_not_compared() {
        let network = Network::parse("10.1.2.3/8").unwrap();
        assert!(network.contains(ip("10.9.9.9")));
        assert_eq!(network.to_string(), "10.1.2.3/8");
        assert_eq!(Network::parse("::1").unwrap().to_string(), "::1");
    }

    #[test]
    fn a_prefix_longer_than_the_address_is_refused() {
        assert!(Network::parse("10.0.0.0/33").unwrap_err().contains("/33"));
        assert!(Network::parse("::/129").is_err());
        assert!(
            Network::parse("10.0.0.0/x")
                .unwrap_err()
                .contains("prefix length")
        );
        assert!(
            Network::parse("10.0.0")
                .unwrap_err()
                .contains("not an IPv4")
        );
    }

    #[test]
    fn host_words_take_the_forms_ss_takes() {
        let host = |text| Host::parse(text).unwrap();
        assert_eq!(host("10.0.0.0/8").port, None);
        assert_eq!(host("10.0.0.1:80").port, Some(80));
        assert_eq!(
            host("10.0.0.1:80").network,
            Some(Network::host(ip("10.0.0.1")))
        );
        assert_eq!(
            host(":22"),
            Host {
                network: None,
                port: Some(22)
            }
        );
        assert_eq!(
            host("*:8080"),
            Host {
                network: None,
                port: Some(8080)
            }
        );
        assert_eq!(host("::1").network, Some(Network::host(ip("::1"))));
        assert_eq!(host("::1").port, None);
        assert_eq!(host("[::1]:443").port, Some(443));
        assert_eq!(host("[::1]").network, Some(Network::host(ip("::1"))));
        let bracketed = host("[2001:db8::]/32:80");
        assert_eq!(
            bracketed.network,
            Some(Network::parse("2001:db8::/32").unwrap())
        );
        assert_eq!(bracketed.port, Some(80));
    }

    #[test]
    fn host_words_that_say_nothing_or_are_malformed_are_refused() {
        assert!(
            Host::parse("*")
                .unwrap_err()
                .contains("no address and no port")
        );
        assert!(Host::parse("[::1").unwrap_err().contains("never closes"));
        assert!(Host::parse("[::1]x").is_err());
        assert!(
            Host::parse("10.0.0.1:http")
                .unwrap_err()
                .contains("not a port")
        );
        assert!(Host::parse(":70000").unwrap_err().contains("out of range"));
    }
}
