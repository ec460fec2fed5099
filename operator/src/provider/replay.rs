//! The replay-protection gate's probe. Replay protection is a property of the fleet, not of
//! one pod: a `jti` marker one pod writes must stop every other pod. So the probe gets one
//! fresh token by OAuth2 client credentials and sends it concurrently to two pods (two canary
//! pods, or the canary and a stable pod when the canary has one). It holds when exactly one
//! pod accepts the token, the other refuses it with `token_replayed`, and the refusing pod's
//! `jwt_replay_prevented_total` rose. Anything else is a verdict of 0 whose message names the
//! expectation that broke; a probe that cannot tell (no token, fewer than two pods, a 429 or
//! 5xx answer) is an `Error`, judged by the gate's `noData` policy.

use std::time::{Duration, Instant};

use canary_core::Reading;
use kube::Client;
use serde::Deserialize;

use super::pods::{Pod, ProbeRun, ProbeTargets, pick_two};
use super::scrape;
use super::secret::{SecretError, SecretKeys};

/// Bound of the token request, of each probe request and of each metrics read.
const TIMEOUT: Duration = Duration::from_secs(2);
/// The counter the refusing pod must raise.
const REPLAY_COUNTER: &str = "jwt_replay_prevented_total";
/// The problem code of a refused replay.
const REPLAYED: &str = "token_replayed";

/// Keys read from the Secret named by `spec.gates.replayProtection.probe.secretRef`.
pub mod keys {
    /// OAuth2 token endpoint (client credentials grant).
    pub const TOKEN_URL: &str = "tokenUrl";
    pub const CLIENT_ID: &str = "clientId";
    pub const CLIENT_SECRET: &str = "clientSecret";
    /// Optional `audience` parameter of the token request.
    pub const AUDIENCE: &str = "audience";
    /// Optional `scope` parameter of the token request.
    pub const SCOPE: &str = "scope";
    /// Optional value of the tester header, marking probe requests as tester traffic.
    pub const TESTER_TOKEN: &str = "testerToken";
}

/// What a spec asks the probe to do.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayCheck {
    pub secret: String,
    pub pods: ProbeTargets,
    pub tester_header: String,
}

/// The probe identity, from the Secret.
pub struct Credentials {
    token_url: String,
    client_id: String,
    client_secret: String,
    audience: Option<String>,
    scope: Option<String>,
    tester_token: Option<String>,
}

impl Credentials {
    /// Reads the Secret `name`; the error names the Secret and the key, never a value.
    pub async fn from_secret(client: &Client, namespace: &str, name: &str) -> Result<Credentials, SecretError> {
        let secret = SecretKeys::read(client, namespace, name).await?;
        let token_url = secret.required(keys::TOKEN_URL)?;
        if !safe_token_url(&token_url) {
            return Err(secret.problem("key tokenUrl must be an https:// URL (the client secret is sent to it)"));
        }
        Ok(Credentials {
            token_url,
            client_id: secret.required(keys::CLIENT_ID)?,
            client_secret: secret.required(keys::CLIENT_SECRET)?,
            audience: secret.text(keys::AUDIENCE)?.filter(|v| !v.is_empty()),
            scope: secret.text(keys::SCOPE)?.filter(|v| !v.is_empty()),
            tester_token: secret.text(keys::TESTER_TOKEN)?.filter(|v| !v.is_empty()),
        })
    }

    /// A fresh access token (RFC 6749 §4.4, client authentication by HTTP Basic).
    async fn token(&self, http: &reqwest::Client) -> Result<String, String> {
        #[derive(Deserialize)]
        struct TokenResponse {
            access_token: String,
        }
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(audience) = &self.audience {
            form.push(("audience", audience));
        }
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
        let response = http
            .post(&self.token_url)
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(&form)
            .timeout(TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("token request: {}", scrape::transport_message(&e, &self.token_url)))?;
        let status = response.status();
        if !status.is_success() {
            // RFC 6749 §5.2: the `error` code says what the token endpoint disliked.
            let code = json_field(response, "error").await;
            return Err(format!("token endpoint answered {} {code}", status.as_u16())
                .trim_end()
                .to_owned());
        }
        response
            .json::<TokenResponse>()
            .await
            .map(|t| t.access_token)
            .map_err(|_| "token endpoint answered without an access_token".to_owned())
    }
}

/// A string field of a JSON error body (empty when there is none).
async fn json_field(response: reqwest::Response, field: &str) -> String {
    response
        .json::<serde_json::Value>()
        .await
        .ok()
        .and_then(|body| body[field].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The client secret travels in the token request: `https://`, or plaintext only where
/// nothing is on the wire (a loopback address or `localhost`).
fn safe_token_url(raw: &str) -> bool {
    reqwest::Url::parse(raw).is_ok_and(|url| match (url.scheme(), url.host_str()) {
        ("https", Some(_)) => true,
        ("http", Some(host)) => {
            host == "localhost"
                || host
                    .trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        _ => false,
    })
}

/// How a pod answered the probe's token.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    /// Past authentication: any answer but 401, 403, 429 and 5xx (a 404 on a made-up id is
    /// still an acceptance).
    Accepted(u16),
    /// 401 with the `token_replayed` problem code.
    Replayed,
    /// 401 or 403 for another reason (the code of the problem body, if any).
    Refused(u16, String),
    /// Says nothing about replay protection: 429, 5xx, or no answer.
    Inconclusive(String),
}

async fn ask(http: &reqwest::Client, pod: &Pod, token: &str, tester: Option<(&str, &str)>) -> Answer {
    let mut request = http.get(&pod.url).bearer_auth(token).timeout(TIMEOUT);
    if let Some((header, value)) = tester {
        request = request.header(header, value);
    }
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => return Answer::Inconclusive(scrape::transport_message(&e, &pod.url)),
    };
    let status = response.status().as_u16();
    match status {
        401 | 403 => {
            let code = json_field(response, "code").await;
            if status == 401 && code == REPLAYED {
                Answer::Replayed
            } else {
                Answer::Refused(status, code)
            }
        }
        429 => Answer::Inconclusive("429: the probe was rate limited".into()),
        s if s >= 500 => Answer::Inconclusive(format!("HTTP {s}")),
        s => Answer::Accepted(s),
    }
}

/// The pod's `jwt_replay_prevented_total`, summed over its series (0 before the first replay,
/// when prometheus-client has not written the series yet).
async fn replays(http: &reqwest::Client, pod: &Pod) -> Result<f64, String> {
    let samples = scrape::fetch_samples(http, &pod.metrics_url(), TIMEOUT)
        .await
        .map_err(|e| format!("{pod}: {e}"))?;
    Ok(samples
        .iter()
        .filter(|s| s.name == REPLAY_COUNTER)
        .map(|s| s.value)
        .sum())
}

/// Runs the probe once.
pub async fn probe(
    client: &Client,
    http: &reqwest::Client,
    namespace: &str,
    check: &ReplayCheck,
    credentials: &Credentials,
) -> ProbeRun {
    let started = Instant::now();
    let mut requests = 0;
    let reading = match run(client, http, namespace, check, credentials, &mut requests).await {
        Ok(reading) => reading,
        Err(reason) => Reading::Error(reason),
    };
    ProbeRun {
        reading,
        requests,
        took: started.elapsed(),
    }
}

async fn run(
    client: &Client,
    http: &reqwest::Client,
    namespace: &str,
    check: &ReplayCheck,
    credentials: &Credentials,
    requests: &mut u32,
) -> Result<Reading, String> {
    let (a, b) = pick_two(client, namespace, &check.pods).await?;
    *requests += 1;
    let token = credentials.token(http).await?;
    *requests += 2;
    let (before_a, before_b) = futures::try_join!(replays(http, &a), replays(http, &b))?;
    let tester = credentials
        .tester_token
        .as_deref()
        .map(|value| (check.tester_header.as_str(), value));
    *requests += 2;
    let (answer_a, answer_b) = futures::join!(ask(http, &a, &token, tester), ask(http, &b, &token, tester));
    let verdict = |held: bool, detail: String| Reading::Probed {
        value: if held { 1.0 } else { 0.0 },
        detail,
    };
    let (winner, winner_answer, refuser) = match (&answer_a, &answer_b) {
        (Answer::Inconclusive(why), _) => return Err(format!("inconclusive: {a} answered {why}")),
        (_, Answer::Inconclusive(why)) => return Err(format!("inconclusive: {b} answered {why}")),
        (Answer::Refused(status, code), _) => return Err(refused(&a, *status, code)),
        (_, Answer::Refused(status, code)) => return Err(refused(&b, *status, code)),
        (Answer::Accepted(sa), Answer::Accepted(sb)) => {
            return Ok(verdict(
                false,
                format!(
                    "both pods accepted the same token ({a}: {sa}, {b}: {sb}): replay protection is not shared between them \
                     (or probe.path is not a single-use authenticated route of the API)"
                ),
            ));
        }
        (Answer::Replayed, Answer::Replayed) => {
            return Ok(verdict(
                false,
                format!("both {a} and {b} refused a fresh token as {REPLAYED}: no pod accepted it"),
            ));
        }
        (Answer::Accepted(s), Answer::Replayed) => (&a, *s, (&b, before_b)),
        (Answer::Replayed, Answer::Accepted(s)) => (&b, *s, (&a, before_a)),
    };
    let (refuser, before) = refuser;
    *requests += 1;
    let after = replays(http, refuser).await?;
    let rise = after - before;
    if rise < 1.0 {
        return Ok(verdict(
            false,
            format!(
                "{winner} accepted ({winner_answer}) and {refuser} refused the replay as {REPLAYED}, \
                 but its {REPLAY_COUNTER} did not rise"
            ),
        ));
    }
    Ok(verdict(
        true,
        format!(
            "{winner} accepted ({winner_answer}); {refuser} refused the replay as {REPLAYED} \
             and its {REPLAY_COUNTER} rose by {rise}"
        ),
    ))
}

fn refused(pod: &Pod, status: u16, code: &str) -> String {
    let code = if code.is_empty() { "no problem code" } else { code };
    format!(
        "{pod} refused the probe's fresh token ({status}, {code}): check the probe identity \
         (audience, scope) against the API's JWT settings"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_secret_goes_over_tls_or_stays_on_the_machine() {
        for ok in [
            "https://idp.example/oauth2/token",
            "http://127.0.0.1:8080/token",
            "http://127.0.0.2/token",
            "http://[::1]:9000/token",
            "http://localhost/token",
        ] {
            assert!(safe_token_url(ok), "{ok}");
        }
        for refused in [
            "http://idp.example/token",
            "http://127.0.0.1.evil.example/token",
            "http://localhost@idp.example/token",
            "http://10.0.0.1/token",
            "ftp://127.0.0.1/token",
            "not a url",
        ] {
            assert!(!safe_token_url(refused), "{refused}");
        }
    }
}
