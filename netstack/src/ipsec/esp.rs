//! ESP (RFC 4303) in tunnel mode, one packet at a time, on caller-owned buffers:
//!
//! ```text
//! SPI (4) | sequence (4) | IV | encrypted(inner | padding 1,2,3.. | pad len | next header) | ICV
//! ```
//!
//! The SAs are shared by the data plane's worker threads: sequence numbers and counters are
//! atomics, the replay window sits behind a lock held only to check or set a bit. Nothing
//! here allocates per packet.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
use rand::RngCore;
use siteward_ike::crypto::transform::Transform;
use siteward_ike::crypto::CryptoError;
use zeroize::Zeroizing;

use super::replay::ReplayWindow;

/// ESP header protocol numbers of the inner packet.
pub const NEXT_HEADER_IPV4: u8 = 4;
pub const NEXT_HEADER_IPV6: u8 = 41;
/// A dummy packet (RFC 4303 §2.6), sent for traffic-flow confidentiality and dropped.
pub const NEXT_HEADER_NONE: u8 = 59;

/// SPI and sequence number: the ESP header, and the associated data both ciphers protect.
pub const ESP_HEADER_LEN: usize = 8;
/// Pad length and next header, at the end of the encrypted data.
const TRAILER_LEN: usize = 2;
/// Without extended sequence numbers (which Siteward does not negotiate) the counter must
/// not wrap: the SA is rekeyed before.
const MAX_SEQUENCE: u64 = u32::MAX as u64;
/// RFC 4303 §2.4: the trailer ends on a 4-byte boundary even when the cipher has no block.
const MIN_ALIGNMENT: usize = 4;
const AES_BLOCK: usize = 16;
/// The largest ICV of the integrity algorithms IKE negotiates (HMAC-SHA-512-256).
const MAX_ICV_LEN: usize = 32;
/// The most ESP adds around an inner packet with any negotiable suite: header, an AES-CBC
/// IV, a block of padding less one, the trailer and the largest ICV. Buffers sized with it
/// fit any CHILD_SA's packets.
pub const MAX_OVERHEAD: usize =
    ESP_HEADER_LEN + AES_BLOCK + (AES_BLOCK - 1) + TRAILER_LEN + MAX_ICV_LEN;

/// Why a packet could not be encapsulated or was dropped on decapsulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum EspError {
    #[error("ESP packet shorter than its header, IV, trailer and ICV")]
    Truncated,
    #[error("ESP packet carries another SA's SPI")]
    SpiMismatch,
    #[error("ESP encrypted data is not a whole number of cipher blocks")]
    Misaligned,
    #[error("ESP sequence number already received or older than the replay window")]
    Replayed,
    #[error("ESP integrity check failed")]
    Integrity,
    #[error("ESP padding or pad length is malformed")]
    BadPadding,
    #[error("ESP sequence numbers of this SA are used up; it must be rekeyed")]
    SequenceExhausted,
    #[error("buffer too small for the ESP packet")]
    BufferTooSmall,
    #[error("the cipher refused the ESP packet's layout")]
    Cipher,
}

impl EspError {
    pub const ALL: [EspError; 9] = [
        EspError::Truncated,
        EspError::SpiMismatch,
        EspError::Misaligned,
        EspError::Replayed,
        EspError::Integrity,
        EspError::BadPadding,
        EspError::SequenceExhausted,
        EspError::BufferTooSmall,
        EspError::Cipher,
    ];

    /// A fixed snake_case name, usable as a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            EspError::Truncated => "truncated",
            EspError::SpiMismatch => "spi_mismatch",
            EspError::Misaligned => "misaligned",
            EspError::Replayed => "replayed",
            EspError::Integrity => "integrity",
            EspError::BadPadding => "bad_padding",
            EspError::SequenceExhausted => "sequence_exhausted",
            EspError::BufferTooSmall => "buffer_too_small",
            EspError::Cipher => "cipher",
        }
    }

    fn of(error: CryptoError) -> EspError {
        // `seal` and `open` only fail on the ICV or on lengths; the rest of CryptoError is
        // IKE's (AUTH, certificates, keys).
        match error {
            CryptoError::Integrity => EspError::Integrity,
            _ => EspError::Cipher,
        }
    }
}

/// SPI of an ESP packet (first 4 bytes), for demultiplexing; `None` if shorter than an ESP
/// header.
pub fn spi_of(packet: &[u8]) -> Option<u32> {
    match packet {
        [a, b, c, d, _, _, _, _, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// The sizes of one SA's packets, from its transform.
#[derive(Debug, Clone, Copy)]
struct Layout {
    iv_len: usize,
    icv_len: usize,
    /// The cipher's block (1 for GCM).
    block_len: usize,
    /// What the encrypted data's length is a multiple of: the block, and at least 4.
    alignment: usize,
}

impl Layout {
    fn of(transform: &Transform) -> Self {
        let block_len = transform.block_len();
        Layout {
            iv_len: transform.iv_len(),
            icv_len: transform.icv_len(),
            block_len,
            alignment: block_len.max(MIN_ALIGNMENT),
        }
    }

    fn inner_offset(&self) -> usize {
        ESP_HEADER_LEN + self.iv_len
    }

    fn encrypted_len(&self, inner_len: usize) -> Option<usize> {
        inner_len
            .checked_add(TRAILER_LEN)?
            .checked_next_multiple_of(self.alignment)
    }
}

/// Where an outbound SA's IVs come from.
enum IvSource {
    /// Counter-mode ciphers (GCM) need an IV that never repeats under the key: the 64-bit
    /// sequence number is one (RFC 4106 §3.1).
    Sequence,
    /// CBC needs an unpredictable IV (RFC 3602 §2.1): the sequence number encrypted with a
    /// random per-SA AES key, which is a CSPRNG in counter mode that needs no lock and no
    /// system call per packet.
    EncryptedSequence(Box<aes::Aes256Enc>),
}

impl IvSource {
    fn for_block_len(block_len: usize) -> Self {
        if block_len == 1 {
            return IvSource::Sequence;
        }
        // ThreadRng: ChaCha seeded from the operating system, as rand documents it.
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(key.as_mut());
        IvSource::EncryptedSequence(Box::new(aes::Aes256Enc::new(GenericArray::from_slice(
            key.as_ref(),
        ))))
    }

    fn fill(&self, sequence: u64, iv: &mut [u8]) {
        match self {
            IvSource::Sequence => {
                let bytes = sequence.to_be_bytes();
                let (zeros, tail) = iv.split_at_mut(iv.len().saturating_sub(bytes.len()));
                zeros.fill(0);
                tail.copy_from_slice(&bytes[bytes.len() - tail.len()..]);
            }
            IvSource::EncryptedSequence(cipher) => {
                // Block i of the IV encrypts (sequence, i): distinct inputs, distinct outputs.
                for (index, chunk) in iv.chunks_mut(AES_BLOCK).enumerate() {
                    let mut block = GenericArray::default();
                    block[..8].copy_from_slice(&sequence.to_be_bytes());
                    block[8..].copy_from_slice(&(index as u64).to_be_bytes());
                    cipher.encrypt_block(&mut block);
                    chunk.copy_from_slice(&block[..chunk.len()]);
                }
            }
        }
    }
}

/// The sending half of a CHILD_SA, shared by the worker threads.
pub struct OutboundSa {
    spi: u32,
    transform: Transform,
    layout: Layout,
    iv: IvSource,
    /// The last sequence number handed out (0: none yet). Keeps counting past
    /// [`MAX_SEQUENCE`] on refused packets, so readers clamp it.
    sequence: AtomicU64,
    packets: AtomicU64,
    bytes: AtomicU64,
}

impl OutboundSa {
    pub fn new(spi: u32, transform: Transform) -> Self {
        let layout = Layout::of(&transform);
        OutboundSa {
            spi,
            iv: IvSource::for_block_len(layout.block_len),
            transform,
            layout,
            sequence: AtomicU64::new(0),
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// As if `last_sequence` packets had been sent: for tests of the known answer and of
    /// exhaustion.
    #[cfg(test)]
    pub(crate) fn with_sequence(spi: u32, transform: Transform, last_sequence: u64) -> Self {
        let sa = OutboundSa::new(spi, transform);
        sa.sequence.store(last_sequence, Ordering::Relaxed);
        sa
    }

    /// Bytes `encapsulate` needs at most for an inner packet of `inner_len`, beyond the
    /// inner packet itself.
    pub fn max_overhead(&self) -> usize {
        self.layout.inner_offset() + TRAILER_LEN + self.layout.alignment - 1 + self.layout.icv_len
    }

    /// The exact length of the ESP packet for an inner packet of `inner_len` bytes.
    pub fn encapsulated_len(&self, inner_len: usize) -> Option<usize> {
        self.layout
            .encrypted_len(inner_len)?
            .checked_add(self.layout.inner_offset() + self.layout.icv_len)
    }

    /// Writes ESP header | IV | encrypted(inner | padding 1,2,3.. | pad len | next header) |
    /// ICV into `out`, returns its length. Padding aligns to the cipher block (CBC 16) and
    /// to 4 bytes (GCM). `Err(SequenceExhausted)` after 2^32-1 packets: IKE must have
    /// rekeyed before.
    pub fn encapsulate(
        &self,
        inner: &[u8],
        next_header: u8,
        out: &mut [u8],
    ) -> Result<usize, EspError> {
        let offset = self.layout.inner_offset();
        out.get_mut(offset..)
            .and_then(|tail| tail.get_mut(..inner.len()))
            .ok_or(EspError::BufferTooSmall)?
            .copy_from_slice(inner);
        self.encapsulate_in_place(out, inner.len(), next_header)
    }

    /// [`Self::encapsulate`] once the inner packet is at `buf[inner_offset..][..inner_len]`.
    fn encapsulate_in_place(
        &self,
        buf: &mut [u8],
        inner_len: usize,
        next_header: u8,
    ) -> Result<usize, EspError> {
        let layout = self.layout;
        let total = self
            .encapsulated_len(inner_len)
            .filter(|&total| total <= buf.len())
            .ok_or(EspError::BufferTooSmall)?;
        let sequence = self.next_sequence()?;

        let (header, rest) = buf[..total].split_at_mut(ESP_HEADER_LEN);
        header[..4].copy_from_slice(&self.spi.to_be_bytes());
        header[4..].copy_from_slice(&(sequence as u32).to_be_bytes());
        let (iv, rest) = rest.split_at_mut(layout.iv_len);
        self.iv.fill(sequence, iv);
        let (encrypted, icv) = rest.split_at_mut(rest.len() - layout.icv_len);
        let pad_len = encrypted.len() - inner_len - TRAILER_LEN;
        let (padding, trailer) = encrypted[inner_len..].split_at_mut(pad_len);
        for (byte, value) in padding.iter_mut().zip(1..=u8::MAX) {
            *byte = value;
        }
        // At most alignment - 1 (< 256) bytes of padding.
        trailer[0] = pad_len as u8;
        trailer[1] = next_header;
        self.transform
            .seal(header, iv, encrypted, icv)
            .map_err(EspError::of)?;

        self.packets.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(inner_len as u64, Ordering::Relaxed);
        Ok(total)
    }

    fn next_sequence(&self) -> Result<u64, EspError> {
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        if sequence > MAX_SEQUENCE {
            return Err(EspError::SequenceExhausted);
        }
        Ok(sequence)
    }

    /// Packets encapsulated.
    pub fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }

    /// Inner bytes encapsulated (what CHILD_SA byte lifetimes count).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The last sequence number sent.
    pub fn sequence(&self) -> u64 {
        self.sequence.load(Ordering::Relaxed).min(MAX_SEQUENCE)
    }
}

impl std::fmt::Debug for OutboundSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundSa")
            .field("spi", &format_args!("{:08x}", self.spi))
            .field("transform", &self.transform)
            .field("sequence", &self.sequence())
            .field("packets", &self.packets())
            .finish()
    }
}

/// The receiving half of a CHILD_SA, shared by the worker threads.
pub struct InboundSa {
    spi: u32,
    transform: Transform,
    layout: Layout,
    window: Mutex<ReplayWindow>,
    packets: AtomicU64,
    bytes: AtomicU64,
    replay_drops: AtomicU64,
    auth_failures: AtomicU64,
}

impl InboundSa {
    /// `replay_window` in packets (e.g. 1024), rounded up to a multiple of 64 and capped at
    /// 4096; 0 disables replay protection.
    pub fn new(spi: u32, transform: Transform, replay_window: u32) -> Self {
        InboundSa {
            spi,
            layout: Layout::of(&transform),
            transform,
            window: Mutex::new(ReplayWindow::new(replay_window)),
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            replay_drops: AtomicU64::new(0),
            auth_failures: AtomicU64::new(0),
        }
    }

    /// Checks the sequence number against the replay window (before spending time on the
    /// ICV), authenticates and decrypts in place, then records the number (only after
    /// authentication, RFC 4303 §3.4.3), checks the padding and returns the inner packet's
    /// range within `packet` and its next header. [`NEXT_HEADER_NONE`] (a dummy packet) is
    /// returned as such for the caller to drop silently.
    pub fn decapsulate(&self, packet: &mut [u8]) -> Result<(Range<usize>, u8), EspError> {
        let layout = self.layout;
        let inner_offset = layout.inner_offset();
        let encrypted_len = packet
            .len()
            .checked_sub(inner_offset + layout.icv_len)
            .filter(|&len| len >= TRAILER_LEN)
            .ok_or(EspError::Truncated)?;
        if spi_of(packet) != Some(self.spi) {
            return Err(EspError::SpiMismatch);
        }
        if encrypted_len % layout.block_len != 0 {
            return Err(EspError::Misaligned);
        }
        let sequence = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        if !self.lock_window().check(sequence) {
            return Err(self.replayed());
        }

        let (header, rest) = packet.split_at_mut(ESP_HEADER_LEN);
        let (iv, rest) = rest.split_at_mut(layout.iv_len);
        let (encrypted, icv) = rest.split_at_mut(encrypted_len);
        if let Err(error) = self.transform.open(header, iv, encrypted, icv) {
            let error = EspError::of(error);
            if error == EspError::Integrity {
                self.auth_failures.fetch_add(1, Ordering::Relaxed);
            }
            return Err(error);
        }
        // Another worker may have accepted the same number while this one decrypted.
        if !self.lock_window().update(sequence) {
            return Err(self.replayed());
        }

        let inner_len = unpadded_len(encrypted)?;
        let next_header = encrypted[encrypted_len - 1];
        self.packets.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(inner_len as u64, Ordering::Relaxed);
        Ok((inner_offset..inner_offset + inner_len, next_header))
    }

    fn replayed(&self) -> EspError {
        self.replay_drops.fetch_add(1, Ordering::Relaxed);
        EspError::Replayed
    }

    /// The window is only ever changed by `ReplayWindow::update`, which cannot panic halfway,
    /// so a lock poisoned by an unrelated panic still holds a consistent window.
    fn lock_window(&self) -> MutexGuard<'_, ReplayWindow> {
        self.window
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Packets accepted.
    pub fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }

    /// Inner bytes accepted.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Packets dropped as replays or as older than the window.
    pub fn replay_drops(&self) -> u64 {
        self.replay_drops.load(Ordering::Relaxed)
    }

    /// Packets whose ICV did not match.
    pub fn auth_failures(&self) -> u64 {
        self.auth_failures.load(Ordering::Relaxed)
    }

    /// The highest sequence number accepted (0: none yet, or replay protection disabled).
    #[cfg(test)]
    fn highest_sequence(&self) -> u32 {
        self.lock_window().highest()
    }
}

impl std::fmt::Debug for InboundSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundSa")
            .field("spi", &format_args!("{:08x}", self.spi))
            .field("transform", &self.transform)
            .field("packets", &self.packets())
            .field("replay_drops", &self.replay_drops())
            .field("auth_failures", &self.auth_failures())
            .finish()
    }
}

/// The inner packet's length in decrypted `inner | padding | pad len | next header`, after
/// checking the padding is 1, 2, 3, ... as RFC 4303 §2.4 has senders write it.
fn unpadded_len(decrypted: &[u8]) -> Result<usize, EspError> {
    let trailer_start = decrypted.len() - TRAILER_LEN;
    let pad_len = usize::from(decrypted[trailer_start]);
    let inner_len = trailer_start
        .checked_sub(pad_len)
        .ok_or(EspError::BadPadding)?;
    let padding_is_monotonic = decrypted[inner_len..trailer_start]
        .iter()
        .zip(1..=u8::MAX)
        .all(|(&byte, expected)| byte == expected);
    if !padding_is_monotonic {
        return Err(EspError::BadPadding);
    }
    Ok(inner_len)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use proptest::prelude::*;
    use siteward_ike::algorithms::{EncrAlg, IntegAlg};

    use super::*;

    const SPI: u32 = 0x0a0b_0c0d;

    // From netstack/tests/vectors/gen_esp_vectors.py (Python `cryptography`).
    const VECTOR_SEQUENCE: u32 = 0x2a;
    const INNER: &str =
        "450000270001000040018e9fc0000201c63364010800c5d01234000173697465776172642d6521";
    const GCM_PACKET: &str = "0a0b0c0d0000002a000000000000002a17befc91040f21f25b39b59baa13a3f2fdab72075507258dfe723b9c980cc5f5e0a09e76088c7691963a5b6e0aec373e38de4c52f3f0b50e91af04d7";
    const CBC_PACKET: &str = "0a0b0c0d0000002a00112233445566778899aabbccddeeff5ce1c332a8e58724a584c427abbc3ad9d82a9a0af68eb39122f25a1bacff5056f244b153c8f64eb4e036fca7efca04cae1161c3ffedf08f446d95ea0a806d74d";

    fn gcm() -> Transform {
        let mut keymat: Vec<u8> = (0x00..0x20).collect();
        keymat.extend_from_slice(&[0xa1, 0xb2, 0xc3, 0xd4]);
        Transform::new(EncrAlg::AesGcm16 { key_bits: 256 }, None, &keymat, &[]).unwrap()
    }

    fn cbc() -> Transform {
        let key: Vec<u8> = (0x40..0x60).collect();
        let integ_key: Vec<u8> = (0x80..0xa0).collect();
        Transform::new(
            EncrAlg::AesCbc { key_bits: 256 },
            Some(IntegAlg::HmacSha256_128),
            &key,
            &integ_key,
        )
        .unwrap()
    }

    fn cbc_sha512() -> Transform {
        let key: Vec<u8> = (0x40..0x60).collect();
        let integ_key: Vec<u8> = (0x00..0x40).collect();
        Transform::new(
            EncrAlg::AesCbc { key_bits: 256 },
            Some(IntegAlg::HmacSha512_256),
            &key,
            &integ_key,
        )
        .unwrap()
    }

    /// A suite under test, with what its padding must align to.
    struct Suite {
        name: &'static str,
        transform: fn() -> Transform,
        alignment: usize,
    }

    const SUITES: [Suite; 3] = [
        Suite {
            name: "gcm",
            transform: gcm,
            alignment: 4,
        },
        Suite {
            name: "cbc",
            transform: cbc,
            alignment: 16,
        },
        Suite {
            name: "cbc-sha512",
            transform: cbc_sha512,
            alignment: 16,
        },
    ];

    #[test]
    fn max_overhead_covers_every_suite() {
        for Suite {
            name, transform, ..
        } in SUITES
        {
            let out = OutboundSa::new(SPI, transform());
            assert!(out.max_overhead() <= MAX_OVERHEAD, "{name}");
            for inner_len in 1200..1300 {
                let len = out.encapsulated_len(inner_len).unwrap();
                assert!(len <= inner_len + MAX_OVERHEAD, "{name} {inner_len}");
            }
        }
        // The largest one is the bound itself: no room is wasted either.
        assert_eq!(
            OutboundSa::new(SPI, cbc_sha512()).max_overhead(),
            MAX_OVERHEAD
        );
    }

    fn seal(sa: &OutboundSa, inner: &[u8], next_header: u8) -> Vec<u8> {
        let mut out = vec![0u8; inner.len() + sa.max_overhead()];
        let len = sa.encapsulate(inner, next_header, &mut out).unwrap();
        out.truncate(len);
        out
    }

    /// An ESP packet around an arbitrary decrypted payload (bad padding included).
    fn seal_raw(transform: &Transform, sequence: u32, decrypted: &[u8]) -> Vec<u8> {
        let mut packet = SPI.to_be_bytes().to_vec();
        packet.extend_from_slice(&sequence.to_be_bytes());
        packet.extend(std::iter::repeat_n(0x5a, transform.iv_len()));
        packet.extend_from_slice(decrypted);
        packet.extend(std::iter::repeat_n(0, transform.icv_len()));
        let (header, rest) = packet.split_at_mut(ESP_HEADER_LEN);
        let (iv, rest) = rest.split_at_mut(transform.iv_len());
        let (data, icv) = rest.split_at_mut(decrypted.len());
        transform.seal(header, iv, data, icv).unwrap();
        packet
    }

    fn sequence_of(packet: &[u8]) -> u32 {
        u32::from_be_bytes(packet[4..8].try_into().unwrap())
    }

    #[test]
    fn gcm_known_answer_both_ways() {
        let inner = hex::decode(INNER).unwrap();
        let expected = hex::decode(GCM_PACKET).unwrap();
        let out = OutboundSa::with_sequence(SPI, gcm(), u64::from(VECTOR_SEQUENCE) - 1);
        assert_eq!(
            hex::encode(seal(&out, &inner, NEXT_HEADER_IPV4)),
            GCM_PACKET
        );

        let sa = InboundSa::new(SPI, gcm(), 64);
        let mut packet = expected;
        let (range, next_header) = sa.decapsulate(&mut packet).unwrap();
        assert_eq!(packet[range].to_vec(), inner);
        assert_eq!(next_header, NEXT_HEADER_IPV4);
        assert_eq!(sa.highest_sequence(), VECTOR_SEQUENCE);
    }

    #[test]
    fn cbc_known_answer_decapsulates() {
        let inner = hex::decode(INNER).unwrap();
        let sa = InboundSa::new(SPI, cbc(), 64);
        let mut packet = hex::decode(CBC_PACKET).unwrap();
        let (range, next_header) = sa.decapsulate(&mut packet).unwrap();
        assert_eq!(packet[range.clone()].to_vec(), inner);
        assert_eq!(next_header, NEXT_HEADER_IPV4);
        // 39 + 2 trailer bytes pad to 48: seven padding bytes 1..=7 follow the inner packet.
        assert_eq!(
            packet[range.end..range.end + 9],
            [1, 2, 3, 4, 5, 6, 7, 7, 4]
        );
        assert_eq!((sa.packets(), sa.bytes()), (1, inner.len() as u64));
    }

    proptest! {
        #[test]
        fn round_trips_with_aligned_monotonic_padding(
            inner in proptest::collection::vec(any::<u8>(), 0..1500),
            next_header in any::<u8>(),
        ) {
            for Suite { name, transform, alignment } in SUITES {
                let out = OutboundSa::new(SPI, transform());
                let inbound = InboundSa::new(SPI, transform(), 1024);
                let mut packet = seal(&out, &inner, next_header);
                prop_assert_eq!(Some(packet.len()), out.encapsulated_len(inner.len()));
                let t = transform();
                let encrypted_len = packet.len() - ESP_HEADER_LEN - t.iv_len() - t.icv_len();
                prop_assert_eq!(encrypted_len % alignment, 0, "{}", name);
                prop_assert!(encrypted_len - inner.len() - TRAILER_LEN < alignment);
                prop_assert_eq!(spi_of(&packet), Some(SPI));
                prop_assert_eq!(sequence_of(&packet), 1);

                let (range, got_next_header) = inbound.decapsulate(&mut packet).unwrap();
                prop_assert_eq!(&packet[range.clone()], &inner[..], "{}", name);
                prop_assert_eq!(got_next_header, next_header);
                let pad_len = encrypted_len - inner.len() - TRAILER_LEN;
                let padding = &packet[range.end..range.end + pad_len];
                prop_assert!(padding.iter().zip(1..=u8::MAX).all(|(&byte, n)| byte == n));
                prop_assert_eq!(usize::from(packet[range.end + pad_len]), pad_len);
            }
        }

        /// Whatever arrives, with or without our SPI in front, is an error or a packet, never
        /// a panic; and without the key it is never a packet.
        #[test]
        fn garbage_is_rejected_without_panicking(
            mut bytes in proptest::collection::vec(any::<u8>(), 0..200),
            with_our_spi in any::<bool>(),
        ) {
            if with_our_spi && bytes.len() >= 4 {
                bytes[..4].copy_from_slice(&SPI.to_be_bytes());
            }
            for Suite { transform, .. } in SUITES {
                let sa = InboundSa::new(SPI, transform(), 64);
                prop_assert!(sa.decapsulate(&mut bytes.clone()).is_err());
            }
        }
    }

    #[test]
    fn padding_fills_to_the_block_for_every_remainder() {
        for Suite {
            name,
            transform,
            alignment,
        } in SUITES
        {
            let out = OutboundSa::new(SPI, transform());
            let inbound = InboundSa::new(SPI, transform(), 0);
            let mut pad_lengths = BTreeSet::new();
            for inner_len in 0..2 * alignment {
                let inner = vec![0xee; inner_len];
                let mut packet = seal(&out, &inner, NEXT_HEADER_IPV6);
                let icv_start = packet.len() - transform().icv_len();
                let (range, _) = inbound.decapsulate(&mut packet).unwrap();
                let pad_len = usize::from(packet[icv_start - TRAILER_LEN]);
                assert_eq!(range.end + pad_len + TRAILER_LEN, icv_start, "{name}");
                pad_lengths.insert(pad_len);
            }
            let expected: BTreeSet<usize> = (0..alignment).collect();
            assert_eq!(pad_lengths, expected, "{name}");
        }
    }

    #[test]
    fn cbc_ivs_are_unpredictable_not_the_sequence() {
        let out = OutboundSa::new(SPI, cbc());
        let other = OutboundSa::new(SPI, cbc());
        let iv = |packet: &[u8]| packet[ESP_HEADER_LEN..ESP_HEADER_LEN + 16].to_vec();
        let first = iv(&seal(&out, b"x", NEXT_HEADER_IPV4));
        let second = iv(&seal(&out, b"x", NEXT_HEADER_IPV4));
        let other_first = iv(&seal(&other, b"x", NEXT_HEADER_IPV4));
        assert_ne!(first, second);
        assert_ne!(first, other_first, "each SA has its own IV key");
        let mut counter_iv = [0u8; 16];
        counter_iv[15] = 1;
        assert_ne!(first, counter_iv);
    }

    #[test]
    fn gcm_ivs_are_the_sequence_number() {
        let out = OutboundSa::new(SPI, gcm());
        for expected in 1u64..=3 {
            let packet = seal(&out, b"abc", NEXT_HEADER_IPV4);
            assert_eq!(packet[8..16], expected.to_be_bytes());
            assert_eq!(u64::from(sequence_of(&packet)), expected);
        }
        assert_eq!(out.sequence(), 3);
    }

    #[test]
    fn duplicates_are_replays_not_auth_failures() {
        let out = OutboundSa::new(SPI, gcm());
        let sa = InboundSa::new(SPI, gcm(), 64);
        let packet = seal(&out, b"once", NEXT_HEADER_IPV4);
        assert!(sa.decapsulate(&mut packet.clone()).is_ok());
        assert_eq!(sa.decapsulate(&mut packet.clone()), Err(EspError::Replayed));
        assert_eq!(
            (sa.packets(), sa.replay_drops(), sa.auth_failures()),
            (1, 1, 0)
        );
    }

    #[test]
    fn out_of_order_in_window_accepted_once_and_old_dropped() {
        let out = OutboundSa::new(SPI, cbc());
        let sa = InboundSa::new(SPI, cbc(), 64);
        let packets: Vec<Vec<u8>> = (0..100)
            .map(|_| seal(&out, b"seq", NEXT_HEADER_IPV4))
            .collect();
        // Sequence 100 first, then 40 (inside: 100 - 40 < 64) twice, then 36 (outside).
        assert!(sa.decapsulate(&mut packets[99].clone()).is_ok());
        assert!(sa.decapsulate(&mut packets[39].clone()).is_ok());
        assert_eq!(
            sa.decapsulate(&mut packets[39].clone()),
            Err(EspError::Replayed)
        );
        assert_eq!(
            sa.decapsulate(&mut packets[35].clone()),
            Err(EspError::Replayed)
        );
        assert_eq!((sa.packets(), sa.replay_drops()), (2, 2));
    }

    #[test]
    fn a_forged_packet_does_not_move_the_window() {
        let out = OutboundSa::with_sequence(SPI, gcm(), 999);
        let sa = InboundSa::new(SPI, gcm(), 64);
        let genuine_early = seal(&OutboundSa::new(SPI, gcm()), b"early", NEXT_HEADER_IPV4);
        let genuine = seal(&out, b"far ahead", NEXT_HEADER_IPV4);
        let mut forged = genuine.clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert_eq!(sa.decapsulate(&mut forged), Err(EspError::Integrity));
        assert_eq!((sa.auth_failures(), sa.replay_drops()), (1, 0));
        assert_eq!(sa.highest_sequence(), 0);
        // Sequence 1 is still inside the window, and the genuine 1000 is still new.
        assert!(sa.decapsulate(&mut genuine_early.clone()).is_ok());
        assert!(sa.decapsulate(&mut genuine.clone()).is_ok());
        assert_eq!(sa.highest_sequence(), 1000);
    }

    #[test]
    fn bad_padding_is_caught_after_authentication() {
        let t = gcm();
        let sa = InboundSa::new(SPI, gcm(), 64);
        // Padding 1, 3 instead of 1, 2.
        let mut packet = seal_raw(&t, 1, &[0xaa, 0xbb, 1, 3, 2, NEXT_HEADER_IPV4]);
        assert_eq!(sa.decapsulate(&mut packet), Err(EspError::BadPadding));
        // A pad length longer than what precedes it.
        let mut packet = seal_raw(&t, 2, &[0xaa, 1, 2, NEXT_HEADER_IPV4]);
        assert_eq!(sa.decapsulate(&mut packet), Err(EspError::BadPadding));
        // Genuine packets: their numbers are spent, nothing counted as forged.
        assert_eq!(sa.highest_sequence(), 2);
        assert_eq!((sa.packets(), sa.auth_failures()), (0, 0));
    }

    /// Peers may pad up to 255 bytes (RFC 4303 §2.4) to hide the inner length.
    #[test]
    fn the_longest_padding_is_accepted() {
        let sa = InboundSa::new(SPI, cbc(), 64);
        let inner = [0xcc; 15];
        let mut decrypted = inner.to_vec();
        decrypted.extend(1..=u8::MAX);
        decrypted.extend_from_slice(&[u8::MAX, NEXT_HEADER_IPV6]);
        assert_eq!(decrypted.len() % 16, 0);
        let mut packet = seal_raw(&cbc(), 1, &decrypted);
        let (range, next_header) = sa.decapsulate(&mut packet).unwrap();
        assert_eq!(
            (&packet[range], next_header),
            (&inner[..], NEXT_HEADER_IPV6)
        );
    }

    #[test]
    fn dummy_packets_are_returned_for_the_caller_to_drop() {
        let out = OutboundSa::new(SPI, cbc());
        let sa = InboundSa::new(SPI, cbc(), 64);
        let mut packet = seal(&out, &[0x77; 20], NEXT_HEADER_NONE);
        let (_, next_header) = sa.decapsulate(&mut packet).unwrap();
        assert_eq!(next_header, NEXT_HEADER_NONE);
    }

    #[test]
    fn wrong_spi_short_and_misaligned_packets_are_errors() {
        let out = OutboundSa::new(SPI, cbc());
        let sa = InboundSa::new(SPI + 1, cbc(), 64);
        let packet = seal(&out, b"hello", NEXT_HEADER_IPV4);
        assert_eq!(
            sa.decapsulate(&mut packet.clone()),
            Err(EspError::SpiMismatch)
        );
        let sa = InboundSa::new(SPI, cbc(), 64);
        for len in 0..ESP_HEADER_LEN + 16 + 16 + TRAILER_LEN {
            assert_eq!(
                sa.decapsulate(&mut packet[..len].to_vec()),
                Err(EspError::Truncated),
                "{len}"
            );
        }
        let mut misaligned = packet.clone();
        misaligned.insert(40, 0);
        assert_eq!(sa.decapsulate(&mut misaligned), Err(EspError::Misaligned));
        assert_eq!((sa.auth_failures(), sa.replay_drops()), (0, 0));
        assert_eq!(spi_of(&packet[..7]), None);
    }

    #[test]
    fn sequence_numbers_end_at_two_to_the_32_minus_one() {
        let out = OutboundSa::with_sequence(SPI, gcm(), MAX_SEQUENCE - 1);
        let last = seal(&out, b"last", NEXT_HEADER_IPV4);
        assert_eq!(sequence_of(&last), u32::MAX);
        let mut buf = [0u8; 128];
        for _ in 0..2 {
            assert_eq!(
                out.encapsulate(b"one more", NEXT_HEADER_IPV4, &mut buf),
                Err(EspError::SequenceExhausted)
            );
        }
        assert_eq!((out.sequence(), out.packets()), (MAX_SEQUENCE, 1));
    }

    #[test]
    fn a_short_buffer_is_an_error_and_spends_no_sequence_number() {
        let out = OutboundSa::new(SPI, gcm());
        let needed = out.encapsulated_len(100).unwrap();
        assert!(needed <= 100 + out.max_overhead());
        let mut buf = vec![0u8; needed - 1];
        assert_eq!(
            out.encapsulate(&[1; 100], NEXT_HEADER_IPV4, &mut buf),
            Err(EspError::BufferTooSmall)
        );
        assert_eq!(
            out.encapsulate(&[1; 100], NEXT_HEADER_IPV4, &mut [0u8; 20]),
            Err(EspError::BufferTooSmall)
        );
        assert_eq!(
            out.encapsulate_in_place(&mut buf, usize::MAX, NEXT_HEADER_IPV4),
            Err(EspError::BufferTooSmall)
        );
        assert_eq!((out.sequence(), out.packets()), (0, 0));
        buf.push(0);
        assert_eq!(
            out.encapsulate(&[1; 100], NEXT_HEADER_IPV4, &mut buf),
            Ok(needed)
        );
        assert_eq!((out.sequence(), out.packets(), out.bytes()), (1, 1, 100));
    }

    /// Both workers receive every packet (a duplicating network): each is accepted once.
    #[test]
    fn concurrent_workers_accept_each_packet_once() {
        let out = OutboundSa::new(SPI, gcm());
        let sa = Arc::new(InboundSa::new(SPI, gcm(), 4096));
        let packets: Arc<Vec<Vec<u8>>> = Arc::new(
            (0..2000)
                .map(|i| seal(&out, &[i as u8; 64], NEXT_HEADER_IPV4))
                .collect(),
        );
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (sa, packets) = (Arc::clone(&sa), Arc::clone(&packets));
                std::thread::spawn(move || {
                    packets
                        .iter()
                        .filter(|packet| sa.decapsulate(&mut packet.to_vec()).is_ok())
                        .count()
                })
            })
            .collect();
        let accepted: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
        assert_eq!(accepted, 2000);
        assert_eq!((sa.packets(), sa.replay_drops()), (2000, 2000));
    }

    #[test]
    fn concurrent_senders_never_share_a_sequence_number() {
        let out = Arc::new(OutboundSa::new(SPI, cbc()));
        let senders: Vec<_> = (0..2)
            .map(|_| {
                let out = Arc::clone(&out);
                std::thread::spawn(move || {
                    (0..1000)
                        .map(|_| sequence_of(&seal(&out, b"p", NEXT_HEADER_IPV4)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let sequences: BTreeSet<u32> = senders
            .into_iter()
            .flat_map(|s| s.join().unwrap())
            .collect();
        assert_eq!(sequences, (1..=2000).collect());
        assert_eq!(out.packets(), 2000);
    }

    #[test]
    fn reasons_are_distinct_snake_case_labels() {
        let reasons: BTreeSet<&str> = EspError::ALL.iter().map(EspError::reason).collect();
        assert_eq!(reasons.len(), EspError::ALL.len());
        for reason in reasons {
            assert!(reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }

    #[test]
    fn debug_shows_no_keys() {
        let out = format!("{:?}", OutboundSa::new(SPI, cbc()));
        let inbound = format!("{:?}", InboundSa::new(SPI, gcm(), 64));
        assert!(
            out.contains("0a0b0c0d") && out.contains("keys ***"),
            "{out}"
        );
        assert!(inbound.contains("keys ***"), "{inbound}");
        assert!(!out.contains("Aes256"));
    }
}
