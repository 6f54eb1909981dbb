//! rogue-driver: a device server gone bad. It holds one device (q35's AHCI controller: its
//! configuration, slot 1, and BAR 5 read-only, slot 2) and tries to reach beyond it:
//!
//! - `ATTACK bar-move REFUSED missing-right`: rewrite its BAR, which would put the device's
//!   registers over memory it does not own;
//! - `ATTACK config-beyond REFUSED out-of-range`: read past the configuration header;
//! - `ATTACK other-device REFUSED bad-handle`: reach another device's configuration (the block
//!   server's is in *its* slot 5; here that slot is empty);
//! - `ATTACK bar-write ATTEMPT`, then killed: write its read-only BAR mapping.
//!
//! First it shows what it may do: `ROGUE own-device id=0x29228086`.
#![cfg_attr(target_os = "none", no_std, no_main)]

use brainix_abi::Error;
use brainix_attacks::{attempt, report, survived, target};
use brainix_proto::launch_handle;
use brainix_rt::{PciFunction, Region, println};

brainix_rt::entry!(run);

/// The slot the block server's `device-config` has in its own table.
const BLOCK_SERVER_CONFIG_SLOT: u16 = 5;

fn run(_pid: u64) -> ! {
    brainix_attacks::setup();
    let own = PciFunction(target());
    match own.read(0) {
        Ok(id) => println!("ROGUE own-device id={id:#010x}"),
        Err(e) => println!("ROGUE own-device error {}", e.name()),
    }
    report(
        "bar-move",
        Error::MissingRight,
        own.write(0x24, 0xfee0_0000),
    );
    report(
        "config-beyond",
        Error::OutOfRange,
        own.read(0x100).map(drop),
    );
    report(
        "other-device",
        Error::BadHandle,
        PciFunction(launch_handle(BLOCK_SERVER_CONFIG_SLOT))
            .read(0)
            .map(drop),
    );
    attempt("bar-write");
    if let Ok(r) = Region(launch_handle(2)).info() {
        // SAFETY: not sound, on purpose: the BAR is mapped read-only; the kernel must kill us.
        unsafe { core::ptr::write_volatile(r.virt as *mut u32, 0) };
    }
    survived("bar-write")
}
