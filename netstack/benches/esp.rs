//! ESP per-packet cost on one core: encapsulation and decapsulation of 1400-byte inner
//! packets (a full-size TCP segment inside a 1500-byte underlay MTU) for the two suites
//! Siteward negotiates.
//!
//!     cargo bench -p siteward-netstack --bench esp
//!
//! Criterion reports bytes per second of inner packet; × 8 gives bits.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use siteward_ike::algorithms::{EncrAlg, IntegAlg};
use siteward_ike::crypto::transform::Transform;
use siteward_netstack::ipsec::esp::{InboundSa, OutboundSa, NEXT_HEADER_IPV4};

const INNER_LEN: usize = 1400;
const SPI: u32 = 0xc0ff_ee01;

type MakeTransform = fn() -> Transform;

fn gcm256() -> Transform {
    Transform::new(EncrAlg::AesGcm16 { key_bits: 256 }, None, &[0x42; 36], &[]).unwrap()
}

fn cbc256_sha256() -> Transform {
    Transform::new(
        EncrAlg::AesCbc { key_bits: 256 },
        Some(IntegAlg::HmacSha256_128),
        &[0x42; 32],
        &[0x24; 32],
    )
    .unwrap()
}

fn esp(c: &mut Criterion) {
    let suites: [(&str, MakeTransform); 2] =
        [("aes256gcm16", gcm256), ("aes256-sha256", cbc256_sha256)];
    let inner = vec![0xabu8; INNER_LEN];
    let mut group = c.benchmark_group("esp");
    group.throughput(Throughput::Bytes(INNER_LEN as u64));
    for (name, transform) in suites {
        let outbound = OutboundSa::new(SPI, transform());
        let mut out = vec![0u8; INNER_LEN + outbound.max_overhead()];
        group.bench_function(format!("encapsulate/{name}"), |b| {
            b.iter(|| {
                outbound
                    .encapsulate(std::hint::black_box(&inner), NEXT_HEADER_IPV4, &mut out)
                    .unwrap()
            })
        });

        let len = outbound
            .encapsulate(&inner, NEXT_HEADER_IPV4, &mut out)
            .unwrap();
        let packet = out[..len].to_vec();
        // Window disabled so one packet can be decrypted again and again; the window's
        // lock and check still run.
        let inbound = InboundSa::new(SPI, transform(), 0);
        group.bench_function(format!("decapsulate/{name}"), |b| {
            b.iter_batched_ref(
                || packet.clone(),
                |packet| inbound.decapsulate(packet).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, esp);
criterion_main!(benches);
