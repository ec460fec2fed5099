//! Eligibility rules and the deterministic rule-based ranking. Pure functions: the date comes
//! in as an argument so the rules are testable without a clock.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::store::Scholarship;
use crate::validate::Fields;

pub const LEVELS: [&str; 3] = ["undergraduate", "masters", "doctoral"];

/// What an applicant tells us about themselves (no personal data needed).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Profile {
    /// GPA on the 4.0 scale.
    #[schema(example = 3.6, minimum = 0, maximum = 4)]
    pub gpa: f64,
    /// `undergraduate`, `masters` or `doctoral`.
    #[schema(example = "masters")]
    pub level: String,
    /// Field-of-study slug, e.g. `computer-science`.
    #[schema(example = "computer-science")]
    pub field_of_study: String,
    /// Country of residence, ISO 3166-1 alpha-2.
    #[schema(example = "DE")]
    pub residency: String,
}

impl Profile {
    /// Reads and validates a profile, reporting every bad field at once.
    pub fn from_fields(fields: &mut Fields<'_>) -> Option<Self> {
        let gpa = fields.number("gpa", 0.0, 4.0);
        let level = fields.one_of("level", &LEVELS);
        let field_of_study = fields.slug("field_of_study");
        let residency = fields.country("residency");
        Some(Self {
            gpa: gpa?,
            level: level?,
            field_of_study: field_of_study?,
            residency: residency?,
        })
    }
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Criterion {
    Gpa,
    Level,
    FieldOfStudy,
    Residency,
    Deadline,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct Reason {
    pub criterion: Criterion,
    pub passed: bool,
    /// Human-readable explanation, e.g. "GPA 3.20 is below the minimum 3.50".
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct Verdict {
    pub scholarship_id: uuid::Uuid,
    pub scholarship_name: String,
    pub eligible: bool,
    /// One reason per criterion, in a fixed order.
    pub reasons: Vec<Reason>,
}

pub fn judge(profile: &Profile, s: &Scholarship, today: NaiveDate) -> Verdict {
    let reasons = vec![
        reason(
            Criterion::Gpa,
            profile.gpa + 1e-9 >= s.min_gpa,
            format!("GPA {:.2} against a minimum of {:.2}", profile.gpa, s.min_gpa),
        ),
        reason(
            Criterion::Level,
            profile.level == s.level,
            format!("{} applicant, {} scholarship", profile.level, s.level),
        ),
        reason(
            Criterion::FieldOfStudy,
            profile.field_of_study == s.field_of_study,
            format!(
                "studies {}, scholarship is for {}",
                profile.field_of_study, s.field_of_study
            ),
        ),
        reason(
            Criterion::Residency,
            s.eligible_residency.is_empty() || s.eligible_residency.contains(&profile.residency),
            if s.eligible_residency.is_empty() {
                "open to every residency".to_owned()
            } else {
                format!(
                    "resident of {}, open to {}",
                    profile.residency,
                    s.eligible_residency.join(", ")
                )
            },
        ),
        reason(
            Criterion::Deadline,
            s.deadline >= today,
            format!("deadline {} (today is {today})", s.deadline),
        ),
    ];
    Verdict {
        scholarship_id: s.id,
        scholarship_name: s.name.clone(),
        eligible: reasons.iter().all(|r| r.passed),
        reasons,
    }
}

fn reason(criterion: Criterion, passed: bool, detail: String) -> Reason {
    Reason {
        criterion,
        passed,
        detail,
    }
}

/// Eligible scholarships, best first: larger awards, a comfortable GPA margin and more time to
/// prepare rank higher. Ties break on id, so the order is total and stable.
pub fn rank<'a>(profile: &Profile, catalogue: &'a [Scholarship], today: NaiveDate) -> Vec<(&'a Scholarship, f64)> {
    let mut ranked: Vec<_> = catalogue
        .iter()
        .filter(|s| judge(profile, s, today).eligible)
        .map(|s| (s, score(profile, s, today)))
        .collect();
    ranked.sort_by(|(a, sa), (b, sb)| sb.total_cmp(sa).then(a.id.cmp(&b.id)));
    ranked
}

fn score(profile: &Profile, s: &Scholarship, today: NaiveDate) -> f64 {
    let amount = f64::from(s.amount_usd) / 50_000.0;
    let margin = ((profile.gpa - s.min_gpa) / 1.5).clamp(0.0, 1.0);
    let days_left = (s.deadline - today).num_days() as f64;
    // Deadlines under two weeks away are hard to meet; beyond ~3 months there is no extra gain.
    let time = ((days_left - 14.0) / 90.0).clamp(0.0, 1.0);
    ((0.6 * amount + 0.25 * margin + 0.15 * time) * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn scholarship(min_gpa: f64, amount: i32, deadline: &str) -> Scholarship {
        Scholarship {
            id: uuid::Uuid::new_v4(),
            name: "Test".into(),
            provider: "P".into(),
            description: "D".into(),
            field_of_study: "law".into(),
            level: "masters".into(),
            country: "DE".into(),
            eligible_residency: vec!["DE".into()],
            min_gpa,
            amount_usd: amount,
            deadline: deadline.parse().unwrap(),
            updated_at: chrono::DateTime::UNIX_EPOCH,
        }
    }

    fn profile() -> Profile {
        Profile {
            gpa: 3.5,
            level: "masters".into(),
            field_of_study: "law".into(),
            residency: "DE".into(),
        }
    }

    #[test]
    fn every_criterion_is_reported() {
        let today = "2026-11-26".parse().unwrap();
        let v = judge(&profile(), &scholarship(3.5, 1000, "2027-01-01"), today);
        assert!(v.eligible);
        assert_eq!(v.reasons.len(), 5);

        let mut p = profile();
        p.gpa = 3.2;
        p.residency = "FR".into();
        let v = judge(&p, &scholarship(3.5, 1000, "2026-11-25"), today);
        assert!(!v.eligible);
        let failed: Vec<_> = v.reasons.iter().filter(|r| !r.passed).map(|r| r.criterion).collect();
        assert_eq!(failed, [Criterion::Gpa, Criterion::Residency, Criterion::Deadline]);
    }

    #[test]
    fn ranking_is_total_and_prefers_larger_awards() {
        let today = "2026-11-26".parse().unwrap();
        let catalogue = vec![
            scholarship(3.0, 5_000, "2027-06-01"),
            scholarship(3.0, 40_000, "2027-06-01"),
            scholarship(3.9, 50_000, "2027-06-01"),
        ];
        let ranked = rank(&profile(), &catalogue, today);
        assert_eq!(ranked.len(), 2, "GPA 3.9 minimum is not eligible");
        assert_eq!(ranked[0].0.amount_usd, 40_000);
    }
}
