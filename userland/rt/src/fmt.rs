//! Formatting without a heap: a fixed buffer that `core::fmt` writes into.

use core::fmt;

/// `N` bytes of formatted text. Writing past the end truncates (at a byte, so a multi-byte
/// character may be cut) and remembers that it did.
pub struct Buffer<const N: usize> {
    bytes: [u8; N],
    len: usize,
    truncated: bool,
}

impl<const N: usize> Default for Buffer<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Buffer<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        Buffer {
            bytes: [0; N],
            len: 0,
            truncated: false,
        }
    }

    /// What was written.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// What was written, as text (up to the last whole character if truncation cut one).
    pub fn as_str(&self) -> &str {
        match core::str::from_utf8(self.as_bytes()) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&self.bytes[..e.valid_up_to()]).unwrap_or(""),
        }
    }

    /// Whether anything was cut off.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Empties the buffer.
    pub fn clear(&mut self) {
        self.len = 0;
        self.truncated = false;
    }

    /// Appends what fits of `bytes`; returns how many bytes were taken.
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(N - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
        if n < bytes.len() {
            self.truncated = true;
        }
        n
    }

    /// Formats `args` through this buffer, handing `flush` each full buffer and the rest at the
    /// end, so output of any length goes out in pieces of at most `N` bytes.
    pub fn sink(&mut self, args: fmt::Arguments<'_>, flush: impl FnMut(&[u8])) {
        struct Sink<'a, const N: usize, F: FnMut(&[u8])> {
            buf: &'a mut Buffer<N>,
            flush: F,
        }
        impl<const N: usize, F: FnMut(&[u8])> fmt::Write for Sink<'_, N, F> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                let mut rest = s.as_bytes();
                while !rest.is_empty() {
                    if self.buf.len == N {
                        (self.flush)(self.buf.as_bytes());
                        self.buf.clear();
                    }
                    let n = self.buf.push(rest);
                    self.buf.truncated = false;
                    rest = &rest[n..];
                }
                Ok(())
            }
        }
        let mut sink = Sink { buf: self, flush };
        let _ = fmt::write(&mut sink, args);
        if sink.buf.len > 0 {
            (sink.flush)(sink.buf.as_bytes());
            sink.buf.clear();
        }
    }
}

impl<const N: usize> fmt::Write for Buffer<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::fmt::Write;
    use std::vec::Vec;

    #[test]
    fn truncates_and_says_so() {
        let mut b = Buffer::<8>::new();
        write!(b, "pid {}", 42).unwrap();
        assert_eq!((b.as_str(), b.truncated()), ("pid 42", false));
        write!(b, " and more").unwrap();
        assert_eq!((b.as_str(), b.truncated()), ("pid 42 a", true));
    }

    #[test]
    fn a_cut_character_is_left_out_of_the_text() {
        let mut b = Buffer::<4>::new();
        b.push("abé".as_bytes());
        b.push("é".as_bytes());
        assert_eq!(b.as_str(), "abé");
        let mut c = Buffer::<3>::new();
        c.push("abé".as_bytes());
        assert_eq!(c.as_str(), "ab");
    }

    #[test]
    fn sink_hands_out_everything_in_pieces() {
        let mut b = Buffer::<4>::new();
        let mut pieces: Vec<Vec<u8>> = Vec::new();
        b.sink(format_args!("{}-{}", "abcdef", 12345), |p| {
            pieces.push(p.to_vec())
        });
        assert!(pieces.iter().all(|p| p.len() <= 4));
        assert_eq!(pieces.concat(), b"abcdef-12345");
    }
}
