//! The Authenticode SHA-256 of a PE image: what UEFI firmware measures into PCR 4 when it starts
//! the loader (host only; used to predict PCR 4).
//!
//! The hash follows the Authenticode specification ("Calculating the PE Image Hash"), which is
//! also what EDK2's `Tcg2Dxe` computes: the headers without the checksum field and without the
//! certificate-table directory entry, then each section's raw data in file order, then any data
//! after the last section except an attached certificate table.

use sha2::{Digest, Sha256};

/// Why a file is not a PE image we can hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeError {
    /// No `MZ` header, no `PE\0\0` signature where `e_lfanew` points, or not PE32+.
    NotPe32Plus,
    /// A header, section or the certificate table reaches past the end of the file.
    Truncated,
}

impl std::fmt::Display for PeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeError::NotPe32Plus => f.write_str("not a PE32+ image"),
            PeError::Truncated => {
                f.write_str("PE headers or sections reach past the end of the file")
            }
        }
    }
}

impl std::error::Error for PeError {}

/// The Authenticode SHA-256 of `image`.
pub fn authenticode_sha256(image: &[u8]) -> Result<[u8; 32], PeError> {
    let t = PeError::Truncated;
    let u16_at = |at: usize| -> Result<u16, PeError> {
        Ok(u16::from_le_bytes(
            image.get(at..at + 2).ok_or(t)?.try_into().unwrap(),
        ))
    };
    let u32_at = |at: usize| -> Result<u32, PeError> {
        Ok(u32::from_le_bytes(
            image.get(at..at + 4).ok_or(t)?.try_into().unwrap(),
        ))
    };
    if image.get(..2) != Some(b"MZ") {
        return Err(PeError::NotPe32Plus);
    }
    let pe = u32_at(0x3c)? as usize;
    if image.get(pe..pe + 4) != Some(b"PE\0\0") {
        return Err(PeError::NotPe32Plus);
    }
    let coff = pe + 4;
    let sections = usize::from(u16_at(coff + 2)?);
    let optional_len = usize::from(u16_at(coff + 16)?);
    let opt = coff + 20;
    if u16_at(opt)? != 0x20b {
        return Err(PeError::NotPe32Plus);
    }
    let size_of_headers = u32_at(opt + 60)? as usize;
    let checksum = opt + 64;
    let rva_count = u32_at(opt + 108)? as usize;
    // Data directory 4 is the certificate table (file offset and size, not an RVA).
    let cert_dir = opt + 112 + 4 * 8;
    let (cert_at, cert_len) = if rva_count > 4 {
        (u32_at(cert_dir)? as usize, u32_at(cert_dir + 4)? as usize)
    } else {
        (0, 0)
    };
    if size_of_headers > image.len() || checksum + 4 > size_of_headers {
        return Err(t);
    }

    let mut h = Sha256::new();
    h.update(&image[..checksum]);
    if rva_count > 4 {
        if cert_dir + 8 > size_of_headers {
            return Err(t);
        }
        h.update(&image[checksum + 4..cert_dir]);
        h.update(&image[cert_dir + 8..size_of_headers]);
    } else {
        h.update(&image[checksum + 4..size_of_headers]);
    }

    let table = opt + optional_len;
    let mut raw: Vec<(usize, usize)> = Vec::with_capacity(sections);
    for i in 0..sections {
        let s = table + 40 * i;
        let size = u32_at(s + 16)? as usize;
        let at = u32_at(s + 20)? as usize;
        if size == 0 {
            continue;
        }
        if at.checked_add(size).is_none_or(|end| end > image.len()) {
            return Err(t);
        }
        raw.push((at, size));
    }
    raw.sort_unstable();
    let mut hashed = size_of_headers;
    for (at, size) in raw {
        h.update(&image[at..at + size]);
        hashed += size;
    }
    // Anything after the sections, less the certificate table (which must sit at the end).
    if image.len() > hashed {
        let end = if cert_len > 0 {
            if cert_at.checked_add(cert_len) != Some(image.len()) {
                return Err(t);
            }
            image.len() - cert_len
        } else {
            image.len()
        };
        if end > hashed {
            h.update(&image[hashed..end]);
        }
    }
    Ok(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal PE32+ file: headers (0x200 bytes), two sections, optional trailing data.
    fn pe(trailing: &[u8], cert: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 0x600];
        f[..2].copy_from_slice(b"MZ");
        f[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        f[0x80..0x84].copy_from_slice(b"PE\0\0");
        let coff = 0x84;
        f[coff + 2..coff + 4].copy_from_slice(&2u16.to_le_bytes());
        f[coff + 16..coff + 18].copy_from_slice(&240u16.to_le_bytes());
        let opt = coff + 20;
        f[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
        f[opt + 60..opt + 64].copy_from_slice(&0x200u32.to_le_bytes());
        f[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes());
        let table = opt + 240;
        // Listed in reverse file order: the hash must sort them.
        for (i, (at, size)) in [(0x400u32, 0x200u32), (0x200, 0x200)].iter().enumerate() {
            let s = table + 40 * i;
            f[s + 16..s + 20].copy_from_slice(&size.to_le_bytes());
            f[s + 20..s + 24].copy_from_slice(&at.to_le_bytes());
        }
        for (i, b) in f[0x200..].iter_mut().enumerate() {
            *b = i as u8;
        }
        f.extend_from_slice(trailing);
        if !cert.is_empty() {
            let at = f.len() as u32;
            let dir = opt + 112 + 32;
            f[dir..dir + 4].copy_from_slice(&at.to_le_bytes());
            f[dir + 4..dir + 8].copy_from_slice(&(cert.len() as u32).to_le_bytes());
            f.extend_from_slice(cert);
        }
        f
    }

    fn by_hand(f: &[u8], trailing_len: usize) -> [u8; 32] {
        let opt = 0x84 + 20;
        let mut h = Sha256::new();
        h.update(&f[..opt + 64]);
        h.update(&f[opt + 68..opt + 144]);
        h.update(&f[opt + 152..0x200]);
        h.update(&f[0x200..0x600]);
        h.update(&f[0x600..0x600 + trailing_len]);
        h.finalize().into()
    }

    #[test]
    fn skips_checksum_and_certificate_fields_and_the_certificate_itself() {
        let plain = pe(b"", b"");
        assert_eq!(authenticode_sha256(&plain).unwrap(), by_hand(&plain, 0));
        let mut stamped = plain.clone();
        stamped[0x84 + 20 + 64] = 0x55; // checksum
        assert_eq!(
            authenticode_sha256(&stamped).unwrap(),
            authenticode_sha256(&plain).unwrap()
        );
        let signed = pe(b"", &[9; 64]);
        assert_eq!(
            authenticode_sha256(&signed).unwrap(),
            authenticode_sha256(&plain).unwrap()
        );
        let trailing = pe(b"extra", b"");
        assert_eq!(
            authenticode_sha256(&trailing).unwrap(),
            by_hand(&trailing, 5)
        );
        let mut code = plain.clone();
        code[0x300] ^= 1;
        assert_ne!(
            authenticode_sha256(&code).unwrap(),
            authenticode_sha256(&plain).unwrap()
        );
    }

    #[test]
    fn malformed_images_are_errors_not_panics() {
        let f = pe(b"", b"");
        for n in [0, 1, 0x40, 0x84, 0x100, 0x1ff, 0x300, 0x5ff] {
            assert!(authenticode_sha256(&f[..n]).is_err(), "prefix {n}");
        }
        let mut g = f.clone();
        g[0x84 + 20] = 0x0b;
        g[0x84 + 21] = 0x01;
        assert_eq!(authenticode_sha256(&g), Err(PeError::NotPe32Plus));
        let mut g = f.clone();
        g[0x3c] = 0xff;
        g[0x3d] = 0xff;
        assert!(authenticode_sha256(&g).is_err());
    }
}
