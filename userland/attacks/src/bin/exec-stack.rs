//! exec-stack: writes a `ret` instruction into a stack buffer and jumps to it. The stack is
//! mapped no-execute, so the kernel must kill the process (page fault, vector 14).
#![cfg_attr(target_os = "none", no_std, no_main)]

brainix_rt::entry!(run);

fn run(_pid: u64) -> ! {
    brainix_attacks::setup();
    let mut code = [0xc3u8; 16]; // ret
    let code = core::hint::black_box(&mut code).as_mut_ptr();
    brainix_attacks::attempt("exec-stack");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: not sound, on purpose: the stack is not executable. The kernel must kill us on
    // the instruction fetch. Had it run, `ret` would come straight back here.
    unsafe {
        core::arch::asm!("call {0}", in(reg) code, clobber_abi("C"));
    }
    core::hint::black_box(code);
    brainix_attacks::survived("exec-stack")
}
