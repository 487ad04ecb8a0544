//! [`SourceRange`]: one entry of `limits.trusted_sources`, an address or a CIDR range.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An IPv4 or IPv6 address range written `"10.0.0.0/8"`, `"2001:db8::/32"`, or a single address
/// (`"203.0.113.7"`, which is `/32`, or `/128` for IPv6). Host bits below the prefix must be
/// zero (`"10.0.0.5/8"` is refused: it is a typo, or a misunderstanding, either way not what
/// was meant). An IPv4-mapped IPv6 client address (`::ffff:a.b.c.d`, as a dual-stack listener
/// sees IPv4 clients) matches the IPv4 ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct SourceRange {
    network: IpAddr,
    prefix_len: u8,
}

impl SourceRange {
    /// Whether `ip` is inside this range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip) & mask_v4(self.prefix_len) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & mask_v6(self.prefix_len) == u128::from(net)
            }
            _ => false,
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it stands for; others unchanged.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn mask_v4(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0)
}

fn mask_v6(prefix_len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix_len))
        .unwrap_or(0)
}

impl FromStr for SourceRange {
    type Err = String;

    fn from_str(text: &str) -> Result<SourceRange, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or a CIDR range"))?;
        let network = canonical(network);
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix {
            None => bits,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|len| *len <= bits)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {bits}"))?,
        };
        let host_bits_clear = match network {
            IpAddr::V4(v4) => u32::from(v4) & !mask_v4(prefix_len) == 0,
            IpAddr::V6(v6) => u128::from(v6) & !mask_v6(prefix_len) == 0,
        };
        if !host_bits_clear {
            return Err(format!(
                "{text:?} has bits set below its /{prefix_len} prefix; write the range's first \
                 address"
            ));
        }
        Ok(SourceRange {
            network,
            prefix_len,
        })
    }
}

impl TryFrom<String> for SourceRange {
    type Error = String;

    fn try_from(text: String) -> Result<SourceRange, String> {
        text.parse()
    }
}

impl From<SourceRange> for String {
    fn from(range: SourceRange) -> String {
        range.to_string()
    }
}

impl fmt::Display for SourceRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl From<Ipv4Addr> for SourceRange {
    /// The one address.
    fn from(ip: Ipv4Addr) -> SourceRange {
        SourceRange {
            network: IpAddr::V4(ip),
            prefix_len: 32,
        }
    }
}

impl From<Ipv6Addr> for SourceRange {
    /// The one address.
    fn from(ip: Ipv6Addr) -> SourceRange {
        SourceRange::from(IpAddr::V6(ip))
    }
}

impl From<IpAddr> for SourceRange {
    /// The one address.
    fn from(ip: IpAddr) -> SourceRange {
        let network = canonical(ip);
        let prefix_len = if network.is_ipv4() { 32 } else { 128 };
        SourceRange {
            network,
            prefix_len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ranges_contain_their_addresses_only() {
        let range: SourceRange = "10.1.0.0/16".parse().unwrap();
        assert!(range.contains(ip("10.1.200.3")));
        assert!(!range.contains(ip("10.2.0.1")));
        assert!(range.contains(ip("::ffff:10.1.0.9")), "IPv4-mapped");
        assert!(!range.contains(ip("2001:db8::1")));
        let one: SourceRange = "203.0.113.7".parse().unwrap();
        assert_eq!(one.to_string(), "203.0.113.7/32");
        assert!(one.contains(ip("203.0.113.7")) && !one.contains(ip("203.0.113.8")));
        let all: SourceRange = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("198.51.100.1")));
        let v6: SourceRange = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
    }

    #[test]
    fn malformed_ranges_are_refused_with_the_reason() {
        for (bad, why) in [
            ("10.0.0.5/8", "bits set below"),
            ("10.0.0.0/33", "0 to 32"),
            ("::/129", "0 to 128"),
            ("example.com", "not an IP address"),
            ("10.0.0.0/", "0 to 32"),
            ("", "not an IP address"),
        ] {
            let err = bad.parse::<SourceRange>().unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }
}
