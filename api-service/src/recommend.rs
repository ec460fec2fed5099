//! Recommendations: an OpenAI-compatible model re-ranks the rule-based shortlist; any timeout,
//! error or unusable answer falls back to the rule-based order, so the route never fails
//! because the model did.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::eligibility::Profile;
use crate::metrics::OpenAiOutcome;
use crate::store::Scholarship;

/// How many rule-ranked candidates the model sees; more costs tokens without changing the top.
pub const SHORTLIST: usize = 20;

#[derive(Clone)]
pub struct ModelClient {
    http: reqwest::Client,
    endpoint: Url,
    api_key: Option<String>,
    model: String,
}

/// The outcome of asking the model, for the metric and the response's `source`.
#[derive(Debug)]
pub struct ModelRanking {
    pub outcome: OpenAiOutcome,
    /// The model's order, when usable.
    pub order: Option<Vec<Uuid>>,
}

impl ModelClient {
    pub fn new(
        base_url: &Url,
        api_key: Option<String>,
        model: String,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let mut endpoint = base_url.clone();
        let path = format!("{}/chat/completions", base_url.path().trim_end_matches('/'));
        endpoint.set_path(&path);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_millis(500)))
            .build()?;
        Ok(Self {
            http,
            endpoint,
            api_key,
            model,
        })
    }

    /// Asks the model to order `candidates`; never fails, the outcome says what happened.
    pub async fn rank(&self, profile: &Profile, candidates: &[&Scholarship]) -> ModelRanking {
        let result = self.call(profile, candidates).await;
        match result {
            Ok(content) => match parse_ranking(&content, candidates) {
                Some(order) => ModelRanking {
                    outcome: OpenAiOutcome::ok,
                    order: Some(order),
                },
                None => {
                    tracing::warn!("model answer unusable; serving the rule-based ranking");
                    fallback(OpenAiOutcome::fallback)
                }
            },
            Err(e) if e.is_timeout() => {
                tracing::warn!("model timed out; serving the rule-based ranking");
                fallback(OpenAiOutcome::fallback)
            }
            Err(e) => {
                tracing::warn!(error = %without_url(&e), "model call failed; serving the rule-based ranking");
                fallback(OpenAiOutcome::error)
            }
        }
    }

    async fn call(&self, profile: &Profile, candidates: &[&Scholarship]) -> Result<String, reqwest::Error> {
        let listing: Vec<_> = candidates
            .iter()
            .map(|s| {
                json!({"id": s.id, "name": s.name, "field": s.field_of_study, "amount_usd": s.amount_usd,
                       "deadline": s.deadline, "min_gpa": s.min_gpa, "country": s.country})
            })
            .collect();
        let request = json!({
            "model": self.model,
            "temperature": 0,
            "response_format": {"type": "json_object"},
            "messages": [
                {"role": "system", "content": "You rank scholarships for a student by fit. \
                  Answer only with JSON: {\"ranking\": [\"<id>\", ...]} using ids from the list, best first."},
                {"role": "user", "content": json!({"student": profile, "scholarships": listing}).to_string()},
            ],
        });
        let mut call = self.http.post(self.endpoint.clone()).json(&request);
        if let Some(key) = &self.api_key {
            call = call.bearer_auth(key);
        }
        let completion: Completion = call.send().await?.error_for_status()?.json().await?;
        Ok(completion
            .choices
            .into_iter()
            .next()
            .map(|c| c.message.content)
            .unwrap_or_default())
    }
}

fn fallback(outcome: OpenAiOutcome) -> ModelRanking {
    ModelRanking { outcome, order: None }
}

/// The endpoint URL may carry credentials in some deployments; keep it out of logs.
fn without_url(e: &reqwest::Error) -> String {
    let mut e = e.to_string();
    if let Some(i) = e.find(" for url") {
        e.truncate(i);
    }
    e
}

#[derive(Deserialize)]
struct Completion {
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    message: Message,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: String,
}

#[derive(Deserialize)]
struct RankingAnswer {
    ranking: Vec<String>,
}

/// Accepts the model's order only if it is a non-empty list of distinct known ids; candidates
/// it left out follow in rule order.
pub fn parse_ranking(content: &str, candidates: &[&Scholarship]) -> Option<Vec<Uuid>> {
    let trimmed = content
        .trim()
        .trim_start_matches("```json")
        .trim_start_matches("```")
        .trim_end_matches("```")
        .trim();
    let answer: RankingAnswer = serde_json::from_str(trimmed).ok()?;
    let known: HashSet<Uuid> = candidates.iter().map(|s| s.id).collect();
    let mut seen = HashSet::new();
    let mut order = Vec::with_capacity(candidates.len());
    for raw in &answer.ranking {
        let id = Uuid::try_parse(raw).ok()?;
        if !known.contains(&id) || !seen.insert(id) {
            return None;
        }
        order.push(id);
    }
    if order.is_empty() {
        return None;
    }
    order.extend(candidates.iter().map(|s| s.id).filter(|id| !seen.contains(id)));
    Some(order)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn candidate(n: u8) -> Scholarship {
        Scholarship {
            id: Uuid::from_bytes([n; 16]),
            name: format!("S{n}"),
            provider: "P".into(),
            description: "D".into(),
            field_of_study: "law".into(),
            level: "masters".into(),
            country: "DE".into(),
            eligible_residency: vec![],
            min_gpa: 3.0,
            amount_usd: 1000,
            deadline: "2027-01-01".parse().unwrap(),
            updated_at: chrono::DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn model_order_first_then_the_rest_in_rule_order() {
        let (a, b, c) = (candidate(1), candidate(2), candidate(3));
        let cands = [&a, &b, &c];
        let answer = format!("```json\n{{\"ranking\": [\"{}\"]}}\n```", c.id);
        assert_eq!(parse_ranking(&answer, &cands).unwrap(), [c.id, a.id, b.id]);
    }

    #[test]
    fn unusable_answers_are_refused() {
        let a = candidate(1);
        let cands = [&a];
        for bad in [
            "",
            "I recommend the first one",
            r#"{"ranking": []}"#,
            r#"{"ranking": ["not-a-uuid"]}"#,
            &format!(r#"{{"ranking": ["{}"]}}"#, Uuid::nil()),
            &format!(r#"{{"ranking": ["{0}", "{0}"]}}"#, a.id),
        ] {
            assert!(parse_ranking(bad, &cands).is_none(), "{bad}");
        }
    }
}
