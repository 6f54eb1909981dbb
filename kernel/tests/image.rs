//! Static checks on the built kernel ELF: what the loaders and INV-MEM need from the file itself.

use brainix_testkit::image;
use object::elf;
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::{Object, ObjectSymbol};

fn read(name: &str) -> Vec<u8> {
    std::fs::read(image(name)).expect("reading the kernel image")
}

#[test]
fn every_loadable_segment_is_w_xor_x() {
    for name in [
        "brainix-kernel.elf",
        "brainix-kernel-test.elf",
        "brainix-kernel-multiboot.elf",
    ] {
        let data = read(name);
        let file = ElfFile64::<object::Endianness>::parse(&*data).unwrap();
        let e = file.endian();
        let mut loads = 0;
        for ph in file.elf_program_headers() {
            if ph.p_type(e) != elf::PT_LOAD {
                continue;
            }
            loads += 1;
            let flags = ph.p_flags(e);
            assert!(
                !(flags & elf::PF_W != 0 && flags & elf::PF_X != 0),
                "{name}: segment at {:#x} is W+X",
                ph.p_vaddr(e)
            );
        }
        assert!(
            loads >= 4,
            "{name}: expected boot, text, rodata and data segments"
        );
    }
}

#[test]
fn the_pvh_note_points_at_the_32_bit_entry() {
    let data = read("brainix-kernel.elf");
    let file = ElfFile64::<object::Endianness>::parse(&*data).unwrap();
    let e = file.endian();
    let mut entries = Vec::new();
    for ph in file.elf_program_headers() {
        if let Some(mut notes) = ph.notes(e, &*data).unwrap() {
            while let Some(note) = notes.next().unwrap() {
                if note.name() == b"Xen" && note.n_type(e) == 18 {
                    entries.push(u32::from_le_bytes(note.desc()[..4].try_into().unwrap()));
                }
            }
        }
    }
    let entry = file.elf_header().e_entry(e);
    assert_eq!(
        entries,
        [entry as u32],
        "exactly one PVH entry note, at the ELF entry"
    );
    assert!(
        entry < 1 << 32,
        "the PVH entry runs with paging off, so it is a physical address"
    );
}

#[test]
fn only_the_multiboot_image_carries_a_multiboot_header() {
    let has_header = |data: &[u8]| {
        data[..8192.min(data.len())]
            .chunks_exact(4)
            .any(|w| w == 0x1bad_b002u32.to_le_bytes())
    };
    assert!(
        !has_header(&read("brainix-kernel.elf")),
        "QEMU would prefer it over PVH"
    );
    assert!(has_header(&read("brainix-kernel-multiboot.elf")));
}

#[test]
fn the_kernel_links_no_allocator() {
    for name in ["brainix-kernel.elf", "brainix-kernel-test.elf"] {
        let data = read(name);
        let file = object::File::parse(&*data).unwrap();
        let symbols: Vec<String> = file
            .symbols()
            .filter_map(|s| s.name().ok().map(String::from))
            .collect();
        assert!(
            symbols.len() > 50,
            "{name}: symbol table stripped, the check would be blind"
        );
        let forbidden = [
            "__rust_alloc",
            "__rg_alloc",
            "__rust_alloc_error_handler",
            "__rdl_alloc",
        ];
        for s in &symbols {
            assert!(
                !forbidden.iter().any(|f| s.contains(f)),
                "{name} links an allocator: {s}"
            );
            assert!(
                !s.contains("5alloc5alloc"),
                "{name} links the alloc crate: {s}"
            );
        }
    }
}
