//! Measured boot, host side: what a board's TPM must hold after a boot through the BraiNIX
//! loader, and the verdict of `pcr` checks.
//!
//! The loader extends PCR 9 with the SHA-256 of the kernel image and PCR 12 with that of the
//! command line, once each from reset; the runner knows both for its own boot (it wrote them to
//! the ESP), so it predicts them itself. PCR 4 is the firmware's measurement of the loader; its
//! prediction is the published one, from the release manifest beside the images
//! (`brainix-release.json`), and counts only if the loader file is the one that manifest lists.

use std::collections::BTreeMap;
use std::path::Path;

use brainix_loader::measure::{predict_single, sha256};

use crate::plan::Check;
use crate::report::State;
use crate::session::Observation;

/// The release manifest written next to the images by the build.
pub const RELEASE_MANIFEST: &str = "brainix-release.json";
/// The loader's file name next to the images.
pub const LOADER_FILE: &str = "brainix-loader.efi";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// What PCR `pcr` must hold after a boot of `image` with `cmdline`.
pub fn predict(pcr: u32, image: &Path, cmdline: &str) -> Result<[u8; 32], String> {
    match pcr {
        9 => {
            let data =
                std::fs::read(image).map_err(|e| format!("reading {}: {e}", image.display()))?;
            published_file_matches(image, &data)?;
            Ok(predict_single(&data))
        }
        12 => Ok(predict_single(cmdline.as_bytes())),
        4 => published_pcr4(image.parent().unwrap_or(Path::new("."))),
        n => Err(format!(
            "no prediction for PCR {n}: the loader measures 9 (kernel) and 12 (command line), the firmware 4 (the loader)"
        )),
    }
}

/// The release manifest in `dir`: `Err` when there is none to read, `Ok(Err)` when it is not JSON.
fn read_manifest(dir: &Path) -> Result<Result<serde_json::Value, String>, String> {
    let path = dir.join(RELEASE_MANIFEST);
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    Ok(serde_json::from_str(&text).map_err(|e| format!("{RELEASE_MANIFEST} is not JSON: {e}")))
}

/// The SHA-256 the manifest lists for file `name`.
fn listed_sha256<'m>(m: &'m serde_json::Value, name: &str) -> Option<&'m str> {
    m["files"]
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["name"] == name))
        .and_then(|f| f["sha256"].as_str())
}

/// When the release manifest beside `image` lists that file, the file must be the one it lists:
/// a kernel changed after the release was published predicts nothing.
fn published_file_matches(image: &Path, data: &[u8]) -> Result<(), String> {
    let dir = image.parent().unwrap_or(Path::new("."));
    let Ok(m) = read_manifest(dir) else {
        return Ok(());
    };
    let m = m?;
    let name = image.file_name().and_then(|n| n.to_str()).unwrap_or("");
    match listed_sha256(&m, name) {
        Some(want) if want != hex(&sha256(data)) => Err(format!(
            "{name} is not the image {RELEASE_MANIFEST} was published for"
        )),
        _ => Ok(()),
    }
}

/// PCR 4 as the release manifest in `dir` publishes it, if that manifest lists the loader that is
/// actually there.
fn published_pcr4(dir: &Path) -> Result<[u8; 32], String> {
    let m = read_manifest(dir).map_err(|e| format!("no published prediction: {e}"))??;
    let loader =
        std::fs::read(dir.join(LOADER_FILE)).map_err(|e| format!("reading {LOADER_FILE}: {e}"))?;
    let listed = listed_sha256(&m, LOADER_FILE)
        .ok_or_else(|| format!("{RELEASE_MANIFEST} lists no {LOADER_FILE}"))?;
    if listed != hex(&sha256(&loader)) {
        return Err(format!(
            "{LOADER_FILE} is not the loader {RELEASE_MANIFEST} was published for"
        ));
    }
    m["predicted_pcrs"]["pcrs"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["pcr"] == 4))
        .and_then(|p| p["value"].as_str())
        .and_then(unhex)
        .ok_or_else(|| format!("{RELEASE_MANIFEST} publishes no valid PCR 4"))
}

/// The verdict of a `pcr` check: every PCR it names equals its prediction. A PCR the runner
/// could not read is ERROR (infrastructure); a missing prediction or a different value is FAIL.
pub fn evaluate(check: &Check, obs: &Observation) -> (State, String, Vec<String>) {
    verdict(
        check.pcrs.as_deref().unwrap_or(&[]),
        &obs.pcrs,
        &obs.pcr_predictions,
    )
}

fn verdict(
    wanted: &[u32],
    read: &BTreeMap<u32, Result<[u8; 32], String>>,
    predicted: &BTreeMap<u32, Result<[u8; 32], String>>,
) -> (State, String, Vec<String>) {
    let mut lines = Vec::new();
    let mut fails = Vec::new();
    for n in wanted {
        let got = match read.get(n) {
            None => {
                return (
                    State::Error,
                    format!("PCR {n} was not read after the boot"),
                    lines,
                );
            }
            Some(Err(e)) => return (State::Error, format!("reading PCR {n}: {e}"), lines),
            Some(Ok(v)) => v,
        };
        match predicted.get(n) {
            Some(Ok(p)) if p == got => lines.push(format!("PCR {n} = {} as predicted", hex(got))),
            Some(Ok(p)) => {
                lines.push(format!("PCR {n} = {}, predicted {}", hex(got), hex(p)));
                fails.push(format!("PCR {n} differs from its prediction"));
            }
            Some(Err(e)) => {
                lines.push(format!("PCR {n} = {}, no prediction: {e}", hex(got)));
                fails.push(format!("PCR {n}: {e}"));
            }
            None => fails.push(format!("PCR {n}: no prediction was made")),
        }
    }
    if fails.is_empty() {
        (
            State::Pass,
            format!("PCRs {wanted:?} equal their predictions"),
            lines,
        )
    } else {
        (State::Fail, fails.join("; "), lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_matches_the_tpm_definition() {
        // SHA-256(0^32 || SHA-256("")): PCR 12 after an empty command line.
        assert_eq!(
            hex(&predict_single(b"")),
            "1c9ecec90e28d2461650418635878a5c91e49f47586ecf75f2b0cbb94e897112"
        );
    }

    #[test]
    fn only_equal_values_pass_and_an_unread_pcr_is_an_error() {
        let a = [1u8; 32];
        let ok = |v| BTreeMap::from([(9, Ok(v))]);
        assert_eq!(verdict(&[9], &ok(a), &ok(a)).0, State::Pass);
        assert_eq!(verdict(&[9], &ok([2; 32]), &ok(a)).0, State::Fail);
        let missing = BTreeMap::from([(9, Err("no manifest".to_string()))]);
        assert_eq!(verdict(&[9], &ok(a), &missing).0, State::Fail);
        let unread = BTreeMap::from([(9, Err("swtpm gone".to_string()))]);
        assert_eq!(verdict(&[9], &unread, &ok(a)).0, State::Error);
        assert_eq!(verdict(&[9], &BTreeMap::new(), &ok(a)).0, State::Error);
    }

    #[test]
    fn the_published_pcr4_counts_only_for_the_listed_loader() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOADER_FILE), b"loader").unwrap();
        let manifest = |sha: &str| {
            serde_json::json!({
                "files": [{"name": LOADER_FILE, "sha256": sha}],
                "predicted_pcrs": {"pcrs": [{"pcr": 4, "value": "ab".repeat(32)}]}
            })
            .to_string()
        };
        let path = dir.path().join(RELEASE_MANIFEST);
        std::fs::write(&path, manifest(&hex(&sha256(b"loader")))).unwrap();
        assert_eq!(published_pcr4(dir.path()), Ok([0xab; 32]));
        std::fs::write(&path, manifest(&hex(&sha256(b"other")))).unwrap();
        assert!(
            published_pcr4(dir.path())
                .unwrap_err()
                .contains("not the loader")
        );
        std::fs::write(&path, "{").unwrap();
        assert!(published_pcr4(dir.path()).is_err());
        // A broken manifest predicts nothing; without one, the kernel's PCR is computed.
        let img = dir.path().join("k.elf");
        std::fs::write(&img, b"kernel").unwrap();
        assert!(predict(9, &img, "x").is_err());
        std::fs::remove_file(&path).unwrap();
        assert_eq!(predict(9, &img, "x"), Ok(predict_single(b"kernel")));
        assert_eq!(predict(12, &img, "x"), Ok(predict_single(b"x")));
        // A kernel the published manifest lists must be the listed one.
        let listed =
            serde_json::json!({"files": [{"name": "k.elf", "sha256": hex(&sha256(b"other"))}]});
        std::fs::write(&path, listed.to_string()).unwrap();
        assert!(predict(9, &img, "x").unwrap_err().contains("not the image"));
        assert!(predict(7, &img, "x").is_err());
    }
}
