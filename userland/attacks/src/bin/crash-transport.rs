//! crash-transport: not an attack but a fault injection. Asks the test system's transport server
//! (the `transport-faulty` build) to crash with `transport::CRASH`; the call must come back
//! `peer-dead`, because the kernel killed the server while it owed the reply.
//!
//! Line: `CRASH-TRANSPORT reply=<error-name>` (or `reply=ok` if the server survived).
#![cfg_attr(target_os = "none", no_std, no_main)]

brainix_rt::entry!(run);

fn run(_pid: u64) -> ! {
    brainix_attacks::crash(brainix_proto::transport::CRASH, "CRASH-TRANSPORT")
}
