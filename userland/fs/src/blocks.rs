//! BXFS blocks through the block server.

use brainix_abi::{Error, Message};
use brainix_fs_format::{BLOCK, Blocks, FsError};
use brainix_proto::block::{self, MAX_SECTORS, SECTOR};
use brainix_proto::status;
use brainix_rt::{Endpoint, cap};

/// Sectors per BXFS block.
const SECTORS_PER_BLOCK: u64 = (BLOCK / SECTOR) as u64;
/// Most blocks one request moves.
pub const MAX_RUN: usize = (MAX_SECTORS as usize * SECTOR) / BLOCK;

/// A client of the block server. Remembers the last error it saw, so the filesystem's `Io` can
/// be told apart (no block server at all is `peer-dead`).
pub struct BlockServer {
    endpoint: Endpoint,
    /// The block server's last refusal, or the IPC error.
    pub last_error: Option<Error>,
}

impl BlockServer {
    /// Talks to the block server at `endpoint`.
    pub const fn new(endpoint: Endpoint) -> Self {
        BlockServer {
            endpoint,
            last_error: None,
        }
    }

    fn request(
        &mut self,
        label: u64,
        block: u32,
        lease: cap::Lent<'_>,
        blocks: usize,
    ) -> Result<(), FsError> {
        let mut msg = Message::new(label);
        msg.regs[0] = u64::from(block) * SECTORS_PER_BLOCK;
        msg.regs[1] = blocks as u64 * SECTORS_PER_BLOCK;
        let mut reply = Message::new(0);
        let result = self
            .endpoint
            .call(&msg, &[lease], &mut reply)
            .and_then(|()| status(&reply));
        result.map_err(|e| {
            self.last_error = Some(e);
            FsError::Io
        })
    }
}

impl Blocks for BlockServer {
    fn read(&mut self, block: u32, buf: &mut [u8; BLOCK]) -> Result<(), FsError> {
        self.request(block::READ, block, cap::lend_mut(buf), 1)
    }

    fn write(&mut self, block: u32, buf: &[u8; BLOCK]) -> Result<(), FsError> {
        self.request(block::WRITE, block, cap::lend(buf), 1)
    }

    fn read_run(&mut self, first: u32, out: &mut [u8]) -> Result<(), FsError> {
        for (i, chunk) in out.chunks_mut(MAX_RUN * BLOCK).enumerate() {
            let blocks = chunk.len() / BLOCK;
            self.request(
                block::READ,
                first + (i * MAX_RUN) as u32,
                cap::lend_mut(chunk),
                blocks,
            )?;
        }
        Ok(())
    }
}
