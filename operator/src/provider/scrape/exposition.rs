//! A small parser for the Prometheus text exposition format (and the OpenMetrics text the
//! api-service's prometheus-client writes): one sample per line, `name{labels} value
//! [timestamp] [# exemplar]`. Comments (`# HELP`, `# TYPE`, `# EOF`) carry nothing the SLIs
//! need: counters, gauges and histogram series (`_bucket{le=...}`, `_sum`, `_count`) are told
//! apart by name, exactly as the PromQL of the Prometheus provider does.

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: &'static str,
}

/// Parses a whole exposition. Any malformed sample line fails the whole page: a half-read
/// page would silently drop series and skew the SLIs.
pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut samples = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let sample = parse_line(line).map_err(|reason| ParseError { line: i + 1, reason })?;
        samples.push(sample);
    }
    Ok(samples)
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Splits a metric or label name off the front of `s`.
fn take_name(s: &str) -> Option<(&str, &str)> {
    if !s.starts_with(is_name_start) {
        return None;
    }
    let end = s.find(|c: char| !is_name_char(c)).unwrap_or(s.len());
    Some(s.split_at(end))
}

fn parse_line(line: &str) -> Result<Sample, &'static str> {
    let (name, mut rest) = take_name(line).ok_or("expected a metric name")?;
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(after)?;
        labels = parsed;
        rest = after;
    }
    if !rest.starts_with([' ', '\t']) {
        return Err("expected whitespace before the value");
    }
    // Value, then an optional timestamp, then an optional OpenMetrics exemplar (`# {...} v`).
    let value = rest.split_whitespace().next().ok_or("missing value")?;
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value: parse_value(value).ok_or("invalid value")?,
    })
}

type Labels = Vec<(String, String)>;

/// Parses `k="v",...}` (the opening brace already consumed); returns the rest of the line.
fn parse_labels(mut s: &str) -> Result<(Labels, &str), &'static str> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let (key, rest) = take_name(s).ok_or("expected a label name")?;
        let rest = rest
            .trim_start()
            .strip_prefix('=')
            .ok_or("expected '=' after a label name")?;
        let rest = rest
            .trim_start()
            .strip_prefix('"')
            .ok_or("expected a quoted label value")?;
        let (value, rest) = unescape_until_quote(rest)?;
        labels.push((key.to_owned(), value));
        s = rest.trim_start();
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err("expected ',' or '}' after a label");
        }
    }
}

/// Reads a label value up to its closing quote, resolving `\\`, `\"` and `\n`.
fn unescape_until_quote(s: &str) -> Result<(String, &str), &'static str> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, '\\')) => out.push('\\'),
                Some((_, '"')) => out.push('"'),
                // Not an escape the format defines: keep it as written.
                Some((_, other)) => {
                    out.push('\\');
                    out.push(other);
                }
                None => break,
            },
            c => out.push(c),
        }
    }
    Err("unterminated label value")
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        other => other.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_the_text_format() {
        let text = r#"# HELP http_requests_total Requests.
# TYPE http_requests_total counter
http_requests_total{route="/v1/x",method="GET",status="200",track="canary"} 1027 1395066363000
http_requests_total{ route = "/a\"b\\c\nd" , status="500", } 3
up 1
http_request_duration_seconds_bucket{le="0.25",track="canary"} 10
http_request_duration_seconds_bucket{le="+Inf",track="canary"} 12 # {trace_id="abc"} 0.3 1.0
http_request_duration_seconds_sum{track="canary"} 1.5e0
weird NaN
# EOF
"#;
        let s = parse(text).unwrap();
        assert_eq!(s.len(), 7);
        assert_eq!(s[0].name, "http_requests_total");
        assert_eq!(s[0].label("route"), Some("/v1/x"));
        assert_eq!(s[0].label("track"), Some("canary"));
        assert_eq!(s[0].value, 1027.0);
        assert_eq!(s[1].label("route"), Some("/a\"b\\c\nd"));
        assert_eq!(s[1].label("status"), Some("500"));
        assert_eq!(s[2].labels, vec![]);
        assert_eq!(s[4].label("le"), Some("+Inf"));
        assert_eq!(s[4].value, 12.0);
        assert_eq!(s[5].value, 1.5);
        assert!(s[6].value.is_nan());
    }

    #[test]
    fn rejects_malformed_lines_with_their_number() {
        for (text, reason) in [
            ("ok 1\n{a=\"b\"} 1", "expected a metric name"),
            ("ok 1\nx{a=b} 1", "expected a quoted label value"),
            ("ok 1\nx{a=\"b} 1", "unterminated label value"),
            ("ok 1\nx{a=\"b\" c=\"d\"} 1", "expected ',' or '}' after a label"),
            ("ok 1\nx 1x", "invalid value"),
            ("ok 1\nx", "expected whitespace before the value"),
        ] {
            assert_eq!(parse(text), Err(ParseError { line: 2, reason }), "{text}");
        }
    }
}
