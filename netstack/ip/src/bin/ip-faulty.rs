//! The IP server with fault injection: it also accepts `ip::CRASH` and dies of a page fault, so
//! the test system can watch the IP server fail under its clients and be restarted while the
//! link server and the kernel carry on. Only `system/test.toml` runs it.
#![cfg_attr(target_os = "none", no_std, no_main)]

brainix_rt::entry!(run);

#[cfg(target_os = "none")]
fn run(pid: u64) -> ! {
    brainix_ip::chain::run(pid, Some(brainix_rt::crash))
}

#[cfg(not(target_os = "none"))]
fn run(_pid: u64) -> ! {
    unreachable!("a BraiNIX program")
}
