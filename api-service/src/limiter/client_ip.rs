//! Who is the client, when proxies sit in front of us.
//!
//! Forwarding headers are believed only when the socket peer is a trusted proxy, and then
//! walked from the right (the hop nearest to us) past trusted proxies: the first untrusted
//! address is the client. Anything further left was written by the client and proves nothing.

use std::net::{IpAddr, Ipv6Addr};

use axum::http::HeaderMap;
use ipnet::IpNet;

#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }
}

pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.trusts(peer) {
        return peer;
    }
    // RFC 7239 `Forwarded` wins over the de-facto `X-Forwarded-For` when both are present.
    let hops = match forwarded_for(headers) {
        Some(hops) => hops,
        None => x_forwarded_for(headers),
    };
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop {
            Some(ip) => {
                client = ip.to_canonical();
                if !trusted.trusts(client) {
                    return client;
                }
            }
            // An obfuscated or unknown hop: the nearest trusted proxy is all we know.
            None => return client,
        }
    }
    client
}

fn x_forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|hop| parse_node(hop.trim()))
        .collect()
}

fn forwarded_for(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut hops = Vec::new();
    for value in headers.get_all("forwarded").iter().filter_map(|v| v.to_str().ok()) {
        for element in value.split(',') {
            let node = element.split(';').find_map(|pair| {
                let (key, value) = pair.trim().split_once('=')?;
                key.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| value.trim().trim_matches('"'))
            });
            if let Some(node) = node {
                hops.push(parse_node(node));
            }
        }
    }
    (!hops.is_empty()).then_some(hops)
}

/// `192.0.2.1`, `192.0.2.1:8080`, `[2001:db8::1]`, `[2001:db8::1]:443`, `2001:db8::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    let (host, _port) = node.rsplit_once(':')?;
    host.parse().ok()
}

/// The rate-limit identity of an address: IPv4 as is, IPv6 by its /64, since one subscriber
/// usually holds a whole /64 and could otherwise rotate through it.
pub fn address_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{}/64", Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::http::HeaderValue;

    fn trusted() -> TrustedProxies {
        TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()])
    }

    fn headers(name: &'static str, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn untrusted_peers_cannot_spoof() {
        let h = headers("x-forwarded-for", "1.2.3.4");
        assert_eq!(
            client_ip("203.0.113.9".parse().unwrap(), &h, &trusted()),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn walks_from_the_right_past_trusted_proxies() {
        let h = headers("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.1.1");
        assert_eq!(
            client_ip("10.0.0.2".parse().unwrap(), &h, &trusted()),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        let h = headers(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8::7]:443\";proto=https, for=10.1.1.1",
        );
        assert_eq!(
            client_ip("10.0.0.2".parse().unwrap(), &h, &trusted()),
            "2001:db8::7".parse::<IpAddr>().unwrap()
        );
        let h = headers("forwarded", "for=_hidden, for=10.1.1.1");
        assert_eq!(
            client_ip("10.0.0.2".parse().unwrap(), &h, &trusted()),
            "10.1.1.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn ipv6_is_keyed_by_its_64() {
        assert_eq!(
            address_key("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
        assert_eq!(address_key("::ffff:192.0.2.1".parse().unwrap()), "192.0.2.1");
    }
}
