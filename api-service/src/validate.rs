//! Field-by-field validation that reports every bad field at once (serde stops at the first),
//! for JSON bodies and query strings alike.

use chrono::NaiveDate;
use serde_json::{Map, Value};

use crate::error::FieldError;

pub struct Fields<'a> {
    values: &'a Map<String, Value>,
    prefix: String,
    /// Query strings carry numbers as text.
    numbers_as_text: bool,
    errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    pub fn json(values: &'a Map<String, Value>) -> Self {
        Self {
            values,
            prefix: String::new(),
            numbers_as_text: false,
            errors: Vec::new(),
        }
    }

    pub fn query(values: &'a Map<String, Value>) -> Self {
        Self {
            numbers_as_text: true,
            ..Self::json(values)
        }
    }

    pub fn into_errors(self) -> Vec<FieldError> {
        self.errors
    }

    pub fn present(&self, name: &str) -> bool {
        self.values.get(name).is_some_and(|v| !v.is_null())
    }

    /// Records `name` as invalid; returns `None` so callers can `return f.invalid(..)`.
    pub fn invalid<T>(&mut self, name: &str, message: impl Into<String>) -> Option<T> {
        self.errors
            .push(FieldError::new(format!("{}{name}", self.prefix), message));
        None
    }

    fn required(&mut self, name: &str) -> Option<&'a Value> {
        match self.values.get(name) {
            None | Some(Value::Null) => self.invalid(name, "is required"),
            Some(v) => Some(v),
        }
    }

    /// Fields not in `allowed` are errors: a misspelt optional field must not pass silently.
    pub fn reject_unknown(&mut self, allowed: &[&str]) {
        let unknown: Vec<String> = self
            .values
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .cloned()
            .collect();
        for key in unknown {
            self.invalid::<()>(&key, "is not a known field");
        }
    }

    pub fn number(&mut self, name: &str, min: f64, max: f64) -> Option<f64> {
        let value = match self.required(name)? {
            Value::Number(n) => n.as_f64(),
            Value::String(s) if self.numbers_as_text => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
            _ => None,
        };
        match value {
            None => self.invalid(name, "must be a number"),
            Some(v) if !(min..=max).contains(&v) => self.invalid(name, format!("must be between {min} and {max}")),
            Some(v) => Some(v),
        }
    }

    pub fn integer(&mut self, name: &str, min: i64, max: i64) -> Option<i64> {
        let value = match self.required(name)? {
            Value::Number(n) => n.as_i64(),
            Value::String(s) if self.numbers_as_text => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        match value {
            None => self.invalid(name, "must be an integer"),
            Some(v) if !(min..=max).contains(&v) => self.invalid(name, format!("must be between {min} and {max}")),
            Some(v) => Some(v),
        }
    }

    pub fn text(&mut self, name: &str, max_chars: usize) -> Option<String> {
        let Value::String(s) = self.required(name)? else {
            return self.invalid(name, "must be a string");
        };
        let s = s.trim();
        if s.is_empty() {
            return self.invalid(name, "must not be empty");
        }
        if s.chars().count() > max_chars {
            return self.invalid(name, format!("must be at most {max_chars} characters"));
        }
        Some(s.to_owned())
    }

    pub fn one_of(&mut self, name: &str, allowed: &[&str]) -> Option<String> {
        let s = self.text(name, 64)?;
        if allowed.contains(&s.as_str()) {
            Some(s)
        } else {
            self.invalid(name, format!("must be one of {}", allowed.join(", ")))
        }
    }

    /// A lowercase slug such as `computer-science`.
    pub fn slug(&mut self, name: &str) -> Option<String> {
        let s = self.text(name, 64)?;
        if s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            Some(s)
        } else {
            self.invalid(name, "must be a lowercase slug (a-z, 0-9, -)")
        }
    }

    /// An ISO 3166-1 alpha-2 country code.
    pub fn country(&mut self, name: &str) -> Option<String> {
        let s = self.text(name, 2)?;
        if s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase()) {
            Some(s)
        } else {
            self.invalid(name, "must be an ISO 3166-1 alpha-2 code such as DE")
        }
    }

    pub fn date(&mut self, name: &str) -> Option<NaiveDate> {
        let s = self.text(name, 10)?;
        match s.parse::<NaiveDate>() {
            Ok(d) => Some(d),
            Err(_) => self.invalid(name, "must be a date as YYYY-MM-DD"),
        }
    }

    pub fn uuid(&mut self, name: &str) -> Option<uuid::Uuid> {
        let s = self.text(name, 36)?;
        match uuid::Uuid::try_parse(&s) {
            Ok(id) => Some(id),
            Err(_) => self.invalid(name, "must be a UUID"),
        }
    }

    /// A plausible email address (one `@`, a dotted domain); deliverability is not our call.
    pub fn email(&mut self, name: &str) -> Option<String> {
        let s = self.text(name, 254)?;
        let valid = match s.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !s.contains(char::is_whitespace)
            }
            None => false,
        };
        if valid {
            Some(s)
        } else {
            self.invalid(name, "must be an email address")
        }
    }

    /// Validates a nested object with the same error list, naming fields `outer.inner`.
    pub fn object<T>(&mut self, name: &str, read: impl FnOnce(&mut Fields<'_>) -> Option<T>) -> Option<T> {
        let Value::Object(inner) = self.required(name)? else {
            return self.invalid(name, "must be an object");
        };
        let mut nested = Fields {
            values: inner,
            prefix: format!("{}{name}.", self.prefix),
            numbers_as_text: self.numbers_as_text,
            errors: std::mem::take(&mut self.errors),
        };
        let result = read(&mut nested);
        self.errors = nested.errors;
        result
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_every_bad_field_with_its_path() {
        let body = json!({"gpa": 5, "level": "phd", "inner": {"email": "nope"}, "extra": 1});
        let mut f = Fields::json(body.as_object().unwrap());
        f.reject_unknown(&["gpa", "level", "inner", "country"]);
        assert!(f.number("gpa", 0.0, 4.0).is_none());
        assert!(f.one_of("level", &["masters"]).is_none());
        assert!(f.country("country").is_none());
        assert!(f.object("inner", |i| i.email("email")).is_none());
        let fields: Vec<_> = f.into_errors().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["extra", "gpa", "level", "country", "inner.email"]);
    }

    #[test]
    fn query_numbers_arrive_as_text() {
        let q = json!({"gpa": "3.5", "limit": "x"});
        let mut f = Fields::query(q.as_object().unwrap());
        assert_eq!(f.number("gpa", 0.0, 4.0), Some(3.5));
        assert!(f.integer("limit", 1, 50).is_none());
    }
}
