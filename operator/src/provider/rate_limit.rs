//! The rate-limit probe: the limit is a budget shared by every pod through Redis, so the
//! operator spends one window's budget across two pods and checks that exactly what was left
//! got through. A conclusive burst stands for the step (a burst per interval would be load,
//! not a probe); an inconclusive one is tried again the next interval. It runs from the
//! operator's own address, so users' budgets are untouched.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use canary_core::Reading;
use kube::Client;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::pods::{Pod, ProbeRun, ProbeTargets, pick_two};
use super::scrape;
use super::secret::{SecretError, SecretKeys};

/// Bound of each request of the burst.
const TIMEOUT: Duration = Duration::from_secs(2);
/// 429s seen before the burst stops: enough to show the refusal holds on both pods.
const REFUSALS: usize = 4;
/// Bound of the whole burst, for intervals longer than this (the round cuts every probe at
/// the interval anyway).
const BURST_BUDGET: Duration = Duration::from_secs(10);

/// What a spec asks the probe to do.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitCheck {
    pub pods: ProbeTargets,
    /// Secret with `testerToken`.
    pub secret: String,
    pub tester_header: String,
    pub max_requests: u32,
}

/// One answer of the burst.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// Index of the pod (0 or 1).
    pub pod: usize,
    pub status: u16,
    /// `RateLimit-Limit`, `-Remaining`, `-Reset` (seconds).
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    pub reset: Option<u64>,
    pub retry_after: bool,
}

impl Answer {
    fn from_headers(pod: usize, status: u16, headers: &HeaderMap) -> Answer {
        let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
        Answer {
            pod,
            status,
            limit: number("ratelimit-limit"),
            remaining: number("ratelimit-remaining"),
            reset: number("ratelimit-reset"),
            retry_after: headers.contains_key(RETRY_AFTER),
        }
    }
}

/// Conclusive readings per promotion, for the step they were taken in: a pass for the rest of
/// the step, a failure until the window it was measured in has reset (then the burst runs
/// again, so a passing blip does not fail the step for good).
#[derive(Default)]
pub struct StepResults {
    done: Mutex<HashMap<String, StepResult>>,
}

/// The step a reading was taken in, the reading, and until when it stands.
type StepResult = (String, Reading, Option<Instant>);

impl StepResults {
    pub fn get(&self, key: &str, step: &str, now: Instant) -> Option<Reading> {
        let done = self.done.lock().ok()?;
        done.get(key)
            .filter(|(s, _, until)| s == step && until.is_none_or(|until| now < until))
            .map(|(_, r, _)| r.clone())
    }

    /// Keeps `reading` for the step; `until` bounds how long (`None`: the whole step).
    pub fn put(&self, key: &str, step: &str, reading: Reading, until: Option<Instant>) {
        if let Ok(mut done) = self.done.lock() {
            done.insert(key.to_owned(), (step.to_owned(), reading, until));
        }
    }

    pub fn forget(&self, key: &str) {
        if let Ok(mut done) = self.done.lock() {
            done.remove(key);
        }
    }
}

/// The Secret's `testerToken`: the burst must count as tester traffic, or its 429s and
/// requests would move the canary's own SLIs.
pub async fn tester_token(client: &Client, namespace: &str, check: &RateLimitCheck) -> Result<String, SecretError> {
    SecretKeys::read(client, namespace, &check.secret)
        .await?
        .required(super::replay::keys::TESTER_TOKEN)
}

/// Runs one burst, with the tester token from [`tester_token`]. Also returns when the
/// measured window resets, from the first answer's `RateLimit-Reset`.
pub async fn probe(
    client: &Client,
    http: &reqwest::Client,
    namespace: &str,
    check: &RateLimitCheck,
    tester: &str,
) -> (ProbeRun, Option<Duration>) {
    let started = Instant::now();
    let mut requests = 0;
    let (reading, reset) = match burst(client, http, namespace, check, tester, &mut requests).await {
        Ok((pods, answers)) => {
            let reset = answers.first().and_then(|a| a.reset).map(Duration::from_secs);
            (
                judge(&pods, &answers, check.max_requests).unwrap_or_else(Reading::Error),
                reset,
            )
        }
        Err(reason) => (Reading::Error(reason), None),
    };
    let run = ProbeRun {
        reading,
        requests,
        took: started.elapsed(),
    };
    (run, reset)
}

async fn burst(
    client: &Client,
    http: &reqwest::Client,
    namespace: &str,
    check: &RateLimitCheck,
    tester: &str,
    requests: &mut u32,
) -> Result<([Pod; 2], Vec<Answer>), String> {
    let deadline = Instant::now() + BURST_BUDGET;
    let (a, b) = pick_two(client, namespace, &check.pods).await?;
    let pods = [a, b];
    let mut answers = Vec::new();
    for i in 0..check.max_requests as usize {
        let pod = &pods[i % 2];
        if Instant::now() > deadline {
            return Err(format!("inconclusive: the burst took longer than {BURST_BUDGET:?}"));
        }
        let request = http
            .get(&pod.url)
            .timeout(TIMEOUT)
            .header(check.tester_header.as_str(), tester);
        *requests += 1;
        let response = request
            .send()
            .await
            .map_err(|e| format!("inconclusive: {pod}: {}", scrape::transport_message(&e, &pod.url)))?;
        let status = response.status().as_u16();
        if status >= 500 {
            return Err(format!("inconclusive: {pod} answered {status}"));
        }
        answers.push(Answer::from_headers(i % 2, status, response.headers()));
        // A window already spent proves nothing (see `judge`): stop at its first refusal.
        let spent = i == 0 && status == 429;
        if spent || answers.iter().filter(|a| a.status == 429).count() >= REFUSALS {
            break;
        }
    }
    Ok((pods, answers))
}

/// The verdict on one burst: `Err` when it cannot tell.
pub fn judge(pods: &[Pod; 2], answers: &[Answer], max_requests: u32) -> Result<Reading, String> {
    let verdict = |held: bool, detail: String| {
        Ok(Reading::Probed {
            value: if held { 1.0 } else { 0.0 },
            detail,
        })
    };
    let Some(first) = answers.first() else {
        return Err("the burst sent nothing".into());
    };
    for a in answers {
        let pod = &pods[a.pod];
        if a.limit.is_none() || a.remaining.is_none() || a.reset.is_none() {
            return verdict(
                false,
                format!(
                    "{pod} answered {} without RateLimit-Limit/-Remaining/-Reset (a limiter degraded to its local budget sends none)",
                    a.status
                ),
            );
        }
        if a.status == 429 && !a.retry_after {
            return verdict(false, format!("{pod} answered 429 without Retry-After"));
        }
        if a.limit != first.limit {
            return verdict(
                false,
                format!(
                    "the pods enforce different policies: {} allows {:?}, {pod} {:?} per window",
                    pods[first.pod],
                    first.limit.unwrap_or_default(),
                    a.limit.unwrap_or_default()
                ),
            );
        }
    }
    // A new window began during the burst: its budget would count twice.
    let first_reset = first.reset.unwrap_or_default();
    if answers.iter().any(|a| a.reset.unwrap_or_default() > first_reset + 1) {
        return Err("inconclusive: the rate-limit window rolled over during the burst".into());
    }
    // A spent budget refuses on every pod, shared or not: that proves nothing.
    if first.status == 429 {
        return Err(format!(
            "inconclusive: the window's budget is already spent; it resets in {first_reset}s"
        ));
    }
    let refused = answers.iter().filter(|a| a.status == 429).count();
    if refused < REFUSALS {
        return Err(format!(
            "inconclusive: {max_requests} requests (maxRequests) brought {refused} refusals, not the {REFUSALS} the probe waits for"
        ));
    }
    let left = first.remaining.unwrap_or_default() + 1;
    // Past the limiter: any answer but 429 (a 400 or 404 spent budget too).
    let allowed = answers.iter().filter(|a| a.status != 429).count() as u64;
    let first_refusal = answers.iter().position(|a| a.status == 429).unwrap_or_default();
    let limit = first.limit.unwrap_or_default();
    if allowed != left {
        return verdict(
            false,
            format!(
                "{allowed} requests allowed across {} and {} where the shared window had {left} left \
                 (policy {limit} per window): the pods do not share one budget",
                pods[0], pods[1]
            ),
        );
    }
    if answers[first_refusal..].iter().any(|a| a.status != 429) {
        return verdict(false, "a request was allowed after the budget ran out".to_owned());
    }
    verdict(
        true,
        format!(
            "{allowed} of {} requests allowed across {} and {}, exactly the shared window's {left} left \
             (policy {limit} per window); every 429 carried Retry-After",
            answers.len(),
            pods[0],
            pods[1]
        ),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pods() -> [Pod; 2] {
        let pod = |track, address: &str| Pod {
            identity: address.to_owned(),
            track,
            address: address.to_owned(),
            url: format!("http://{address}/api/v1/scholarships"),
        };
        [pod("canary", "10.0.0.1:8080"), pod("stable", "10.0.0.2:8080")]
    }

    /// Alternating pods; `budgets[pod]` is what each pod believes is left (one shared budget
    /// when both start from the same counter).
    fn burst(limit: u64, mut left: [u64; 2], shared: bool, requests: usize) -> Vec<Answer> {
        let mut out = Vec::new();
        for i in 0..requests {
            let pod = i % 2;
            let counter = if shared { 0 } else { pod };
            let allowed = left[counter] > 0;
            if allowed {
                left[counter] -= 1;
            }
            out.push(Answer {
                pod,
                status: if allowed { 200 } else { 429 },
                limit: Some(limit),
                remaining: Some(left[counter]),
                reset: Some(30),
                retry_after: !allowed,
            });
            if out.iter().filter(|a| a.status == 429).count() >= REFUSALS {
                break;
            }
        }
        out
    }

    fn value(r: Result<Reading, String>) -> (f64, String) {
        match r.unwrap() {
            Reading::Probed { value, detail } => (value, detail),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_shared_budget_holds() {
        let answers = burst(5, [5, 5], true, 300);
        let (v, detail) = value(judge(&pods(), &answers, 300));
        assert_eq!(v, 1.0, "{detail}");
        assert!(detail.starts_with("5 of 9 requests allowed"), "{detail}");
        // Part of the window already spent: what was left is what gets through.
        let (v, _) = value(judge(&pods(), &burst(5, [2, 2], true, 300), 300));
        assert_eq!(v, 1.0);
        // Nothing left: refused everywhere, shared or not.
        assert!(
            judge(&pods(), &burst(5, [0, 0], false, 300), 300)
                .unwrap_err()
                .contains("already spent")
        );
    }

    #[test]
    fn a_budget_per_pod_fails() {
        let answers = burst(5, [5, 5], false, 300);
        let (v, detail) = value(judge(&pods(), &answers, 300));
        assert_eq!(v, 0.0);
        assert!(
            detail.contains("10 requests allowed") && detail.contains("do not share one budget"),
            "{detail}"
        );
    }

    #[test]
    fn missing_headers_fail_naming_the_pod() {
        let mut answers = burst(5, [5, 5], true, 300);
        answers[8].retry_after = false;
        let (v, detail) = value(judge(&pods(), &answers, 300));
        assert_eq!(
            (v, detail.as_str()),
            (0.0, "canary pod 10.0.0.1:8080 answered 429 without Retry-After")
        );
        let mut answers = burst(5, [5, 5], true, 300);
        answers[1].remaining = None;
        let (v, detail) = value(judge(&pods(), &answers, 300));
        assert!(
            v == 0.0 && detail.starts_with("stable pod 10.0.0.2:8080 answered 200 without RateLimit"),
            "{detail}"
        );
        let mut answers = burst(5, [5, 5], true, 300);
        answers[3].limit = Some(50);
        let (v, detail) = value(judge(&pods(), &answers, 300));
        assert!(
            v == 0.0 && detail.starts_with("the pods enforce different policies"),
            "{detail}"
        );
    }

    #[test]
    fn what_cannot_tell_is_an_error() {
        let mut answers = burst(5, [5, 5], true, 300);
        answers[6].reset = Some(60);
        assert!(judge(&pods(), &answers, 300).unwrap_err().contains("rolled over"));
        let short = burst(50, [50, 50], true, 20);
        assert!(judge(&pods(), &short, 20).unwrap_err().contains("refusals, not the 4"));
        // What the limiter let through counts, whatever the handler answered.
        let mut answers = burst(5, [5, 5], true, 300);
        answers[2].status = 400;
        assert_eq!(value(judge(&pods(), &answers, 300)).0, 1.0);
    }
}
