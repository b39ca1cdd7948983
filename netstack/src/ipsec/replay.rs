//! The ESP anti-replay window (RFC 4303 §3.4.3) as a ring of 64-bit bitmap blocks
//! (RFC 6479): sliding forward clears whole blocks instead of shifting bits, so a jump of
//! thousands of sequence numbers costs as little as a jump of one.

/// Largest window accepted; strongSwan and Linux cap theirs at 4096 too (without ESN).
pub const MAX_WINDOW: u32 = 4096;
const BLOCK_BITS: u32 = u64::BITS;

/// Which sequence numbers (32-bit, no ESN) were already accepted, for the last `size`
/// numbers up to the highest one seen. A window of size 0 disables replay protection.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    size: u32,
    /// Highest sequence number accepted; 0 before the first packet (0 is never sent).
    highest: u32,
    /// A power-of-two ring with at least one block more than the window spans, so the
    /// block being cleared for new numbers never holds numbers still inside the window.
    blocks: Box<[u64]>,
}

impl ReplayWindow {
    /// A window of `size` packets, rounded up to a multiple of 64 and capped at
    /// [`MAX_WINDOW`]; 0 disables the check.
    pub fn new(size: u32) -> Self {
        let size = size.min(MAX_WINDOW).div_ceil(BLOCK_BITS) * BLOCK_BITS;
        let block_count = if size == 0 {
            0
        } else {
            (size / BLOCK_BITS + 1).next_power_of_two() as usize
        };
        ReplayWindow {
            size,
            highest: 0,
            blocks: vec![0; block_count].into_boxed_slice(),
        }
    }

    /// The window's size in packets, after rounding (0: disabled).
    #[cfg(test)]
    pub fn size(&self) -> u32 {
        self.size
    }

    /// The highest sequence number accepted so far (0: none yet).
    #[cfg(test)]
    pub fn highest(&self) -> u32 {
        self.highest
    }

    /// Whether a packet with `seq` may be new: call before spending time on its ICV.
    pub fn check(&self, seq: u32) -> bool {
        if self.size == 0 {
            return true;
        }
        if seq == 0 {
            return false;
        }
        if seq > self.highest {
            return true;
        }
        if self.highest - seq >= self.size {
            return false;
        }
        let (block, bit) = self.position(seq);
        self.blocks[block] & bit == 0
    }

    /// Records `seq` as received, once its packet is authenticated. False if it is not new
    /// (another worker accepted the same number since [`Self::check`], or it fell out of the
    /// window meanwhile): the packet must then be dropped.
    pub fn update(&mut self, seq: u32) -> bool {
        if !self.check(seq) {
            return false;
        }
        if self.size == 0 {
            return true;
        }
        if seq > self.highest {
            let old_block = self.highest / BLOCK_BITS;
            let new_block = seq / BLOCK_BITS;
            let to_clear = (new_block - old_block).min(self.blocks.len() as u32);
            for step in 1..=to_clear {
                let index = self.block_index(old_block + step);
                self.blocks[index] = 0;
            }
            self.highest = seq;
        }
        let (block, bit) = self.position(seq);
        self.blocks[block] |= bit;
        true
    }

    fn position(&self, seq: u32) -> (usize, u64) {
        (
            self.block_index(seq / BLOCK_BITS),
            1u64 << (seq % BLOCK_BITS),
        )
    }

    fn block_index(&self, block_number: u32) -> usize {
        block_number as usize & (self.blocks.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn sizes_round_up_to_blocks_and_cap() {
        assert_eq!(ReplayWindow::new(0).size(), 0);
        assert_eq!(ReplayWindow::new(1).size(), 64);
        assert_eq!(ReplayWindow::new(64).size(), 64);
        assert_eq!(ReplayWindow::new(1000).size(), 1024);
        assert_eq!(ReplayWindow::new(u32::MAX).size(), MAX_WINDOW);
    }

    #[test]
    fn duplicates_are_dropped_and_zero_is_never_valid() {
        let mut window = ReplayWindow::new(64);
        assert!(!window.check(0));
        assert!(window.update(1));
        assert!(!window.check(1));
        assert!(!window.update(1));
        assert!(window.update(2));
        assert_eq!(window.highest(), 2);
    }

    #[test]
    fn out_of_order_within_the_window_is_accepted_once() {
        let mut window = ReplayWindow::new(64);
        assert!(window.update(100));
        for seq in [99, 37, 60] {
            assert!(window.update(seq), "{seq}");
            assert!(!window.update(seq), "{seq} twice");
        }
        assert_eq!(window.highest(), 100);
    }

    #[test]
    fn old_numbers_outside_the_window_are_dropped() {
        let mut window = ReplayWindow::new(64);
        assert!(window.update(100));
        assert!(window.check(37), "100 - 37 = 63 is the oldest inside");
        assert!(!window.check(36));
        assert!(!window.update(36));
    }

    #[test]
    fn the_window_slides_and_forgets_cleared_blocks() {
        let mut window = ReplayWindow::new(128);
        for seq in 1..=200 {
            assert!(window.update(seq));
        }
        // A jump far ahead: everything before the new window is too old, everything inside
        // it (but the new top) is unseen, even where old bits lived in the same ring block.
        assert!(window.update(10_000));
        assert!(!window.check(10_000 - 128));
        for seq in 10_000 - 127..10_000 {
            assert!(window.check(seq), "{seq}");
        }
        assert!(!window.check(200));
        // Slide by one block at a time through the ring more than once.
        for seq in (10_001..11_000).step_by(7) {
            assert!(window.update(seq));
            assert!(!window.check(seq));
            assert!(window.check(seq - 3), "{} was never accepted", seq - 3);
        }
    }

    #[test]
    fn a_disabled_window_accepts_everything() {
        let mut window = ReplayWindow::new(0);
        assert!(window.update(5));
        assert!(window.update(5));
        assert!(window.check(0));
    }

    #[test]
    fn the_top_of_the_sequence_space_works() {
        let mut window = ReplayWindow::new(4096);
        assert!(window.update(u32::MAX));
        assert!(!window.update(u32::MAX));
        assert!(window.update(u32::MAX - 4095));
        assert!(!window.check(u32::MAX - 4096));
    }

    /// What RFC 4303 §3.4.3 asks, without cleverness: every accepted number, and the highest.
    struct Model {
        size: u32,
        seen: BTreeSet<u32>,
        highest: u32,
    }

    impl Model {
        fn check(&self, seq: u32) -> bool {
            seq != 0
                && (seq > self.highest
                    || (self.highest - seq < self.size && !self.seen.contains(&seq)))
        }

        fn update(&mut self, seq: u32) -> bool {
            if !self.check(seq) {
                return false;
            }
            self.seen.insert(seq);
            self.highest = self.highest.max(seq);
            true
        }
    }

    proptest! {
        #[test]
        fn matches_a_simple_model(
            blocks in 1u32..=8,
            start in prop_oneof![Just(0u32), any::<u32>().prop_map(|s| s / 2)],
            steps in proptest::collection::vec((-700i64..700, any::<bool>()), 1..400),
        ) {
            let size = blocks * 64;
            let mut window = ReplayWindow::new(size);
            let mut model = Model { size, seen: BTreeSet::new(), highest: 0 };
            let mut cursor = i64::from(start);
            for (delta, commit) in steps {
                cursor = (cursor + delta).clamp(0, i64::from(u32::MAX));
                let seq = cursor as u32;
                prop_assert_eq!(window.check(seq), model.check(seq), "check {}", seq);
                if commit {
                    prop_assert_eq!(window.update(seq), model.update(seq), "update {}", seq);
                }
                prop_assert_eq!(window.highest(), model.highest);
            }
        }
    }
}
