//! crash-blk: not an attack but a fault injection. Asks the test system's block server (the
//! `virtio-blk-faulty` build) to crash with `block::CRASH`; the call must come back
//! `peer-dead`, because the kernel killed the server while it owed the reply.
//!
//! Line: `CRASH-BLK reply=<error-name>` (or `reply=ok` if the server survived).
#![cfg_attr(target_os = "none", no_std, no_main)]

brainix_rt::entry!(run);

fn run(_pid: u64) -> ! {
    brainix_attacks::crash(brainix_proto::block::CRASH, "CRASH-BLK")
}
