//! Line editing and the queue of typed lines: pure logic, tested on the host.

use brainix_proto::console::{LINE_MAX, QUEUED_LINES};

/// What the console should do after a typed byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to show (ignored control byte, full line, LF after CR).
    Nothing,
    /// Echo this byte.
    Echo(u8),
    /// Erase the last byte on screen.
    Erase,
    /// The line is complete: take it with [`Editor::line`], then [`Editor::clear`].
    Line,
}

/// The line being typed.
pub struct Editor {
    bytes: [u8; LINE_MAX],
    len: usize,
    after_cr: bool,
}

impl Editor {
    /// An empty line.
    pub const fn new() -> Editor {
        Editor {
            bytes: [0; LINE_MAX],
            len: 0,
            after_cr: false,
        }
    }

    /// Feeds one byte from the UART.
    pub fn feed(&mut self, byte: u8) -> Step {
        let after_cr = core::mem::replace(&mut self.after_cr, byte == b'\r');
        match byte {
            b'\r' => Step::Line,
            // A terminal sends CR, a pipe LF, some both: CR LF ends one line, not two.
            b'\n' if after_cr => Step::Nothing,
            b'\n' => Step::Line,
            0x08 | 0x7f if self.len > 0 => {
                self.len -= 1;
                Step::Erase
            }
            b'\t' => self.put(b' '),
            0x20..=0x7e => self.put(byte),
            // Other control bytes and non-ASCII are dropped: a byte-wise erase could not undo
            // half of a multi-byte character, and escape sequences are not interpreted.
            _ => Step::Nothing,
        }
    }

    fn put(&mut self, byte: u8) -> Step {
        if self.len == LINE_MAX {
            return Step::Nothing;
        }
        self.bytes[self.len] = byte;
        self.len += 1;
        Step::Echo(byte)
    }

    /// The line so far.
    pub fn line(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Starts a new line.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

/// Complete lines nobody has read yet, oldest first.
pub struct Queue {
    lines: [([u8; LINE_MAX], usize); QUEUED_LINES],
    head: usize,
    count: usize,
}

impl Queue {
    /// An empty queue.
    pub const fn new() -> Queue {
        Queue {
            lines: [([0; LINE_MAX], 0); QUEUED_LINES],
            head: 0,
            count: 0,
        }
    }

    /// Adds a line; when full, the oldest is dropped (and `true` returned).
    pub fn push(&mut self, line: &[u8]) -> bool {
        let dropped = self.count == QUEUED_LINES;
        if dropped {
            self.pop();
        }
        let slot = &mut self.lines[(self.head + self.count) % QUEUED_LINES];
        let n = line.len().min(LINE_MAX);
        slot.0[..n].copy_from_slice(&line[..n]);
        slot.1 = n;
        self.count += 1;
        dropped
    }

    /// The oldest line, left in the queue.
    pub fn front(&self) -> Option<&[u8]> {
        (self.count > 0).then(|| {
            let (bytes, len) = &self.lines[self.head];
            &bytes[..*len]
        })
    }

    /// Removes the oldest line.
    pub fn pop(&mut self) {
        if self.count > 0 {
            self.head = (self.head + 1) % QUEUED_LINES;
            self.count -= 1;
        }
    }
}

/// Who owns the line being printed. A client's output always starts on a line of its own: when
/// another client left a line open, the console ends it first. So no client can finish, and
/// thereby forge, a line another client began (a result line a test reads, or the prompt).
pub struct Owner {
    open: bool,
    owner: u64,
}

impl Owner {
    /// Nothing printed yet.
    pub const fn new() -> Owner {
        Owner {
            open: false,
            owner: 0,
        }
    }

    /// Records that `owner` prints `bytes`; returns whether a line end must be printed first.
    pub fn print(&mut self, owner: u64, bytes: &[u8]) -> bool {
        let Some(&last) = bytes.last() else {
            return false;
        };
        let break_first = self.open && self.owner != owner;
        self.open = last != b'\n';
        self.owner = owner;
        break_first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(editor: &mut Editor, bytes: &[u8]) -> Vec<Step> {
        bytes.iter().map(|&b| editor.feed(b)).collect()
    }

    #[test]
    fn echoes_erases_and_ends_lines() {
        let mut e = Editor::new();
        let steps = typed(&mut e, b"lx\x08s\r");
        assert_eq!(
            steps,
            [
                Step::Echo(b'l'),
                Step::Echo(b'x'),
                Step::Erase,
                Step::Echo(b's'),
                Step::Line
            ]
        );
        assert_eq!(e.line(), b"ls");
    }

    #[test]
    fn cr_lf_is_one_line_end_and_lf_alone_is_one_too() {
        let mut e = Editor::new();
        assert_eq!(typed(&mut e, b"\r\n"), [Step::Line, Step::Nothing]);
        assert_eq!(typed(&mut e, b"\n\n"), [Step::Line, Step::Line]);
    }

    #[test]
    fn backspace_on_an_empty_line_and_control_bytes_do_nothing() {
        let mut e = Editor::new();
        assert_eq!(typed(&mut e, b"\x08\x7f\x1b\x03\xc3"), [Step::Nothing; 5]);
        assert_eq!(e.line(), b"");
        assert_eq!(
            typed(&mut e, b"a\tb"),
            [Step::Echo(b'a'), Step::Echo(b' '), Step::Echo(b'b')]
        );
        assert_eq!(typed(&mut e, b"\x7f"), [Step::Erase]);
        assert_eq!(e.line(), b"a ");
    }

    #[test]
    fn a_full_line_takes_no_more() {
        let mut e = Editor::new();
        for _ in 0..LINE_MAX {
            assert!(matches!(e.feed(b'x'), Step::Echo(b'x')));
        }
        assert_eq!(e.feed(b'y'), Step::Nothing);
        assert_eq!(e.line().len(), LINE_MAX);
        assert_eq!(e.feed(b'\n'), Step::Line);
        e.clear();
        assert_eq!(e.line(), b"");
    }

    #[test]
    fn another_client_cannot_continue_an_open_line() {
        let mut o = Owner::new();
        assert!(!o.print(2, b"brainix> "));
        assert!(!o.print(2, b"ps"), "the same client goes on");
        assert!(
            o.print(5, b"ATTACK x REFUSED y\n"),
            "a second client starts afresh"
        );
        assert!(!o.print(2, b"brainix> "), "the line was ended");
        assert!(!o.print(2, b""), "nothing printed, nothing to end");
        assert!(o.print(7, b"forged"));
    }

    #[test]
    fn the_queue_keeps_order_and_drops_the_oldest_when_full() {
        let mut q = Queue::new();
        assert_eq!(q.front(), None);
        for i in 0..QUEUED_LINES as u8 {
            assert!(!q.push(&[b'0' + i]));
        }
        assert!(q.push(b"new"));
        assert_eq!(q.front(), Some(&b"1"[..]));
        for _ in 1..QUEUED_LINES {
            q.pop();
        }
        assert_eq!(q.front(), Some(&b"new"[..]));
        q.pop();
        q.pop();
        assert_eq!(q.front(), None);
    }
}
