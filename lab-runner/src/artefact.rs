//! Host-side static checks of built images: properties that can be proven from the ELF file
//! itself, without booting it.
//!
//! Every analysis fails closed: an image that cannot be parsed, or that lacks what an analysis
//! needs to conclude (a symbol table, program headers), is a FAIL with that reason, never a PASS.

use object::Endianness;
use object::elf::{
    FileHeader64, PF_W, PF_X, PT_LOAD, PT_NOTE, SHF_ALLOC, SHF_EXECINSTR, SHF_WRITE, SHT_SYMTAB,
};
use object::read::elf::{FileHeader, ProgramHeader, SectionHeader};

/// Symbols whose presence means a global allocator (a kernel heap) was linked in. INV-MEM: "No
/// dynamic kernel heap".
pub const HEAP_SYMBOLS: &[&str] = &[
    "__rust_alloc",
    "__rust_dealloc",
    "__rust_realloc",
    "__rust_alloc_zeroed",
    "__rg_alloc",
    "__rg_dealloc",
    "__rg_realloc",
    "__rg_alloc_zeroed",
    "__rdl_alloc",
    "__rust_alloc_error_handler",
    "__rg_oom",
];

/// Xen ELF note type for the 32-bit PVH entry point (`XEN_ELFNOTE_PHYS32_ENTRY`).
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// The multiboot v1 header must sit, 4-byte aligned, in the first 8 KiB of the file.
pub const MULTIBOOT_SEARCH: usize = 8192;

/// Multiboot v1 header magic.
pub const MULTIBOOT_MAGIC: u32 = 0x1bad_b002;

/// Largest image read for analysis. Today's kernel is ~100 KiB; 64 MiB leaves room for debug info.
pub const MAX_IMAGE_BYTES: u64 = 64 * 1024 * 1024;

/// The verdict of one analysis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the property holds.
    pub pass: bool,
    /// What was found, for the report.
    pub detail: String,
}

fn pass(detail: String) -> Verdict {
    Verdict { pass: true, detail }
}

fn fail(detail: String) -> Verdict {
    Verdict {
        pass: false,
        detail,
    }
}

/// Runs the analysis called `name` (one of [`crate::plan::ANALYSES`]) on image bytes.
pub fn analyse(name: &str, data: &[u8]) -> Verdict {
    match name {
        "elf-wx-segments" => wx_segments(data),
        "elf-no-heap-symbols" => no_heap_symbols(data),
        "elf-pvh-note" => pvh_note(data),
        "elf-multiboot-header" => multiboot_header(data),
        "elf-embedded-wx" => embedded_wx(data),
        "elf-fixed-layout" => fixed_layout(data),
        "no-private-keys" => no_private_keys(data),
        other => fail(format!("this runner has no analysis `{other}`")),
    }
}

type Header = FileHeader64<Endianness>;

fn parse(data: &[u8]) -> Result<(&Header, Endianness), Verdict> {
    let h = Header::parse(data).map_err(|e| fail(format!("not an ELF64 file: {e}")))?;
    let endian = h
        .endian()
        .map_err(|e| fail(format!("bad ELF header: {e}")))?;
    Ok((h, endian))
}

/// INV-MEM: no loadable segment and no allocated section is both writable and executable.
fn wx_segments(data: &[u8]) -> Verdict {
    let (h, e) = match parse(data) {
        Ok(x) => x,
        Err(v) => return v,
    };
    let Ok(phdrs) = h.program_headers(e, data) else {
        return fail("unreadable program headers".into());
    };
    let loads: Vec<_> = phdrs.iter().filter(|p| p.p_type(e) == PT_LOAD).collect();
    if loads.is_empty() {
        return fail("no PT_LOAD segments: nothing to check, so nothing is proven".into());
    }
    let mut bad = Vec::new();
    for p in &loads {
        let f = p.p_flags(e);
        if f & PF_W != 0 && f & PF_X != 0 {
            bad.push(format!("segment at vaddr {:#x} is W+X", p.p_vaddr(e)));
        }
    }
    let mut sections = 0;
    if let Ok(table) = h.sections(e, data) {
        for s in table.iter() {
            let f = s.sh_flags(e);
            if f & u64::from(SHF_ALLOC) == 0 {
                continue;
            }
            sections += 1;
            if f & u64::from(SHF_WRITE) != 0 && f & u64::from(SHF_EXECINSTR) != 0 {
                let name = table
                    .section_name(e, s)
                    .map(|n| String::from_utf8_lossy(n).into_owned())
                    .unwrap_or_default();
                bad.push(format!("section `{}` is W+X", name.escape_debug()));
            }
        }
    }
    if bad.is_empty() {
        pass(format!(
            "{} loadable segments and {sections} allocated sections, none writable and executable",
            loads.len()
        ))
    } else {
        fail(bad.join("; "))
    }
}

/// INV-MEM: no global allocator symbols are linked in.
fn no_heap_symbols(data: &[u8]) -> Verdict {
    let (h, e) = match parse(data) {
        Ok(x) => x,
        Err(v) => return v,
    };
    let Ok(sections) = h.sections(e, data) else {
        return fail("unreadable section headers".into());
    };
    let Ok(symbols) = sections.symbols(e, data, SHT_SYMTAB) else {
        return fail("unreadable symbol table".into());
    };
    if symbols.is_empty() {
        return fail(
            "the image has no symbol table, so the absence of allocator symbols cannot be shown"
                .into(),
        );
    }
    let mut found = Vec::new();
    for s in symbols.iter() {
        if let Ok(name) = symbols.symbol_name(e, s)
            && let Ok(name) = std::str::from_utf8(name)
            && HEAP_SYMBOLS.contains(&name)
        {
            found.push(name.to_owned());
        }
    }
    if found.is_empty() {
        pass(format!(
            "{} symbols, none of the {} allocator entry points",
            symbols.len(),
            HEAP_SYMBOLS.len()
        ))
    } else {
        found.sort();
        found.dedup();
        fail(format!("allocator symbols linked in: {}", found.join(", ")))
    }
}

/// The image can be started by QEMU `-kernel` (PVH): it has a Xen PHYS32_ENTRY note.
fn pvh_note(data: &[u8]) -> Verdict {
    let (h, e) = match parse(data) {
        Ok(x) => x,
        Err(v) => return v,
    };
    let Ok(phdrs) = h.program_headers(e, data) else {
        return fail("unreadable program headers".into());
    };
    for p in phdrs.iter().filter(|p| p.p_type(e) == PT_NOTE) {
        let Ok(Some(mut notes)) = p.notes(e, data) else {
            continue;
        };
        while let Ok(Some(note)) = notes.next() {
            if note.name() == b"Xen" && note.n_type(e) == XEN_ELFNOTE_PHYS32_ENTRY {
                let desc = note.desc();
                if desc.len() >= 4 {
                    let entry = u32::from_le_bytes([desc[0], desc[1], desc[2], desc[3]]);
                    return pass(format!("PVH entry note present, entry {entry:#x}"));
                }
                return fail("PVH entry note has a descriptor shorter than 4 bytes".into());
            }
        }
    }
    fail("no Xen PHYS32_ENTRY note in any PT_NOTE segment".into())
}

/// The image can be loaded by iPXE/GRUB as multiboot v1: a valid header in the first 8 KiB.
fn multiboot_header(data: &[u8]) -> Verdict {
    let window = &data[..data.len().min(MULTIBOOT_SEARCH)];
    let word = |i: usize| {
        window
            .get(i..i + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    for off in (0..window.len().saturating_sub(11)).step_by(4) {
        if word(off) == Some(MULTIBOOT_MAGIC)
            && let (Some(flags), Some(sum)) = (word(off + 4), word(off + 8))
        {
            if MULTIBOOT_MAGIC.wrapping_add(flags).wrapping_add(sum) == 0 {
                return pass(format!(
                    "multiboot v1 header at file offset {off:#x}, flags {flags:#x}"
                ));
            }
            return fail(format!("multiboot magic at {off:#x} with a bad checksum"));
        }
    }
    fail(format!(
        "no multiboot v1 header in the first {MULTIBOOT_SEARCH} bytes"
    ))
}

/// The public key file the build writes beside the images.
pub const PUBLIC_KEY_FILE: &str = "brainix-signing-key.pub";

/// Runs analysis `name` on the image at `path` (already read into `data`): the analyses that need
/// files beside the image are answered here, the others by [`analyse`].
pub fn analyse_file(name: &str, path: &std::path::Path, data: &[u8]) -> Verdict {
    match name {
        "ed25519-signature" => signature(path, data),
        _ => analyse(name, data),
    }
}

/// INV-BOOT: `<image>.sig` is a valid Ed25519 signature of the image by the key in
/// `brainix-signing-key.pub` beside it, checked exactly as the loader checks it (its own code,
/// `verify_strict`).
fn signature(path: &std::path::Path, data: &[u8]) -> Verdict {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let mut sig_path = path.as_os_str().to_owned();
    sig_path.push(".sig");
    let sig = match std::fs::read(&sig_path) {
        Ok(s) => s,
        Err(e) => {
            return fail(format!(
                "no signature {}: {e}",
                std::path::Path::new(&sig_path).display()
            ));
        }
    };
    let key = match std::fs::read_to_string(dir.join(PUBLIC_KEY_FILE)) {
        Ok(k) => k,
        Err(e) => return fail(format!("no public key {PUBLIC_KEY_FILE}: {e}")),
    };
    let key = match brainix_loader::keys::parse_public(&key) {
        Ok(k) => k,
        Err(e) => return fail(format!("{PUBLIC_KEY_FILE}: {e}")),
    };
    use brainix_loader::signature::{Domain, verify};
    match verify(&key, Domain::KernelImage, data, &sig) {
        Ok(()) => pass(format!(
            "signed by {} (verify_strict over the image's SHA-256 in the kernel-image domain)",
            brainix_loader::signature::fingerprint(&key)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        )),
        Err(e) => fail(format!("signature refused: {e}")),
    }
}

/// ELF64, little endian, version 1: the start of every program image the kernel embeds.
const ELF64_LE: &[u8] = b"\x7fELF\x02\x01\x01";

/// INV-MEM for every binary in the image: each x86-64 executable embedded in it (the user
/// programs the kernel carries) has no loadable segment both writable and executable. An image
/// with none embedded fails: nothing would be proven.
fn embedded_wx(data: &[u8]) -> Verdict {
    let mut checked = 0;
    let mut bad = Vec::new();
    let mut at = 1;
    while let Some(i) = data
        .get(at..)
        .and_then(|rest| rest.windows(ELF64_LE.len()).position(|w| w == ELF64_LE))
    {
        let off = at + i;
        at = off + 1;
        let inner = &data[off..];
        let Ok((h, e)) = parse(inner) else { continue };
        if h.e_type(e) != object::elf::ET_EXEC || h.e_machine(e) != object::elf::EM_X86_64 {
            continue;
        }
        let Ok(phdrs) = h.program_headers(e, inner) else {
            continue;
        };
        checked += 1;
        for p in phdrs.iter().filter(|p| p.p_type(e) == PT_LOAD) {
            let f = p.p_flags(e);
            if f & PF_W != 0 && f & PF_X != 0 {
                bad.push(format!(
                    "program at file offset {off:#x}: segment at vaddr {:#x} is W+X",
                    p.p_vaddr(e)
                ));
            }
        }
    }
    match (checked, bad.is_empty()) {
        (0, _) => {
            fail("no embedded program image found: nothing to check, so nothing is proven".into())
        }
        (n, true) => pass(format!(
            "{n} embedded program images, no loadable segment writable and executable"
        )),
        (_, false) => fail(bad.join("; ")),
    }
}

/// Nothing depends on a secret layout: the image is a fixed-address executable (not position
/// independent, no dynamic segment or interpreter), so it runs only where it was linked and
/// there is no randomised base to keep secret (no KASLR, by design).
fn fixed_layout(data: &[u8]) -> Verdict {
    let (h, e) = match parse(data) {
        Ok(x) => x,
        Err(v) => return v,
    };
    if h.e_type(e) != object::elf::ET_EXEC {
        return fail(format!(
            "ELF type {} is not ET_EXEC: a relocatable image could be placed at a secret address",
            h.e_type(e)
        ));
    }
    let Ok(phdrs) = h.program_headers(e, data) else {
        return fail("unreadable program headers".into());
    };
    let dynamic = phdrs.iter().any(|p| {
        matches!(
            p.p_type(e),
            object::elf::PT_DYNAMIC | object::elf::PT_INTERP
        )
    });
    if dynamic {
        return fail(
            "the image has a dynamic segment or interpreter: it could be relocated".into(),
        );
    }
    let entry = h.e_entry(e);
    let in_load = phdrs.iter().any(|p| {
        p.p_type(e) == PT_LOAD && entry >= p.p_vaddr(e) && entry - p.p_vaddr(e) < p.p_memsz(e)
    });
    if !in_load {
        return fail(format!("entry {entry:#x} lies in no loadable segment"));
    }
    pass(format!(
        "fixed-address executable, entry {entry:#x} in a loadable segment, no dynamic segment"
    ))
}

/// Markers of private keys a build must never carry: PEM blocks, OpenSSH keys, and the DER
/// prefix of a PKCS#8 Ed25519 private key.
pub const KEY_MARKERS: &[(&str, &[u8])] = &[
    ("a PEM private key", b"PRIVATE KEY-----"),
    ("an OpenSSH private key", b"openssh-key-v1\0"),
    ("a BraiNIX signing key file", b"brainix-ed25519-secret:"),
    (
        "a PKCS#8 Ed25519 private key",
        &[
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ],
    ),
];

/// Nothing in the image depends on secrecy: no private key is embedded in it.
fn no_private_keys(data: &[u8]) -> Verdict {
    // Fail closed like every analysis: bytes that are not an image prove nothing about one.
    if let Err(v) = parse(data) {
        return v;
    }
    for (what, marker) in KEY_MARKERS {
        if let Some(at) = data.windows(marker.len()).position(|w| w == *marker) {
            return fail(format!("{what} at file offset {at:#x}"));
        }
    }
    pass(format!(
        "{} bytes scanned: no PEM, OpenSSH or PKCS#8 Ed25519 private key",
        data.len()
    ))
}

/// Builds small ELF64 files for tests (here and in integration tests): program headers with
/// flags, optional notes, optional symbols.
pub mod testelf {
    /// One program header to emit.
    pub struct Seg {
        /// `p_type`.
        pub kind: u32,
        /// `p_flags`.
        pub flags: u32,
        /// Segment contents.
        pub data: Vec<u8>,
    }

    /// An ELF64 little-endian executable with `segs` and, when `symbols` is not empty, a
    /// `.symtab`/`.strtab` pair naming them.
    pub fn build(segs: &[Seg], symbols: &[&str]) -> Vec<u8> {
        let phoff = 64u64;
        let mut out = vec![0u8; 64 + 56 * segs.len()];
        let mut offsets = Vec::new();
        for s in segs {
            while !out.len().is_multiple_of(8) {
                out.push(0);
            }
            offsets.push(out.len() as u64);
            out.extend_from_slice(&s.data);
        }
        // Section headers: null, .symtab, .strtab, .shstrtab (only when there are symbols).
        let mut shoff = 0u64;
        let mut shnum = 0u16;
        let mut shstrndx = 0u16;
        if !symbols.is_empty() {
            let mut strtab = vec![0u8];
            let mut symtab = vec![0u8; 24];
            for name in symbols {
                let at = strtab.len() as u32;
                strtab.extend_from_slice(name.as_bytes());
                strtab.push(0);
                let mut sym = [0u8; 24];
                sym[0..4].copy_from_slice(&at.to_le_bytes());
                sym[4] = 0x12; // STB_GLOBAL, STT_FUNC
                sym[6..8].copy_from_slice(&0xfff1u16.to_le_bytes()); // SHN_ABS
                symtab.extend_from_slice(&sym);
            }
            let shstr = b"\0.symtab\0.strtab\0.shstrtab\0".to_vec();
            let place = |bytes: &[u8], out: &mut Vec<u8>| {
                while !out.len().is_multiple_of(8) {
                    out.push(0);
                }
                let o = out.len() as u64;
                out.extend_from_slice(bytes);
                o
            };
            let sym_off = place(&symtab, &mut out);
            let str_off = place(&strtab, &mut out);
            let shs_off = place(&shstr, &mut out);
            while !out.len().is_multiple_of(8) {
                out.push(0);
            }
            shoff = out.len() as u64;
            let sh = |name: u32, kind: u32, off: u64, size: u64, link: u32, entsize: u64| {
                let mut h = [0u8; 64];
                h[0..4].copy_from_slice(&name.to_le_bytes());
                h[4..8].copy_from_slice(&kind.to_le_bytes());
                h[24..32].copy_from_slice(&off.to_le_bytes());
                h[32..40].copy_from_slice(&size.to_le_bytes());
                h[40..44].copy_from_slice(&link.to_le_bytes());
                h[44..48].copy_from_slice(&1u32.to_le_bytes()); // sh_info: first global
                h[48..56].copy_from_slice(&8u64.to_le_bytes());
                h[56..64].copy_from_slice(&entsize.to_le_bytes());
                h
            };
            out.extend_from_slice(&[0u8; 64]);
            out.extend_from_slice(&sh(1, 2, sym_off, symtab.len() as u64, 2, 24));
            out.extend_from_slice(&sh(9, 3, str_off, strtab.len() as u64, 0, 0));
            out.extend_from_slice(&sh(17, 3, shs_off, shstr.len() as u64, 0, 0));
            shnum = 4;
            shstrndx = 3;
        }
        let mut hdr = [0u8; 64];
        hdr[0..4].copy_from_slice(b"\x7fELF");
        hdr[4] = 2; // ELFCLASS64
        hdr[5] = 1; // little endian
        hdr[6] = 1;
        hdr[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        hdr[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        hdr[20..24].copy_from_slice(&1u32.to_le_bytes());
        hdr[32..40].copy_from_slice(&phoff.to_le_bytes());
        hdr[40..48].copy_from_slice(&shoff.to_le_bytes());
        hdr[52..54].copy_from_slice(&64u16.to_le_bytes());
        hdr[54..56].copy_from_slice(&56u16.to_le_bytes());
        hdr[56..58].copy_from_slice(&(segs.len() as u16).to_le_bytes());
        hdr[58..60].copy_from_slice(&64u16.to_le_bytes());
        hdr[60..62].copy_from_slice(&shnum.to_le_bytes());
        hdr[62..64].copy_from_slice(&shstrndx.to_le_bytes());
        out[..64].copy_from_slice(&hdr);
        for (i, (s, off)) in segs.iter().zip(&offsets).enumerate() {
            let mut p = [0u8; 56];
            p[0..4].copy_from_slice(&s.kind.to_le_bytes());
            p[4..8].copy_from_slice(&s.flags.to_le_bytes());
            p[8..16].copy_from_slice(&off.to_le_bytes());
            p[16..24].copy_from_slice(&(0x10_0000 + 0x1000 * i as u64).to_le_bytes());
            p[32..40].copy_from_slice(&(s.data.len() as u64).to_le_bytes());
            p[40..48].copy_from_slice(&(s.data.len() as u64).to_le_bytes());
            p[48..56].copy_from_slice(&4u64.to_le_bytes());
            let at = 64 + 56 * i;
            out[at..at + 56].copy_from_slice(&p);
        }
        out
    }

    /// An ELF note: name, type, descriptor, 4-byte padded.
    pub fn note(name: &str, kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend_from_slice(&((name.len() + 1) as u32).to_le_bytes());
        n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        n.extend_from_slice(&kind.to_le_bytes());
        n.extend_from_slice(name.as_bytes());
        n.push(0);
        while n.len() % 4 != 0 {
            n.push(0);
        }
        n.extend_from_slice(desc);
        while n.len() % 4 != 0 {
            n.push(0);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::testelf::{Seg, build, note};
    use super::*;

    fn seg(kind: u32, flags: u32) -> Seg {
        Seg {
            kind,
            flags,
            data: vec![0x90; 16],
        }
    }

    const R: u32 = object::elf::PF_R;

    #[test]
    fn wx_segment_is_refused_and_clean_image_passes() {
        let clean = build(&[seg(PT_LOAD, R | PF_X), seg(PT_LOAD, R | PF_W)], &[]);
        assert!(analyse("elf-wx-segments", &clean).pass);
        let bad = build(
            &[seg(PT_LOAD, R | PF_X), seg(PT_LOAD, R | PF_W | PF_X)],
            &[],
        );
        let v = analyse("elf-wx-segments", &bad);
        assert!(!v.pass && v.detail.contains("W+X"), "{v:?}");
    }

    #[test]
    fn embedded_programs_are_found_and_a_wx_one_fails() {
        let clean = build(
            &[
                seg(PT_LOAD, object::elf::PF_R | PF_X),
                seg(PT_LOAD, object::elf::PF_R | PF_W),
            ],
            &[],
        );
        let wx = build(&[seg(PT_LOAD, object::elf::PF_R | PF_W | PF_X)], &[]);
        let mut kernel = build(&[seg(PT_LOAD, object::elf::PF_R | PF_X)], &[]);
        // Nothing embedded: nothing proven.
        assert!(!analyse("elf-embedded-wx", &kernel).pass);
        kernel.extend_from_slice(&[0; 13]);
        kernel.extend_from_slice(&clean);
        kernel.extend_from_slice(b"\x7fELF\x02\x01\x01 not a header");
        kernel.extend_from_slice(&clean);
        let v = analyse("elf-embedded-wx", &kernel);
        assert!(v.pass, "{v:?}");
        assert!(v.detail.starts_with("2 embedded program images"), "{v:?}");
        kernel.extend_from_slice(&wx);
        let v = analyse("elf-embedded-wx", &kernel);
        assert!(!v.pass && v.detail.contains("is W+X"), "{v:?}");
    }

    #[test]
    fn a_relocatable_image_or_a_stray_entry_is_not_a_fixed_layout() {
        let img = build(&[seg(PT_LOAD, object::elf::PF_R | PF_X)], &[]);
        let mut fixed = img.clone();
        fixed[24..32].copy_from_slice(&0x10_0000u64.to_le_bytes());
        assert!(analyse("elf-fixed-layout", &fixed).pass);
        assert!(
            !analyse("elf-fixed-layout", &img).pass,
            "entry 0 is in no segment"
        );
        let mut pie = fixed.clone();
        pie[16..18].copy_from_slice(&3u16.to_le_bytes()); // ET_DYN
        assert!(
            analyse("elf-fixed-layout", &pie)
                .detail
                .contains("not ET_EXEC")
        );
        let dynamic = build(
            &[
                seg(PT_LOAD, object::elf::PF_R | PF_X),
                seg(object::elf::PT_DYNAMIC, object::elf::PF_R),
            ],
            &[],
        );
        let mut dynamic = dynamic;
        dynamic[24..32].copy_from_slice(&0x10_0000u64.to_le_bytes());
        assert!(!analyse("elf-fixed-layout", &dynamic).pass);
    }

    #[test]
    fn a_signature_passes_only_for_this_image_and_the_published_key() {
        use brainix_loader::signature::{Domain, sign};
        let dir = tempfile::tempdir().unwrap();
        let img = build(&[seg(PT_LOAD, object::elf::PF_R | object::elf::PF_X)], &[]);
        let path = dir.path().join("k.elf");
        std::fs::write(&path, &img).unwrap();
        let secret = [7u8; 32];
        let public = brainix_loader::signature::public_key(&secret);
        std::fs::write(
            dir.path().join(PUBLIC_KEY_FILE),
            brainix_loader::keys::format_public(&public),
        )
        .unwrap();
        let sig = dir.path().join("k.elf.sig");
        assert!(
            analyse_file("ed25519-signature", &path, &img)
                .detail
                .contains("no signature")
        );
        std::fs::write(&sig, sign(&secret, Domain::KernelImage, &img)).unwrap();
        let v = analyse_file("ed25519-signature", &path, &img);
        assert!(v.pass, "{v:?}");
        let mut flipped = img.clone();
        flipped[100] ^= 1;
        assert!(!analyse_file("ed25519-signature", &path, &flipped).pass);
        std::fs::write(&sig, sign(&[8u8; 32], Domain::KernelImage, &img)).unwrap();
        assert!(
            !analyse_file("ed25519-signature", &path, &img).pass,
            "wrong key"
        );
        std::fs::write(&sig, sign(&secret, Domain::ReleaseManifest, &img)).unwrap();
        assert!(
            !analyse_file("ed25519-signature", &path, &img).pass,
            "wrong domain"
        );
    }

    #[test]
    fn embedded_private_keys_are_found() {
        let img = build(&[seg(PT_LOAD, object::elf::PF_R | PF_X)], &[]);
        assert!(analyse("no-private-keys", &img).pass);
        for (what, marker) in KEY_MARKERS {
            let mut bad = img.clone();
            bad.extend_from_slice(b"padding");
            bad.extend_from_slice(marker);
            let v = analyse("no-private-keys", &bad);
            assert!(!v.pass && v.detail.starts_with(what), "{v:?}");
        }
    }

    #[test]
    fn heap_symbols_are_found_and_missing_symtab_fails_closed() {
        let ok = build(&[seg(PT_LOAD, R)], &["kmain", "frame_alloc"]);
        assert!(
            analyse("elf-no-heap-symbols", &ok).pass,
            "{:?}",
            analyse("elf-no-heap-symbols", &ok)
        );
        let bad = build(&[seg(PT_LOAD, R)], &["kmain", "__rust_alloc"]);
        let v = analyse("elf-no-heap-symbols", &bad);
        assert!(!v.pass && v.detail.contains("__rust_alloc"), "{v:?}");
        let stripped = build(&[seg(PT_LOAD, R)], &[]);
        assert!(!analyse("elf-no-heap-symbols", &stripped).pass);
    }

    #[test]
    fn pvh_note_must_be_the_right_note() {
        let with = build(
            &[
                seg(PT_LOAD, R),
                Seg {
                    kind: PT_NOTE,
                    flags: R,
                    data: note("Xen", 18, &0x10_0020u32.to_le_bytes()),
                },
            ],
            &[],
        );
        let v = analyse("elf-pvh-note", &with);
        assert!(v.pass && v.detail.contains("0x100020"), "{v:?}");
        let wrong = build(
            &[Seg {
                kind: PT_NOTE,
                flags: R,
                data: note("Xen", 17, &[0; 4]),
            }],
            &[],
        );
        assert!(!analyse("elf-pvh-note", &wrong).pass);
        let gnu = build(
            &[Seg {
                kind: PT_NOTE,
                flags: R,
                data: note("GNU", 18, &[0; 4]),
            }],
            &[],
        );
        assert!(!analyse("elf-pvh-note", &gnu).pass);
    }

    #[test]
    fn multiboot_checksum_is_verified() {
        let mut hdr = Vec::new();
        let flags = 0x0001_0002u32;
        for w in [
            MULTIBOOT_MAGIC,
            flags,
            0u32.wrapping_sub(MULTIBOOT_MAGIC).wrapping_sub(flags),
        ] {
            hdr.extend_from_slice(&w.to_le_bytes());
        }
        let good = build(
            &[Seg {
                kind: PT_LOAD,
                flags: R | PF_X,
                data: hdr.clone(),
            }],
            &[],
        );
        assert!(analyse("elf-multiboot-header", &good).pass);
        hdr[8] ^= 1;
        let bad = build(
            &[Seg {
                kind: PT_LOAD,
                flags: R | PF_X,
                data: hdr,
            }],
            &[],
        );
        assert!(!analyse("elf-multiboot-header", &bad).pass);
    }

    #[test]
    fn garbage_is_a_fail_not_a_panic() {
        for name in crate::plan::ANALYSES {
            for data in [&b""[..], b"\x7fELF", &[0xffu8; 200][..]] {
                assert!(!analyse(name, data).pass, "{name} passed on garbage");
            }
        }
        // Truncations of a valid image never panic.
        let img = build(&[seg(PT_LOAD, R)], &["kmain"]);
        for cut in 0..img.len() {
            for name in crate::plan::ANALYSES {
                let _ = analyse(name, &img[..cut]);
            }
        }
    }
}
