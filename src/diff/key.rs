//! A connection's endpoints packed into plain integers, for hashing.
//!
//! The differ looks up every socket of every poll; hashing four words is cheaper than
//! walking two `IpAddr` enums. The packing loses nothing: [`Key::endpoints`] gives the
//! endpoints back for the transitions of connections that are no longer in a snapshot.

use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::snapshot::{Endpoints, Family, SocketRecord};

/// Family and both endpoints. An IPv4 address fills the low 32 bits; the family keeps it
/// apart from the IPv6 address with the same bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key {
    pub(super) local: [u64; 2],
    pub(super) remote: [u64; 2],
    pub(super) local_port: u16,
    pub(super) remote_port: u16,
    pub(super) family: Family,
}

impl Key {
    pub(crate) fn of(record: &SocketRecord) -> Key {
        Key {
            local: words(record.local_addr),
            remote: words(record.remote_addr),
            local_port: record.local_port,
            remote_port: record.remote_port,
            family: record.family,
        }
    }

    pub(crate) fn of_endpoints(endpoints: &Endpoints) -> Key {
        Key {
            local: words(endpoints.local.0),
            remote: words(endpoints.remote.0),
            local_port: endpoints.local.1,
            remote_port: endpoints.remote.1,
            family: endpoints.family,
        }
    }

    /// A few bits of the ports, to rule most keys out before a lookup by the whole key.
    pub(super) fn port_bits(&self) -> usize {
        usize::from(self.local_port ^ self.remote_port.rotate_left(8))
    }

    pub(crate) fn endpoints(&self) -> Endpoints {
        Endpoints {
            family: self.family,
            local: (address(self.family, self.local), self.local_port),
            remote: (address(self.family, self.remote), self.remote_port),
        }
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, hasher: &mut H) {
        hasher.write_u64(self.local[0]);
        hasher.write_u64(self.local[1]);
        hasher.write_u64(self.remote[0]);
        hasher.write_u64(self.remote[1]);
        let family = match self.family {
            Family::Ipv4 => 4,
            Family::Ipv6 => 6,
        };
        hasher.write_u64(
            u64::from(self.local_port) | u64::from(self.remote_port) << 16 | family << 32,
        );
    }
}

fn words(address: IpAddr) -> [u64; 2] {
    let bits = match address {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    };
    [(bits >> 64) as u64, bits as u64]
}

fn address(family: Family, words: [u64; 2]) -> IpAddr {
    let bits = u128::from(words[0]) << 64 | u128::from(words[1]);
    match family {
        // Only the low 32 bits were ever set for IPv4.
        Family::Ipv4 => IpAddr::V4(Ipv4Addr::from(bits as u32)),
        Family::Ipv6 => IpAddr::V6(Ipv6Addr::from(bits)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_survive_the_packing() {
        let v4 = Endpoints {
            family: Family::Ipv4,
            local: ("10.0.0.1".parse().unwrap(), 80),
            remote: ("192.168.7.9".parse().unwrap(), 51234),
        };
        let v6 = Endpoints {
            family: Family::Ipv6,
            local: ("2001:db8::1".parse().unwrap(), 443),
            remote: ("::ffff:10.0.0.2".parse().unwrap(), 40000),
        };
        for endpoints in [v4, v6] {
            assert_eq!(Key::of_endpoints(&endpoints).endpoints(), endpoints);
        }
    }

    #[test]
    fn the_same_bits_in_another_family_are_another_key() {
        let v4 = Endpoints {
            family: Family::Ipv4,
            local: ("0.0.0.1".parse().unwrap(), 80),
            remote: ("0.0.0.0".parse().unwrap(), 0),
        };
        let v6 = Endpoints {
            family: Family::Ipv6,
            local: ("::1".parse().unwrap(), 80),
            remote: ("::".parse().unwrap(), 0),
        };
        assert_ne!(Key::of_endpoints(&v4), Key::of_endpoints(&v6));
    }
}
