//! Cryptokey routing: which peer a destination address belongs to, by longest prefix.
//!
//! Lookups happen for every packet read from the TUN device, so the table is built once
//! per configuration change and only read afterwards. Per address family it keeps one
//! hash map per distinct prefix length, longest first: a lookup costs one hash probe per
//! distinct prefix length in use (a handful in practice), whatever the number of entries.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

/// Maps networks to values; [`AllowedIps::lookup`] finds the longest matching prefix.
#[derive(Debug, Clone)]
pub struct AllowedIps<T> {
    v4: Family<u32, T>,
    v6: Family<u128, T>,
}

#[derive(Debug, Clone)]
struct Family<A, T> {
    /// `(prefix length, network address -> value)`, longest prefix first.
    levels: Vec<(u8, HashMap<A, T>)>,
}

impl<A, T> Default for Family<A, T> {
    fn default() -> Self {
        Family { levels: Vec::new() }
    }
}

impl<T> Default for AllowedIps<T> {
    fn default() -> Self {
        AllowedIps {
            v4: Family::default(),
            v6: Family::default(),
        }
    }
}

impl<A: Copy + Eq + std::hash::Hash, T> Family<A, T> {
    fn insert(&mut self, len: u8, network: A, value: T) -> Option<T> {
        let at = match self.levels.binary_search_by(|(l, _)| len.cmp(l)) {
            Ok(at) => at,
            Err(at) => {
                self.levels.insert(at, (len, HashMap::new()));
                at
            }
        };
        self.levels[at].1.insert(network, value)
    }

    fn lookup(&self, addr: A, mask: impl Fn(A, u8) -> A) -> Option<&T> {
        self.levels
            .iter()
            .find_map(|(len, map)| map.get(&mask(addr, *len)))
    }
}

fn mask_v4(addr: u32, len: u8) -> u32 {
    match len {
        0 => 0,
        len => addr & (u32::MAX << (32 - u32::from(len.min(32)))),
    }
}

fn mask_v6(addr: u128, len: u8) -> u128 {
    match len {
        0 => 0,
        len => addr & (u128::MAX << (128 - u32::from(len.min(128)))),
    }
}

impl<T> AllowedIps<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `network` (its host bits are ignored); returns the value it replaces.
    pub fn insert(&mut self, network: IpNet, value: T) -> Option<T> {
        match network {
            IpNet::V4(n) => {
                let len = n.prefix_len();
                self.v4.insert(len, mask_v4(n.addr().into(), len), value)
            }
            IpNet::V6(n) => {
                let len = n.prefix_len();
                self.v6.insert(len, mask_v6(n.addr().into(), len), value)
            }
        }
    }

    /// The value of the longest prefix containing `addr`.
    pub fn lookup(&self, addr: IpAddr) -> Option<&T> {
        match addr {
            IpAddr::V4(a) => self.v4.lookup(a.into(), mask_v4),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => self.v4.lookup(v4.into(), mask_v4),
                None => self.v6.lookup(a.into(), mask_v6),
            },
        }
    }

    pub fn is_empty(&self) -> bool {
        self.v4.levels.is_empty() && self.v6.levels.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t = AllowedIps::new();
        t.insert(net("10.0.0.0/8"), "wide");
        t.insert(net("10.20.0.0/16"), "narrow");
        t.insert(net("10.20.30.40/32"), "host");
        t.insert(net("0.0.0.0/0"), "default");
        t.insert(net("fd00::/8"), "v6");
        let at = |s: &str| t.lookup(s.parse().unwrap()).copied();
        assert_eq!(at("10.1.2.3"), Some("wide"));
        assert_eq!(at("10.20.1.1"), Some("narrow"));
        assert_eq!(at("10.20.30.40"), Some("host"));
        assert_eq!(at("192.0.2.1"), Some("default"));
        assert_eq!(at("fd12::1"), Some("v6"));
        assert_eq!(at("2001:db8::1"), None);
        // An IPv4-mapped IPv6 address is looked up as IPv4.
        assert_eq!(at("::ffff:10.20.1.1"), Some("narrow"));
    }

    #[test]
    fn host_bits_are_ignored_and_insert_replaces() {
        let mut t = AllowedIps::new();
        assert_eq!(t.insert(net("10.20.30.40/16"), 1), None);
        assert_eq!(t.insert(net("10.20.0.0/16"), 2), Some(1));
        assert_eq!(t.lookup("10.20.99.99".parse().unwrap()), Some(&2));
        assert!(AllowedIps::<u8>::new()
            .lookup("10.0.0.1".parse().unwrap())
            .is_none());
    }

    fn naive(entries: &[(IpNet, usize)], addr: IpAddr) -> Option<usize> {
        entries
            .iter()
            .filter(|(n, _)| n.contains(&addr))
            .max_by_key(|(n, i)| (n.prefix_len(), *i))
            .map(|(_, i)| *i)
    }

    proptest! {
        #[test]
        fn matches_a_linear_scan(
            nets in proptest::collection::vec((any::<u32>(), 0u8..=32), 0..40),
            probes in proptest::collection::vec(any::<u32>(), 1..40),
        ) {
            let mut table = AllowedIps::new();
            let mut entries: Vec<(IpNet, usize)> = Vec::new();
            for (i, (addr, len)) in nets.into_iter().enumerate() {
                let n: IpNet = ipnet::Ipv4Net::new(addr.into(), len).unwrap().trunc().into();
                table.insert(n, i);
                // A later insert of the same network replaces the earlier one.
                entries.retain(|(e, _)| *e != n);
                entries.push((n, i));
            }
            for p in probes {
                let addr = IpAddr::V4(p.into());
                prop_assert_eq!(table.lookup(addr).copied(), naive(&entries, addr));
            }
        }
    }
}
