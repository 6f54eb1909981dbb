//! Where things are: the workspace root and the default directories under it.

use std::path::{Path, PathBuf};

/// Environment variable naming the image directory (used by `cargo xtask test` and CI).
pub const IMAGE_DIR_ENV: &str = "BRAINIX_IMAGE_DIR";

/// Finds the workspace root: the nearest ancestor of `start` whose `Cargo.toml` has a
/// `[workspace]` table.
pub fn find_root(start: &Path) -> Option<PathBuf> {
    let mut dir = Some(start);
    while let Some(d) = dir {
        let manifest = d.join("Cargo.toml");
        if let Ok(text) = std::fs::read_to_string(&manifest)
            && text.lines().any(|l| l.trim() == "[workspace]")
        {
            return Some(d.to_path_buf());
        }
        dir = d.parent();
    }
    None
}

/// The directories a run uses.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Workspace root.
    pub root: PathBuf,
    /// `boards/`.
    pub boards: PathBuf,
    /// `test-plans/`.
    pub plans: PathBuf,
    /// Built images: `--image-dir`, else `$BRAINIX_IMAGE_DIR`, else `target/brainix`.
    pub images: PathBuf,
    /// Where runs write reports and logs: `target/lab-runner`.
    pub out: PathBuf,
}

impl Layout {
    /// Resolves the layout from the current directory and the optional overrides.
    pub fn discover(image_dir: Option<PathBuf>) -> anyhow::Result<Layout> {
        let cwd = std::env::current_dir()?;
        let root = find_root(&cwd)
            .or_else(|| find_root(Path::new(env!("CARGO_MANIFEST_DIR"))))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no Cargo.toml with [workspace] above {}; run from the BraiNIX tree",
                    cwd.display()
                )
            })?;
        Ok(Layout::at(root, image_dir))
    }

    /// The layout under a known root.
    pub fn at(root: PathBuf, image_dir: Option<PathBuf>) -> Layout {
        let images = image_dir
            .or_else(|| std::env::var_os(IMAGE_DIR_ENV).map(PathBuf::from))
            .unwrap_or_else(|| root.join("target").join("brainix"));
        Layout {
            boards: root.join("boards"),
            plans: root.join("test-plans"),
            out: root.join("target").join("lab-runner"),
            images,
            root,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_this_workspace_from_the_crate_dir() {
        let root = find_root(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert!(root.join("lab-runner").is_dir());
        assert!(find_root(Path::new("/")).is_none());
    }
}
