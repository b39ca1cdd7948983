//! Traffic selectors (RFC 7296 §3.13.1) and their narrowing (§2.9).
//!
//! A selector is an address range, a port range and an IP protocol (0 = any). The
//! responder answers the initiator's TSi/TSr with their intersection with its own
//! configuration; the initiator checks the answer lies within what it offered.

use std::net::IpAddr;

/// One traffic selector: `TS_IPV4_ADDR_RANGE` or `TS_IPV6_ADDR_RANGE` by the family of
/// `start` and `end`, which is the same for both. Port ranges are inclusive;
/// `start_port = 65535, end_port = 0` is RFC 4301's OPAQUE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrafficSelector {
    /// IP protocol number, 0 for any.
    pub protocol: u8,
    pub start_port: u16,
    pub end_port: u16,
    pub start: IpAddr,
    pub end: IpAddr,
}

impl TrafficSelector {
    /// Every protocol and port to and from the addresses of `net`.
    pub fn from_net(net: ipnet::IpNet) -> Self {
        TrafficSelector {
            protocol: 0,
            start_port: 0,
            end_port: u16::MAX,
            start: net.network(),
            end: net.broadcast(),
        }
    }

    fn is_opaque(&self) -> bool {
        self.start_port == u16::MAX && self.end_port == 0
    }

    fn all_ports(&self) -> bool {
        self.start_port == 0 && self.end_port == u16::MAX
    }

    /// The traffic both selectors match, or `None` if they share none (other address
    /// family, disjoint ranges, different protocols).
    pub fn intersect(&self, other: &Self) -> Option<Self> {
        if self.start.is_ipv4() != other.start.is_ipv4() {
            return None;
        }
        let protocol = match (self.protocol, other.protocol) {
            (0, p) | (p, 0) => p,
            (a, b) if a == b => a,
            _ => return None,
        };
        let (start_port, end_port) = if self.is_opaque() || other.is_opaque() {
            // OPAQUE is only within "all ports" and itself.
            let compatible =
                (self.is_opaque() || self.all_ports()) && (other.is_opaque() || other.all_ports());
            if !compatible {
                return None;
            }
            (u16::MAX, 0)
        } else {
            let start = self.start_port.max(other.start_port);
            let end = self.end_port.min(other.end_port);
            if start > end {
                return None;
            }
            (start, end)
        };
        let start = self.start.max(other.start);
        let end = self.end.min(other.end);
        if start > end {
            return None;
        }
        Some(TrafficSelector {
            protocol,
            start_port,
            end_port,
            start,
            end,
        })
    }

    /// Whether every packet `inner` matches, `self` matches too.
    pub fn contains(&self, inner: &Self) -> bool {
        self.intersect(inner).as_ref() == Some(inner)
    }
}

/// Responder side: narrows the initiator's TSi and TSr to our configured selectors
/// (`our_remote` for TSi, `our_local` for TSr). Each list's result is every non-empty
/// intersection of one of ours with one offered, less those another result already
/// covers; so the packet-specific first selector of §2.9.1 disappears into the range
/// that holds it. `None` (answer TS_UNACCEPTABLE) if either side has nothing left.
pub fn narrow(
    our_local: &[TrafficSelector],
    our_remote: &[TrafficSelector],
    offered_tsi: &[TrafficSelector],
    offered_tsr: &[TrafficSelector],
) -> Option<(Vec<TrafficSelector>, Vec<TrafficSelector>)> {
    let tsi = intersections(our_remote, offered_tsi);
    let tsr = intersections(our_local, offered_tsr);
    if tsi.is_empty() || tsr.is_empty() {
        return None;
    }
    Some((tsi, tsr))
}

fn intersections(ours: &[TrafficSelector], offered: &[TrafficSelector]) -> Vec<TrafficSelector> {
    let mut all: Vec<TrafficSelector> = Vec::new();
    for offer in offered {
        for mine in ours {
            if let Some(common) = mine.intersect(offer) {
                if !all.contains(&common) {
                    all.push(common);
                }
            }
        }
    }
    let covered_by_another = |i: usize| {
        all.iter()
            .enumerate()
            .any(|(j, other)| j != i && other.contains(&all[i]))
    };
    (0..all.len())
        .filter(|&i| !covered_by_another(i))
        .map(|i| all[i])
        .collect()
}

/// Initiator side: the responder's answer must lie within what we offered, each of its
/// selectors within one of ours. An empty answer is no answer.
pub fn is_subset(answer: &[TrafficSelector], offered: &[TrafficSelector]) -> bool {
    !answer.is_empty()
        && answer
            .iter()
            .all(|ts| offered.iter().any(|offer| offer.contains(ts)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> TrafficSelector {
        TrafficSelector::from_net(s.parse().unwrap())
    }

    fn ports(mut ts: TrafficSelector, protocol: u8, start: u16, end: u16) -> TrafficSelector {
        ts.protocol = protocol;
        ts.start_port = start;
        ts.end_port = end;
        ts
    }

    #[test]
    fn from_net_covers_the_whole_prefix() {
        let ts = net("10.1.0.0/16");
        assert_eq!(ts.start, "10.1.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(ts.end, "10.1.255.255".parse::<IpAddr>().unwrap());
        assert_eq!((ts.protocol, ts.start_port, ts.end_port), (0, 0, 65535));
        let ts = net("2001:db8::/64");
        assert_eq!(
            ts.end,
            "2001:db8::ffff:ffff:ffff:ffff".parse::<IpAddr>().unwrap()
        );
    }

    /// §2.9: the initiator offers more than we allow: we answer with our narrower range.
    #[test]
    fn wider_offer_is_narrowed_to_ours() {
        let (tsi, tsr) = narrow(
            &[net("10.1.0.0/16")],
            &[net("10.2.0.0/16")],
            &[net("10.0.0.0/8")],
            &[net("0.0.0.0/0")],
        )
        .unwrap();
        assert_eq!(tsi, vec![net("10.2.0.0/16")]);
        assert_eq!(tsr, vec![net("10.1.0.0/16")]);
    }

    /// The initiator asks for less than we allow: it gets exactly what it asked for.
    #[test]
    fn narrower_offer_is_kept() {
        let (tsi, tsr) = narrow(
            &[net("10.1.0.0/16")],
            &[net("10.2.0.0/16")],
            &[net("10.2.3.0/24")],
            &[net("10.1.9.9/32")],
        )
        .unwrap();
        assert_eq!(tsi, vec![net("10.2.3.0/24")]);
        assert_eq!(tsr, vec![net("10.1.9.9/32")]);
    }

    #[test]
    fn disjoint_offer_is_unacceptable() {
        assert_eq!(
            narrow(
                &[net("10.1.0.0/16")],
                &[net("10.2.0.0/16")],
                &[net("192.168.0.0/24")],
                &[net("10.1.0.0/16")],
            ),
            None
        );
        // Only one side disjoint is enough.
        assert_eq!(
            narrow(
                &[net("10.1.0.0/16")],
                &[net("10.2.0.0/16")],
                &[net("10.2.0.0/16")],
                &[net("10.3.0.0/16")],
            ),
            None
        );
    }

    #[test]
    fn multiple_selectors_each_intersect() {
        let (tsi, _) = narrow(
            &[net("10.1.0.0/16")],
            &[net("10.2.0.0/16"), net("10.4.0.0/16"), net("10.6.0.0/16")],
            &[net("10.2.0.0/24"), net("10.4.0.0/15"), net("10.9.0.0/16")],
            &[net("10.1.0.0/16")],
        )
        .unwrap();
        assert_eq!(tsi, vec![net("10.2.0.0/24"), net("10.4.0.0/16")]);
    }

    /// §2.9.1: the first selector is the packet that triggered the SA; the range that
    /// holds it is what the SA is for, so the single-packet selector is not answered.
    #[test]
    fn triggering_packet_selector_is_absorbed() {
        let trigger = ports(net("10.2.7.7/32"), 6, 443, 443);
        let (tsi, _) = narrow(
            &[net("10.1.0.0/16")],
            &[net("10.2.0.0/16")],
            &[trigger, net("10.2.0.0/16")],
            &[net("10.1.0.0/16")],
        )
        .unwrap();
        assert_eq!(tsi, vec![net("10.2.0.0/16")]);
    }

    #[test]
    fn port_ranges_and_protocols() {
        let ours = ports(net("10.1.0.0/16"), 6, 1000, 2000);
        let offered = ports(net("10.1.0.0/16"), 0, 1500, 3000);
        assert_eq!(
            ours.intersect(&offered),
            Some(ports(net("10.1.0.0/16"), 6, 1500, 2000))
        );
        let udp = ports(net("10.1.0.0/16"), 17, 0, 65535);
        assert_eq!(ours.intersect(&udp), None);
        let high = ports(net("10.1.0.0/16"), 6, 3000, 4000);
        assert_eq!(ours.intersect(&high), None);
        // OPAQUE fits inside "all ports" only.
        let opaque = ports(net("10.1.0.0/16"), 6, 65535, 0);
        assert_eq!(net("10.1.0.0/16").intersect(&opaque), Some(opaque));
        assert_eq!(ours.intersect(&opaque), None);
    }

    #[test]
    fn ipv6_and_mixed_families() {
        let (tsi, tsr) = narrow(
            &[net("2001:db8:1::/48"), net("10.1.0.0/16")],
            &[net("2001:db8:2::/48")],
            &[net("2001:db8::/32")],
            &[net("2001:db8:1:5::/64")],
        )
        .unwrap();
        assert_eq!(tsi, vec![net("2001:db8:2::/48")]);
        assert_eq!(tsr, vec![net("2001:db8:1:5::/64")]);
        assert_eq!(net("10.0.0.0/8").intersect(&net("::/0")), None);
    }

    #[test]
    fn a_range_that_is_not_a_prefix_intersects_exactly() {
        let odd = TrafficSelector {
            start: "10.1.0.200".parse().unwrap(),
            end: "10.1.1.3".parse().unwrap(),
            ..net("0.0.0.0/0")
        };
        let common = odd.intersect(&net("10.1.1.0/24")).unwrap();
        assert_eq!(common.start, "10.1.1.0".parse::<IpAddr>().unwrap());
        assert_eq!(common.end, "10.1.1.3".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn subset_check_for_the_initiator() {
        let offered = [net("10.2.0.0/16"), net("10.5.0.0/16")];
        assert!(is_subset(&[net("10.2.3.0/24")], &offered));
        assert!(is_subset(
            &[net("10.2.0.0/16"), net("10.5.1.1/32")],
            &offered
        ));
        assert!(!is_subset(&[net("10.0.0.0/8")], &offered));
        assert!(!is_subset(
            &[net("10.2.0.0/16"), net("10.6.0.0/16")],
            &offered
        ));
        assert!(!is_subset(&[], &offered));
        let tcp_only = [ports(net("10.2.0.0/16"), 6, 0, 65535)];
        assert!(!is_subset(&[net("10.2.0.0/16")], &tcp_only));
        assert!(is_subset(
            &[ports(net("10.2.0.0/16"), 6, 80, 80)],
            &tcp_only
        ));
    }
}
