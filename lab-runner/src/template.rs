//! Command templates for physical boards: power, image delivery.
//!
//! A template is split into words once, shell-style (whitespace separates, single and double
//! quotes group, backslash escapes), and placeholders such as `{image}` are substituted *inside*
//! words afterwards. Nothing is ever handed to a shell by the runner, so a kernel command line or
//! a path with spaces cannot turn into extra commands. A board that wants a shell writes
//! `sh -c "..."` itself and owns that choice.

use std::collections::BTreeMap;

use thiserror::Error;

/// Placeholders a template may use, with what they expand to.
pub const PLACEHOLDERS: &[(&str, &str)] = &[
    ("board", "the board name"),
    ("image", "absolute path of the kernel image for this boot"),
    (
        "cmdline",
        "the kernel command line for this boot (one word)",
    ),
    (
        "tftp_dir",
        "the board's TFTP directory (tftp image delivery only)",
    ),
    ("action", "`on` or `off` (power templates)"),
];

/// Why a template was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TemplateError {
    /// A quote was opened and never closed.
    #[error("unterminated {0} quote")]
    UnterminatedQuote(char),
    /// A `{` without `}` or a placeholder name nobody defines.
    #[error("unknown placeholder `{{{0}}}`")]
    UnknownPlaceholder(String),
    /// A `{` that never closes.
    #[error("`{{` without a closing `}}`")]
    UnclosedBrace,
    /// The template has no words.
    #[error("empty command")]
    Empty,
}

/// A parsed command template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    words: Vec<String>,
}

impl Template {
    /// Parses and checks `text`. Every placeholder must be one of [`PLACEHOLDERS`].
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let words = split_words(text)?;
        if words.is_empty() {
            return Err(TemplateError::Empty);
        }
        for w in &words {
            for name in placeholders_in(w)? {
                if !PLACEHOLDERS.iter().any(|(p, _)| *p == name) {
                    return Err(TemplateError::UnknownPlaceholder(name));
                }
            }
        }
        Ok(Template { words })
    }

    /// Substitutes placeholders; a placeholder without a value expands to the empty string.
    /// `{{` and `}}` stand for literal braces.
    pub fn expand(&self, values: &BTreeMap<&str, String>) -> Vec<String> {
        self.words.iter().map(|w| expand_word(w, values)).collect()
    }
}

fn split_words(text: &str) -> Result<Vec<String>, TemplateError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => return Err(TemplateError::UnterminatedQuote(c)),
                        Some(q) if q == c => break,
                        Some('\\') if c == '"' => cur.extend(chars.next()),
                        Some(other) => cur.push(other),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.extend(chars.next());
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

fn placeholders_in(word: &str) -> Result<Vec<String>, TemplateError> {
    let mut names = Vec::new();
    let mut rest = word;
    while let Some(i) = rest.find(['{', '}']) {
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            rest = &tail[2..];
            continue;
        }
        if let Some(after) = tail.strip_prefix('}') {
            rest = after;
            continue;
        }
        let end = tail.find('}').ok_or(TemplateError::UnclosedBrace)?;
        names.push(tail[1..end].to_owned());
        rest = &tail[end + 1..];
    }
    Ok(names)
}

fn expand_word(word: &str, values: &BTreeMap<&str, String>) -> String {
    let mut out = String::new();
    let mut rest = word;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push(tail.as_bytes()[0] as char);
            rest = &tail[2..];
        } else if let Some(after) = tail.strip_prefix('}') {
            out.push('}');
            rest = after;
        } else {
            // parse() guaranteed the brace closes.
            let end = tail.find('}').unwrap_or(tail.len() - 1);
            if let Some(v) = values.get(&tail[1..end]) {
                out.push_str(v);
            }
            rest = &tail[end + 1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(pairs: &[(&'static str, &str)]) -> BTreeMap<&'static str, String> {
        pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
    }

    #[test]
    fn splits_quotes_and_substitutes_inside_words() {
        let t =
            Template::parse(r#"ipmitool -H "bmc 7" chassis power {action} --img={image}"#).unwrap();
        let argv = t.expand(&vals(&[("action", "on"), ("image", "/x y/k.elf")]));
        assert_eq!(
            argv,
            [
                "ipmitool",
                "-H",
                "bmc 7",
                "chassis",
                "power",
                "on",
                "--img=/x y/k.elf"
            ]
        );
    }

    #[test]
    fn substituted_values_never_become_extra_words() {
        let t = Template::parse("flash {cmdline}").unwrap();
        let argv = t.expand(&vals(&[("cmdline", "a b; rm -rf / $(x)")]));
        assert_eq!(argv, ["flash", "a b; rm -rf / $(x)"]);
    }

    #[test]
    fn refuses_unknown_placeholders_and_bad_quotes() {
        assert_eq!(
            Template::parse("x {imgae}"),
            Err(TemplateError::UnknownPlaceholder("imgae".into()))
        );
        assert_eq!(
            Template::parse("x 'open"),
            Err(TemplateError::UnterminatedQuote('\''))
        );
        assert_eq!(
            Template::parse("x {image"),
            Err(TemplateError::UnclosedBrace)
        );
        assert_eq!(Template::parse("   "), Err(TemplateError::Empty));
    }

    #[test]
    fn doubled_braces_are_literal() {
        let t = Template::parse("echo {{x}} {board}").unwrap();
        assert_eq!(t.expand(&vals(&[("board", "b")])), ["echo", "{x}", "b"]);
    }
}
