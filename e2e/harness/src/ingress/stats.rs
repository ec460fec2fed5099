//! What the ingress stand-in saw: requests per backend, in segments of constant weight.

use std::time::{Duration, Instant};

use super::weight::{Backend, CanaryWeight};

/// Requests one backend answered (or failed to).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendCounts {
    pub requests: u64,
    /// Upstream answers with a 5xx status.
    pub status_5xx: u64,
    /// Upstream unreachable or timed out (answered to the client as 502/504).
    pub transport_errors: u64,
}

impl BackendCounts {
    fn add(&mut self, other: &BackendCounts) {
        self.requests += other.requests;
        self.status_5xx += other.status_5xx;
        self.transport_errors += other.transport_errors;
    }
}

/// Requests split between stable and canary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficSplit {
    pub stable: BackendCounts,
    pub canary: BackendCounts,
}

impl TrafficSplit {
    pub fn requests(&self) -> u64 {
        self.stable.requests + self.canary.requests
    }

    /// Share of requests that went to the canary, 0.0–1.0 (0 when there were none).
    pub fn canary_share(&self) -> f64 {
        match self.requests() {
            0 => 0.0,
            n => self.canary.requests as f64 / n as f64,
        }
    }

    /// 5xx answers plus transport failures, on either side.
    pub fn failures(&self) -> u64 {
        self.stable.status_5xx + self.stable.transport_errors + self.canary.status_5xx + self.canary.transport_errors
    }

    fn side(&mut self, backend: Backend) -> &mut BackendCounts {
        match backend {
            Backend::Stable => &mut self.stable,
            Backend::Canary => &mut self.canary,
        }
    }
}

/// A stretch of time during which the canary Ingress carried one weight.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub weight: CanaryWeight,
    /// When the stand-in first saw this weight, from its start.
    pub since: Duration,
    pub split: TrafficSplit,
}

/// How a proxied request ended, for counting.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Status(u16),
    TransportError,
}

/// The weight currently applied and the history of segments.
#[derive(Debug)]
pub struct RoutingState {
    started: Instant,
    segments: Vec<Segment>,
}

impl RoutingState {
    pub fn new(initial: CanaryWeight) -> Self {
        Self {
            started: Instant::now(),
            segments: vec![Segment {
                weight: initial,
                since: Duration::ZERO,
                split: TrafficSplit::default(),
            }],
        }
    }

    pub fn current(&self) -> CanaryWeight {
        self.segments.last().map_or(CanaryWeight::NONE, |s| s.weight)
    }

    /// Starts a new segment when the weight changed; returns whether it did.
    pub fn set_weight(&mut self, weight: CanaryWeight) -> bool {
        if self.current() == weight {
            return false;
        }
        self.segments.push(Segment {
            weight,
            since: self.started.elapsed(),
            split: TrafficSplit::default(),
        });
        true
    }

    /// Picks the backend for one request under the current weight and counts it there.
    /// Returns the segment it was counted in, so its outcome lands in the same segment even
    /// when the weight changes while it is in flight.
    pub fn route(&mut self) -> (Backend, usize) {
        let weight = self.current();
        let backend = weight.pick();
        let index = self.segments.len().saturating_sub(1);
        if let Some(segment) = self.segments.get_mut(index) {
            segment.split.side(backend).requests += 1;
        }
        (backend, index)
    }

    /// Counts how a routed request ended.
    pub fn finish(&mut self, segment: usize, backend: Backend, outcome: Outcome) {
        if let Some(segment) = self.segments.get_mut(segment) {
            let side = segment.split.side(backend);
            match outcome {
                Outcome::Status(code) if code >= 500 => side.status_5xx += 1,
                Outcome::Status(_) => {}
                Outcome::TransportError => side.transport_errors += 1,
            }
        }
    }

    pub fn segments(&self) -> Vec<Segment> {
        self.segments.clone()
    }

    pub fn totals(&self) -> TrafficSplit {
        let mut totals = TrafficSplit::default();
        for segment in &self.segments {
            totals.stable.add(&segment.split.stable);
            totals.canary.add(&segment.split.canary);
        }
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_weight_change_opens_a_segment_and_outcomes_stay_in_theirs() {
        let mut state = RoutingState::new(CanaryWeight::NONE);
        let (backend, first) = state.route();
        assert_eq!(backend, Backend::Stable);
        assert!(!state.set_weight(CanaryWeight::NONE));
        assert!(state.set_weight(CanaryWeight {
            weight: 100,
            total: 100
        }));
        // The first request finishes after the change: still counted in segment 0.
        state.finish(first, backend, Outcome::TransportError);
        let (backend, second) = state.route();
        assert_eq!(backend, Backend::Canary);
        state.finish(second, backend, Outcome::Status(503));
        let segments = state.segments();
        assert_eq!(segments.len(), 2);
        assert_eq!(segments[0].split.stable.transport_errors, 1);
        assert_eq!(segments[1].split.canary.status_5xx, 1);
        assert_eq!(state.totals().requests(), 2);
        assert_eq!(state.totals().failures(), 2);
        assert!((segments[1].split.canary_share() - 1.0).abs() < f64::EPSILON);
    }
}
