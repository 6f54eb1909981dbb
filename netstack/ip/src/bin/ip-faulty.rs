//! The IP server with fault injection: it also accepts `ip::CRASH` and dies of a page fault, so
//! the test system can watch the IP server fail under its clients and be restarted while the
//! link server and the kernel carry on. Only `system/test.toml` runs it.
#![cfg_attr(target_os = "none", no_std, no_main)]

brainix_rt::entry!(run);

#[cfg(target_os = "none")]
fn run(pid: u64) -> ! {
    brainix_ip::chain::run(pid, Some(crash))
}

#[cfg(not(target_os = "none"))]
fn run(_pid: u64) -> ! {
    unreachable!("a BraiNIX program")
}

#[cfg(target_os = "none")]
fn crash() {
    // SAFETY: not sound, on purpose: nothing is mapped at address 0x10, and the kernel must kill
    // this process for it.
    unsafe { core::ptr::write_volatile(0x10 as *mut u64, 0xdead) };
}
