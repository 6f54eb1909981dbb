//! Ed25519 key files (host only).
//!
//! One line each, so a person can tell them apart and a mistake is caught before it signs:
//!
//! - secret: `brainix-ed25519-secret:<64 hex digits of the 32-byte seed>`
//! - public: `brainix-ed25519-public:<64 hex digits of the public key>`
//!
//! Secret keys are never in the repository: `cargo xtask keygen FILE` writes one (mode 0600), and
//! the tests make their own throw-away keys.

use std::fmt;

const SECRET_PREFIX: &str = "brainix-ed25519-secret:";
const PUBLIC_PREFIX: &str = "brainix-ed25519-public:";

/// Why a key file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The file starts with the other kind's prefix (a public key given as the secret, or the
    /// other way round).
    WrongKind {
        /// What was expected.
        expected: &'static str,
    },
    /// Not `<prefix><64 hex digits>` with an optional trailing newline.
    Malformed {
        /// What was expected.
        expected: &'static str,
    },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::WrongKind { expected } => {
                write!(f, "this is the wrong kind of key file; expected {expected}")
            }
            KeyError::Malformed { expected } => write!(
                f,
                "not a key file; expected one line: {expected}<64 hex digits>"
            ),
        }
    }
}

impl std::error::Error for KeyError {}

fn parse(text: &str, prefix: &'static str, other: &'static str) -> Result<[u8; 32], KeyError> {
    let line = text.strip_suffix('\n').unwrap_or(text);
    let Some(hex) = line.strip_prefix(prefix) else {
        return Err(if line.starts_with(other) {
            KeyError::WrongKind { expected: prefix }
        } else {
            KeyError::Malformed { expected: prefix }
        });
    };
    let bad = || KeyError::Malformed { expected: prefix };
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut key = [0u8; 32];
    for (i, k) in key.iter_mut().enumerate() {
        *k = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(key)
}

fn format(prefix: &str, key: &[u8; 32]) -> String {
    let mut hex = [0u8; 64];
    format!("{prefix}{}\n", crate::hex(key, &mut hex))
}

/// Parses a secret key file; returns the 32-byte seed.
pub fn parse_secret(text: &str) -> Result<[u8; 32], KeyError> {
    parse(text, SECRET_PREFIX, PUBLIC_PREFIX)
}

/// Parses a public key file.
pub fn parse_public(text: &str) -> Result<[u8; 32], KeyError> {
    parse(text, PUBLIC_PREFIX, SECRET_PREFIX)
}

/// The text of a secret key file.
pub fn format_secret(seed: &[u8; 32]) -> String {
    format(SECRET_PREFIX, seed)
}

/// The text of a public key file.
pub fn format_public(key: &[u8; 32]) -> String {
    format(PUBLIC_PREFIX, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_kinds_are_not_mixed_up() {
        let seed = [0xab; 32];
        let public = crate::signature::public_key(&seed);
        assert_eq!(parse_secret(&format_secret(&seed)), Ok(seed));
        assert_eq!(parse_public(&format_public(&public)), Ok(public));
        assert_eq!(
            parse_secret(&format_public(&public)),
            Err(KeyError::WrongKind {
                expected: SECRET_PREFIX
            })
        );
        assert!(matches!(
            parse_public(&format_secret(&seed)),
            Err(KeyError::WrongKind { .. })
        ));
    }

    #[test]
    fn malformed_files_are_refused() {
        for text in [
            "",
            "brainix-ed25519-secret:",
            "brainix-ed25519-secret:abcd\n",
            &format!("brainix-ed25519-secret:{}\n\n", "a".repeat(64)),
            &format!("brainix-ed25519-secret:{}", "g".repeat(64)),
            &format!("brainix-ed25519-secret:{}", "é".repeat(32)),
            &"a".repeat(64),
        ] {
            assert!(
                matches!(parse_secret(text), Err(KeyError::Malformed { .. })),
                "{text:?}"
            );
        }
    }
}
