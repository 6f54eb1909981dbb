//! What the manifest gives a program besides its capabilities: its *configuration block*.
//!
//! A program that reads configuration carries one block of [`BLOCK`] bytes in its read-only
//! data: [`MAGIC`], then the length of the records as a little-endian `u16`, then the records.
//! As built, the block is empty. The manifest compiler (`cargo xtask`) writes each process's
//! records into its own copy of the program image, so configuration is fixed at build time,
//! measured with the kernel image, and needs no kernel call. The same program run by two
//! processes gets two images, each with its own block.
//!
//! A record is `kind: u8`, `len: u8`, then `len` bytes:
//!
//! | kind | record | bytes |
//! | --- | --- | --- |
//! | [`INTERFACE`] | the IPv4 interface ([`crate::ip::Config`]) | address 4, prefix 1, gateway 4 |
//! | [`GRANT`] | a socket grant this server enforces ([`crate::transport::Grant`]) | index `u16`, protocol 1, local ports 2+2, remote 4, prefix 1, remote ports 2+2 |
//!
//! Integers are little-endian, addresses in network order. A block that does not follow this
//! is refused as a whole ([`Malformed`]), never half read.

use crate::ip;
use crate::transport::{Grant, PortRange, Protocol};

/// Size of the block: a header and 55 grant records at most; a server enforces at most
/// [`crate::transport::MAX_GRANTS`] grants.
pub const BLOCK: usize = 1024;
/// Marks the block in a program image; the manifest compiler looks for exactly one.
pub const MAGIC: [u8; 16] = *b"BRAINIX-CONFIG-1";
/// Magic and length.
pub const HEADER: usize = MAGIC.len() + 2;
/// Record kind: the interface.
pub const INTERFACE: u8 = 1;
/// Record kind: a socket grant.
pub const GRANT: u8 = 2;
const INTERFACE_LEN: usize = 9;
const GRANT_LEN: usize = 16;

const fn empty() -> [u8; BLOCK] {
    let mut b = [0; BLOCK];
    let mut i = 0;
    while i < MAGIC.len() {
        b[i] = MAGIC[i];
        i += 1;
    }
    b
}

/// The block as built: the manifest compiler rewrites it in each process's image.
static BLOCK_BYTES: [u8; BLOCK] = empty();

/// This program's block. Read through an opaque reference, so the compiler cannot fold in the
/// empty block it was built with.
pub fn block() -> &'static [u8] {
    core::hint::black_box(&BLOCK_BYTES)
}

/// One record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// The interface.
    Interface(ip::Config),
    /// Grant `index`: a client whose badge is [`crate::transport::grant_badge`]`(index)` may
    /// do what `grant` says.
    Grant {
        /// Its index, which its holder's badge carries.
        index: u16,
        /// What it allows.
        grant: Grant,
    },
}

/// A block that does not follow the format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// No magic at the start.
    NoMagic,
    /// The length runs past the block.
    Length,
    /// A record runs past the records.
    Truncated,
    /// A record kind this program does not know.
    Kind(u8),
    /// A record with a length its kind does not have.
    RecordLength(u8),
    /// A field out of its range: protocol, prefix, or a port range whose first is past its last.
    Field,
}

/// The records of `block`, each checked; the first fault refuses the block.
pub fn parse(block: &[u8]) -> Result<Records<'_>, Malformed> {
    if block.len() < HEADER || block[..MAGIC.len()] != MAGIC {
        return Err(Malformed::NoMagic);
    }
    let len = usize::from(u16::from_le_bytes([block[16], block[17]]));
    let records = block.get(HEADER..HEADER + len).ok_or(Malformed::Length)?;
    let mut check = Records { rest: records };
    for r in check.by_ref() {
        r?;
    }
    Ok(Records { rest: records })
}

/// This program's records.
pub fn records() -> Result<Records<'static>, Malformed> {
    parse(block())
}

/// The interface record of this program's block, if there is one.
pub fn interface() -> Result<Option<ip::Config>, Malformed> {
    Ok(records()?.flatten().find_map(|r| match r {
        Record::Interface(c) => Some(c),
        Record::Grant { .. } => None,
    }))
}

/// Iterates over records.
pub struct Records<'a> {
    rest: &'a [u8],
}

impl Iterator for Records<'_> {
    type Item = Result<Record, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        let [kind, len, rest @ ..] = self.rest else {
            if self.rest.is_empty() {
                return None;
            }
            self.rest = &[];
            return Some(Err(Malformed::Truncated));
        };
        let Some(body) = rest.get(..usize::from(*len)) else {
            self.rest = &[];
            return Some(Err(Malformed::Truncated));
        };
        self.rest = &rest[body.len()..];
        Some(decode(*kind, body))
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn addr_at(b: &[u8], at: usize) -> [u8; 4] {
    [b[at], b[at + 1], b[at + 2], b[at + 3]]
}

fn range_at(b: &[u8], at: usize) -> Result<PortRange, Malformed> {
    let r = PortRange {
        first: u16_at(b, at),
        last: u16_at(b, at + 2),
    };
    if r.first > r.last {
        return Err(Malformed::Field);
    }
    Ok(r)
}

fn decode(kind: u8, b: &[u8]) -> Result<Record, Malformed> {
    let want = match kind {
        INTERFACE => INTERFACE_LEN,
        GRANT => GRANT_LEN,
        other => return Err(Malformed::Kind(other)),
    };
    if b.len() != want {
        return Err(Malformed::RecordLength(kind));
    }
    if kind == INTERFACE {
        let prefix = b[4];
        if prefix > 32 {
            return Err(Malformed::Field);
        }
        return Ok(Record::Interface(ip::Config {
            address: addr_at(b, 0),
            prefix,
            gateway: addr_at(b, 5),
        }));
    }
    let protocol = match b[2] {
        1 => Protocol::Udp,
        2 => Protocol::Tcp,
        _ => return Err(Malformed::Field),
    };
    let prefix = b[11];
    if prefix > 32 {
        return Err(Malformed::Field);
    }
    Ok(Record::Grant {
        index: u16_at(b, 0),
        grant: Grant {
            protocol,
            local_ports: range_at(b, 3)?,
            remote: addr_at(b, 7),
            prefix,
            remote_ports: range_at(b, 12)?,
        },
    })
}

/// Appends one record's bytes to `out` (the manifest compiler's side).
pub fn encode(record: &Record, out: &mut impl Extend<u8>) {
    match record {
        Record::Interface(c) => {
            out.extend([INTERFACE, INTERFACE_LEN as u8]);
            out.extend(c.address);
            out.extend([c.prefix]);
            out.extend(c.gateway);
        }
        Record::Grant { index, grant: g } => {
            out.extend([GRANT, GRANT_LEN as u8]);
            out.extend(index.to_le_bytes());
            out.extend([match g.protocol {
                Protocol::Udp => 1,
                Protocol::Tcp => 2,
            }]);
            out.extend(g.local_ports.first.to_le_bytes());
            out.extend(g.local_ports.last.to_le_bytes());
            out.extend(g.remote);
            out.extend([g.prefix]);
            out.extend(g.remote_ports.first.to_le_bytes());
            out.extend(g.remote_ports.last.to_le_bytes());
        }
    }
}

/// Writes `records` into `block` (a program's block as built): `Err` with the bytes they need
/// when they do not fit.
pub fn fill(block: &mut [u8], records: &[u8]) -> Result<(), usize> {
    if block.len() != BLOCK || block[..MAGIC.len()] != MAGIC {
        return Err(0);
    }
    if records.len() > BLOCK - HEADER {
        return Err(records.len());
    }
    block[16..18].copy_from_slice(&(records.len() as u16).to_le_bytes());
    block[HEADER..HEADER + records.len()].copy_from_slice(records);
    block[HEADER + records.len()..].fill(0);
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn sample() -> [Record; 3] {
        [
            Record::Interface(ip::Config {
                address: [10, 0, 2, 15],
                prefix: 24,
                gateway: [10, 0, 2, 2],
            }),
            Record::Grant {
                index: 0,
                grant: Grant {
                    protocol: Protocol::Tcp,
                    local_ports: PortRange { first: 7, last: 7 },
                    remote: [10, 0, 2, 0],
                    prefix: 24,
                    remote_ports: PortRange {
                        first: 1024,
                        last: 65535,
                    },
                },
            },
            Record::Grant {
                index: 513,
                grant: Grant {
                    protocol: Protocol::Udp,
                    local_ports: PortRange {
                        first: 49152,
                        last: 49407,
                    },
                    remote: [0; 4],
                    prefix: 0,
                    remote_ports: PortRange {
                        first: 53,
                        last: 53,
                    },
                },
            },
        ]
    }

    fn filled(records: &[Record]) -> [u8; BLOCK] {
        let mut bytes = Vec::new();
        for r in records {
            encode(r, &mut bytes);
        }
        let mut block = empty();
        fill(&mut block, &bytes).unwrap();
        block
    }

    #[test]
    fn records_round_trip_through_a_block() {
        let block = filled(&sample());
        let back: Vec<Record> = parse(&block).unwrap().map(Result::unwrap).collect();
        assert_eq!(back, sample());
        // The block as built is empty, and valid.
        assert_eq!(parse(&empty()).unwrap().count(), 0);
        assert_eq!(records().unwrap().count(), 0);
    }

    #[test]
    fn records_that_do_not_fit_are_refused_with_their_size() {
        let mut block = empty();
        assert_eq!(fill(&mut block, &[0; BLOCK]), Err(BLOCK));
        assert_eq!(fill(&mut [0; BLOCK], &[]), Err(0), "no magic: not a block");
    }

    #[test]
    fn a_malformed_block_is_refused_whole() {
        let good = filled(&sample());
        let len = usize::from(u16::from_le_bytes([good[16], good[17]]));
        let mut no_magic = good;
        no_magic[0] ^= 1;
        assert_eq!(parse(&no_magic).err(), Some(Malformed::NoMagic));
        let mut long = good;
        long[16..18].copy_from_slice(&(BLOCK as u16).to_le_bytes());
        assert_eq!(parse(&long).err(), Some(Malformed::Length));
        let mut cut = good;
        cut[16..18].copy_from_slice(&(len as u16 - 1).to_le_bytes());
        assert_eq!(parse(&cut).err(), Some(Malformed::Truncated));
        let mut kind = good;
        kind[HEADER] = 9;
        assert_eq!(parse(&kind).err(), Some(Malformed::Kind(9)));
        let mut rlen = good;
        rlen[HEADER + 1] = 8;
        assert!(parse(&rlen).is_err());
        let mut prefix = good;
        prefix[HEADER + 6] = 33;
        assert_eq!(parse(&prefix).err(), Some(Malformed::Field));
        // Grant 0's protocol, then its local range turned backwards.
        let g = HEADER + 2 + INTERFACE_LEN;
        let mut proto = good;
        proto[g + 2 + 2] = 3;
        assert_eq!(parse(&proto).err(), Some(Malformed::Field));
        let mut backwards = good;
        backwards[g + 2 + 3] = 8;
        assert_eq!(parse(&backwards).err(), Some(Malformed::Field));
        assert_eq!(parse(&good[..10]).err(), Some(Malformed::NoMagic));
    }

    #[test]
    fn every_byte_of_a_block_may_be_garbage_without_a_panic() {
        // Seeded xorshift: every record byte overwritten, many times over.
        let good = filled(&sample());
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut b = good;
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = 16 + (x as usize) % 64;
                b[at] = (x >> 32) as u8;
            }
            if let Ok(mut records) = parse(&b) {
                assert!(records.all(|r| r.is_ok()), "a parsed block yields no fault");
            }
        }
    }
}
