//! # The transport layer of the BraiNIX network stack: UDP sockets and TCP, default deny
//!
//! What the transport server (`src/main.rs`) decides, kept apart from the IPC so it is tested on
//! the host. A client is known by its badge, which the manifest sets and the kernel attaches;
//! the badge names its grant ([`brainix_proto::transport::Grant`]), which the manifest compiler
//! wrote into this server's configuration block ([`Grants`]). Every check is here:
//!
//! - `bind`: the grant must be UDP and name the port (else denied, counted);
//! - `send`: the grant must reach the remote address and port (else denied, counted), and the
//!   port must be one the caller bound;
//! - ingress: a datagram goes only to a bound port, and only if that socket's grant reaches
//!   its sender's address and port (else dropped, counted);
//! - TCP ([`tcp`]): listen, accept and connect need a TCP grant naming the port (and, to
//!   connect, the remote); a SYN reaches a listener only from a remote its grant names (else
//!   RST, counted). Every TCP check is [`Grants::permits`].
//!
//! A denial is decided before anything is built or sent: a refused request costs no packet.
//!
//! [`server`] is the server's request loop around the sockets and connections, over any [`server::Network`]:
//! IPC to the IP server in the transport server, the IP layer itself in a combined network
//! server.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod client;
pub mod server;

use brainix_abi::Error;
use brainix_proto::config::{Malformed, Record};
use brainix_proto::transport::{Grant, MAX_DATAGRAM, MAX_GRANTS, Protocol, grant_index};
use brainix_wire::{Drop, Drops, Ipv4Addr, Udp};

pub mod tcp;

/// Sockets the server keeps: one per granted client is what the manifests need.
pub const SOCKETS: usize = 4;

/// A datagram waiting in a socket.
pub struct Pending {
    /// Bytes of `data` used.
    pub len: usize,
    /// Sender's address.
    pub from: Ipv4Addr,
    /// Sender's port.
    pub from_port: u16,
    /// The data.
    pub data: [u8; MAX_DATAGRAM],
}

struct Socket {
    port: u16,
    owner: u64,
    grant: Grant,
    /// One datagram waits; another that arrives before it is taken is dropped and counted.
    pending: Option<usize>,
}

/// The counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests refused for want of a grant.
    pub denied: u64,
    /// Datagrams handed to clients.
    pub delivered: u64,
    /// Datagrams sent for clients.
    pub sent: u64,
    /// Incoming datagrams dropped, by reason.
    pub drops: Drops,
}

/// The grants this server enforces, by index: what its configuration block says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grants([Option<Grant>; MAX_GRANTS]);

impl Grants {
    /// No grants: everything is denied.
    pub const NONE: Grants = Grants([None; MAX_GRANTS]);

    /// The grant records among `records` (a configuration block's). A fault in the block, an
    /// index past [`MAX_GRANTS`] or an index given twice refuses them all: a server with a
    /// doubtful table grants nothing.
    pub fn from_records(
        records: impl IntoIterator<Item = Result<Record, Malformed>>,
    ) -> Result<Grants, Malformed> {
        let mut g = Grants::NONE;
        for r in records {
            if let Record::Grant { index, grant } = r? {
                let slot = g.0.get_mut(usize::from(index)).ok_or(Malformed::Field)?;
                if slot.replace(grant).is_some() {
                    return Err(Malformed::Field);
                }
            }
        }
        Ok(g)
    }

    /// The grant `badge` names.
    pub fn of(&self, badge: u64) -> Option<Grant> {
        self.0
            .get(usize::from(grant_index(badge)?))
            .copied()
            .flatten()
    }

    /// Whether the grant `badge` names lets its holder use `protocol` on `local_port` and, when
    /// `remote` is given, reach that address and port. Every TCP grant check is this one call
    /// (listen, accept, connect, and each SYN for a listener).
    pub fn permits(
        &self,
        badge: u64,
        protocol: Protocol,
        local_port: u16,
        remote: Option<(Ipv4Addr, u16)>,
    ) -> bool {
        self.of(badge).is_some_and(|g| {
            g.local(protocol, local_port) && remote.is_none_or(|(addr, port)| g.reaches(addr, port))
        })
    }

    /// How many there are.
    pub fn count(&self) -> usize {
        self.0.iter().flatten().count()
    }
}

/// The socket table.
pub struct Sockets {
    grants: Grants,
    sockets: [Option<Socket>; SOCKETS],
    mail: [Pending; SOCKETS],
    /// The counters.
    pub stats: Stats,
}

impl Sockets {
    /// No sockets yet; clients may do what `grants` say.
    pub const fn new(grants: Grants) -> Self {
        Sockets {
            grants,
            sockets: [const { None }; SOCKETS],
            mail: [const {
                Pending {
                    len: 0,
                    from: [0; 4],
                    from_port: 0,
                    data: [0; MAX_DATAGRAM],
                }
            }; SOCKETS],
            stats: Stats {
                denied: 0,
                delivered: 0,
                sent: 0,
                drops: Drops([0; Drop::COUNT]),
            },
        }
    }

    /// Enforces `grants` from now on.
    pub fn set_grants(&mut self, grants: Grants) {
        self.grants = grants;
    }

    /// The grants it enforces.
    pub fn grants(&self) -> &Grants {
        &self.grants
    }

    fn deny(&mut self) -> Error {
        self.stats.denied = self.stats.denied.saturating_add(1);
        Error::MissingRight
    }

    /// The UDP grant `badge` carries, or a counted denial.
    fn grant(&mut self, badge: u64) -> Result<Grant, Error> {
        match self.grants.of(badge) {
            Some(g) if g.protocol == Protocol::Udp => Ok(g),
            _ => Err(self.deny()),
        }
    }

    /// Binds `port` for the client with `badge`. Binding again what it holds is no error (a
    /// restarted client binds anew).
    pub fn bind(&mut self, badge: u64, port: u16) -> Result<(), Error> {
        let grant = self.grant(badge)?;
        if !grant.local(Protocol::Udp, port) {
            return Err(self.deny());
        }
        if let Some(s) = self.sockets.iter().flatten().find(|s| s.port == port) {
            return if s.owner == badge {
                Ok(())
            } else {
                Err(Error::Busy)
            };
        }
        let free = self.sockets.iter().position(Option::is_none);
        let slot = free.ok_or(Error::NoSpace)?;
        self.sockets[slot] = Some(Socket {
            port,
            owner: badge,
            grant,
            pending: None,
        });
        Ok(())
    }

    fn owned(&self, badge: u64, port: u16) -> Result<usize, Error> {
        self.sockets
            .iter()
            .position(|s| matches!(s, Some(s) if s.port == port && s.owner == badge))
            .ok_or(Error::NotFound)
    }

    /// Whether the client with `badge` may send from `port` to `remote`, port `remote_port`:
    /// checked before any datagram is built.
    pub fn may_send(
        &mut self,
        badge: u64,
        port: u16,
        (remote, remote_port): (Ipv4Addr, u16),
    ) -> Result<(), Error> {
        let grant = self.grant(badge)?;
        if !grant.local(Protocol::Udp, port) || !grant.reaches(remote, remote_port) {
            return Err(self.deny());
        }
        self.owned(badge, port).map(drop)
    }

    /// Takes one incoming UDP datagram (header included) from `from` to `to`; it waits in its
    /// socket or is dropped for a counted reason.
    pub fn deliver(&mut self, from: Ipv4Addr, to: Ipv4Addr, datagram: &[u8]) {
        if let Err(why) = self.file(from, to, datagram) {
            self.stats.drops.count(why);
        }
    }

    fn file(&mut self, from: Ipv4Addr, to: Ipv4Addr, datagram: &[u8]) -> Result<(), Drop> {
        let udp = Udp::parse(datagram, from, to)?;
        if udp.data.len() > MAX_DATAGRAM {
            return Err(Drop::Oversize);
        }
        let i = self
            .sockets
            .iter()
            .position(|s| matches!(s, Some(s) if s.port == udp.dst_port))
            .ok_or(Drop::NotForUs)?;
        let Some(socket) = self.sockets[i].as_mut() else {
            return Err(Drop::NotForUs);
        };
        // Ingress is granted too: only from the remotes the socket's grant names.
        if !socket.grant.reaches(from, udp.src_port) {
            return Err(Drop::Denied);
        }
        if socket.pending.is_some() {
            return Err(Drop::QueueFull);
        }
        let m = &mut self.mail[i];
        m.len = udp.data.len();
        m.from = from;
        m.from_port = udp.src_port;
        m.data[..m.len].copy_from_slice(udp.data);
        socket.pending = Some(i);
        Ok(())
    }

    /// The datagram waiting for the client's `port`, taken out with `take` (which copies it
    /// out); `Ok(None)` if none waits.
    pub fn take<R>(
        &mut self,
        badge: u64,
        port: u16,
        take: impl FnOnce(&Pending) -> R,
    ) -> Result<Option<R>, Error> {
        let i = self.owned(badge, port)?;
        let Some(socket) = self.sockets[i].as_mut() else {
            return Err(Error::NotFound);
        };
        match socket.pending.take() {
            Some(m) => {
                self.stats.delivered += 1;
                Ok(Some(take(&self.mail[m])))
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests;
