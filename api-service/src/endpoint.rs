//! The endpoints of `/api/v1`: what each route is, for access control, rate-limit budgets and
//! single-use tokens. Every route under `/api/v1` is built with one (see `routes::app`), so the
//! gate never has to guess a route from its method and path, and a route without an access
//! rule cannot exist.

use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `GET /scholarships`, `GET /scholarships/{id}`: public reads.
    Catalogue,
    /// `POST /eligibility/check`.
    Eligibility,
    /// `GET /recommendations`.
    Recommendations,
    /// `POST /applications`.
    Applications,
    /// `GET /applications/{id}`.
    ApplicationsRead,
}

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone; limited per client address.
    Public,
    /// A verified token's subject only (or, with `--insecure-no-auth`, the anonymous caller).
    Caller,
}

impl Endpoint {
    pub const ALL: [Endpoint; 5] = [
        Endpoint::Catalogue,
        Endpoint::Eligibility,
        Endpoint::Recommendations,
        Endpoint::Applications,
        Endpoint::ApplicationsRead,
    ];

    /// The name in configuration, Redis keys (`rate:app:<name>:...`) and `RateLimit` headers.
    pub const fn name(self) -> &'static str {
        match self {
            Endpoint::Catalogue => "catalogue",
            Endpoint::Eligibility => "eligibility",
            Endpoint::Recommendations => "recommendations",
            Endpoint::Applications => "applications",
            Endpoint::ApplicationsRead => "applications-read",
        }
    }

    pub const fn access(self) -> Access {
        match self {
            Endpoint::Catalogue => Access::Public,
            _ => Access::Caller,
        }
    }
}

impl FromStr for Endpoint {
    type Err = String;

    /// An endpoint by name; anything else is an error listing the names there are, so a typo
    /// in `--rate-limits` or `--single-use-endpoints` stops the service instead of being ignored.
    fn from_str(raw: &str) -> Result<Self, String> {
        Endpoint::ALL.into_iter().find(|e| e.name() == raw).ok_or_else(|| {
            let known: Vec<&str> = Endpoint::ALL.iter().map(|e| e.name()).collect();
            format!("unknown endpoint `{raw}` (known: {})", known.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_round_trip_and_typos_are_named() {
        for e in Endpoint::ALL {
            assert_eq!(e.name().parse::<Endpoint>(), Ok(e));
        }
        let err = "catalog".parse::<Endpoint>().unwrap_err();
        assert!(err.contains("`catalog`") && err.contains("catalogue"), "{err}");
    }

    #[test]
    fn only_the_catalogue_is_public() {
        let public: Vec<Endpoint> = Endpoint::ALL
            .into_iter()
            .filter(|e| e.access() == Access::Public)
            .collect();
        assert_eq!(public, [Endpoint::Catalogue]);
    }
}
