//! UDP encapsulation of ESP (RFC 3948) on port 4500, where IKE and ESP share one socket:
//! IKE messages start with four zero bytes (the non-ESP marker) where ESP has its SPI,
//! which is never zero, and a lone 0xFF byte is a NAT keepalive.

use super::esp::ESP_HEADER_LEN;

/// Prefixed to IKE messages sent on port 4500 (RFC 3948 §2.2).
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];
/// The NAT-keepalive payload (RFC 3948 §2.3), sent to keep a NAT mapping open.
pub const NAT_KEEPALIVE: [u8; 1] = [0xff];

/// What a UDP payload received on port 4500 carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Udp4500<'a> {
    /// An ESP packet (non-zero SPI), whole.
    Esp(&'a [u8]),
    /// An IKE message, after the non-ESP marker.
    Ike(&'a [u8]),
    /// A NAT keepalive: nothing to do.
    Keepalive,
    /// Too short to be any of them (an empty IKE message, an ESP packet without its
    /// sequence number, a stray byte).
    Invalid,
}

pub fn classify(payload: &[u8]) -> Udp4500<'_> {
    match payload {
        [0xff] => Udp4500::Keepalive,
        [0, 0, 0, 0, ike @ ..] if !ike.is_empty() => Udp4500::Ike(ike),
        [0, 0, 0, 0, ..] => Udp4500::Invalid,
        esp if esp.len() >= ESP_HEADER_LEN => Udp4500::Esp(esp),
        _ => Udp4500::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalives_are_one_ff_byte() {
        assert_eq!(classify(&NAT_KEEPALIVE), Udp4500::Keepalive);
        assert_eq!(classify(&[0xfe]), Udp4500::Invalid);
        assert_eq!(classify(&[0xff, 0xff]), Udp4500::Invalid);
    }

    #[test]
    fn the_non_esp_marker_introduces_ike() {
        let mut datagram = NON_ESP_MARKER.to_vec();
        datagram.extend_from_slice(b"IKE header...");
        assert_eq!(classify(&datagram), Udp4500::Ike(b"IKE header..."));
        assert_eq!(classify(&NON_ESP_MARKER), Udp4500::Invalid);
        assert_eq!(
            classify(&[0, 0, 0, 0, 0, 0, 0, 1]),
            Udp4500::Ike(&[0, 0, 0, 1])
        );
    }

    #[test]
    fn a_non_zero_spi_is_esp() {
        let esp = [0, 0, 0, 1, 0, 0, 0, 7, 0xaa];
        assert_eq!(classify(&esp), Udp4500::Esp(&esp));
        assert_eq!(classify(&[0xff; 8]), Udp4500::Esp(&[0xff; 8]));
    }

    #[test]
    fn short_payloads_are_invalid() {
        for payload in [
            &[][..],
            &[0],
            &[0, 0, 0],
            &[1, 2, 3, 4],
            &[1, 2, 3, 4, 5, 6, 7],
        ] {
            assert_eq!(classify(payload), Udp4500::Invalid, "{payload:?}");
        }
    }
}
