//! Where a networked sandbox may not connect: the host's own addresses and the private, link-local and reserved ranges, as routes in the sandbox's namespace.
//!
//! slirp4netns makes every connection from the host's namespace on the sandbox's behalf, so
//! whatever the host can reach, the sandbox could: the origin's API and Redis on the host's
//! LAN address, the cloud's metadata service at `169.254.169.254`, other machines of the
//! private network. The filter is a set of `unreachable` routes in the sandbox's own network
//! namespace: a connection to a denied address fails at once with `EHOSTUNREACH`, before it
//! reaches slirp. The sandboxed process holds no capability (see `super::super::identity`),
//! so it cannot change its routes; they are set by the origin, from the host's side, before
//! the default route that the command waits for exists.
//!
//! An operator can deny more ranges (`sandbox.network_deny`) and open holes in the denied
//! ones (`sandbox.network_allow`, e.g. a package mirror on the private network): a more
//! specific route wins. IPv6 is not given to sandboxes at all (slirp4netns runs without
//! `--enable-ipv6`).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Deserializer};

/// Ranges no sandbox reaches by default: "this network", RFC 1918 private networks, carrier-
/// grade NAT, loopback, link-local (cloud metadata services), IETF protocol assignments,
/// benchmarking, multicast and the reserved block (RFC 6890).
pub const DENIED_BY_DEFAULT: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
];

/// slirp's network inside the sandbox: its address, gateway and DNS forwarder live here.
pub const SLIRP_NET: &str = "10.0.2.0/24";
/// The sandbox's address on [`SLIRP_NET`].
pub const SANDBOX_ADDR: &str = "10.0.2.100/24";
/// slirp's gateway (with `--disable-host-loopback`, not a way to the host).
pub const GATEWAY: &str = "10.0.2.2";

/// A list of IPv4 ranges from configuration: a TOML array of CIDRs, or one string of them
/// separated by commas or spaces (as a flag or variable gives it). A bare address is a /32.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrList(pub Vec<Ipv4Net>);

/// A range in a [`CidrList`] that is not an IPv4 CIDR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadCidr(pub String);

impl fmt::Display for BadCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not an IPv4 address or CIDR range (such as 10.1.0.0/16)",
            self.0
        )
    }
}

impl std::error::Error for BadCidr {}

impl FromStr for CidrList {
    type Err = BadCidr;

    fn from_str(s: &str) -> Result<Self, BadCidr> {
        s.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|p| !p.is_empty())
            .map(parse_one)
            .collect::<Result<_, _>>()
            .map(CidrList)
    }
}

fn parse_one(p: &str) -> Result<Ipv4Net, BadCidr> {
    let bad = || BadCidr(p.to_string());
    match p.parse::<Ipv4Net>() {
        Ok(n) => Ok(n.trunc()),
        Err(_) => p.parse::<Ipv4Addr>().map(Ipv4Net::from).map_err(|_| bad()),
    }
}

impl<'de> Deserialize<'de> for CidrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        let joined = match Raw::deserialize(d)? {
            Raw::One(s) => s,
            Raw::Many(v) => v.join(","),
        };
        joined.parse().map_err(serde::de::Error::custom)
    }
}

/// What a networked sandbox may reach: everything outside the denied ranges and the host's
/// own addresses, plus the allowed holes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetFilter {
    /// Denied on top of [`DENIED_BY_DEFAULT`] and the host's addresses.
    pub deny: CidrList,
    /// Reachable even inside a denied range (a more specific route through slirp).
    pub allow: CidrList,
}

impl NetFilter {
    /// The `ip -batch` lines that configure the sandbox's namespace: loopback and `tap` up
    /// with slirp's address, an `unreachable` route per denied range and per host address
    /// (`host`), a route through slirp per allowed range, and last the default route, whose
    /// appearance is what the command waits for.
    pub fn script(&self, tap: &str, mtu: u32, host: &[Ipv4Addr]) -> String {
        let mut denied: Vec<Ipv4Net> = DENIED_BY_DEFAULT
            .iter()
            .map(|c| c.parse().expect("a valid built-in range"))
            .chain(self.deny.0.iter().copied())
            .chain(host.iter().map(|a| Ipv4Net::from(*a)))
            .collect();
        denied.sort();
        denied.dedup();
        let slirp: Ipv4Net = SLIRP_NET.parse().expect("slirp's network");
        let mut lines = vec![
            "link set lo up".to_string(),
            format!("link set {tap} mtu {mtu} up"),
            format!("addr add {SANDBOX_ADDR} dev {tap}"),
        ];
        // slirp's own /24 is connected, hence more specific than a denied 10.0.0.0/8; a
        // denied range equal to or inside it would cut the sandbox off, so it is skipped.
        let mut allowed = self.allow.0.clone();
        allowed.sort();
        allowed.dedup();
        // A range both denied and allowed exactly (a host address opened as a /32) is
        // allowed: one route per prefix.
        for n in denied
            .iter()
            .filter(|n| !slirp.contains(*n) && !allowed.contains(n))
        {
            lines.push(format!("route add unreachable {n}"));
        }
        for n in allowed.iter().filter(|n| !slirp.contains(*n)) {
            lines.push(format!("route add {n} via {GATEWAY} dev {tap}"));
        }
        lines.push(format!("route add default via {GATEWAY} dev {tap}"));
        lines.join("\n") + "\n"
    }
}

/// The host's IPv4 addresses from `ip -json -4 addr show` output; output that is not that
/// JSON is an error, so the filter never goes on without them.
pub fn host_addresses(ip_json: &[u8]) -> Result<Vec<Ipv4Addr>, serde_json::Error> {
    #[derive(Deserialize)]
    struct Link {
        #[serde(default)]
        addr_info: Vec<Addr>,
    }
    #[derive(Deserialize)]
    struct Addr {
        local: Option<String>,
    }
    Ok(serde_json::from_slice::<Vec<Link>>(ip_json)?
        .into_iter()
        .flat_map(|l| l.addr_info)
        .filter_map(|a| a.local?.parse().ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<&str> {
        s.lines().collect()
    }

    #[test]
    fn private_ranges_and_the_hosts_addresses_are_unreachable_and_the_default_route_comes_last() {
        let f = NetFilter::default();
        let host = ["192.0.2.2".parse().unwrap(), "127.0.0.1".parse().unwrap()];
        let s = f.script("tap0", 65520, &host);
        let l = lines(&s);
        assert_eq!(
            l[..3],
            [
                "link set lo up",
                "link set tap0 mtu 65520 up",
                "addr add 10.0.2.100/24 dev tap0"
            ]
        );
        for r in [
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "169.254.0.0/16",
            "100.64.0.0/10",
            "192.0.2.2/32",
        ] {
            assert!(
                l.contains(&format!("route add unreachable {r}").as_str()),
                "{r}: {s}"
            );
        }
        // 127.0.0.1/32 is inside 127.0.0.0/8 and kept as its own line: harmless.
        assert_eq!(l.last(), Some(&"route add default via 10.0.2.2 dev tap0"));
        assert_eq!(
            l.iter()
                .filter(|x| x.starts_with("route add default"))
                .count(),
            1
        );
    }

    #[test]
    fn allowed_holes_route_through_slirp_and_slirps_own_net_is_never_denied() {
        let f = NetFilter {
            deny: "10.0.2.0/24, 203.0.113.0/24".parse().unwrap(),
            allow: "10.1.2.3, 192.168.5.0/24".parse().unwrap(),
        };
        let s = f.script("tap0", 1500, &["10.1.2.3".parse().unwrap()]);
        let l = lines(&s);
        assert!(l.contains(&"route add unreachable 203.0.113.0/24"), "{s}");
        // The host address opened as a /32 gets one route, through slirp.
        assert!(!s.contains("unreachable 10.1.2.3/32"), "{s}");
        assert!(!s.contains("unreachable 10.0.2.0/24"), "{s}");
        assert!(
            l.contains(&"route add 10.1.2.3/32 via 10.0.2.2 dev tap0"),
            "{s}"
        );
        assert!(
            l.contains(&"route add 192.168.5.0/24 via 10.0.2.2 dev tap0"),
            "{s}"
        );
        let default = l
            .iter()
            .position(|x| x.starts_with("route add default"))
            .unwrap();
        assert_eq!(default, l.len() - 1);
    }

    #[test]
    fn cidr_lists_parse_from_a_string_or_an_array_and_name_what_is_wrong() {
        let l: CidrList = "10.1.0.5/16,  192.0.2.7 ".parse().unwrap();
        assert_eq!(
            l.0,
            vec![
                "10.1.0.0/16".parse().unwrap(),
                "192.0.2.7/32".parse().unwrap()
            ]
        );
        let e = "10.0.0.0/8, fd00::/8".parse::<CidrList>().unwrap_err();
        assert!(e.to_string().contains("\"fd00::/8\""), "{e}");
        assert!("10.0.0.0/33".parse::<CidrList>().is_err());
        let v: CidrList = serde_json::from_str(r#"["10.0.0.0/8", "1.2.3.4"]"#).unwrap();
        assert_eq!(v.0.len(), 2);
        let v: CidrList = serde_json::from_str(r#""""#).unwrap();
        assert!(v.0.is_empty());
    }

    #[test]
    fn reads_the_hosts_addresses_from_ip_json() {
        let j = br#"[{"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},
                    {"ifname":"eth0","addr_info":[{"family":"inet","local":"192.0.2.2","prefixlen":24}]},
                    {"ifname":"down"}]"#;
        let a = host_addresses(j).unwrap();
        assert_eq!(
            a,
            vec![Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(192, 0, 2, 2)]
        );
        assert!(host_addresses(b"not json").is_err());
    }
}
