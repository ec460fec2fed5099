//! Rate-limit policies: `name=LIMIT/WINDOW`, per endpoint, with a default.

use std::collections::HashMap;
use std::time::Duration;

use crate::endpoint::Endpoint;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The endpoint name; it appears in the Redis key and in the `RateLimit` headers.
    pub name: String,
    pub limit: u64,
    pub window: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policies {
    endpoints: HashMap<Endpoint, Policy>,
    default: Policy,
}

pub const DEFAULT_POLICIES: &str = "catalogue=120/1m,applications=10/1m,default=60/1m";

impl Policies {
    /// The policy for an endpoint; endpoints without their own share the default's numbers
    /// but keep their own name (and so their own counter).
    pub fn for_endpoint(&self, endpoint: Endpoint) -> Policy {
        self.endpoints.get(&endpoint).cloned().unwrap_or_else(|| Policy {
            name: endpoint.name().to_owned(),
            ..self.default.clone()
        })
    }
}

impl Policy {
    /// `LIMIT/WINDOW`, e.g. `100/1s`, under `name`.
    pub fn parse(name: &str, rule: &str) -> Result<Self, String> {
        let (limit, window) = rule
            .split_once('/')
            .ok_or_else(|| format!("`{rule}` is not LIMIT/WINDOW"))?;
        let limit: u64 = limit
            .trim()
            .parse()
            .map_err(|_| format!("`{limit}` is not a request count"))?;
        if limit == 0 {
            return Err(format!("{name}: the limit must be at least 1"));
        }
        Ok(Self {
            name: name.to_owned(),
            limit,
            window: parse_window(window.trim())?,
        })
    }
}

impl std::str::FromStr for Policies {
    type Err = String;

    /// `catalogue=120/1m,applications=10/1m,default=60/1m`; `default` is required, every
    /// other name must be an endpoint (a typo is an error, not a policy nothing uses).
    fn from_str(raw: &str) -> Result<Self, String> {
        let mut endpoints = HashMap::new();
        let mut default = None;
        for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, rule) = item
                .split_once('=')
                .ok_or_else(|| format!("`{item}` is not NAME=LIMIT/WINDOW"))?;
            let name = name.trim();
            let policy = Policy::parse(name, rule)?;
            if name == "default" {
                default = Some(policy);
            } else {
                endpoints.insert(name.parse::<Endpoint>()?, policy);
            }
        }
        Ok(Self {
            endpoints,
            default: default.ok_or("a `default=LIMIT/WINDOW` entry is required")?,
        })
    }
}

/// `30s`, `1m`, `1h`, or bare seconds.
fn parse_window(raw: &str) -> Result<Duration, String> {
    let (number, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len()));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{raw}` is not a window like 30s, 1m or 1h"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("`{raw}` is not a window like 30s, 1m or 1h")),
    };
    if seconds == 0 {
        return Err("a window must be at least 1s".into());
    }
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_the_defaults_and_falls_back_by_name() {
        let p: Policies = DEFAULT_POLICIES.parse().unwrap();
        assert_eq!(p.for_endpoint(Endpoint::Catalogue).limit, 120);
        assert_eq!(p.for_endpoint(Endpoint::Applications).window, Duration::from_secs(60));
        let other = p.for_endpoint(Endpoint::Eligibility);
        assert_eq!((other.name.as_str(), other.limit), ("eligibility", 60));
    }

    #[test]
    fn rejects_malformed_policies() {
        for bad in [
            "catalogue=120/1m",
            "default=0/1m",
            "default=10/0s",
            "default=10/1d",
            "x y=1/1s,default=1/1s",
        ] {
            assert!(bad.parse::<Policies>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_typo_in_an_endpoint_name_is_an_error_naming_it() {
        let err = "catalog=10/1m,default=60/1m".parse::<Policies>().unwrap_err();
        assert!(err.contains("`catalog`"), "{err}");
    }
}
