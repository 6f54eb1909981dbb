//! Where a value sits in a TOML file, so that every board and plan error can name `file:line:column`.
//!
//! Serde decoding (via `toml`) reports spans for syntax and type errors. Semantic validation runs
//! after decoding, on plain structs that have forgotten where they came from; [`SourceText::locate`]
//! re-parses the document with spans kept and walks a key path back to its position.

use std::fmt;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

/// One element of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// A key in a table.
    Name(String),
    /// A position in an array (array of tables included).
    Index(usize),
}

impl From<&str> for Key {
    fn from(s: &str) -> Self {
        Key::Name(s.to_owned())
    }
}

impl From<usize> for Key {
    fn from(i: usize) -> Self {
        Key::Index(i)
    }
}

/// A position in a source file, 1-based, as editors and compilers print it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub path: PathBuf,
    /// Line, counting from 1.
    pub line: usize,
    /// Column in characters, counting from 1.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

/// The text of a TOML file together with its path.
#[derive(Debug, Clone)]
pub struct SourceText {
    /// Where the text was read from (used in messages only).
    pub path: PathBuf,
    /// The whole file.
    pub text: String,
}

impl SourceText {
    /// Wraps already-read text.
    pub fn new(path: impl AsRef<Path>, text: impl Into<String>) -> Self {
        SourceText {
            path: path.as_ref().to_path_buf(),
            text: text.into(),
        }
    }

    /// The location of byte `offset` (clamped to the end of the text).
    pub fn location_of(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let before = &self.text[..floor_char_boundary(&self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Location {
            path: self.path.clone(),
            line,
            column,
        }
    }

    /// The location of the value at `path`, or of the closest enclosing value that exists, or of
    /// the file start when the document does not parse at all. Never fails: an error message must
    /// always be able to point somewhere.
    pub fn locate(&self, path: &[Key]) -> Location {
        let Ok(root) = DeTable::parse(&self.text) else {
            return self.location_of(0);
        };
        let mut best = 0usize;
        let mut current: Option<&DeValue<'_>> = None;
        let mut table = Some(root.get_ref());
        for key in path {
            let next = match (key, table, current) {
                (Key::Name(name), Some(t), _) => t
                    .iter()
                    .find(|(k, _)| k.get_ref().as_ref() == name.as_str())
                    .map(|(k, v)| (k.span().start, v)),
                (Key::Index(i), None, Some(DeValue::Array(a))) => {
                    a.get(*i).map(|v| (v.span().start, v))
                }
                _ => None,
            };
            let Some((start, value)) = next else { break };
            // Point at the key for table entries (that is where people look), at the value otherwise.
            best = start;
            current = Some(value.get_ref());
            table = match value.get_ref() {
                DeValue::Table(t) => Some(t),
                _ => None,
            };
        }
        self.location_of(best)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Renders a key path the way it would be written in TOML, for messages: `qemu.memory_mib`,
/// `check[2].timeout_s`.
pub fn display_path(path: &[Key]) -> String {
    let mut out = String::new();
    for key in path {
        match key {
            Key::Name(n) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(n);
            }
            Key::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Builds a key path from a mixed list: `path!["check", 2, "timeout_s"]`.
#[macro_export]
macro_rules! key_path {
    ($($k:expr),* $(,)?) => { [$($crate::source::Key::from($k)),*] };
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "schema = 1\n[qemu]\nmachine = \"q35\"\nmemory_mib = 12\n\n[[device]]\nname = \"a\"\n[[device]]\nname = \"b\"\n";

    #[test]
    fn locates_nested_keys_and_array_tables() {
        let s = SourceText::new("b.toml", DOC);
        assert_eq!(s.locate(&key_path!["qemu", "memory_mib"]).line, 4);
        assert_eq!(s.locate(&key_path!["device", 1, "name"]).line, 9);
        assert_eq!(s.locate(&key_path!["device", 0, "name"]).line, 7);
    }

    #[test]
    fn missing_key_falls_back_to_closest_parent() {
        let s = SourceText::new("b.toml", DOC);
        assert_eq!(s.locate(&key_path!["qemu", "nope"]).line, 2);
        assert_eq!(s.locate(&key_path!["nothing"]).line, 1);
    }

    #[test]
    fn unparsable_text_points_at_start_without_panicking() {
        let s = SourceText::new("b.toml", "[[[ nonsense \u{0}");
        assert_eq!(s.locate(&key_path!["a", 3]).line, 1);
        let l = s.location_of(10_000);
        assert_eq!(l.line, 1);
    }

    #[test]
    fn display_path_reads_like_toml() {
        assert_eq!(
            display_path(&key_path!["check", 2, "timeout_s"]),
            "check[2].timeout_s"
        );
    }
}

/// One problem found in a board or plan file: where, what is wrong, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Where the problem is.
    pub location: Location,
    /// What is wrong, naming the key.
    pub problem: String,
    /// What would have been accepted; empty when the problem text already says it.
    pub expected: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.problem)?;
        if !self.expected.is_empty() {
            write!(f, "; expected {}", self.expected)?;
        }
        Ok(())
    }
}

/// Collects findings while validating one file.
#[derive(Debug)]
pub struct Findings<'a> {
    source: &'a SourceText,
    /// What has been found so far.
    pub list: Vec<Finding>,
}

impl<'a> Findings<'a> {
    /// An empty collector for `source`.
    pub fn new(source: &'a SourceText) -> Self {
        Findings {
            source,
            list: Vec::new(),
        }
    }

    /// Records a problem at key path `path`.
    pub fn add(&mut self, path: &[Key], problem: impl Into<String>, expected: impl Into<String>) {
        let problem = format!("`{}`: {}", display_path(path), problem.into());
        self.list.push(Finding {
            location: self.source.locate(path),
            problem,
            expected: expected.into(),
        });
    }

    /// Converts a decoding error from the `toml` crate (syntax, type, unknown or missing key).
    pub fn add_toml_error(&mut self, err: &toml::de::Error) {
        let location = match err.span() {
            Some(span) => self.source.location_of(span.start),
            None => self.source.location_of(0),
        };
        let problem = err.message().trim().replace('\n', " ");
        self.list.push(Finding {
            location,
            problem,
            expected: String::new(),
        });
    }
}

/// Renders findings one per line, for error messages.
pub fn render_findings(list: &[Finding]) -> String {
    list.iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// True when `s` is a lowercase identifier made of `[a-z0-9-]`, starting with a letter or digit,
/// at most `max` bytes long. Used for board, server, device and feature names.
pub fn is_simple_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
}

/// Why a configuration file could not be read into a [`SourceText`].
#[derive(Debug)]
pub enum ReadError {
    /// The file system said no.
    Io(std::io::Error),
    /// The file is larger than the caller allows.
    TooLarge(Finding),
}

/// Reads a configuration file of at most `max_bytes`; invalid UTF-8 is replaced (and then fails
/// decoding with a located message instead of an I/O error).
pub fn read_limited(path: &Path, max_bytes: u64) -> Result<SourceText, ReadError> {
    let meta = std::fs::metadata(path).map_err(ReadError::Io)?;
    if meta.len() > max_bytes {
        let s = SourceText::new(path, "");
        let mut f = Findings::new(&s);
        f.add(
            &[],
            format!("file is {} bytes", meta.len()),
            format!("at most {max_bytes} bytes"),
        );
        return Err(ReadError::TooLarge(f.list.remove(0)));
    }
    let bytes = std::fs::read(path).map_err(ReadError::Io)?;
    Ok(SourceText::new(
        path,
        String::from_utf8_lossy(&bytes).into_owned(),
    ))
}

/// Decodes `source` into `T` and runs `validate` on it; returns every finding, or the value.
pub fn decode<T: serde::de::DeserializeOwned>(
    source: &SourceText,
    validate: impl FnOnce(&T, &mut Findings<'_>),
) -> Result<T, Vec<Finding>> {
    let mut findings = Findings::new(source);
    let value: T = match toml::from_str(&source.text) {
        Ok(v) => v,
        Err(e) => {
            findings.add_toml_error(&e);
            return Err(findings.list);
        }
    };
    validate(&value, &mut findings);
    if findings.list.is_empty() {
        Ok(value)
    } else {
        Err(findings.list)
    }
}
