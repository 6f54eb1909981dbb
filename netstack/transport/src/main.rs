//! The transport server: UDP sockets and TCP over the IP server, default deny. Speaks
//! [`brainix_proto::transport`] to its clients and [`brainix_proto::ip`] (`SEND`, `RECV`) to the
//! IP server, by synchronous IPC only; payloads cross in leases. Each client's badge names its
//! grant; [`brainix_transport::Sockets`] and [`brainix_transport::tcp::Tcp`] hold every check.
//!
//! The request loop is [`brainix_transport::server`]; `src/chain.rs` is only the network below
//! it: IPC to the IP server. `src/bin/transport-faulty.rs` is the same server with fault
//! injection, for the test system.
#![cfg_attr(target_os = "none", no_std, no_main)]

brainix_rt::entry!(run);

#[cfg(target_os = "none")]
fn run(_pid: u64) -> ! {
    chain::run(None)
}

#[cfg(not(target_os = "none"))]
fn run(_pid: u64) -> ! {
    unreachable!("a BraiNIX program")
}

#[cfg(target_os = "none")]
mod chain;
