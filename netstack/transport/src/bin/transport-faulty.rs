//! The transport server with fault injection: it also accepts `transport::CRASH` and dies of a
//! page fault, so the test system can watch the transport server fail under its clients and be
//! restarted while the IP and link servers and the kernel carry on. Only `system/test.toml` runs
//! it.
#![cfg_attr(target_os = "none", no_std, no_main)]

brainix_rt::entry!(run);

#[cfg(target_os = "none")]
#[path = "../chain.rs"]
mod chain;

#[cfg(target_os = "none")]
fn run(_pid: u64) -> ! {
    chain::run(Some(brainix_rt::crash))
}

#[cfg(not(target_os = "none"))]
fn run(_pid: u64) -> ! {
    unreachable!("a BraiNIX program")
}
