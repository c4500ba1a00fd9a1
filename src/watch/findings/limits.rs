//! The host's limits that the resource findings measure against: the ephemeral port
//! range (minus reserved ports), `tcp_tw_reuse` and `tcp_max_tw_buckets`, as one value.
//!
//! The values are read by `kernel::procfs::read_connection_limits` in the namespace
//! being watched (they are per network namespace); this module only holds them, in a
//! form each socket can be checked against in constant time.

use crate::kernel::procfs::{ConnectionLimits, TwReuse};

/// One bit per port: 65,536 bits.
const PORT_WORDS: usize = 65_536 / 64;

/// A network namespace's limits on outgoing connections and TIME_WAIT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLimits {
    /// Which local ports `connect()` picks from: the range minus reserved ports.
    ephemeral: Box<[u64; PORT_WORDS]>,
    ephemeral_ports: u32,
    /// `net.ipv4.ip_local_port_range`, both ends included.
    pub local_port_range: (u16, u16),
    pub tw_reuse: TwReuse,
    pub max_tw_buckets: u32,
}

impl HostLimits {
    /// The limits for a port range (both ends included), the reserved ranges within
    /// it, and the TIME_WAIT settings.
    pub fn new(
        local_port_range: (u16, u16),
        reserved_ports: &[(u16, u16)],
        tw_reuse: TwReuse,
        max_tw_buckets: u32,
    ) -> HostLimits {
        let mut ephemeral = Box::new([0u64; PORT_WORDS]);
        let (low, high) = local_port_range;
        for port in low..=high {
            ephemeral[usize::from(port) / 64] |= 1 << (port % 64);
        }
        for &(first, last) in reserved_ports {
            for port in first..=last {
                ephemeral[usize::from(port) / 64] &= !(1 << (port % 64));
            }
        }
        let ephemeral_ports = ephemeral.iter().map(|word| word.count_ones()).sum();
        HostLimits {
            ephemeral,
            ephemeral_ports,
            local_port_range,
            tw_reuse,
            max_tw_buckets,
        }
    }

    /// The limits as read from a namespace's sysctls.
    pub fn from_sysctls(limits: &ConnectionLimits) -> HostLimits {
        HostLimits::new(
            limits.local_port_range,
            &limits.reserved_ports,
            limits.tw_reuse,
            limits.max_tw_buckets,
        )
    }

    /// Whether `connect()` could have picked this local port.
    pub fn is_ephemeral(&self, port: u16) -> bool {
        self.ephemeral[usize::from(port) / 64] & (1 << (port % 64)) != 0
    }

    /// How many ports `connect()` picks from: the size of the range, less the reserved
    /// ports inside it.
    pub fn ephemeral_ports(&self) -> u32 {
        self.ephemeral_ports
    }
}

impl Default for HostLimits {
    /// Linux's defaults: ports 32768–60999, none reserved, TIME_WAIT reuse on loopback,
    /// and 262,144 TIME_WAIT buckets (the kernel sizes the default from memory; this is
    /// its value on a machine with a few GiB).
    fn default() -> HostLimits {
        HostLimits::new((32768, 60999), &[], TwReuse::LoopbackOnly, 262_144)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_range_has_the_kernels_28232_ports() {
        let limits = HostLimits::default();
        assert_eq!(limits.ephemeral_ports(), 28_232);
        assert!(limits.is_ephemeral(32768) && limits.is_ephemeral(60999));
        assert!(!limits.is_ephemeral(32767) && !limits.is_ephemeral(61000));
        assert!(!limits.is_ephemeral(443));
    }

    #[test]
    fn reserved_ports_are_not_ephemeral_and_not_counted() {
        let limits = HostLimits::new(
            (40000, 40999),
            &[(40100, 40100), (40200, 40299), (5000, 5010)],
            TwReuse::Off,
            10,
        );
        assert_eq!(limits.ephemeral_ports(), 1000 - 1 - 100);
        assert!(!limits.is_ephemeral(40100) && !limits.is_ephemeral(40250));
        assert!(limits.is_ephemeral(40101) && limits.is_ephemeral(40300));
        assert!(
            !limits.is_ephemeral(5005),
            "reserved outside the range stays out"
        );
    }

    #[test]
    fn the_whole_port_space_and_a_single_port_are_ranges_too() {
        assert_eq!(
            HostLimits::new((0, 65535), &[], TwReuse::Off, 1).ephemeral_ports(),
            65_536
        );
        let single = HostLimits::new((65535, 65535), &[], TwReuse::Off, 1);
        assert_eq!(single.ephemeral_ports(), 1);
        assert!(single.is_ephemeral(65535));
    }
}
