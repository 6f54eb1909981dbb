//! The IP server: IPv4, ARP and ICMP echo on one interface, speaking [`brainix_proto::ip`] to
//! its clients and [`brainix_proto::link`] to the link server, by synchronous IPC only. Frames
//! cross to and from the link server in leases of this server's own buffers.
//!
//! The work and the request loop are [`brainix_ip::server`], its link IPC to the link server
//! ([`brainix_ip::chain`]). `src/bin/ip-faulty.rs` is the same server with fault injection, for
//! the test system only.
#![cfg_attr(target_os = "none", no_std, no_main)]

brainix_rt::entry!(run);

#[cfg(target_os = "none")]
fn run(pid: u64) -> ! {
    brainix_ip::chain::run(pid, None)
}

#[cfg(not(target_os = "none"))]
fn run(_pid: u64) -> ! {
    unreachable!("a BraiNIX program")
}
