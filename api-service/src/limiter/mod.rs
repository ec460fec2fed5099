//! The distributed rate limiter: one atomic Redis script per request, degrading open to a
//! per-instance limiter when Redis is slow or gone.
//!
//! Fixed windows keyed `rate:app:<endpoint>:<principal>`: the first request of a window
//! creates the counter with a TTL of one window, so Redis's own clock decides when a window
//! ends and every instance agrees on it.

pub mod client_ip;
pub mod local;
pub mod policy;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use redis::Script;

use crate::endpoint::Endpoint;
use crate::metrics::{CommandLabels, LimiterOp, Metrics};
use crate::redis_link::RedisLink;
use local::LocalLimiter;
pub use policy::{Policies, Policy};

/// INCR + PEXPIRE-on-create + PTTL in one atomic step. The optional second key is the JWT
/// replay marker (`SET NX PX`), so authenticated requests still cost one round trip.
const SCRIPT: &str = r"
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if count == 1 or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
local fresh = 1
if KEYS[2] then
  if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then fresh = 0 end
end
return {count, ttl, fresh}
";

/// The state of one principal's window after this request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    pub policy: Policy,
    pub remaining: u64,
    /// Until the window resets.
    pub reset: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed(Quota),
    Limited(Quota),
    /// Redis did not answer in time: decided by the local limiter, with no quota to report.
    Degraded {
        local_limit: Option<Duration>,
    },
}

/// A single-use token marker checked in the same round trip as the rate limit.
#[derive(Debug, Clone)]
pub struct ReplayMark {
    pub key: String,
    pub ttl: Duration,
}

/// What the Redis round trip said about the replay marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayCheck {
    /// First presentation; the marker is now set.
    Fresh,
    /// The marker was already there.
    Replayed,
    /// Redis did not answer; the caller decides (local cache or strict 503).
    Unknown,
}

pub struct Limiter {
    policies: Policies,
    redis: Arc<RedisLink>,
    breaker: Breaker,
    local: LocalLimiter,
    budget: Duration,
    script: Script,
    metrics: Arc<Metrics>,
}

impl Limiter {
    pub fn new(
        policies: Policies,
        redis: Arc<RedisLink>,
        budget: Duration,
        local_max_keys: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            policies,
            redis,
            breaker: Breaker::default(),
            local: LocalLimiter::new(local_max_keys),
            budget,
            script: Script::new(SCRIPT),
            metrics,
        }
    }

    pub fn redis_link(&self) -> &Arc<RedisLink> {
        &self.redis
    }

    /// Counts this request against `principal`'s window for `endpoint` (and checks the replay
    /// marker when given), in one Redis round trip.
    pub async fn check(
        &self,
        endpoint: Endpoint,
        principal: &str,
        replay: Option<&ReplayMark>,
    ) -> (Verdict, ReplayCheck) {
        let policy = self.policies.for_endpoint(endpoint);
        let key = format!("rate:app:{}:{principal}", policy.name);
        match self.ask_redis(&key, &policy, replay).await {
            Some((count, ttl_ms, fresh)) => {
                let quota = Quota {
                    remaining: policy.limit.saturating_sub(count),
                    reset: Duration::from_millis(ttl_ms),
                    policy,
                };
                let verdict = if count > quota.policy.limit {
                    Verdict::Limited(quota)
                } else {
                    Verdict::Allowed(quota)
                };
                let replay = if fresh {
                    ReplayCheck::Fresh
                } else {
                    ReplayCheck::Replayed
                };
                (verdict, replay)
            }
            None => {
                let local_limit = self.local.check(&key, &policy, Instant::now()).err();
                (Verdict::Degraded { local_limit }, ReplayCheck::Unknown)
            }
        }
    }

    async fn ask_redis(&self, key: &str, policy: &Policy, replay: Option<&ReplayMark>) -> Option<(u64, u64, bool)> {
        if !self.breaker.allows(Instant::now()) {
            return None;
        }
        let mut connection = self.redis.connection()?;
        let mut invocation = self.script.key(key);
        invocation.arg(millis(policy.window));
        if let Some(mark) = replay {
            invocation.key(&mark.key).arg(millis(mark.ttl));
        }
        let started = Instant::now();
        self.metrics.redis_commands_in_flight.inc();
        let answer =
            tokio::time::timeout(self.budget, invocation.invoke_async::<(u64, i64, u8)>(&mut connection)).await;
        self.metrics.redis_commands_in_flight.dec();
        self.metrics
            .redis_command_duration
            .get_or_create(&CommandLabels { command: "ratelimit" })
            .observe(started.elapsed().as_secs_f64());
        match answer {
            Ok(Ok((count, ttl, fresh))) => {
                self.breaker.succeeded();
                Some((count, u64::try_from(ttl).unwrap_or(0), fresh == 1 || replay.is_none()))
            }
            Ok(Err(e)) => {
                self.metrics.limiter_error(LimiterOp::eval);
                tracing::warn!(error = %e, "rate-limit script failed; degrading");
                self.redis.report_error(&e);
                self.breaker.failed(Instant::now());
                None
            }
            Err(_) => {
                self.metrics.limiter_error(LimiterOp::timeout);
                self.breaker.failed(Instant::now());
                None
            }
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// After a few consecutive failures, skip Redis for a short while instead of paying the
/// timeout on every request; then let requests try again.
#[derive(Default)]
struct Breaker {
    consecutive_failures: AtomicU32,
    open_until: Mutex<Option<Instant>>,
}

const BREAKER_THRESHOLD: u32 = 3;
const BREAKER_OPEN_FOR: Duration = Duration::from_millis(500);

impl Breaker {
    fn allows(&self, now: Instant) -> bool {
        match self.open_until.lock() {
            Ok(open) => open.is_none_or(|until| now >= until),
            Err(_) => true,
        }
    }

    fn succeeded(&self) {
        if self.consecutive_failures.swap(0, Ordering::Relaxed) > 0
            && let Ok(mut open) = self.open_until.lock()
        {
            *open = None;
        }
    }

    fn failed(&self, now: Instant) {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= BREAKER_THRESHOLD
            && let Ok(mut open) = self.open_until.lock()
        {
            *open = Some(now + BREAKER_OPEN_FOR);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_repeated_failures_and_half_opens_later() {
        let b = Breaker::default();
        let t0 = Instant::now();
        b.failed(t0);
        b.failed(t0);
        assert!(b.allows(t0));
        b.failed(t0);
        assert!(!b.allows(t0 + Duration::from_millis(100)));
        assert!(b.allows(t0 + BREAKER_OPEN_FOR));
        b.succeeded();
        assert!(b.allows(t0));
    }
}
