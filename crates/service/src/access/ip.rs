//! IP access rules (`AccessPolicy.ipAccessRule`) and the client address they are checked
//! against.
//!
//! Rules are scanned in order, and the first one that matches decides: `allow` accepts and
//! `block` rejects; no match accepts, as in Medplum. A rule value matches when it is `*`, the
//! address itself, a CIDR block containing it (`10.0.0.0/8`, `fd00::/8`), or, for Medplum's
//! policies, a string prefix of the address's text (`10.0.`). Unlike Medplum, a complete
//! address never matches as a prefix, so `10.0.0.1` does not match `10.0.0.15`.

use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpRuleAction {
    Allow,
    Block,
}

/// One `AccessPolicy.ipAccessRule`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpAccessRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<IpRuleAction>,
}

/// An IP network in CIDR notation (RFC 4632, RFC 4291 §2.3); a bare address is a /32 or
/// /128 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    address: IpAddr,
    prefix_len: u8,
}

impl IpNet {
    pub fn contains(&self, address: &IpAddr) -> bool {
        match (self.address, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(*address) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(*address) & mask
            }
            // An IPv4 client seen through an IPv6 socket (`::ffff:a.b.c.d`).
            (IpAddr::V4(_), IpAddr::V6(address)) => address
                .to_ipv4_mapped()
                .is_some_and(|mapped| self.contains(&IpAddr::V4(mapped))),
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("invalid IP address or CIDR block: {text:?}");
        let (address, prefix_len) = match text.trim().split_once('/') {
            Some((address, prefix_len)) => (
                address,
                Some(prefix_len.parse::<u8>().map_err(|_| invalid())?),
            ),
            None => (text.trim(), None),
        };
        let address: IpAddr = address.parse().map_err(|_| invalid())?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix_len = prefix_len.unwrap_or(max);
        if prefix_len > max {
            return Err(invalid());
        }
        Ok(Self {
            address,
            prefix_len,
        })
    }
}

/// Reads an address as text, accepting IPv4-mapped IPv6 as its IPv4 form.
fn canonical(address: &IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(*v6)),
        other => *other,
    }
}

fn rule_matches(value: &str, address: Option<&IpAddr>) -> bool {
    let value = value.trim();
    if value == "*" {
        return true;
    }
    let Some(address) = address.map(canonical) else {
        return false;
    };
    if value.contains('/') {
        return value
            .parse::<IpNet>()
            .is_ok_and(|network| network.contains(&address));
    }
    if let Ok(exact) = value.parse::<IpAddr>() {
        return canonical(&exact) == address;
    }
    address.to_string().starts_with(value)
}

/// Evaluates the rules for a client address. With the address unknown only `*` rules can
/// match, so a policy that blocks everyone else still blocks.
pub fn ip_allowed(rules: &[IpAccessRule], address: Option<&IpAddr>) -> bool {
    for rule in rules {
        let Some(value) = rule.value.as_deref() else {
            continue;
        };
        if rule_matches(value, address) {
            return rule.action != Some(IpRuleAction::Block);
        }
    }
    true
}

/// Determines the client address of a request. Only a connection from a trusted proxy may
/// name another address, in `X-Forwarded-For`; the client is then the right-most entry that
/// is not itself a trusted proxy, because entries to its left can be forged by the client.
/// An entry that is not an address stops the walk at the last trusted hop.
pub fn client_address(peer: IpAddr, forwarded_for: &[&str], trusted_proxies: &[IpNet]) -> IpAddr {
    let trusted = |address: &IpAddr| {
        let address = canonical(address);
        trusted_proxies
            .iter()
            .any(|network| network.contains(&address))
    };
    let peer = canonical(&peer);
    if !trusted(&peer) {
        return peer;
    }
    let entries = forwarded_for
        .iter()
        .flat_map(|header| header.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .collect::<Vec<_>>();
    let mut client = peer;
    for entry in entries.into_iter().rev() {
        let Ok(address) = entry.parse::<IpAddr>() else {
            break;
        };
        client = canonical(&address);
        if !trusted(&client) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(value: &str, action: IpRuleAction) -> IpAccessRule {
        IpAccessRule {
            name: None,
            value: Some(value.to_string()),
            action: Some(action),
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn medplum_prefix_blocks() {
        let rules = [rule("10.0.", IpRuleAction::Block)];
        assert!(!ip_allowed(&rules, Some(&ip("10.0.3.4"))));
        assert!(ip_allowed(&rules, Some(&ip("10.1.3.4"))));
    }

    #[test]
    fn first_match_decides() {
        let rules = [
            rule("10.0.3.4", IpRuleAction::Allow),
            rule("*", IpRuleAction::Block),
        ];
        assert!(ip_allowed(&rules, Some(&ip("10.0.3.4"))));
        assert!(!ip_allowed(&rules, Some(&ip("10.0.3.5"))));
        assert!(!ip_allowed(&rules, None));
    }

    #[test]
    fn full_address_is_not_a_prefix() {
        let rules = [rule("10.0.0.1", IpRuleAction::Block)];
        assert!(ip_allowed(&rules, Some(&ip("10.0.0.15"))));
        assert!(!ip_allowed(&rules, Some(&ip("10.0.0.1"))));
    }

    #[test]
    fn cidr_blocks_v4_and_v6() {
        let rules = [
            rule("192.168.0.0/16", IpRuleAction::Allow),
            rule("fd00::/8", IpRuleAction::Allow),
            rule("*", IpRuleAction::Block),
        ];
        assert!(ip_allowed(&rules, Some(&ip("192.168.7.1"))));
        assert!(ip_allowed(&rules, Some(&ip("::ffff:192.168.7.1"))));
        assert!(ip_allowed(&rules, Some(&ip("fd12::1"))));
        assert!(!ip_allowed(&rules, Some(&ip("192.169.0.1"))));
        assert!(!ip_allowed(&rules, Some(&ip("fe80::1"))));
    }

    #[test]
    fn no_rules_or_no_match_allows() {
        assert!(ip_allowed(&[], Some(&ip("1.2.3.4"))));
        assert!(ip_allowed(&[rule("10.", IpRuleAction::Block)], None));
    }

    #[test]
    fn parse_networks() {
        assert!("10.0.0.0/8".parse::<IpNet>().is_ok());
        assert!("::1".parse::<IpNet>().is_ok());
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("ten".parse::<IpNet>().is_err());
        let everything: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(everything.contains(&ip("8.8.8.8")));
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxy() {
        let trusted: Vec<IpNet> =
            vec!["127.0.0.1".parse().unwrap(), "10.9.0.0/16".parse().unwrap()];
        assert_eq!(
            client_address(ip("203.0.113.9"), &["1.2.3.4"], &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_address(ip("127.0.0.1"), &["6.6.6.6, 1.2.3.4, 10.9.1.1"], &trusted),
            ip("1.2.3.4")
        );
        assert_eq!(
            client_address(ip("127.0.0.1"), &["6.6.6.6", "1.2.3.4"], &trusted),
            ip("1.2.3.4")
        );
        assert_eq!(
            client_address(ip("127.0.0.1"), &["garbage, 10.9.1.1"], &trusted),
            ip("10.9.1.1")
        );
        assert_eq!(
            client_address(ip("127.0.0.1"), &[], &trusted),
            ip("127.0.0.1")
        );
    }
}
