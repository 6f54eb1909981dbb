//! The physical frame pool: every 4 KiB frame of RAM the kernel may hand out.
//!
//! Two bitmaps over frame numbers `0..capacity`: one says which frames belong to the pool at
//! all, the other which of those are free. A frame the boot memory map did not call usable, or
//! that holds the kernel image, is never managed, so neither a bug nor a bad `free` can put it into
//! circulation. Exhaustion is an error value; nothing here panics.

use core::fmt;

/// Size of one frame.
pub const FRAME_SIZE: u64 = 4096;

/// A physical address of a frame, always 4 KiB aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Frame(u64);

impl Frame {
    /// The frame starting at `addr`, if `addr` is aligned.
    pub const fn at(addr: u64) -> Option<Frame> {
        if addr.is_multiple_of(FRAME_SIZE) {
            Some(Frame(addr))
        } else {
            None
        }
    }

    /// Its physical address.
    pub const fn addr(self) -> u64 {
        self.0
    }

    const fn number(self) -> u64 {
        self.0 / FRAME_SIZE
    }
}

/// Why the pool refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Every managed frame is in use.
    Exhausted,
    /// The frame is not one the pool manages (outside usable RAM, or the kernel image).
    NotManaged(Frame),
    /// The frame is already free: a double free.
    AlreadyFree(Frame),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Exhausted => f.write_str("frame pool exhausted"),
            FrameError::NotManaged(fr) => {
                write!(f, "frame {:#x} is not managed by the pool", fr.addr())
            }
            FrameError::AlreadyFree(fr) => write!(f, "frame {:#x} freed twice", fr.addr()),
        }
    }
}

/// A pool over frames `0 .. WORDS * 64`.
pub struct FramePool<const WORDS: usize> {
    managed: [u64; WORDS],
    free: [u64; WORDS],
    managed_count: usize,
    free_count: usize,
    /// Word index where the next search starts; allocation is first-fit from here.
    hint: usize,
}

impl<const WORDS: usize> Default for FramePool<WORDS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const WORDS: usize> FramePool<WORDS> {
    /// Frames this pool can describe.
    pub const CAPACITY: usize = WORDS * 64;

    /// An empty pool; `const` so it can live in `.bss`.
    pub const fn new() -> Self {
        FramePool {
            managed: [0; WORDS],
            free: [0; WORDS],
            managed_count: 0,
            free_count: 0,
            hint: 0,
        }
    }

    /// Adds the whole frames inside `[start, end)` as free, except those in any of `exclude`.
    /// Returns how many frames were left out because they lie beyond [`Self::CAPACITY`].
    pub fn add_region(&mut self, start: u64, end: u64, exclude: &[(u64, u64)]) -> u64 {
        let first = start.div_ceil(FRAME_SIZE);
        let last = end / FRAME_SIZE; // exclusive
        let mut beyond = 0;
        for n in first..last {
            if n >= Self::CAPACITY as u64 {
                beyond += last - n;
                break;
            }
            let addr = n * FRAME_SIZE;
            let excluded = exclude
                .iter()
                .any(|&(s, e)| addr < e && addr + FRAME_SIZE > s);
            let (w, b) = ((n / 64) as usize, n % 64);
            if excluded || self.managed[w] & (1 << b) != 0 {
                continue;
            }
            self.managed[w] |= 1 << b;
            self.free[w] |= 1 << b;
            self.managed_count += 1;
            self.free_count += 1;
        }
        beyond
    }

    /// Takes a free frame.
    pub fn alloc(&mut self) -> Result<Frame, FrameError> {
        for i in 0..WORDS {
            let w = (self.hint + i) % WORDS;
            let bits = self.free[w];
            if bits != 0 {
                let b = bits.trailing_zeros() as u64;
                self.free[w] &= !(1 << b);
                self.free_count -= 1;
                self.hint = w;
                return Ok(Frame((w as u64 * 64 + b) * FRAME_SIZE));
            }
        }
        Err(FrameError::Exhausted)
    }

    /// Takes `count` physically contiguous free frames (for DMA), first fit. Returns the first.
    pub fn alloc_contiguous(&mut self, count: usize) -> Result<Frame, FrameError> {
        if count == 0 || count > self.free_count {
            return Err(FrameError::Exhausted);
        }
        let free = |pool: &Self, n: usize| pool.free[n / 64] & (1 << (n % 64)) != 0;
        let mut run = 0;
        for n in 0..Self::CAPACITY {
            run = if free(self, n) { run + 1 } else { 0 };
            if run == count {
                let first = n + 1 - count;
                for m in first..=n {
                    self.free[m / 64] &= !(1 << (m % 64));
                }
                self.free_count -= count;
                return Ok(Frame(first as u64 * FRAME_SIZE));
            }
        }
        Err(FrameError::Exhausted)
    }

    /// Gives a frame back. Refuses frames the pool does not manage and double frees.
    pub fn free(&mut self, frame: Frame) -> Result<(), FrameError> {
        let (w, b) = self.locate(frame).ok_or(FrameError::NotManaged(frame))?;
        if self.free[w] & (1 << b) != 0 {
            return Err(FrameError::AlreadyFree(frame));
        }
        self.free[w] |= 1 << b;
        self.free_count += 1;
        Ok(())
    }

    /// Whether the pool manages `frame` (free or in use).
    pub fn manages(&self, frame: Frame) -> bool {
        self.locate(frame).is_some()
    }

    /// Whether `frame` is managed and currently handed out.
    pub fn is_allocated(&self, frame: Frame) -> bool {
        self.locate(frame)
            .is_some_and(|(w, b)| self.free[w] & (1 << b) == 0)
    }

    fn locate(&self, frame: Frame) -> Option<(usize, u64)> {
        let n = frame.number();
        let w = usize::try_from(n / 64).ok().filter(|&w| w < WORDS)?;
        let b = n % 64;
        (self.managed[w] & (1 << b) != 0).then_some((w, b))
    }

    /// Managed frames.
    pub fn managed(&self) -> usize {
        self.managed_count
    }

    /// Free frames.
    pub fn free_frames(&self) -> usize {
        self.free_count
    }

    /// Recounts both bitmaps and checks them against the counters and each other: every free
    /// frame must be managed. Used by the boot self-check.
    pub fn is_consistent(&self) -> bool {
        let mut managed = 0;
        let mut free = 0;
        for w in 0..WORDS {
            if self.free[w] & !self.managed[w] != 0 {
                return false;
            }
            managed += self.managed[w].count_ones() as usize;
            free += self.free[w].count_ones() as usize;
        }
        managed == self.managed_count && free == self.free_count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Small = FramePool<2>; // 128 frames: 512 KiB

    #[test]
    fn hands_out_each_managed_frame_once_then_reports_exhaustion() {
        let mut pool = Small::new();
        // 16 frames, with frames 4..6 excluded as if they held the kernel image.
        let beyond = pool.add_region(0x1000, 0x1_1000, &[(0x5000, 0x7000)]);
        assert_eq!(beyond, 0);
        assert_eq!(pool.managed(), 14);
        let mut got = std::collections::BTreeSet::new();
        while let Ok(f) = pool.alloc() {
            assert!(got.insert(f), "{f:?} handed out twice");
            assert!(
                f.addr() != 0x5000 && f.addr() != 0x6000,
                "excluded frame handed out"
            );
        }
        assert_eq!(got.len(), 14);
        assert_eq!(pool.alloc(), Err(FrameError::Exhausted));
        assert_eq!(pool.free_frames(), 0);
        assert!(pool.is_consistent());
    }

    #[test]
    fn refuses_double_free_and_foreign_frames() {
        let mut pool = Small::new();
        pool.add_region(0x1000, 0x4000, &[]);
        let f = pool.alloc().unwrap();
        assert_eq!(pool.free(f), Ok(()));
        assert_eq!(pool.free(f), Err(FrameError::AlreadyFree(f)));
        let foreign = Frame::at(0x10_0000).unwrap();
        assert_eq!(pool.free(foreign), Err(FrameError::NotManaged(foreign)));
        let beyond_capacity = Frame::at(1 << 40).unwrap();
        assert_eq!(
            pool.free(beyond_capacity),
            Err(FrameError::NotManaged(beyond_capacity))
        );
        assert!(pool.is_consistent());
    }

    #[test]
    fn partial_frames_and_memory_past_capacity_are_left_out() {
        let mut pool = Small::new();
        // Unaligned ends lose their partial frames; 128 frames fit, the rest is counted.
        let beyond = pool.add_region(0x800, 200 * FRAME_SIZE + 0x10, &[]);
        assert_eq!(pool.managed(), 127);
        assert_eq!(beyond, 72);
        // Adding an overlapping region does not double count.
        pool.add_region(0, 0x4000, &[]);
        assert_eq!(pool.managed(), 128);
        assert!(pool.is_consistent());
    }

    #[test]
    fn contiguous_runs_are_found_or_refused() {
        let mut pool = Small::new();
        pool.add_region(0x1000, 0x9000, &[(0x4000, 0x5000)]); // frames 1..=3 and 5..=8
        assert_eq!(pool.alloc_contiguous(5), Err(FrameError::Exhausted));
        let run = pool.alloc_contiguous(4).unwrap();
        assert_eq!(run.addr(), 0x5000);
        for f in [0x5000, 0x6000, 0x7000, 0x8000] {
            assert!(pool.is_allocated(Frame::at(f).unwrap()));
        }
        assert_eq!(pool.alloc_contiguous(3).unwrap().addr(), 0x1000);
        assert_eq!(pool.alloc_contiguous(1), Err(FrameError::Exhausted));
        assert_eq!(pool.alloc_contiguous(0), Err(FrameError::Exhausted));
        assert!(pool.is_consistent());
    }

    #[test]
    fn a_corrupted_bitmap_is_detected() {
        let mut pool = Small::new();
        pool.add_region(0, 0x4000, &[]);
        pool.free[1] |= 1; // a free bit on a frame that is not managed
        assert!(!pool.is_consistent());
    }
}
