//! The block server (see the library for what it does).
#![cfg_attr(target_os = "none", no_std, no_main)]

brainix_rt::entry!(run);

fn run(_pid: u64) -> ! {
    brainix_virtio_blk::serve(false)
}
