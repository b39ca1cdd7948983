//! ESP runs per packet on the data plane's hot path: encapsulation and decapsulation must
//! not allocate. A counting global allocator (the one place `unsafe` is needed, hence a
//! test crate of its own) watches this thread while packets go through both suites.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use siteward_ike::algorithms::{EncrAlg, IntegAlg};
use siteward_ike::crypto::transform::Transform;
use siteward_netstack::ipsec::esp::{EspError, InboundSa, OutboundSa, NEXT_HEADER_IPV4};

struct CountingAllocator;

thread_local! {
    /// Allocations made on this thread while counting; `None` when not counting.
    static ALLOCATIONS: Cell<Option<u64>> = const { Cell::new(None) };
}

fn note_allocation() {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let _ = ALLOCATIONS.try_with(|count| {
        if let Some(n) = count.get() {
            count.set(Some(n + 1));
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches
// only a const-initialised thread-local `Cell`, which itself never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Allocations `f` made on this thread.
fn allocations_in(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|count| count.set(Some(0)));
    f();
    ALLOCATIONS.with(|count| count.replace(None)).unwrap_or(0)
}

fn gcm256() -> Transform {
    Transform::new(EncrAlg::AesGcm16 { key_bits: 256 }, None, &[7; 36], &[]).unwrap()
}

fn cbc256_sha256() -> Transform {
    Transform::new(
        EncrAlg::AesCbc { key_bits: 256 },
        Some(IntegAlg::HmacSha256_128),
        &[7; 32],
        &[9; 32],
    )
    .unwrap()
}

#[test]
fn encapsulation_and_decapsulation_do_not_allocate() {
    let suites: [fn() -> Transform; 2] = [gcm256, cbc256_sha256];
    for transform in suites {
        let outbound = OutboundSa::new(1, transform());
        let inbound = InboundSa::new(1, transform(), 1024);
        let inner = [0x45u8; 1400];
        let mut packet = vec![0u8; inner.len() + outbound.max_overhead()];
        let mut forged = packet.clone();
        let mut accepted = 0;
        let allocations = allocations_in(|| {
            for len in [0, 1, 64, 1399, 1400] {
                let esp_len = outbound
                    .encapsulate(&inner[..len], NEXT_HEADER_IPV4, &mut packet)
                    .unwrap();
                // Errors must not allocate either: a forgery, then a replay.
                forged[..esp_len].copy_from_slice(&packet[..esp_len]);
                forged[esp_len - 1] ^= 1;
                assert_eq!(
                    inbound.decapsulate(&mut forged[..esp_len]),
                    Err(EspError::Integrity)
                );
                let (range, _) = inbound.decapsulate(&mut packet[..esp_len]).unwrap();
                assert_eq!(range.len(), len);
                assert_eq!(
                    inbound.decapsulate(&mut packet[..esp_len]),
                    Err(EspError::Replayed)
                );
                accepted += 1;
            }
        });
        assert_eq!(accepted, 5);
        assert_eq!(allocations, 0);
    }
}
