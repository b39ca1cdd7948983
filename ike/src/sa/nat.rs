//! NAT detection (RFC 7296 §2.23): SHA-1 of SPIi | SPIr | IP | port.

use std::net::{IpAddr, SocketAddr};

use ring::digest;

pub fn detection_hash(spi_i: u64, spi_r: u64, addr: SocketAddr) -> Vec<u8> {
    let mut context = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    context.update(&spi_i.to_be_bytes());
    context.update(&spi_r.to_be_bytes());
    match addr.ip() {
        IpAddr::V4(ip) => context.update(&ip.octets()),
        IpAddr::V6(ip) => context.update(&ip.octets()),
    }
    context.update(&addr.port().to_be_bytes());
    context.finish().as_ref().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_covers_every_input() {
        let a: SocketAddr = "192.0.2.1:500".parse().unwrap();
        let base = detection_hash(1, 2, a);
        assert_eq!(base.len(), 20);
        assert_ne!(base, detection_hash(1, 3, a));
        assert_ne!(
            base,
            detection_hash(1, 2, "192.0.2.1:4500".parse().unwrap())
        );
        assert_ne!(base, detection_hash(1, 2, "192.0.2.2:500".parse().unwrap()));
        assert_eq!(base, detection_hash(1, 2, a));
    }
}
