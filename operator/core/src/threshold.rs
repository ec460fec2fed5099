//! Gate thresholds as users write them: ">= 0.999", "<= 220", "< 10", "== 0", "!= 1".

use std::fmt;

/// OpenAPI `pattern` for threshold strings; a test checks it against the parser.
pub const THRESHOLD_PATTERN: &str = r"^ *(>=|<=|==|!=|>|<) *-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)? *$";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Ge,
    Le,
    Gt,
    Lt,
    Eq,
    Ne,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Ge => ">=",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Lt => "<",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }
}

/// A comparison a reading must satisfy for its gate to pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub op: Op,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid threshold {input:?} (expected an operator >=, <=, >, <, ==, != and a number, e.g. \">= 0.999\")")]
pub struct ThresholdError {
    pub input: String,
}

impl Threshold {
    pub fn parse(input: &str) -> Result<Self, ThresholdError> {
        let err = || ThresholdError {
            input: input.to_owned(),
        };
        let s = input.trim();
        // Two-character operators first so ">=" is not read as ">" followed by "=0.9".
        let (op, rest) = [
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            (">", Op::Gt),
            ("<", Op::Lt),
        ]
        .into_iter()
        .find_map(|(sym, op)| s.strip_prefix(sym).map(|rest| (op, rest)))
        .ok_or_else(err)?;
        let number = rest.trim();
        // Rust's float parser also takes "inf", "NaN" and "+1"; the CRD pattern does not.
        let plain = number
            .strip_prefix('-')
            .unwrap_or(number)
            .starts_with(|c: char| c.is_ascii_digit());
        let value: f64 = number.parse().map_err(|_| err())?;
        if !plain || !value.is_finite() {
            return Err(err());
        }
        Ok(Self { op, value })
    }

    /// Whether `reading` satisfies the threshold. Equality is exact on purpose: the
    /// thresholds that use it are counters such as "evictedKeys == 0".
    #[allow(clippy::float_cmp)]
    pub fn holds(&self, reading: f64) -> bool {
        match self.op {
            Op::Ge => reading >= self.value,
            Op::Le => reading <= self.value,
            Op::Gt => reading > self.value,
            Op::Lt => reading < self.value,
            Op::Eq => reading == self.value,
            Op::Ne => reading != self.value,
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op.symbol(), self.value)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_and_judges() {
        let t = Threshold::parse(">= 0.999").unwrap();
        assert!(t.holds(0.9995) && t.holds(0.999) && !t.holds(0.998));
        assert!(Threshold::parse("<= 220").unwrap().holds(220.0));
        assert!(!Threshold::parse("< 10").unwrap().holds(10.0));
        assert!(Threshold::parse("==0").unwrap().holds(0.0));
        assert!(Threshold::parse("> -1.5e2").unwrap().holds(-100.0));
        assert!(Threshold::parse("!= 1").unwrap().holds(0.0));
        assert_eq!(Threshold::parse(" >=  5 ").unwrap().to_string(), ">= 5");
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "0.9", ">=", "=> 1", ">= inf", ">= NaN", "~ 1", ">= 1 2", ">= +1"] {
            assert!(Threshold::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }
}
