//! The filesystem server: BXFS (`brainix-fs-format`, `docs/filesystem.md`) over the block
//! server, speaking [`brainix_proto::fs`].
//!
//! It holds its endpoint, a send capability to the block server and the log
//! ([`brainix_proto::fs::slots`]); it reaches the disk only through the block server, one call
//! per run of blocks, the data moving through leases. The filesystem is mounted at the first
//! request and again after any failure to mount, so a block server that was missing or
//! restarted is picked up without restarting this one. Corrupt data is reported with
//! `corrupt` and logged with the block that failed; it never reaches a client.
#![cfg_attr(target_os = "none", no_std, no_main)]

mod blocks;
mod serve;

brainix_rt::entry!(run);

fn run(_pid: u64) -> ! {
    serve::run()
}
