//! The trusted console: the one process that owns COM1.
//!
//! It prints what its clients write and hands typed lines to the one client reading, following
//! [`brainix_proto::console`]. It holds exactly: its endpoint (`RECEIVE`), the eight COM1 ports
//! (read, write), IRQ 4 as notification bit [`IRQ_BIT`], and the kernel log (slot layout in
//! [`brainix_proto::console::slots`]). It never blocks on a client: a reader's reply token is
//! kept until its line is complete, while other clients are served. Each client's output starts
//! on a line of its own (see [`line::Owner`]).
//!
//! Input arrives by interrupt (receive-data-available on the UART). The console also polls the
//! line status every [`POLL_MS`] milliseconds, so typed input is never stranded if an interrupt
//! is lost; polling finds nothing when interrupts work.
#![cfg_attr(target_os = "none", no_std, no_main)]

mod line;

use brainix_abi::{Error, Message};
use brainix_proto::console::{IRQ_BIT, READ_LINE, READER, WRITE, WRITE_MAX, slots};
use brainix_proto::{OK, launch_handle, status_of};
use brainix_rt::cap::{self, Result};
use brainix_rt::{Endpoint, IoPorts, Irq, Received, ReplyToken};
use line::{Editor, Owner, Queue, Step};

brainix_rt::entry!(run);

/// COM1's first port.
const COM1: u16 = 0x3f8;
/// Receive buffer / transmit holding register.
const DATA: u16 = COM1;
/// Interrupt enable register.
const IER: u16 = COM1 + 1;
/// Modem control register.
const MCR: u16 = COM1 + 4;
/// Line status register.
const LSR: u16 = COM1 + 5;
/// LSR: a received byte is waiting.
const LSR_DATA_READY: u8 = 1 << 0;
/// LSR: the transmitter can take a byte.
const LSR_THR_EMPTY: u8 = 1 << 5;
/// Polls of LSR before a byte is written anyway: the UART never takes this long unless absent,
/// and a console that hangs on a missing UART would take every client with it.
const THR_SPINS: u32 = 10_000;
/// Bytes the 16550's transmit FIFO takes once it reports empty (the kernel turned FIFOs on).
const FIFO: usize = 16;
/// Fallback poll interval for typed input.
const POLL_MS: u64 = 50;

struct Console {
    endpoint: Endpoint,
    uart: IoPorts,
    irq: Irq,
    editor: Editor,
    queue: Queue,
    /// The client waiting in `READ_LINE`: its token, whether it lent a buffer, its badge.
    reader: Option<(ReplyToken, bool, u64)>,
    /// The badge of the last client that read a line: input typed between its reads (while it
    /// prints a prompt, say) still belongs on its line.
    last_reader: u64,
    /// Whose line is open on the screen.
    owner: Owner,
}

/// The owner of echoed input typed before anybody ever read.
const NO_READER: u64 = u64::MAX;

fn run(_pid: u64) -> ! {
    let mut console = Console {
        endpoint: Endpoint(launch_handle(slots::ENDPOINT)),
        uart: IoPorts(launch_handle(slots::COM1)),
        irq: Irq(launch_handle(slots::IRQ)),
        editor: Editor::new(),
        queue: Queue::new(),
        reader: None,
        last_reader: NO_READER,
        owner: Owner::new(),
    };
    // The kernel set the line up (115200 8N1, FIFOs on); the console adds the receive
    // interrupt: IER bit 0, and MCR OUT2, which gates the UART's interrupt onto the bus.
    let _ = console.uart.outb(IER, 0x01);
    let _ = console.uart.outb(MCR, 0x0b);
    let _ = console.irq.ack();
    console.serve()
}

impl Console {
    fn serve(&mut self) -> ! {
        let mut msg = Message::new(0);
        loop {
            match self.endpoint.recv(&mut msg, POLL_MS) {
                Ok(Received::Message {
                    token,
                    badge,
                    leases,
                }) => self.request(token, badge, leases, &msg),
                Ok(Received::Notification(bits)) => {
                    if bits & 1 << IRQ_BIT != 0 {
                        self.drain();
                        let _ = self.irq.ack();
                    }
                }
                Err(Error::Timeout) => self.drain(),
                // Nothing else can go wrong with a receive on our own endpoint; should it, the
                // next round tries again rather than leaving the machine without a console.
                Err(_) => {}
            }
        }
    }

    fn request(&mut self, token: ReplyToken, badge: u64, leases: u64, msg: &Message) {
        match msg.label {
            WRITE => {
                let mut reply = Message::new(OK);
                match self.write_request(token, badge, leases, msg) {
                    Ok(n) => reply.regs[0] = n,
                    Err(e) => reply.label = status_of(Err(e)),
                }
                let _ = cap::reply(token, &reply);
            }
            READ_LINE if badge & READER == 0 => {
                let _ = cap::reply(token, &Message::new(status_of(Err(Error::MissingRight))));
            }
            READ_LINE => {
                // The newest reader wins: a reader that died (a restarted shell) must not lock
                // its successor out. The one displaced is told so.
                self.last_reader = badge;
                if let Some((old, _, _)) = self.reader.replace((token, leases > 0, badge)) {
                    let _ = cap::reply(old, &Message::new(status_of(Err(Error::Busy))));
                }
                self.deliver();
            }
            _ => {
                let _ = cap::reply(token, &Message::new(status_of(Err(Error::NoSuchCall))));
            }
        }
    }

    /// Prints a `WRITE`: from lease 0 when lent, else from the payload.
    fn write_request(
        &mut self,
        token: ReplyToken,
        badge: u64,
        leases: u64,
        msg: &Message,
    ) -> Result<u64> {
        let len = msg.regs[0];
        if len > WRITE_MAX {
            return Err(Error::OutOfRange);
        }
        if leases == 0 {
            let data = msg.data().ok_or(Error::PayloadTooLarge)?;
            let data = data.get(..len as usize).ok_or(Error::OutOfRange)?;
            self.print(badge, data);
            return Ok(len);
        }
        let mut chunk = [0u8; 256];
        let mut done = 0u64;
        while done < len {
            let want = (len - done).min(chunk.len() as u64) as usize;
            let got = cap::lease_read(token, 0, done, &mut chunk[..want])?;
            if got == 0 {
                break;
            }
            self.print(badge, &chunk[..got.min(want)]);
            done += got as u64;
        }
        Ok(done)
    }

    /// Takes every byte the UART holds through the line editor.
    fn drain(&mut self) {
        while self.uart.inb(LSR).is_ok_and(|s| s & LSR_DATA_READY != 0) {
            let Ok(byte) = self.uart.inb(DATA) else { break };
            // Echo belongs to the line of whoever reads it, or last read one.
            let owner = self.reader.map_or(self.last_reader, |(_, _, badge)| badge);
            match self.editor.feed(byte) {
                Step::Nothing => {}
                Step::Echo(b) => self.print(owner, &[b]),
                Step::Erase => self.print(owner, b"\x08 \x08"),
                Step::Line => {
                    self.print(owner, b"\r\n");
                    self.queue.push(self.editor.line());
                    self.editor.clear();
                    self.deliver();
                }
            }
        }
    }

    /// Hands the oldest queued line to the waiting reader, if both exist.
    fn deliver(&mut self) {
        let (Some((token, leased, _)), Some(line)) = (self.reader, self.queue.front()) else {
            return;
        };
        let mut reply = Message::new(OK);
        reply.regs[0] = line.len() as u64;
        let written = if leased {
            cap::lease_write(token, 0, 0, line).map(|n| reply.regs[0] = n as u64)
        } else {
            reply.payload[..line.len()].copy_from_slice(line);
            reply.len = line.len() as u64;
            Ok(())
        };
        if let Err(e) = written {
            reply = Message::new(status_of(Err(e)));
        }
        self.reader = None;
        // A reader that went away keeps the line for the next one.
        if cap::reply(token, &reply).is_ok() && written.is_ok() {
            self.queue.pop();
        }
    }

    /// Prints `owner`'s bytes, on a fresh line if another owner left one open.
    fn print(&mut self, owner: u64, bytes: &[u8]) {
        if self.owner.print(owner, bytes) {
            self.put(b"\r\n");
        }
        self.put(bytes);
    }

    /// Writes bytes to COM1 as they are: each time the transmitter is empty, one FIFO's worth.
    fn put(&self, bytes: &[u8]) {
        for burst in bytes.chunks(FIFO) {
            let mut spins = 0;
            while spins < THR_SPINS && !self.uart.inb(LSR).is_ok_and(|s| s & LSR_THR_EMPTY != 0) {
                spins += 1;
            }
            for &b in burst {
                let _ = self.uart.outb(DATA, b);
            }
        }
    }
}
