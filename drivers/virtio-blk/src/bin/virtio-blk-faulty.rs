//! The block server with fault injection: it also accepts `block::CRASH` and dies of a page
//! fault, so the test system can watch a driver be killed, reported and restarted. Only
//! `system/test.toml` runs it.
#![cfg_attr(target_os = "none", no_std, no_main)]

brainix_rt::entry!(run);

fn run(_pid: u64) -> ! {
    brainix_virtio_blk::serve(true)
}
