//! crash-ip: not an attack but a fault injection. Asks the test system's IP server (the
//! `ip-faulty` build) to crash with `ip::CRASH`; the call must come back `peer-dead`, because
//! the kernel killed the server while it owed the reply.
//!
//! Line: `CRASH-IP reply=<error-name>` (or `reply=ok` if the server survived).
#![cfg_attr(target_os = "none", no_std, no_main)]

brainix_rt::entry!(run);

fn run(_pid: u64) -> ! {
    brainix_attacks::crash(brainix_proto::ip::CRASH, "CRASH-IP")
}
