//! # The virtio-net device, in-process
//!
//! [`nic::Nic`] drives one virtio-net device from the process that holds it: the link server
//! (`src/main.rs`) serves it to its clients over IPC, and a combined network server drives it
//! directly. Besides, Ethernet and ARP frames as the link server's test client builds and reads
//! them: pure, tested on the host.
#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod nic;

/// An Ethernet address.
pub type Mac = [u8; 6];
/// An IPv4 address.
pub type Ipv4 = [u8; 4];

/// Length of an Ethernet header and an IPv4-over-Ethernet ARP packet.
pub const ARP_FRAME: usize = 14 + 28;

/// A broadcast ARP request from `mac`/`ip` asking who has `target`.
pub fn arp_request(mac: Mac, ip: Ipv4, target: Ipv4) -> [u8; ARP_FRAME] {
    let mut f = [0u8; ARP_FRAME];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    // Ethernet, IPv4, 6-byte and 4-byte addresses, request.
    f[14..22].copy_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip);
    f[38..42].copy_from_slice(&target);
    f
}

/// If `frame` is an ARP reply saying where `ip` is, that address.
pub fn arp_reply_for(frame: &[u8], ip: Ipv4) -> Option<Mac> {
    if frame.len() < ARP_FRAME || frame[12..14] != [0x08, 0x06] {
        return None;
    }
    if frame[14..22] != [0, 1, 0x08, 0, 6, 4, 0, 2] || frame[28..32] != ip {
        return None;
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&frame[22..28]);
    Some(mac)
}

/// `aa:bb:cc:dd:ee:ff`.
pub struct MacText(pub Mac);

impl core::fmt::Display for MacText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn a_request_and_its_reply() {
        let me = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
        let req = arp_request(me, [10, 0, 2, 15], [10, 0, 2, 2]);
        assert_eq!(&req[..6], &[0xff; 6]);
        assert_eq!(
            arp_reply_for(&req, [10, 0, 2, 2]),
            None,
            "a request is no reply"
        );
        // The reply: swap the roles, operation 2.
        let gw = [0x52, 0x55, 10, 0, 2, 2];
        let mut reply = req;
        reply[..6].copy_from_slice(&me);
        reply[6..12].copy_from_slice(&gw);
        reply[21] = 2;
        reply[22..28].copy_from_slice(&gw);
        reply[28..32].copy_from_slice(&[10, 0, 2, 2]);
        assert_eq!(arp_reply_for(&reply, [10, 0, 2, 2]), Some(gw));
        assert_eq!(arp_reply_for(&reply, [10, 0, 2, 3]), None);
        assert_eq!(arp_reply_for(&reply[..40], [10, 0, 2, 2]), None);
        assert_eq!(MacText(gw).to_string(), "52:55:0a:00:02:02");
    }
}
