//! The sink: a TUN device that nobody reads, and the routes that send 127.64.0.0/10 into it.
//!
//! A packet routed into the sink vanishes, which is how the lab holds half-finished
//! handshakes: a `connect()` to an address in [`SINK_NET`] stays SYN_SENT because its SYN
//! never arrives, and a listener answering a forged SYN from such an address stays SYN_RECV
//! because its SYN+ACK never arrives. Only 127.0.0.0/10 stays local.
//!
//! This module must not route anything outside 127.0.0.0/8, and nothing may ever read the
//! device: a reader would turn the sink into a peer.

use std::fs::{File, OpenOptions};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{Context, Result, bail};

use super::netns;

/// The sink device's name inside the lab.
pub const SINK_DEVICE: &str = "labsink";

/// The addresses routed into the sink: 127.64.0.0/10 (127.64.0.0–127.127.255.255). Lab
/// sockets use 127.0.0.0/10, which stays local.
pub const SINK_NET: (Ipv4Addr, u8) = (Ipv4Addr::new(127, 64, 0, 0), 10);

/// Whether an address is routed into the sink.
pub fn in_sink(address: Ipv4Addr) -> bool {
    let (net, prefix) = SINK_NET;
    let mask = u32::MAX << (32 - prefix);
    u32::from(address) & mask == u32::from(net)
}

/// The open TUN device. While it is open the device exists and has carrier, so packets are
/// queued to it and, since nobody reads, dropped once its queue is full. Closing it removes
/// the device and its route.
pub struct Sink {
    _device: File,
}

impl Sink {
    /// Creates the sink device and routes 127.64.0.0/10 into it. `lo` must be up.
    pub fn install() -> Result<Sink> {
        let device = open_tun(SINK_DEVICE)?;

        // __mkroute_output() (net/ipv4/route.c) refuses a route whose source is a loopback
        // address and whose device is not a loopback device, unless route_localnet is set for
        // that device. Both the SYN+ACKs answering forged SYNs and the SYNs of SYN_SENT leave
        // through the sink from 127.0.0.1. Without it connect() into the sink fails with EINVAL,
        // and a listener drops a forged SYN without even keeping a request socket, because it
        // cannot route the answer. The kernel ORs `all` with the device's value; the device's
        // alone is enough, and leaving `all` at 0 keeps the rest of the lab ordinary.
        netns::set_sysctl(&format!("net.ipv4.conf.{SINK_DEVICE}.route_localnet"), 1)?;

        // No rp_filter or martian-source setting is needed, and none is changed (the lab was
        // checked with rp_filter=1 on `all` and `lo`): both checks live in
        // ip_route_input_slow(), which only runs for packets that arrive without a route.
        // Forged SYNs reach the listener through lo still carrying the output route they were
        // sent with, so they are never checked; and the sink never delivers anything.
        let (net, prefix) = SINK_NET;
        let sink_route = format!("route add {net}/{prefix} dev {SINK_DEVICE} src 127.0.0.1");
        netns::ip(&[
            &format!("link set dev {SINK_DEVICE} up"),
            // The local table is consulted before the main table, and its `local 127.0.0.0/8`
            // route would claim the sink's addresses as this host's own: narrow it to /10.
            // 127.0.0.1 keeps its own `local` route.
            "route del local 127.0.0.0/8 dev lo table local",
            "route add local 127.0.0.0/10 dev lo table local proto kernel scope host src 127.0.0.1",
            // `src 127.0.0.1`: the sink has no address of its own and 127.0.0.1 has host scope,
            // so without it an unbound connect() into the sink would pick 0.0.0.0 as source.
            &sink_route,
        ])
        .context("routing 127.64.0.0/10 into the sink")?;
        Ok(Sink { _device: device })
    }
}

/// Opens `/dev/net/tun` and attaches it to a new TUN device (IP packets, no packet-info
/// header) named `name`, in the calling thread's namespace.
fn open_tun(name: &str) -> Result<File> {
    let device = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .context("opening /dev/net/tun (the lab needs root and the tun module)")?;
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= request.ifr_name.len() {
        bail!("TUN device name {name:?} is too long");
    }
    for (slot, byte) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *slot = byte as libc::c_char;
    }
    request.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one ifreq, which lives for the whole call.
    if unsafe { libc::ioctl(device.as_raw_fd(), libc::TUNSETIFF, &mut request) } != 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("creating TUN device {name} (ioctl TUNSETIFF)"));
    }
    Ok(device)
}
