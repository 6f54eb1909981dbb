//! INV-IPC: synchronous rendezvous. A message moves only when sender and receiver are both in
//! the kernel for it, straight from the sender's memory to the receiver's: there is no queue and
//! no buffer that outlives the copy. Bulk data moves through leases the caller lends for the
//! length of one call; the server reaches them only through [`System::lease_copy`], which checks
//! the lease on every access.
//!
//! Nothing here can hang a caller forever on a dead peer: sends and calls to an endpoint whose
//! receiver is not running fail at once, and [`System::kill`] fails everyone already waiting.

use crate::cap::Object;
use crate::system::{CallArgs, Machine, Spaces, State, System};
use brainix_abi::{
    CapType, Error, Handle, Lease, MAX_LEASES, MAX_PAYLOAD, Message, NOTIFICATION_TOKEN, rights,
};

/// Size of a lease descriptor in user memory.
const LEASE_SIZE: u64 = core::mem::size_of::<Lease>() as u64;
/// Chunk size of cross-process copies, through a buffer on the kernel stack.
const COPY_CHUNK: usize = 256;

/// A reply token: pid in the low 16 bits, the caller's generation above. A token is not a
/// capability: [`System::reply`] accepts it only if that process is, right now, waiting for a
/// reply from the replier.
pub fn token(pid: u16, generation: u32) -> u64 {
    u64::from(pid) | u64::from(generation) << 16
}

impl<S: Spaces, M: Machine> System<S, M> {
    /// Checks an endpoint capability, including revocation of the endpoint itself.
    pub fn endpoint(&self, pid: u16, h: u64, right: u64) -> Result<(u16, u64), Error> {
        let cap = self.procs[usize::from(pid)]
            .caps
            .lookup(Handle(h), CapType::Endpoint, right)?;
        match cap.object {
            Object::Endpoint {
                id,
                generation,
                badge,
            } => {
                let ep = self
                    .endpoints
                    .get(usize::from(id))
                    .ok_or(Error::BadHandle)?;
                if ep.generation != generation {
                    return Err(Error::StaleHandle);
                }
                Ok((id, badge))
            }
            _ => Err(Error::WrongType),
        }
    }

    /// Reads a message from `pid`'s memory: the whole `Message` at `addr` must be readable, and
    /// its `len` at most [`MAX_PAYLOAD`].
    fn read_message(&self, pid: u16, addr: u64) -> Result<Message, Error> {
        let mut raw = [0u8; core::mem::size_of::<Message>()];
        self.spaces.read(pid, addr, &mut raw)?;
        let word =
            |i: usize| u64::from_le_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        let mut msg = Message::new(word(0));
        for (i, r) in msg.regs.iter_mut().enumerate() {
            *r = word(1 + i);
        }
        msg.len = word(5);
        if msg.len > MAX_PAYLOAD as u64 {
            return Err(Error::PayloadTooLarge);
        }
        msg.payload.copy_from_slice(&raw[Message::HEADER..]);
        Ok(msg)
    }

    /// Writes a message (header and used payload, in one copy) into `pid`'s memory.
    fn write_message(&mut self, pid: u16, addr: u64, msg: &Message) -> Result<(), Error> {
        let mut raw = [0u8; core::mem::size_of::<Message>()];
        let words = [
            msg.label,
            msg.regs[0],
            msg.regs[1],
            msg.regs[2],
            msg.regs[3],
            msg.len,
        ];
        for (i, w) in words.iter().enumerate() {
            raw[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        let len = (msg.len as usize).min(MAX_PAYLOAD);
        raw[Message::HEADER..Message::HEADER + len].copy_from_slice(&msg.payload[..len]);
        self.spaces.write(pid, addr, &raw[..Message::HEADER + len])
    }

    /// Checks that a whole message buffer in `pid`'s memory is writable.
    fn check_writable(&self, pid: u16, addr: u64) -> Result<(), Error> {
        self.spaces
            .check(pid, addr, core::mem::size_of::<Message>() as u64, true)
    }

    /// `send` (`call` = None) or `call`. Returns `None` when the caller blocked.
    pub fn send(
        &mut self,
        pid: u16,
        h: u64,
        msg: u64,
        call: Option<CallArgs>,
    ) -> Option<Result<[u64; 4], Error>> {
        let (ep, badge) = match self.endpoint(pid, h, rights::SEND) {
            Ok(e) => e,
            Err(e) => return Some(Err(e)),
        };
        // Validate everything the rendezvous will need before anyone waits on it.
        let message = match self.read_message(pid, msg) {
            Ok(m) => m,
            Err(e) => return Some(Err(e)),
        };
        if let Some(c) = call
            && let Err(e) = self.check_call(pid, &c)
        {
            return Some(Err(e));
        }
        let Some(receiver) = self.endpoints[usize::from(ep)].receiver else {
            return Some(Err(Error::PeerDead));
        };
        if !self.procs[usize::from(receiver)].state.is_alive() {
            return Some(Err(Error::PeerDead));
        }
        self.procs[usize::from(pid)].state = State::Sending {
            ep,
            badge,
            msg,
            call,
        };
        if let State::Receiving { ep: e, buf, .. } = self.procs[usize::from(receiver)].state
            && e == ep
        {
            self.deliver(pid, receiver, buf, Some(message));
        }
        match self.procs[usize::from(pid)].state {
            State::Runnable => Some(Ok([0; 4])),
            _ => None,
        }
    }

    /// The caller's reply buffer must be writable and every lease must lie in its memory with
    /// the access it grants.
    fn check_call(&self, pid: u16, c: &CallArgs) -> Result<(), Error> {
        if c.lease_count > MAX_LEASES as u64 {
            return Err(Error::PayloadTooLarge);
        }
        self.check_writable(pid, c.reply)?;
        for i in 0..c.lease_count {
            let lease = self.read_lease(pid, c, i).map_err(|_| Error::BadLease)?;
            if lease.access & !(Lease::READ | Lease::WRITE) != 0 || lease.len > (1 << 30) {
                return Err(Error::BadLease);
            }
            // A lease must lie entirely in the caller's memory with the access it grants.
            self.spaces
                .check(pid, lease.addr, lease.len, lease.access & Lease::WRITE != 0)
                .map_err(|_| Error::BadLease)?;
        }
        Ok(())
    }

    fn read_lease(&self, pid: u16, c: &CallArgs, index: u64) -> Result<Lease, Error> {
        let mut raw = [0u8; LEASE_SIZE as usize];
        self.spaces
            .read(pid, c.leases + index * LEASE_SIZE, &mut raw)?;
        let w = |i: usize| u64::from_le_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        Ok(Lease {
            addr: w(0),
            len: w(1),
            access: w(2),
        })
    }

    /// Moves the message of `sender` (state `Sending`) into `receiver`'s buffer and wakes the
    /// receiver. If the receiver's buffer turns out bad, the receiver gets the error and the
    /// sender keeps waiting: no message is lost.
    fn deliver(&mut self, sender: u16, receiver: u16, buf: u64, read: Option<Message>) {
        let State::Sending {
            badge, msg, call, ..
        } = self.procs[usize::from(sender)].state
        else {
            return;
        };
        // A sender that waited is read now; one that found its receiver waiting was read by
        // `send` a moment ago.
        let message = match read.map_or_else(|| self.read_message(sender, msg), Ok) {
            Ok(m) => m,
            Err(e) => {
                self.wake_with(sender, Err(e));
                return;
            }
        };
        if let Err(e) = self.write_message(receiver, buf, &message) {
            self.wake_with(receiver, Err(e));
            return;
        }
        let generation = self.procs[usize::from(sender)].generation;
        let leases = call.map_or(0, |c| c.lease_count);
        self.wake_with(receiver, Ok([token(sender, generation), badge, leases, 0]));
        match call {
            Some(call) => {
                self.procs[usize::from(sender)].state = State::AwaitingReply {
                    server: receiver,
                    call,
                }
            }
            None => self.wake_with(sender, Ok([0; 4])),
        }
    }

    /// Pending notification bits as a message: label = bits, token = [`NOTIFICATION_TOKEN`].
    pub fn take_notification(&mut self, pid: u16, buf: u64) -> Result<[u64; 4], Error> {
        let bits = self.procs[usize::from(pid)].notify;
        self.write_message(pid, buf, &Message::new(bits))?;
        self.procs[usize::from(pid)].notify = 0;
        Ok([NOTIFICATION_TOKEN, 0, 0, 0])
    }

    /// `recv`. Returns `None` when the caller blocked.
    pub fn recv(
        &mut self,
        pid: u16,
        h: u64,
        buf: u64,
        timeout_ms: u64,
    ) -> Option<Result<[u64; 4], Error>> {
        let ep = match self.endpoint(pid, h, rights::RECEIVE) {
            Ok((ep, _)) => ep,
            Err(e) => return Some(Err(e)),
        };
        if self.endpoints[usize::from(ep)].receiver != Some(pid) {
            return Some(Err(Error::Busy));
        }
        if let Err(e) = self.check_writable(pid, buf) {
            return Some(Err(e));
        }
        if self.procs[usize::from(pid)].notify != 0 {
            return Some(self.take_notification(pid, buf));
        }
        // The waiting sender of best priority, lowest pid first among equals.
        let sender = (0..self.process_count() as u16)
            .filter(|&s| matches!(self.procs[usize::from(s)].state, State::Sending { ep: e, .. } if e == ep))
            .min_by_key(|&s| (self.process_spec(s).priority, s));
        self.procs[usize::from(pid)].state = State::Receiving {
            ep,
            buf,
            deadline: self.ticks.saturating_add(timeout_ms),
        };
        if let Some(sender) = sender {
            self.deliver(sender, pid, buf, None);
        } else if timeout_ms == 0 {
            self.procs[usize::from(pid)].state = State::Runnable;
            return Some(Err(Error::Timeout));
        }
        // Either blocked, or woken by `deliver`, which already wrote the result.
        None
    }

    /// The process a reply token names, if it is waiting for a reply from `server`.
    fn caller_of(&self, server: u16, token: u64) -> Result<(u16, CallArgs), Error> {
        let pid = u16::try_from(token & 0xffff).map_err(|_| Error::BadToken)?;
        let generation = u32::try_from(token >> 16).map_err(|_| Error::BadToken)?;
        let p = self
            .procs
            .get(usize::from(pid))
            .filter(|_| usize::from(pid) < self.process_count())
            .ok_or(Error::BadToken)?;
        match p.state {
            State::AwaitingReply { server: s, call }
                if s == server && p.generation == generation =>
            {
                Ok((pid, call))
            }
            _ => Err(Error::BadToken),
        }
    }

    /// `reply`: never blocks.
    pub fn reply(&mut self, pid: u16, token: u64, msg: u64) -> Result<[u64; 4], Error> {
        let (caller, call) = self.caller_of(pid, token)?;
        let message = self.read_message(pid, msg)?;
        match self.write_message(caller, call.reply, &message) {
            Ok(()) => self.wake_with(caller, Ok([0; 4])),
            // The caller's buffer was checked at call time; if it went bad, it hears why.
            Err(e) => self.wake_with(caller, Err(e)),
        }
        Ok([0; 4])
    }

    /// `lease_read` (`to_server` = true) or `lease_write`: copies between the caller's lease
    /// `index` at `offset` and the server's buffer. `args` = (token, index, offset, buf, len).
    pub fn lease_copy(
        &mut self,
        pid: u16,
        [token, index, offset, buf, len]: [u64; 5],
        to_server: bool,
    ) -> Result<[u64; 4], Error> {
        let (caller, call) = self.caller_of(pid, token)?;
        if index >= call.lease_count {
            return Err(Error::BadLease);
        }
        let lease = self
            .read_lease(caller, &call, index)
            .map_err(|_| Error::BadLease)?;
        let need = if to_server { Lease::READ } else { Lease::WRITE };
        let end = offset.checked_add(len).ok_or(Error::BadLease)?;
        if lease.access & need == 0 || end > lease.len {
            return Err(Error::BadLease);
        }
        let mut chunk = [0u8; COPY_CHUNK];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(COPY_CHUNK as u64) as usize;
            let client = lease.addr + offset + done;
            let server = buf.checked_add(done).ok_or(Error::BadAddress)?;
            if to_server {
                self.spaces
                    .read(caller, client, &mut chunk[..n])
                    .map_err(|_| Error::BadLease)?;
                self.spaces.write(pid, server, &chunk[..n])?;
            } else {
                self.spaces.read(pid, server, &mut chunk[..n])?;
                self.spaces
                    .write(caller, client, &chunk[..n])
                    .map_err(|_| Error::BadLease)?;
            }
            done += n as u64;
        }
        Ok([len, 0, 0, 0])
    }

    /// `endpoint_revoke`: every handle to the endpoint, in every process, is stale from now on,
    /// and everyone blocked on it hears [`Error::PeerDead`].
    pub fn revoke(&mut self, pid: u16, h: u64) -> Result<[u64; 4], Error> {
        let (ep, _) = self.endpoint(pid, h, rights::REVOKE)?;
        let e = &mut self.endpoints[usize::from(ep)];
        e.generation = e.generation.wrapping_add(1);
        for other in 0..self.process_count() as u16 {
            let blocked = match self.procs[usize::from(other)].state {
                State::Sending { ep: x, .. } | State::Receiving { ep: x, .. } => x == ep,
                _ => false,
            };
            if blocked && other != pid {
                self.wake_with(other, Err(Error::PeerDead));
            }
        }
        Ok([0; 4])
    }
}

#[cfg(test)]
mod tests {
    use crate::manifest::CapSpec;
    use crate::system::fixture::*;
    use crate::system::{Death, Spaces, State};
    use brainix_abi::rights::{RECEIVE, REVOKE, SEND};
    use brainix_abi::{Error, FOREVER, Lease, MAX_PAYLOAD, NOTIFICATION_TOKEN, Syscall};

    const SERVER: u16 = 0;
    const CLIENT: u16 = 1;
    const MSG: u64 = MEM;
    const REPLY: u64 = MEM + 0x400;
    const LEASES: u64 = MEM + 0x800;
    const DATA: u64 = MEM + 0x1000;

    /// A server receiving on endpoint 0 and a client that may send to it (badge 7).
    fn pair() -> TestSystem {
        system(
            &[
                (
                    "server",
                    1,
                    vec![CapSpec::Endpoint {
                        endpoint: 0,
                        rights: RECEIVE | REVOKE,
                        badge: 0,
                    }],
                ),
                (
                    "client",
                    2,
                    vec![
                        CapSpec::Endpoint {
                            endpoint: 0,
                            rights: SEND,
                            badge: 7,
                        },
                        CapSpec::IoPorts {
                            base: 0x3f8,
                            count: 8,
                            rights: brainix_abi::rights::READ,
                        },
                        CapSpec::Endpoint {
                            endpoint: 1,
                            rights: SEND,
                            badge: 0,
                        },
                    ],
                ),
            ],
            2,
        )
    }

    fn put_leases(s: &mut TestSystem, leases: &[Lease]) {
        let bytes: Vec<u8> = leases
            .iter()
            .flat_map(|l| [l.addr, l.len, l.access])
            .flat_map(|w| w.to_le_bytes())
            .collect();
        s.spaces.write(CLIENT, LEASES, &bytes).unwrap();
    }

    fn client_calls(s: &mut TestSystem, payload: &[u8], leases: u64) {
        put_message(s, CLIENT, MSG, 42, payload);
        call(s, CLIENT, Syscall::Call, [h(0), MSG, LEASES, leases, REPLY]);
    }

    #[test]
    fn call_then_recv_then_reply_is_one_rendezvous() {
        let mut s = pair();
        client_calls(&mut s, b"ping", 0);
        assert_eq!(result(&s, CLIENT), None, "the client waits for a receiver");
        call(&mut s, SERVER, Syscall::Recv, [h(0), MSG, FOREVER, 0, 0]);
        let [token, badge, leases, _] = result(&s, SERVER).unwrap().unwrap();
        assert_eq!((token & 0xffff, badge, leases), (u64::from(CLIENT), 7, 0));
        assert_eq!(get_message(&s, SERVER, MSG), (42, 0x1111, b"ping".to_vec()));
        assert!(matches!(
            s.procs[1].state,
            State::AwaitingReply { server: SERVER, .. }
        ));

        put_message(&mut s, SERVER, MSG, 43, b"pong");
        call(&mut s, SERVER, Syscall::Reply, [token, MSG, 0, 0, 0]);
        assert_eq!(result(&s, SERVER), Some(Ok([0; 4])));
        assert_eq!(result(&s, CLIENT), Some(Ok([0; 4])));
        assert_eq!(
            get_message(&s, CLIENT, REPLY),
            (43, 0x1111, b"pong".to_vec())
        );
        // The token is spent: a second reply is refused.
        call(&mut s, SERVER, Syscall::Reply, [token, MSG, 0, 0, 0]);
        assert_eq!(result(&s, SERVER), Some(Err(Error::BadToken)));
    }

    #[test]
    fn a_waiting_receiver_gets_the_message_at_once() {
        let mut s = pair();
        call(&mut s, SERVER, Syscall::Recv, [h(0), MSG, FOREVER, 0, 0]);
        assert_eq!(result(&s, SERVER), None);
        client_calls(&mut s, b"x", 0);
        assert_eq!(result(&s, SERVER).unwrap().unwrap()[1], 7);
        assert_eq!(
            result(&s, CLIENT),
            None,
            "the caller now waits for the reply"
        );
    }

    #[test]
    fn handle_checks_refuse_each_bad_use_with_its_own_error() {
        let mut s = pair();
        put_message(&mut s, CLIENT, MSG, 1, b"");
        let cases = [
            (h(9), Syscall::Send, Error::BadHandle),
            (
                brainix_abi::Handle::new(0, 5).0,
                Syscall::Send,
                Error::BadHandle,
            ),
            (h(1), Syscall::Send, Error::WrongType),
            (h(0), Syscall::Recv, Error::MissingRight),
        ];
        for (handle, c, err) in cases {
            call(&mut s, CLIENT, c, [handle, MSG, 0, 0, 0]);
            assert_eq!(result(&s, CLIENT), Some(Err(err)), "{handle:#x} {c:?}");
        }
        call(&mut s, CLIENT, Syscall::CapDrop, [h(0), 0, 0, 0, 0]);
        call(&mut s, CLIENT, Syscall::Send, [h(0), MSG, 0, 0, 0]);
        assert_eq!(result(&s, CLIENT), Some(Err(Error::StaleHandle)));
        // Nothing reached the server.
        call(&mut s, SERVER, Syscall::Recv, [h(0), MSG, 0, 0, 0]);
        assert_eq!(result(&s, SERVER), Some(Err(Error::Timeout)));
    }

    #[test]
    fn bad_messages_are_refused_before_anyone_waits() {
        let mut s = pair();
        put_message(&mut s, CLIENT, MSG, 1, b"");
        s.spaces
            .write(CLIENT, MSG + 40, &(MAX_PAYLOAD as u64 + 1).to_le_bytes())
            .unwrap();
        call(&mut s, CLIENT, Syscall::Send, [h(0), MSG, 0, 0, 0]);
        assert_eq!(result(&s, CLIENT), Some(Err(Error::PayloadTooLarge)));
        call(
            &mut s,
            CLIENT,
            Syscall::Send,
            [h(0), 0xffff_ffff_8010_0000, 0, 0, 0],
        );
        assert_eq!(result(&s, CLIENT), Some(Err(Error::BadAddress)));
        put_message(&mut s, CLIENT, MSG, 1, b"");
        // A reply buffer in read-only memory is refused at call time.
        call(&mut s, CLIENT, Syscall::Call, [h(0), MSG, LEASES, 0, RO]);
        assert_eq!(result(&s, CLIENT), Some(Err(Error::BadAddress)));
        assert_eq!(s.procs[usize::from(SERVER)].state, State::Runnable);
    }

    #[test]
    fn a_dead_or_revoked_peer_never_leaves_a_caller_hanging() {
        let mut s = pair();
        // Endpoint 1 has no receiver at all.
        put_message(&mut s, CLIENT, MSG, 1, b"");
        call(&mut s, CLIENT, Syscall::Send, [h(2), MSG, 0, 0, 0]);
        assert_eq!(result(&s, CLIENT), Some(Err(Error::PeerDead)));
        // The server dies while the client waits for its reply.
        client_calls(&mut s, b"", 0);
        call(&mut s, SERVER, Syscall::Recv, [h(0), MSG, FOREVER, 0, 0]);
        s.kill(SERVER, Death::Stopped);
        assert_eq!(result(&s, CLIENT), Some(Err(Error::PeerDead)));
        // And a call to it now fails at once.
        client_calls(&mut s, b"", 0);
        assert_eq!(result(&s, CLIENT), Some(Err(Error::PeerDead)));
        // After a restart the server is reachable again, and the old token is dead.
        assert!(s.restart(SERVER));
        client_calls(&mut s, b"", 0);
        assert_eq!(result(&s, CLIENT), None);
        // Revocation: the server revokes the endpoint; the waiting client hears PeerDead and
        // its handle is stale.
        call(&mut s, SERVER, Syscall::EndpointRevoke, [h(0), 0, 0, 0, 0]);
        assert_eq!(result(&s, CLIENT), Some(Err(Error::PeerDead)));
        client_calls(&mut s, b"", 0);
        assert_eq!(result(&s, CLIENT), Some(Err(Error::StaleHandle)));
    }

    #[test]
    fn leases_are_checked_on_every_access() {
        let mut s = pair();
        s.spaces.write(CLIENT, DATA, b"0123456789").unwrap();
        put_leases(
            &mut s,
            &[
                Lease {
                    addr: DATA,
                    len: 10,
                    access: Lease::READ,
                },
                Lease {
                    addr: DATA + 0x100,
                    len: 4,
                    access: Lease::WRITE,
                },
            ],
        );
        client_calls(&mut s, b"", 2);
        call(&mut s, SERVER, Syscall::Recv, [h(0), MSG, FOREVER, 0, 0]);
        let token = result(&s, SERVER).unwrap().unwrap()[0];
        assert_eq!(result(&s, SERVER).unwrap().unwrap()[2], 2);
        let buf = MEM + 0x2000;
        call(&mut s, SERVER, Syscall::LeaseRead, [token, 0, 2, buf, 5]);
        assert_eq!(result(&s, SERVER), Some(Ok([5, 0, 0, 0])));
        let mut got = [0u8; 5];
        s.spaces.read(SERVER, buf, &mut got).unwrap();
        assert_eq!(&got, b"23456");
        let refused = [
            ([token, 0, 6, buf, 5], Syscall::LeaseRead, Error::BadLease), // past the end
            (
                [token, 0, u64::MAX, buf, 2],
                Syscall::LeaseRead,
                Error::BadLease,
            ), // overflow
            ([token, 2, 0, buf, 1], Syscall::LeaseRead, Error::BadLease), // no such lease
            ([token, 0, 0, buf, 1], Syscall::LeaseWrite, Error::BadLease), // read-only lease
            ([token, 1, 0, buf, 1], Syscall::LeaseRead, Error::BadLease), // write-only lease
            (
                [token, 0, 0, 0xdead_0000, 4],
                Syscall::LeaseRead,
                Error::BadAddress,
            ),
            (
                [token ^ 1, 0, 0, buf, 1],
                Syscall::LeaseRead,
                Error::BadToken,
            ),
        ];
        for (args, c, err) in refused {
            call(&mut s, SERVER, c, args);
            assert_eq!(result(&s, SERVER), Some(Err(err)), "{args:x?} {c:?}");
        }
        s.spaces.write(SERVER, buf, b"WXYZ").unwrap();
        call(&mut s, SERVER, Syscall::LeaseWrite, [token, 1, 0, buf, 4]);
        assert_eq!(result(&s, SERVER), Some(Ok([4, 0, 0, 0])));
        let mut back = [0u8; 4];
        s.spaces.read(CLIENT, DATA + 0x100, &mut back).unwrap();
        assert_eq!(&back, b"WXYZ");
        // After the reply the lease is gone.
        put_message(&mut s, SERVER, MSG, 0, b"");
        call(&mut s, SERVER, Syscall::Reply, [token, MSG, 0, 0, 0]);
        call(&mut s, SERVER, Syscall::LeaseRead, [token, 0, 0, buf, 1]);
        assert_eq!(result(&s, SERVER), Some(Err(Error::BadToken)));
    }

    #[test]
    fn a_lease_outside_the_callers_memory_is_refused_at_call_time() {
        let mut s = pair();
        for lease in [
            Lease {
                addr: 0xffff_ffff_8010_0000,
                len: 16,
                access: Lease::READ,
            },
            Lease {
                addr: DATA,
                len: MEM_LEN,
                access: Lease::READ,
            },
            Lease {
                addr: RO,
                len: 16,
                access: Lease::WRITE,
            },
            Lease {
                addr: DATA,
                len: 16,
                access: 0x80,
            },
        ] {
            put_leases(&mut s, &[lease]);
            client_calls(&mut s, b"", 1);
            assert_eq!(result(&s, CLIENT), Some(Err(Error::BadLease)), "{lease:x?}");
        }
        client_calls(&mut s, b"", 5);
        assert_eq!(result(&s, CLIENT), Some(Err(Error::PayloadTooLarge)));
    }

    #[test]
    fn receive_timeouts_and_notifications() {
        let mut s = pair();
        call(&mut s, SERVER, Syscall::Recv, [h(0), MSG, 3, 0, 0]);
        s.tick();
        s.tick();
        assert_eq!(result(&s, SERVER), None);
        s.tick();
        assert_eq!(result(&s, SERVER), Some(Err(Error::Timeout)));
        call(&mut s, SERVER, Syscall::Recv, [h(0), MSG, FOREVER, 0, 0]);
        s.notify(SERVER, 0b100);
        assert_eq!(result(&s, SERVER), Some(Ok([NOTIFICATION_TOKEN, 0, 0, 0])));
        assert_eq!(get_message(&s, SERVER, MSG).0, 0b100);
        // Bits that arrive while running are delivered by the next recv, without blocking.
        s.notify(SERVER, 0b1);
        s.notify(SERVER, 0b10);
        call(&mut s, SERVER, Syscall::Recv, [h(0), MSG, FOREVER, 0, 0]);
        assert_eq!(get_message(&s, SERVER, MSG).0, 0b11);
    }

    #[test]
    fn random_system_calls_never_panic_and_keep_the_table_consistent() {
        let mut s = pair();
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let interesting = [
            0,
            1,
            MEM,
            MEM + 0x10,
            RO,
            REPLY,
            LEASES,
            u64::MAX,
            0xffff_ffff_8010_0000,
        ];
        for _ in 0..200_000 {
            let pid = (next() % 2) as u16;
            if !s.procs[usize::from(pid)].state.is_alive() {
                s.restart(pid);
                continue;
            }
            if s.procs[usize::from(pid)].state != State::Runnable {
                s.tick();
                continue;
            }
            let mut args = [0u64; 5];
            for a in &mut args {
                let r = next();
                *a = match r % 4 {
                    0 => interesting[(r >> 8) as usize % interesting.len()],
                    1 => h((r >> 8) as u16 % 4),
                    2 => (r >> 8) % 8,
                    _ => r,
                };
            }
            let nr = next() % 26;
            let r = &mut s.procs[usize::from(pid)].regs;
            r.rax = nr;
            [r.rdi, r.rsi, r.rdx, r.r10, r.r8] = args;
            s.syscall(pid, crate::syscall::MemoryStats::default());
            for p in 0..2 {
                if let State::AwaitingReply { server, .. } = s.procs[p].state {
                    assert!(
                        s.procs[usize::from(server)].state.is_alive(),
                        "waiting on the dead"
                    );
                }
            }
        }
    }
}
