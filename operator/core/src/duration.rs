//! Durations as users write them in the spec: "30s", "10m", "6h", "1h30m", "500ms".
//!
//! The grammar is the subset of Go's `time.ParseDuration` that makes sense for bakes and
//! windows (non-negative integers with ms/s/m/h units), so the CRD's CEL rules, which call
//! `duration()`, accept exactly what this parser accepts.

use chrono::TimeDelta;

/// Regex used as the OpenAPI `pattern` for every duration field; kept next to the parser so
/// the two cannot drift apart (a test checks them against each other).
pub const DURATION_PATTERN: &str = "^([0-9]{1,9}(ms|s|m|h))+$";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (expected e.g. 30s, 10m, 6h, 1h30m)")]
pub struct DurationError {
    pub input: String,
    pub reason: &'static str,
}

/// Parses a duration; the result is never negative.
pub fn parse_duration(input: &str) -> Result<TimeDelta, DurationError> {
    let err = |reason| DurationError {
        input: input.to_owned(),
        reason,
    };
    if input.is_empty() {
        return Err(err("empty"));
    }
    let bytes = input.as_bytes();
    let mut total_ms: i64 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(err("expected a number"));
        }
        if i - start > 9 {
            return Err(err("number too long"));
        }
        let number: i64 = input[start..i].parse().map_err(|_| err("bad number"))?;
        let unit_ms = if input[i..].starts_with("ms") {
            i += 2;
            1
        } else {
            let unit = bytes.get(i).copied();
            i += 1;
            match unit {
                Some(b's') => 1_000,
                Some(b'm') => 60_000,
                Some(b'h') => 3_600_000,
                _ => return Err(err("expected a unit (ms, s, m, h)")),
            }
        };
        total_ms = number
            .checked_mul(unit_ms)
            .and_then(|v| total_ms.checked_add(v))
            .ok_or_else(|| err("too large"))?;
    }
    TimeDelta::try_milliseconds(total_ms).ok_or_else(|| err("too large"))
}

/// Renders a duration compactly ("6h", "1h30m", "9m59s") for messages.
pub fn format_duration(d: TimeDelta) -> String {
    let mut ms = d.num_milliseconds().max(0);
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, len) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        if ms >= len {
            out.push_str(&(ms / len).to_string());
            out.push_str(unit);
            ms %= len;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_the_forms_users_write() {
        assert_eq!(parse_duration("30s").unwrap(), TimeDelta::seconds(30));
        assert_eq!(parse_duration("10m").unwrap(), TimeDelta::minutes(10));
        assert_eq!(parse_duration("6h").unwrap(), TimeDelta::hours(6));
        assert_eq!(parse_duration("1h30m").unwrap(), TimeDelta::minutes(90));
        assert_eq!(parse_duration("500ms").unwrap(), TimeDelta::milliseconds(500));
        assert_eq!(parse_duration("0s").unwrap(), TimeDelta::zero());
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "10", "m", "1x", "-5s", "1.5h", "1h 30m", "10M", "9999999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn formats_round_trip() {
        for s in ["6h", "1h30m", "9m59s", "500ms", "0s"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }
}
