//! Webhook notifications: one message per promotion transition to each `spec.notify` sink, as
//! a Slack-compatible message or a CloudEvents 1.0 event. Delivery runs in the background with
//! a per-request timeout and bounded retries, so a slow or failing receiver never holds up a
//! reconcile; webhook URLs come from Secrets and never reach a log line.

use std::sync::Arc;
use std::time::Duration;

use canary_core::{CanaryPromotionStatus, Event, GateState, NotifyFormat, NotifySink, Reason};
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::crd::CanaryPromotion;
use crate::metrics::Metrics;

/// The key of a sink's Secret that holds the webhook URL.
pub const URL_KEY: &str = "url";

/// Background deliveries at most in flight; beyond that new ones are dropped (and counted),
/// which bounds the memory a dead receiver can pin.
const MAX_IN_FLIGHT: usize = 64;

/// The transitions worth a message; every other Event stays an Event only.
pub fn is_transition(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::Started
            | Reason::StepAdvanced
            | Reason::GateFailing
            | Reason::RollbackStarted
            | Reason::RolledBack
            | Reason::Promoted
            | Reason::ProgressDeadlineExceeded
            | Reason::PostPromotionBreach
            | Reason::WatchCompleted
            // A failover touches the whole Redis, stable track included: people want to know.
            | Reason::FailoverDrill
    )
}

/// How one message is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Per attempt, connect to answer.
    pub timeout: Duration,
    pub attempts: u32,
    /// Before the second attempt; doubled before each later one.
    pub backoff: Duration,
}

impl Default for Delivery {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            attempts: 4,
            backoff: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("receiver refused the message: HTTP {0}")]
    Refused(u16),
    #[error("gave up after {attempts} attempts: {last}")]
    GaveUp { attempts: u32, last: String },
}

/// One transition of one promotion, ready to be rendered for a sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub namespace: String,
    pub name: String,
    pub reason: Reason,
    pub text: String,
    pub at: DateTime<Utc>,
    /// Position among the transitions of one reconcile (two GateFailing events of one round
    /// are two transitions).
    pub sequence: usize,
    pub status: CanaryPromotionStatus,
}

impl Message {
    /// The request body and its content type for `format`.
    pub fn render(&self, format: NotifyFormat) -> (&'static str, Value) {
        match format {
            NotifyFormat::Slack => ("application/json", self.slack()),
            NotifyFormat::CloudEvents => ("application/cloudevents+json", self.cloud_event()),
        }
    }

    fn slack(&self) -> Value {
        let color = match self.reason {
            Reason::Promoted => "good",
            Reason::GateFailing => "warning",
            Reason::RollbackStarted
            | Reason::RolledBack
            | Reason::PostPromotionBreach
            | Reason::ProgressDeadlineExceeded => "danger",
            _ => "#439FE0",
        };
        let st = &self.status;
        let mut fields = vec![
            json!({"title": "step", "value": st.step_label, "short": true}),
            json!({"title": "weight", "value": format!("{}%", st.weight), "short": true}),
        ];
        // Gates that are not passing, then the criteria in breach: what caused the message.
        for gate in st.gates.iter().filter(|g| g.state != GateState::Passing) {
            let value = gate.value.map_or_else(|| "no value".to_owned(), |v| v.to_string());
            fields.push(json!({
                "title": gate.name,
                "value": format!("{value} (want {}) {:?}", gate.threshold, gate.state),
                "short": true
            }));
        }
        for c in st.rollback.iter().filter(|c| c.breach_since.is_some()) {
            let value = c.value.map_or_else(|| "no value".to_owned(), |v| v.to_string());
            fields.push(json!({
                "title": format!("rollback {}", c.metric),
                "value": format!("{value} (breached when {})", c.threshold),
                "short": true
            }));
        }
        json!({
            "text": format!("*{}* {}/{}: {}", self.reason.as_str(), self.namespace, self.name, self.text),
            "attachments": [{"color": color, "fields": fields, "ts": self.at.timestamp()}]
        })
    }

    fn cloud_event(&self) -> Value {
        let st = &self.status;
        json!({
            "specversion": "1.0",
            // The same transition keeps its id across retries, so receivers can de-duplicate.
            "id": format!(
                "{}/{}/{}/{}/{}.{}",
                self.namespace,
                self.name,
                st.observed_generation.unwrap_or_default(),
                self.reason.as_str(),
                self.at.timestamp_micros(),
                self.sequence
            ),
            "source": format!(
                "/apis/scholarship.dev/v1alpha1/namespaces/{}/canarypromotions/{}",
                self.namespace, self.name
            ),
            "type": format!("dev.scholarship.canarypromotion.{}", self.reason.as_str()),
            "subject": format!("{}/{}", self.namespace, self.name),
            "time": self.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "datacontenttype": "application/json",
            "data": {
                "reason": self.reason.as_str(),
                "message": self.text,
                "phase": st.phase,
                "step": st.step_label,
                "weight": st.weight,
                "gates": st.gates,
                "rollback": st.rollback,
            }
        })
    }
}

/// Sends the messages of every reconcile that produced transitions.
pub struct Notifier {
    client: Client,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
    delivery: Delivery,
    in_flight: Arc<Semaphore>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("delivery", &self.delivery)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    pub fn new(client: Client, metrics: Arc<Metrics>, delivery: Delivery) -> Result<Self, reqwest::Error> {
        Ok(Self {
            client,
            http: reqwest::Client::builder().connect_timeout(delivery.timeout).build()?,
            metrics,
            delivery,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        })
    }

    /// Queues a message per transition among `events` to each sink of `cp`, and returns at
    /// once. Messages of one call reach a sink in order.
    pub fn notify(&self, cp: &CanaryPromotion, status: &CanaryPromotionStatus, events: &[Event], at: DateTime<Utc>) {
        let sinks = cp.spec.promotion.notify.clone();
        let namespace = cp.namespace().unwrap_or_default();
        let messages: Vec<Message> = events
            .iter()
            .filter(|e| is_transition(e.reason))
            .enumerate()
            .map(|(sequence, e)| Message {
                sequence,
                namespace: namespace.clone(),
                name: cp.name_any(),
                reason: e.reason,
                text: e.message.clone(),
                at,
                status: status.clone(),
            })
            .collect();
        if sinks.is_empty() || messages.is_empty() {
            return;
        }
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            tracing::warn!(
                sinks = sinks.len(),
                messages = messages.len(),
                "notifications dropped: too many deliveries in flight"
            );
            for _ in 0..sinks.len() * messages.len() {
                self.metrics.notification("dropped");
            }
            return;
        };
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
        let (http, metrics, delivery) = (self.http.clone(), self.metrics.clone(), self.delivery);
        tokio::spawn(async move {
            let sends = sinks
                .iter()
                .map(|sink| send_to_sink(&secrets, &http, &metrics, delivery, sink, &messages));
            futures::future::join_all(sends).await;
            drop(permit);
        });
    }
}

async fn send_to_sink(
    secrets: &Api<Secret>,
    http: &reqwest::Client,
    metrics: &Metrics,
    delivery: Delivery,
    sink: &NotifySink,
    messages: &[Message],
) {
    let url = match webhook_url(secrets, &sink.secret_ref).await {
        Ok(url) => url,
        Err(reason) => {
            tracing::warn!(sink = %sink.name, secret = %sink.secret_ref, %reason, "cannot notify");
            for _ in messages {
                metrics.notification("failed");
            }
            return;
        }
    };
    for message in messages {
        match deliver(http, &url, message, sink.format, delivery).await {
            Ok(attempts) => {
                tracing::debug!(sink = %sink.name, reason = message.reason.as_str(), attempts, "notified");
                metrics.notification("delivered");
            }
            Err(e) => {
                tracing::warn!(sink = %sink.name, reason = message.reason.as_str(), error = %e, "notification not delivered");
                metrics.notification("failed");
            }
        }
    }
}

async fn webhook_url(secrets: &Api<Secret>, name: &str) -> Result<String, String> {
    let secret = secrets.get(name).await.map_err(|e| e.to_string())?;
    let bytes = secret
        .data
        .and_then(|mut d| d.remove(URL_KEY))
        .ok_or_else(|| format!("Secret {name} has no key {URL_KEY}"))?;
    String::from_utf8(bytes.0).map_err(|_| format!("Secret {name}: key {URL_KEY} is not UTF-8"))
}

/// POSTs `message` to `url` until a 2xx (returns the attempts it took), a refusal that a
/// retry cannot change (4xx other than 408 and 429), or the last attempt.
pub async fn deliver(
    http: &reqwest::Client,
    url: &str,
    message: &Message,
    format: NotifyFormat,
    delivery: Delivery,
) -> Result<u32, DeliveryError> {
    let (content_type, body) = message.render(format);
    let body = body.to_string();
    let mut last = String::new();
    let mut backoff = delivery.backoff;
    for attempt in 1..=delivery.attempts.max(1) {
        let sent = http
            .post(url)
            .timeout(delivery.timeout)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => return Ok(attempt),
            Ok(r) if r.status().is_client_error() && !matches!(r.status().as_u16(), 408 | 429) => {
                return Err(DeliveryError::Refused(r.status().as_u16()));
            }
            Ok(r) => last = format!("HTTP {}", r.status().as_u16()),
            // Without the URL: it carries the webhook's token.
            Err(e) => last = e.without_url().to_string(),
        }
        if attempt < delivery.attempts {
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2);
        }
    }
    Err(DeliveryError::GaveUp {
        attempts: delivery.attempts.max(1),
        last,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::post;
    use canary_core::{GateStatus, Phase};

    use super::*;

    fn message(reason: Reason) -> Message {
        let gate = |name: &str, state, value| GateStatus {
            name: name.into(),
            state,
            value,
            threshold: "<= 250".into(),
            samples: Some(500),
            since: DateTime::UNIX_EPOCH,
            message: None,
        };
        Message {
            namespace: "team-a".into(),
            name: "api".into(),
            reason,
            text: "step 2/4 at 25%: gate sli.p95LatencyMs failing: 312 (want <= 250)".into(),
            at: DateTime::UNIX_EPOCH,
            sequence: 0,
            status: CanaryPromotionStatus {
                phase: Phase::Progressing,
                weight: 25,
                step_label: "2/4".into(),
                observed_generation: Some(3),
                gates: vec![
                    gate("sli.p95LatencyMs", GateState::Failing, Some(312.0)),
                    gate("sli.availability", GateState::Passing, Some(0.999)),
                ],
                ..Default::default()
            },
        }
    }

    #[test]
    fn slack_messages_name_the_promotion_and_the_failing_gate() {
        let (content_type, body) = message(Reason::GateFailing).render(NotifyFormat::Slack);
        assert_eq!(content_type, "application/json");
        let text = body["text"].as_str().unwrap();
        assert!(text.starts_with("*GateFailing* team-a/api: step 2/4"), "{text}");
        let fields = body["attachments"][0]["fields"].as_array().unwrap();
        assert!(
            fields
                .iter()
                .any(|f| f["title"] == "sli.p95LatencyMs" && f["value"] == "312 (want <= 250) Failing")
        );
        // Passing gates are not what the message is about.
        assert!(!fields.iter().any(|f| f["title"] == "sli.availability"));
        assert_eq!(body["attachments"][0]["color"], "warning");
    }

    #[test]
    fn cloud_events_carry_the_required_attributes_and_every_gate() {
        let (content_type, body) = message(Reason::StepAdvanced).render(NotifyFormat::CloudEvents);
        assert_eq!(content_type, "application/cloudevents+json");
        assert_eq!(body["specversion"], "1.0");
        assert_eq!(body["type"], "dev.scholarship.canarypromotion.StepAdvanced");
        assert_eq!(
            body["source"],
            "/apis/scholarship.dev/v1alpha1/namespaces/team-a/canarypromotions/api"
        );
        assert_eq!(body["id"], "team-a/api/3/StepAdvanced/0.0");
        assert_eq!(body["time"], "1970-01-01T00:00:00.000Z");
        assert_eq!(body["data"]["weight"], 25);
        assert_eq!(body["data"]["gates"][0]["value"], 312.0);
        assert_eq!(body["data"]["gates"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn only_transitions_are_notified() {
        assert!(is_transition(Reason::Promoted) && is_transition(Reason::RollbackStarted));
        assert!(!is_transition(Reason::GateRecovered) && !is_transition(Reason::ActionAcknowledged));
    }

    /// A receiver answering with `statuses` in turn (the last one forever), after `delay`.
    async fn receiver(statuses: Vec<u16>, delay: Duration) -> (String, Arc<AtomicU32>, Arc<Mutex<Vec<String>>>) {
        let hits = Arc::new(AtomicU32::new(0));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let (h, b) = (hits.clone(), bodies.clone());
        let app = Router::new().route(
            "/hook/{token}",
            post(move |body: String| {
                let n = h.fetch_add(1, Ordering::SeqCst) as usize;
                b.lock().unwrap().push(body);
                let status = statuses[n.min(statuses.len() - 1)];
                async move {
                    tokio::time::sleep(delay).await;
                    StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/hook/s3cret-token"), hits, bodies)
    }

    fn quick() -> Delivery {
        Delivery {
            timeout: Duration::from_millis(300),
            attempts: 3,
            backoff: Duration::from_millis(20),
        }
    }

    /// A `Promoted` message to `url` as a Slack sink, with quick retries.
    async fn deliver_promoted(url: &str) -> Result<u32, DeliveryError> {
        deliver(
            &reqwest::Client::new(),
            url,
            &message(Reason::Promoted),
            NotifyFormat::Slack,
            quick(),
        )
        .await
    }

    #[tokio::test]
    async fn retries_server_errors_and_throttling_until_delivered() {
        let (url, hits, bodies) = receiver(vec![503, 429, 200], Duration::ZERO).await;
        let attempts = deliver_promoted(&url).await.unwrap();
        assert_eq!((attempts, hits.load(Ordering::SeqCst)), (3, 3));
        // Every attempt sends the same message.
        let bodies = bodies.lock().unwrap();
        assert!(bodies.iter().all(|b| b == &bodies[0]));
    }

    #[tokio::test]
    async fn a_refusal_is_not_retried() {
        let (url, hits, _) = receiver(vec![404], Duration::ZERO).await;
        let err = deliver_promoted(&url).await.unwrap_err();
        assert!(matches!(err, DeliveryError::Refused(404)), "{err}");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_slow_or_absent_receiver_gives_up_in_bounded_time_without_leaking_the_url() {
        let (slow, hits, _) = receiver(vec![200], Duration::from_secs(5)).await;
        let absent = format!("http://127.0.0.1:{}/hook/s3cret-token", testkit::free_port());
        for url in [slow, absent] {
            let started = std::time::Instant::now();
            let err = deliver_promoted(&url).await.unwrap_err();
            // 3 attempts of at most 300 ms plus 20 + 40 ms of backoff.
            assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
            assert!(matches!(err, DeliveryError::GaveUp { attempts: 3, .. }), "{err}");
            assert!(!err.to_string().contains("s3cret-token"), "{err}");
        }
        assert_eq!(hits.load(Ordering::SeqCst), 3);
    }
}
