//! The kernel binary. On the bare-metal target the entry is the boot stub in `arch`; on the
//! host this file builds an empty program so that `cargo test --workspace` can build every
//! target of the crate.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
use brainix_kernel as _;

/// Feature markers: lab-runner reads these symbols from the image (`test-plans/features.toml`)
/// to tell which checks this image can run; a check whose feature is missing is SKIP, never
/// PASS. Each names a capability that is built and tested, not one that is planned. The linker
/// script keeps their section.
#[cfg(target_os = "none")]
mod features {
    macro_rules! marker {
        ($($(#[$attr:meta])* $name:ident),* $(,)?) => {$(
            $(#[$attr])*
            #[used]
            #[unsafe(no_mangle)]
            #[unsafe(link_section = ".rodata.brainix_features")]
            static $name: u8 = 1;
        )*};
    }
    marker!(
        /// Processes from the manifest, in their own address spaces.
        BRAINIX_FEATURE_USERSPACE,
        /// The shell on the trusted console, which reports `shell.ready`.
        BRAINIX_FEATURE_SHELL,
        /// Synchronous IPC: call, receive, reply, leases.
        BRAINIX_FEATURE_IPC,
        /// Per-process page tables without the kernel (KPTI).
        BRAINIX_FEATURE_KPTI,
        /// The observe-only auditor in both shipped systems.
        BRAINIX_FEATURE_AUDITOR,
        /// The run-time walk of every process's page tables (`audit_tables`).
        BRAINIX_FEATURE_PT_AUDIT,
        /// The consent service: assist proposals run only on approval from the trusted console.
        BRAINIX_FEATURE_ASSIST,
        /// The test programs (attacks) of `system/test.toml`: only the test image, which is the
        /// one built with the test hooks and that system.
        #[cfg(feature = "test-hooks")]
        BRAINIX_FEATURE_TEST_PROGRAMS,
    );
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("brainix-kernel runs on bare metal: build it with `cargo xtask build`");
    std::process::exit(2);
}
