//! write-text: stores into its own code. Text is mapped read-execute, so the kernel must kill
//! the process (page fault, vector 14).
#![cfg_attr(target_os = "none", no_std, no_main)]

brainix_rt::entry!(run);

fn run(_pid: u64) -> ! {
    brainix_attacks::setup();
    let text = run as fn(u64) -> ! as usize as *mut u8;
    brainix_attacks::attempt("write-text");
    // SAFETY: not sound, on purpose: text is read-only. The kernel must kill us here.
    unsafe { core::ptr::write_volatile(text, 0xc3) };
    brainix_attacks::survived("write-text")
}
