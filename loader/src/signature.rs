//! Detached Ed25519 signatures: the `kernel.sig` file and the release manifest's signature.
//!
//! A signature file is exactly [`FILE_LEN`] bytes:
//!
//! | offset | bytes | what |
//! | --- | --- | --- |
//! | 0 | 8 | [`MAGIC`] |
//! | 8 | 32 | the signer's Ed25519 public key (informational: only the trusted key is used) |
//! | 40 | 64 | the Ed25519 signature |
//!
//! The signed message is a domain string ([`Domain`]) followed by the SHA-256 of the content, so
//! a kernel signature can never pass as a manifest signature or the other way round. Checking
//! uses `verify_strict`, which also rejects small-order keys and non-canonical signatures.

use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

/// The first eight bytes of a signature file.
pub const MAGIC: [u8; 8] = *b"BNXSIG1\n";

/// The length of a signature file.
pub const FILE_LEN: usize = 8 + 32 + 64;

/// What a signature is for; part of the signed message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    /// A kernel image the loader may boot.
    KernelImage,
    /// A release manifest (`cargo xtask release`).
    ReleaseManifest,
}

impl Domain {
    fn prefix(self) -> &'static [u8; 40] {
        match self {
            Domain::KernelImage => b"BraiNIX kernel image signature, v1\0\0\0\0\0\0",
            Domain::ReleaseManifest => b"BraiNIX release manifest signature, v1\0\0",
        }
    }
}

/// The message that is signed for `content` in `domain`: the domain string and the content's
/// SHA-256.
pub fn message(domain: Domain, content: &[u8]) -> [u8; 72] {
    let mut m = [0u8; 72];
    m[..40].copy_from_slice(domain.prefix());
    m[40..].copy_from_slice(&Sha256::digest(content));
    m
}

/// The first eight bytes of SHA-256 of a public key: how keys are named in messages.
pub fn fingerprint(key: &[u8; 32]) -> [u8; 8] {
    let d = Sha256::digest(key);
    let mut f = [0u8; 8];
    f.copy_from_slice(&d[..8]);
    f
}

/// Why a signature was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureError {
    /// The file is not [`FILE_LEN`] bytes long (a truncated or padded file).
    WrongLength(usize),
    /// The file does not start with [`MAGIC`].
    BadMagic,
    /// Signed by another key than the trusted one; the fingerprints of both.
    UntrustedKey {
        /// The key the file names.
        signer: [u8; 8],
        /// The key the verifier trusts.
        trusted: [u8; 8],
    },
    /// The trusted key itself is not a valid Ed25519 public key.
    BadTrustedKey,
    /// The signature does not verify: the content or the signature was changed.
    Mismatch,
}

impl core::fmt::Display for SignatureError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut a = [0u8; 16];
        let mut b = [0u8; 16];
        match self {
            SignatureError::WrongLength(n) => write!(
                f,
                "signature file has {n} bytes, expected exactly {FILE_LEN}"
            ),
            SignatureError::BadMagic => f.write_str("signature file does not start with BNXSIG1"),
            SignatureError::UntrustedKey { signer, trusted } => write!(
                f,
                "signed by key {}, but this loader trusts only key {}",
                crate::hex(signer, &mut a),
                crate::hex(trusted, &mut b)
            ),
            SignatureError::BadTrustedKey => f.write_str("the built-in public key is not valid"),
            SignatureError::Mismatch => {
                f.write_str("Ed25519 signature does not match the image (changed after signing)")
            }
        }
    }
}

/// A parsed signature file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignatureFile {
    /// The signer's public key as the file states it.
    pub signer: [u8; 32],
    /// The signature.
    pub signature: [u8; 64],
}

impl SignatureFile {
    /// Parses the file, checking only its shape.
    pub fn parse(bytes: &[u8]) -> Result<SignatureFile, SignatureError> {
        if bytes.len() != FILE_LEN {
            return Err(SignatureError::WrongLength(bytes.len()));
        }
        if bytes[..8] != MAGIC {
            return Err(SignatureError::BadMagic);
        }
        let mut signer = [0u8; 32];
        signer.copy_from_slice(&bytes[8..40]);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&bytes[40..]);
        Ok(SignatureFile { signer, signature })
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> [u8; FILE_LEN] {
        let mut out = [0u8; FILE_LEN];
        out[..8].copy_from_slice(&MAGIC);
        out[8..40].copy_from_slice(&self.signer);
        out[40..].copy_from_slice(&self.signature);
        out
    }
}

/// Checks that `file` is a signature of `content` in `domain` by `trusted`.
///
/// Only `trusted` decides: the key named in the file is compared with it first so that the
/// error can say "wrong key" rather than "bad signature", and is never used to verify.
pub fn verify(
    trusted: &[u8; 32],
    domain: Domain,
    content: &[u8],
    file: &[u8],
) -> Result<(), SignatureError> {
    let parsed = SignatureFile::parse(file)?;
    if parsed.signer != *trusted {
        return Err(SignatureError::UntrustedKey {
            signer: fingerprint(&parsed.signer),
            trusted: fingerprint(trusted),
        });
    }
    let key = VerifyingKey::from_bytes(trusted).map_err(|_| SignatureError::BadTrustedKey)?;
    let signature = Signature::from_bytes(&parsed.signature);
    key.verify_strict(&message(domain, content), &signature)
        .map_err(|_| SignatureError::Mismatch)
}

/// Signs `content` in `domain` with the Ed25519 secret key (seed) `secret`; returns the
/// signature file. Host only: the loader never signs.
#[cfg(not(target_os = "uefi"))]
pub fn sign(secret: &[u8; 32], domain: Domain, content: &[u8]) -> [u8; FILE_LEN] {
    use ed25519_dalek::Signer;
    let key = ed25519_dalek::SigningKey::from_bytes(secret);
    SignatureFile {
        signer: key.verifying_key().to_bytes(),
        signature: key.sign(&message(domain, content)).to_bytes(),
    }
    .to_bytes()
}

/// The public key of the secret key (seed) `secret`. Host only.
#[cfg(not(target_os = "uefi"))]
pub fn public_key(secret: &[u8; 32]) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(secret)
        .verifying_key()
        .to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: [u8; 32] = [7; 32];
    const OTHER: [u8; 32] = [9; 32];

    #[test]
    fn a_signature_verifies_only_for_its_content_key_and_domain() {
        let key = public_key(&SECRET);
        let image = b"\x7fELF the kernel";
        let sig = sign(&SECRET, Domain::KernelImage, image);
        assert_eq!(verify(&key, Domain::KernelImage, image, &sig), Ok(()));

        let mut changed = image.to_vec();
        changed[5] ^= 1;
        assert_eq!(
            verify(&key, Domain::KernelImage, &changed, &sig),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&key, Domain::ReleaseManifest, image, &sig),
            Err(SignatureError::Mismatch)
        );
        let mut flipped = sig;
        flipped[FILE_LEN - 1] ^= 0x40;
        assert_eq!(
            verify(&key, Domain::KernelImage, image, &flipped),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn another_key_is_named_and_never_used() {
        let trusted = public_key(&SECRET);
        let sig = sign(&OTHER, Domain::KernelImage, b"x");
        assert_eq!(
            verify(&trusted, Domain::KernelImage, b"x", &sig),
            Err(SignatureError::UntrustedKey {
                signer: fingerprint(&public_key(&OTHER)),
                trusted: fingerprint(&trusted),
            })
        );
        // Naming the trusted key in the file does not make another key's signature pass.
        let mut forged = SignatureFile::parse(&sig).unwrap();
        forged.signer = trusted;
        assert_eq!(
            verify(&trusted, Domain::KernelImage, b"x", &forged.to_bytes()),
            Err(SignatureError::Mismatch)
        );
        let text = format!(
            "{}",
            verify(&trusted, Domain::KernelImage, b"x", &sig).unwrap_err()
        );
        assert!(text.starts_with("signed by key "), "{text}");
    }

    #[test]
    fn malformed_files_are_errors_not_panics() {
        let key = public_key(&SECRET);
        let sig = sign(&SECRET, Domain::KernelImage, b"x");
        for n in [0, 1, 8, 40, FILE_LEN - 1] {
            assert_eq!(
                verify(&key, Domain::KernelImage, b"x", &sig[..n]),
                Err(SignatureError::WrongLength(n))
            );
        }
        let mut long = sig.to_vec();
        long.push(0);
        assert_eq!(
            verify(&key, Domain::KernelImage, b"x", &long),
            Err(SignatureError::WrongLength(FILE_LEN + 1))
        );
        let mut magic = sig;
        magic[0] = b'X';
        assert_eq!(
            verify(&key, Domain::KernelImage, b"x", &magic),
            Err(SignatureError::BadMagic)
        );
    }

    #[test]
    fn a_small_order_trusted_key_or_signer_is_refused() {
        // The identity point: verify_strict refuses weak keys, whatever the signature.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let mut file = SignatureFile::parse(&sign(&SECRET, Domain::KernelImage, b"x")).unwrap();
        file.signer = weak;
        file.signature = [0; 64];
        assert!(matches!(
            verify(&weak, Domain::KernelImage, b"x", &file.to_bytes()),
            Err(SignatureError::Mismatch | SignatureError::BadTrustedKey)
        ));
    }
}
