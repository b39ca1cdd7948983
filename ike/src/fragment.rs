//! IKE fragmentation (RFC 7383): how much plaintext each Encrypted Fragment (SKF)
//! payload can carry, and the reassembly of received fragments.
//!
//! Fragments are authenticated one by one before they get here (§2.6), so only the
//! IKE SA's peer can fill the store; it is bounded all the same: at most
//! [`MAX_FRAGMENTS`] per message, [`MAX_MESSAGE_BYTES`] of plaintext per message and
//! [`MAX_PENDING`] messages at once, the least recently touched dropped first.

/// Largest Total Fragments accepted. A 64 KiB message cut for the 576-byte IPv4 minimum
/// MTU needs about 130.
pub const MAX_FRAGMENTS: u16 = 160;

/// Largest reassembled plaintext: an IKE message never exceeds a UDP datagram.
pub const MAX_MESSAGE_BYTES: usize = 65_535;

/// Messages reassembled at once per IKE SA. With a window of 1 there is one request from
/// the peer and one response to ours; the rest leaves room for retransmissions.
pub const MAX_PENDING: usize = 4;

/// Bytes of an SKF payload before its IV: the generic header, Fragment Number and Total
/// Fragments. All of them are in the associated data.
pub const SKF_HEADER_LEN: usize = 8;

/// The most plaintext one fragment can carry when its datagram (IKE header onwards) may
/// be `max_datagram` bytes, or `None` if not even one byte fits.
pub fn max_fragment_plaintext(
    max_datagram: usize,
    iv_len: usize,
    icv_len: usize,
    block_len: usize,
) -> Option<usize> {
    let overhead = crate::message::HEADER_LEN + SKF_HEADER_LEN + iv_len + icv_len;
    let encrypted = max_datagram.checked_sub(overhead)?;
    // Whole blocks, the last of which ends with the Pad Length byte.
    let encrypted = encrypted / block_len.max(1) * block_len.max(1);
    encrypted.checked_sub(1).filter(|&n| n > 0)
}

/// Checks the Fragment Number and Total Fragments fields before anything is decrypted.
pub fn check_numbers(number: u16, total: u16) -> Result<(), String> {
    if number == 0 || total == 0 || number > total {
        return Err(format!("fragment number {number} of {total} is invalid"));
    }
    if total > MAX_FRAGMENTS {
        return Err(format!(
            "{total} fragments announced, at most {MAX_FRAGMENTS} are accepted"
        ));
    }
    Ok(())
}

/// What became of an authenticated fragment.
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    Stored,
    /// A fragment already held; ignored.
    Duplicate,
    /// The last missing fragment: the message's first inner payload type (from fragment
    /// 1) and the plaintext of all fragments in order.
    Complete {
        first_payload: u8,
        plaintext: Vec<u8>,
    },
}

/// Why an authenticated fragment was not stored.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejected {
    /// §2.6: a fragment announcing fewer fragments than those held belongs to an older
    /// transmission of the message.
    StaleTotal { held: u16 },
    /// The message would exceed [`MAX_MESSAGE_BYTES`]; what was held of it is dropped.
    TooLarge,
}

/// Fragments held per message, for one IKE SA.
#[derive(Default)]
pub struct Reassembly {
    pending: Vec<Pending>,
    clock: u64,
}

struct Pending {
    message_id: u32,
    response: bool,
    total: u16,
    first_payload: u8,
    parts: Vec<Option<Vec<u8>>>,
    received: u16,
    bytes: usize,
    last_used: u64,
}

impl Pending {
    fn new(message_id: u32, response: bool, total: u16) -> Self {
        Pending {
            message_id,
            response,
            total,
            first_payload: 0,
            parts: vec![None; usize::from(total)],
            received: 0,
            bytes: 0,
            last_used: 0,
        }
    }
}

impl Reassembly {
    /// Messages with fragments held.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Plaintext bytes held across all messages.
    pub fn bytes(&self) -> usize {
        self.pending.iter().map(|p| p.bytes).sum()
    }

    /// Adds fragment `number` of `total` (checked with [`check_numbers`] and
    /// authenticated) of the request or response with `message_id`. `next_payload` is the
    /// SKF payload's Next Payload, meaningful in fragment 1 only.
    pub fn add(
        &mut self,
        message_id: u32,
        response: bool,
        number: u16,
        total: u16,
        next_payload: u8,
        plaintext: Vec<u8>,
    ) -> Result<Added, Rejected> {
        self.clock += 1;
        let index = match self
            .pending
            .iter()
            .position(|p| p.message_id == message_id && p.response == response)
        {
            Some(i) if total > self.pending[i].total => {
                // Retransmitted in smaller pieces (§2.6): start over.
                self.pending[i] = Pending::new(message_id, response, total);
                i
            }
            Some(i) if total < self.pending[i].total => {
                return Err(Rejected::StaleTotal {
                    held: self.pending[i].total,
                })
            }
            Some(i) => i,
            None => {
                if self.pending.len() >= MAX_PENDING {
                    let oldest = (0..self.pending.len())
                        .min_by_key(|&i| self.pending[i].last_used)
                        .unwrap_or(0);
                    self.pending.swap_remove(oldest);
                }
                self.pending.push(Pending::new(message_id, response, total));
                self.pending.len() - 1
            }
        };
        let pending = &mut self.pending[index];
        pending.last_used = self.clock;
        // Number 0 (which `check_numbers` refuses) is ignored like a duplicate.
        let slot = usize::from(number).wrapping_sub(1);
        if pending.parts.get(slot).is_none_or(Option::is_some) {
            return Ok(Added::Duplicate);
        }
        if pending.bytes + plaintext.len() > MAX_MESSAGE_BYTES {
            self.pending.swap_remove(index);
            return Err(Rejected::TooLarge);
        }
        if number == 1 {
            pending.first_payload = next_payload;
        }
        pending.bytes += plaintext.len();
        pending.parts[slot] = Some(plaintext);
        pending.received += 1;
        if pending.received < pending.total {
            return Ok(Added::Stored);
        }
        let done = self.pending.swap_remove(index);
        let mut plaintext = Vec::with_capacity(done.bytes);
        for part in done.parts.into_iter().flatten() {
            plaintext.extend_from_slice(&part);
        }
        Ok(Added::Complete {
            first_payload: done.first_payload,
            plaintext,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_capacity_accounts_for_every_overhead() {
        // GCM: 28 + 8 + 8 (IV) + 16 (ICV) = 60 bytes of overhead, then the pad length.
        assert_eq!(max_fragment_plaintext(1280, 8, 16, 1), Some(1280 - 60 - 1));
        // CBC: whole 16-byte blocks; 1280 - 28 - 8 - 16 - 16 = 1212 -> 1200 -> 1199.
        assert_eq!(max_fragment_plaintext(1280, 16, 16, 16), Some(1199));
        assert_eq!(max_fragment_plaintext(60, 8, 16, 1), None);
        assert_eq!(max_fragment_plaintext(61, 8, 16, 1), None);
        assert_eq!(max_fragment_plaintext(62, 8, 16, 1), Some(1));
    }

    #[test]
    fn fragment_numbers_are_checked() {
        assert!(check_numbers(1, 1).is_ok());
        assert!(check_numbers(0, 3).is_err());
        assert!(check_numbers(4, 3).is_err());
        assert!(check_numbers(1, 0).is_err());
        assert!(check_numbers(1, MAX_FRAGMENTS + 1).is_err());
    }

    #[test]
    fn reassembles_in_any_order_and_ignores_duplicates() {
        let mut store = Reassembly::default();
        assert_eq!(
            store.add(7, false, 3, 3, 0, b"ghi".to_vec()),
            Ok(Added::Stored)
        );
        assert_eq!(
            store.add(7, false, 1, 3, 35, b"abc".to_vec()),
            Ok(Added::Stored)
        );
        assert_eq!(
            store.add(7, false, 3, 3, 0, b"xxx".to_vec()),
            Ok(Added::Duplicate)
        );
        assert_eq!(
            store.add(7, false, 2, 3, 0, b"def".to_vec()),
            Ok(Added::Complete {
                first_payload: 35,
                plaintext: b"abcdefghi".to_vec()
            })
        );
        assert_eq!(store.pending(), 0);
    }

    #[test]
    fn requests_and_responses_with_one_id_are_kept_apart() {
        let mut store = Reassembly::default();
        store.add(1, false, 1, 2, 35, b"req".to_vec()).unwrap();
        store.add(1, true, 1, 2, 36, b"resp".to_vec()).unwrap();
        assert_eq!(store.pending(), 2);
        assert!(matches!(
            store.add(1, true, 2, 2, 0, b"!".to_vec()),
            Ok(Added::Complete {
                first_payload: 36,
                ..
            })
        ));
    }

    #[test]
    fn greater_total_restarts_smaller_total_is_dropped() {
        let mut store = Reassembly::default();
        store.add(5, false, 1, 2, 35, vec![1; 100]).unwrap();
        // Retransmitted in three pieces: the old fragment is forgotten.
        store.add(5, false, 1, 3, 35, vec![2; 70]).unwrap();
        assert_eq!(store.bytes(), 70);
        assert_eq!(
            store.add(5, false, 2, 2, 0, vec![1; 100]),
            Err(Rejected::StaleTotal { held: 3 })
        );
        store.add(5, false, 2, 3, 0, vec![2; 70]).unwrap();
        assert_eq!(
            store.add(5, false, 3, 3, 0, vec![2; 70]),
            Ok(Added::Complete {
                first_payload: 35,
                plaintext: vec![2; 210]
            })
        );
    }

    #[test]
    fn memory_is_bounded() {
        let mut store = Reassembly::default();
        // Per message: the fragment that would pass the limit drops the message.
        let big = MAX_MESSAGE_BYTES / 2 + 1;
        store.add(1, false, 1, 3, 35, vec![0; big]).unwrap();
        assert_eq!(
            store.add(1, false, 2, 3, 0, vec![0; big]),
            Err(Rejected::TooLarge)
        );
        assert_eq!(store.pending(), 0);
        // Across messages: the least recently touched is dropped first.
        for id in 0..(MAX_PENDING as u32 + 3) {
            store.add(id, false, 1, 2, 35, vec![0; 1000]).unwrap();
        }
        assert_eq!(store.pending(), MAX_PENDING);
        assert_eq!(store.bytes(), MAX_PENDING * 1000);
        // The newest ones are still there and complete.
        assert!(matches!(
            store.add(MAX_PENDING as u32 + 2, false, 2, 2, 0, vec![0; 10]),
            Ok(Added::Complete { .. })
        ));
        // The oldest was dropped: its second fragment starts a new message.
        assert_eq!(store.add(0, false, 2, 2, 0, vec![0; 10]), Ok(Added::Stored));
    }
}
