//! `cargo xtask mkfs <dir> <image> [--mib N]`: writes a BXFS image holding the regular files of
//! a host directory (not its subdirectories), with the format's own code
//! (`brainix-fs-format`), so what the build tool writes is exactly what the server reads.

use brainix_fs_format::{BLOCK, Fs, MAX_FILE, MemDisk, valid_name};
use std::path::Path;

/// Image size when `--mib` is not given.
pub const DEFAULT_MIB: u32 = 8;

/// Builds the image bytes for `files` (name, contents) in `mib` MiB.
pub fn image(files: &[(String, Vec<u8>)], mib: u32) -> Result<Vec<u8>, String> {
    let blocks = mib
        .checked_mul(1024 * 1024 / BLOCK as u32)
        .ok_or("image too large")?;
    let mut bytes = vec![0u8; blocks as usize * BLOCK];
    let mut fs = Fs::format(MemDisk(&mut bytes), blocks)
        .map_err(|e| format!("a {mib} MiB image cannot hold a filesystem: {e}"))?;
    for (name, data) in files {
        if !valid_name(name.as_bytes()) {
            return Err(format!(
                "{name:?} is not a BXFS file name (1 to {} printable ASCII bytes, no '/')",
                brainix_fs_format::NAME_MAX
            ));
        }
        if data.len() as u64 > MAX_FILE {
            return Err(format!(
                "{name:?} is {} bytes; BXFS files hold at most {MAX_FILE}",
                data.len()
            ));
        }
        fs.write(name.as_bytes(), 0, data, true)
            .map_err(|e| format!("writing {name:?} into the image: {e}"))?;
    }
    Ok(bytes)
}

/// Reads the regular files of `dir`, sorted by name.
pub fn files_of(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("reading {}: {e}", dir.display()))?;
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        let name = entry
            .file_name()
            .into_string()
            .map_err(|n| format!("{n:?} is not UTF-8"))?;
        let data = std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        files.push((name, data));
    }
    files.sort();
    Ok(files)
}

/// The command.
pub fn command(args: &[String]) -> Result<(), String> {
    let usage = "usage: cargo xtask mkfs <dir> <image> [--mib N]";
    let mut rest = Vec::new();
    let mut mib = DEFAULT_MIB;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--mib" => {
                let n = it.next().ok_or(usage)?;
                mib = n
                    .parse()
                    .map_err(|_| format!("--mib {n:?} is not a number; {usage}"))?;
            }
            _ => rest.push(a),
        }
    }
    let [dir, out] = rest.as_slice() else {
        return Err(usage.into());
    };
    let files = files_of(Path::new(dir))?;
    let bytes = image(&files, mib)?;
    std::fs::write(out, &bytes).map_err(|e| format!("writing {out}: {e}"))?;
    eprintln!(
        "xtask: {out}: {mib} MiB BXFS image, {} file(s) from {dir}",
        files.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_holds_the_files_it_was_given() {
        let files = vec![
            ("a.txt".to_string(), b"alpha\n".to_vec()),
            ("b.bin".to_string(), vec![7u8; 10_000]),
        ];
        let mut bytes = image(&files, 1).unwrap();
        let mut fs = Fs::mount(MemDisk(&mut bytes)).unwrap();
        let mut out = vec![0u8; 10_000];
        assert_eq!(fs.read(b"b.bin", 0, &mut out), Ok(10_000));
        assert!(out.iter().all(|&b| b == 7));
        assert_eq!(fs.stat(b"a.txt").unwrap().size, 6);
    }

    #[test]
    fn bad_names_and_sizes_are_refused_with_the_reason() {
        let e = image(&[("a/b".into(), vec![])], 1).unwrap_err();
        assert!(e.contains("not a BXFS file name"), "{e}");
        let e = image(&[("big".into(), vec![0; MAX_FILE as usize + 1])], 8).unwrap_err();
        assert!(e.contains("at most"), "{e}");
        let e = image(&[("x".into(), vec![0; 3 << 20])], 1).unwrap_err();
        assert!(e.contains("no space") || e.contains("at most"), "{e}");
    }
}
