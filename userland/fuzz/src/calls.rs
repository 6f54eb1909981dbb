//! The call generator: pure, seeded, tested on the host.
//!
//! Every argument is random in a way that reaches the kernel's checks: handles are real slots
//! with right or wrong generations, empty slots, or raw words; pointers are the fuzzer's scratch
//! buffer, its read-only text, a kernel address, an unmapped address, null, or raw words; lengths
//! and counts straddle the limits. Three rules keep the fuzzer itself alive and the run bounded,
//! and nothing else is held back:
//!
//! - no `exit`;
//! - receive timeouts are at most 2 ms (nobody else sends to the fuzzer: `FOREVER` would hang);
//! - its own endpoint (slot 0) is never dropped or revoked, and a reply never uses the token of
//!   the request it is serving, so its client gets the real answer.

use brainix_abi::{Handle, Syscall};

/// Call numbers tried: every defined one and a few past the end.
pub const NUMBERS: u64 = 32;

/// xorshift64*: small, fast, and the same sequence for the same seed everywhere.
#[derive(Clone, Copy, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (0 is replaced, as xorshift cannot leave it).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next word.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Addresses the generator aims pointers at.
#[derive(Clone, Copy, Debug)]
pub struct Targets {
    /// Start and length of a writable scratch buffer the kernel may scribble on.
    pub scratch: (u64, u64),
    /// An address in the fuzzer's own read-only text.
    pub text: u64,
    /// The reply token of the request being served (never replied to by the fuzzing).
    pub token: u64,
}

/// One generated call: its number and its six argument words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    /// Call number (may be undefined).
    pub nr: u64,
    /// `rdi, rsi, rdx, r10, r8, r9`.
    pub args: [u64; 6],
}

fn handle(rng: &mut Rng) -> u64 {
    match rng.below(8) {
        // A slot it may hold, as launched.
        0..=3 => Handle::new(rng.below(8) as u16, 1).0,
        // Any slot, any small generation.
        4 | 5 => Handle::new(rng.below(40) as u16, rng.below(4) as u32).0,
        // Reserved bits set, or anything at all.
        6 => Handle::new(rng.below(32) as u16, 1).0 | (rng.next() << 48),
        _ => rng.next(),
    }
}

fn pointer(rng: &mut Rng, t: &Targets) -> u64 {
    match rng.below(8) {
        0..=3 => t.scratch.0 + rng.below(t.scratch.1),
        4 => t.text,
        5 => 0xffff_ffff_8010_0000 + rng.below(0x1000),
        6 => [0, 0x7000_0000_0000, 0x0000_7fff_0000_0000 - 8, u64::MAX - 7][rng.below(4) as usize],
        _ => rng.next(),
    }
}

fn length(rng: &mut Rng) -> u64 {
    match rng.below(4) {
        0 => rng.below(8),
        1 => rng.below(600),
        2 => [255, 256, 257, 4096, 4097][rng.below(5) as usize],
        _ => rng.next(),
    }
}

fn word(rng: &mut Rng, t: &Targets) -> u64 {
    match rng.below(4) {
        0 => handle(rng),
        1 => pointer(rng, t),
        2 => length(rng),
        _ => rng.next(),
    }
}

/// The next call for `rng`, with the three rules applied.
pub fn next_call(rng: &mut Rng, t: &Targets) -> Call {
    let mut nr = rng.below(NUMBERS);
    if nr == Syscall::Exit as u64 {
        nr = Syscall::Yield as u64;
    }
    let mut args = [0u64; 6];
    for a in &mut args {
        *a = word(rng, t);
    }
    // Shape the words the call reads, so most calls get past the first check.
    match Syscall::from_number(nr) {
        Some(Syscall::Send | Syscall::Recv | Syscall::Call | Syscall::CapInfo) => {
            args[0] = handle(rng);
            args[1] = pointer(rng, t);
        }
        Some(Syscall::Reply | Syscall::ReplyRecv | Syscall::LeaseRead | Syscall::LeaseWrite) => {
            args[0] = if rng.below(2) == 0 {
                rng.below(64)
            } else {
                rng.next()
            };
        }
        _ => {}
    }
    match Syscall::from_number(nr) {
        Some(Syscall::Call) => {
            args[2] = pointer(rng, t);
            args[3] = rng.below(6);
            args[4] = pointer(rng, t);
        }
        Some(Syscall::Recv) => args[2] = rng.below(3),
        Some(Syscall::ReplyRecv) => {
            args[2] = handle(rng);
            args[3] = pointer(rng, t);
            args[4] = rng.below(3);
        }
        Some(Syscall::CapDrop | Syscall::EndpointRevoke) if Handle(args[0]).slot() == Some(0) => {
            args[0] = Handle::new(1 + rng.below(31) as u16, 1).0;
        }
        _ => {}
    }
    let replies = matches!(
        Syscall::from_number(nr),
        Some(Syscall::Reply | Syscall::ReplyRecv)
    );
    if replies && args[0] == t.token {
        args[0] = t.token.wrapping_add(1);
    }
    Call { nr, args }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    fn targets() -> Targets {
        Targets {
            scratch: (0x50_0000, 8192),
            text: 0x40_1000,
            token: 2,
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_calls() {
        let (mut a, mut b) = (Rng::new(42), Rng::new(42));
        for _ in 0..1000 {
            assert_eq!(next_call(&mut a, &targets()), next_call(&mut b, &targets()));
        }
        let mut c = Rng::new(43);
        let differs =
            (0..100).any(|_| next_call(&mut c, &targets()) != next_call(&mut a, &targets()));
        assert!(differs);
    }

    #[test]
    fn the_rules_hold_and_every_call_number_is_tried() {
        let t = targets();
        let mut rng = Rng::new(0xdead_beef);
        let mut seen = [0u32; NUMBERS as usize];
        for _ in 0..200_000 {
            let c = next_call(&mut rng, &t);
            seen[c.nr as usize] += 1;
            assert_ne!(c.nr, Syscall::Exit as u64);
            match Syscall::from_number(c.nr) {
                Some(Syscall::Recv) => assert!(c.args[2] <= 2),
                Some(Syscall::ReplyRecv) => {
                    assert!(c.args[4] <= 2);
                    assert_ne!(c.args[0], t.token);
                }
                Some(Syscall::Reply) => assert_ne!(c.args[0], t.token),
                Some(Syscall::CapDrop | Syscall::EndpointRevoke) => {
                    assert_ne!(Handle(c.args[0]).slot(), Some(0))
                }
                _ => {}
            }
        }
        for (nr, n) in seen.iter().enumerate() {
            if nr as u64 != Syscall::Exit as u64 {
                assert!(*n > 1000, "call {nr} tried {n} times");
            }
        }
    }
}
