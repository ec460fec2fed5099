//! `decide(spec, status, observation, now) -> Decision`: the whole promotion policy as a
//! pure function. No I/O and no clock: time comes in as `now`, and everything carried from
//! one call to the next lives in the status it returns, so a restarted operator (which
//! reads the status back) decides exactly the same.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::action::Action;
use crate::conditions::{self, Condition, ConditionStatus, PROGRESSING, PROMOTED, READY, ROLLED_BACK};
use crate::drill;
use crate::duration::format_duration;
use crate::gates::{self, Verdict};
use crate::observation::{Observation, Reading};
use crate::plan::{GateSource, Plan, SpecError};
use crate::spec::{PromotionSpec, PromotionStrategy};
use crate::status::{CanaryPromotionStatus, GateState, GateStatus, Phase};
use crate::windows;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// Kubernetes Event reasons (a closed set, so they are safe as metric labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Started,
    StepAdvanced,
    GateFailing,
    GateRecovered,
    AwaitingApproval,
    RollbackStarted,
    RolledBack,
    Promoting,
    Promoted,
    Paused,
    Resumed,
    Aborted,
    ActionAcknowledged,
    ActionIgnored,
    SpecChanged,
    ProgressDeadlineExceeded,
    InvalidSpec,
    /// The computed time to rollback exceeds `spec.rollbackWithin`.
    RollbackBoundExceeded,
    /// A rollback criterion held for its window on the stable track after the promotion.
    PostPromotionBreach,
    /// The post-promotion watch ended without a breach that rolled back.
    WatchCompleted,
    /// A step's Redis failover drill was made, passed or failed.
    FailoverDrill,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Started => "Started",
            Reason::StepAdvanced => "StepAdvanced",
            Reason::GateFailing => "GateFailing",
            Reason::GateRecovered => "GateRecovered",
            Reason::AwaitingApproval => "AwaitingApproval",
            Reason::RollbackStarted => "RollbackStarted",
            Reason::RolledBack => "RolledBack",
            Reason::Promoting => "Promoting",
            Reason::Promoted => "Promoted",
            Reason::Paused => "Paused",
            Reason::Resumed => "Resumed",
            Reason::Aborted => "Aborted",
            Reason::ActionAcknowledged => "ActionAcknowledged",
            Reason::ActionIgnored => "ActionIgnored",
            Reason::SpecChanged => "SpecChanged",
            Reason::ProgressDeadlineExceeded => "ProgressDeadlineExceeded",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::RollbackBoundExceeded => "RollbackBoundExceeded",
            Reason::PostPromotionBreach => "PostPromotionBreach",
            Reason::WatchCompleted => "WatchCompleted",
            Reason::FailoverDrill => "FailoverDrill",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub type_: EventType,
    pub reason: Reason,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The complete new status, to be written with server-side apply.
    pub status: CanaryPromotionStatus,
    /// Canary traffic percentage the router must carry (same as `status.weight`).
    pub weight: u32,
    /// Set the stable Deployment's image to this (promotion with `strategy: patch`).
    pub patch_stable_image: Option<String>,
    pub events: Vec<Event>,
    /// Conditions whose status, reason or message changed.
    pub condition_changes: Vec<Condition>,
    /// When to look again; `None` in terminal phases (only a change to the object matters).
    pub requeue_after: Option<Duration>,
}

/// Condition reason of a rollback by the post-promotion watch, and the condition type a
/// report-only watch sets on a breach.
pub const POST_PROMOTION_BREACH: &str = "PostPromotionBreach";

/// Decides the next step of one promotion. See the crate docs for the policy.
pub fn decide(spec: &PromotionSpec, status: &CanaryPromotionStatus, obs: &Observation, now: DateTime<Utc>) -> Decision {
    decide_plan(Plan::compile(spec).as_ref(), status, obs, now)
}

/// [`decide`] on a spec the caller compiled already (the shell compiles it once per round,
/// for what it reads as much as for what is decided).
pub fn decide_plan(
    plan: Result<&Plan, &SpecError>,
    status: &CanaryPromotionStatus,
    obs: &Observation,
    now: DateTime<Utc>,
) -> Decision {
    let mut t = Tick {
        st: status.clone(),
        obs,
        now,
        events: Vec::new(),
        patch: None,
        rollback_reason: None,
        reported_conditions: Vec::new(),
    };
    let plan = match plan {
        Ok(plan) => plan,
        Err(e) => return t.invalid_spec(e),
    };
    t.run(plan);
    t.finish(plan)
}

/// Working state of one `decide` call.
struct Tick<'a> {
    st: CanaryPromotionStatus,
    obs: &'a Observation,
    now: DateTime<Utc>,
    events: Vec<Event>,
    patch: Option<String>,
    /// Condition reason for a rollback that happened in this tick.
    rollback_reason: Option<&'static str>,
    /// Conditions outside the phase-derived four that changed this tick.
    reported_conditions: Vec<Condition>,
}

impl Tick<'_> {
    fn event(&mut self, type_: EventType, reason: Reason, message: String) {
        self.events.push(Event { type_, reason, message });
    }

    fn elapsed_since(&self, t: Option<DateTime<Utc>>) -> TimeDelta {
        // Clock skew (now before a recorded timestamp) yields a negative span, which never
        // satisfies a bake, window or deadline: the safe direction.
        t.map_or(TimeDelta::zero(), |t| self.now.signed_duration_since(t))
    }

    fn run(&mut self, plan: &Plan) {
        let image = plan.canary_image.as_ref().or(self.obs.canary_image.as_ref());
        let new_generation = self.st.observed_generation != Some(self.obs.generation);
        // A rolled-back canary is judged bad: only a new generation starts it again, not
        // merely a new image appearing on the canary Deployment.
        let new_image = image != self.st.observed_canary_image.as_ref() && self.st.phase != Phase::RolledBack;
        // A spec edit during the watch (a notify sink, a longer watch) is not a new release:
        // the same image stays promoted and watched.
        if new_generation && !new_image && self.st.phase == Phase::Watching {
            self.st.observed_generation = Some(self.obs.generation);
            self.event(
                EventType::Normal,
                Reason::SpecChanged,
                format!(
                    "generation {}: same canary image, the post-promotion watch goes on",
                    self.obs.generation
                ),
            );
            self.watch(plan, image);
            return;
        }
        // A pause, a resume or a webhook edited is a new generation of the same release: it
        // carries on where it was (the pause itself is judged in `progress`).
        let same_release = self.obs.release.is_some() && self.obs.release == self.st.observed_release;
        if new_generation && !new_image && same_release {
            self.st.observed_generation = Some(self.obs.generation);
            self.event(
                EventType::Normal,
                Reason::SpecChanged,
                format!(
                    "generation {}: same release (paused or notify changed), carrying on",
                    self.obs.generation
                ),
            );
        } else if new_generation || new_image {
            if self.st.observed_generation.is_some() {
                let message = format!(
                    "generation {}, canary image {}: starting again from step 1",
                    self.obs.generation,
                    image.map_or("<none>", String::as_str)
                );
                self.event(EventType::Normal, Reason::SpecChanged, message);
            }
            self.start(plan, image.cloned());
            self.apply_action(plan, image);
            return;
        }
        if self.apply_action(plan, image) {
            return;
        }
        match self.st.phase {
            Phase::Progressing | Phase::Paused => self.progress(plan, image),
            Phase::Promoting => self.promote(plan, image),
            Phase::Watching => self.watch(plan, image),
            Phase::RollingBack => {
                if self.obs.router_weight == Some(0) {
                    self.st.phase = Phase::RolledBack;
                    let message = format!("traffic back on stable: {}", self.st.message);
                    self.event(EventType::Warning, Reason::RolledBack, message);
                }
            }
            Phase::Pending | Phase::Promoted | Phase::RolledBack | Phase::Failed => {}
        }
    }

    /// After the promotion: the rollback criteria, now read on the stable track, until
    /// `watchUntil`.
    fn watch(&mut self, plan: &Plan, image: Option<&String>) {
        let Some(post) = plan.post_promotion else {
            self.end_watch("spec.postPromotion was removed: the watch ended".into());
            return;
        };
        let image = image.map_or("the canary image", String::as_str).to_owned();
        let until = self.st.watch_until.unwrap_or(self.now);
        if self.now >= until {
            self.end_watch(format!(
                "promoted {image}; the post-promotion watch ended {}",
                until.to_rfc3339()
            ));
            return;
        }
        // Someone else changed the stable image (a hotfix, a manual rollback): what runs is no
        // longer what was promoted, so there is nothing left to watch or to roll back.
        if let (Some(running), Some(promoted)) = (
            self.obs.stable.image.as_deref(),
            self.st.observed_canary_image.as_deref(),
        ) && running != promoted
        {
            self.end_watch(format!(
                "the stable Deployment runs {running}, not the promoted {image}: the watch ended"
            ));
            return;
        }
        if let Some(reason) = self.judge_rollback(plan) {
            let previous = self.st.previous_stable_image.clone().filter(|p| *p != image);
            if let (true, Some(previous)) = (post.rollback, &previous) {
                self.patch = Some(previous.clone());
                self.st.phase = Phase::RolledBack;
                self.rollback_reason = Some(POST_PROMOTION_BREACH);
                self.st.message = format!("post-promotion rollback: {reason}; stable set back to {previous}");
                let message = self.st.message.clone();
                self.event(EventType::Warning, Reason::PostPromotionBreach, message.clone());
                self.event(EventType::Warning, Reason::RolledBack, message);
                return;
            }
            let why = if post.rollback {
                "no earlier stable image was recorded to go back to"
            } else {
                "reported only: postPromotion.rollback is false"
            };
            let message = format!("post-promotion: {reason} on the stable track running {image} ({why})");
            self.set_breach_condition(ConditionStatus::True, "RollbackCriterion", &message);
            self.event(EventType::Warning, Reason::PostPromotionBreach, message);
            // Reported once per window while the breach lasts, not once per interval: only the
            // criteria whose window is complete start a new one.
            for (status, criterion) in self.st.rollback.iter_mut().zip(&plan.criteria) {
                if status
                    .breach_since
                    .is_some_and(|since| self.now.signed_duration_since(since) >= criterion.window)
                {
                    status.breach_since = None;
                }
            }
        } else if self.st.rollback.iter().all(|c| c.breach_since.is_none()) {
            self.set_breach_condition(ConditionStatus::False, "NoBreach", "no rollback criterion is breached");
        }
        let left = until.signed_duration_since(self.now);
        self.st.message = format!(
            "promoted {image}; watching the stable track, {} left",
            format_duration(TimeDelta::seconds(left.num_seconds()))
        );
    }

    /// The watch is over: Promoted, for good.
    fn end_watch(&mut self, message: String) {
        self.st.phase = Phase::Promoted;
        self.set_breach_condition(ConditionStatus::False, "WatchCompleted", &message);
        self.st.message = message.clone();
        self.event(EventType::Normal, Reason::WatchCompleted, message);
    }

    /// Updates the `PostPromotionBreach` condition, which only a report-only watch that saw a
    /// breach creates (it is not added to every promotion as False).
    fn set_breach_condition(&mut self, status: ConditionStatus, reason: &str, message: &str) {
        let exists = self.st.conditions.iter().any(|c| c.type_ == POST_PROMOTION_BREACH);
        if status == ConditionStatus::False && !exists {
            return;
        }
        let generation = self.st.observed_generation.unwrap_or(self.obs.generation);
        if let Some(changed) = conditions::set_condition(
            &mut self.st.conditions,
            POST_PROMOTION_BREACH,
            status,
            reason,
            message,
            generation,
            self.now,
        ) {
            self.reported_conditions.push(changed);
        }
    }

    /// (Re)starts the promotion at step 1. The weight changes in this tick, so gates are
    /// judged from the next one: readings taken now describe the old weight.
    fn start(&mut self, plan: &Plan, image: Option<String>) {
        let st = &mut self.st;
        st.observed_generation = Some(self.obs.generation);
        st.observed_canary_image = image.clone();
        st.observed_release = self.obs.release.clone();
        st.gates_passing_since = None;
        st.paused_at = None;
        st.promotion_started_at = None;
        st.previous_stable_image = None;
        st.watch_until = None;
        // A breach reported for an earlier run says nothing about this one.
        st.conditions.retain(|c| c.type_ != POST_PROMOTION_BREACH);
        st.approved_step = None;
        st.drill = None;
        st.gates.clear();
        st.rollback.clear();
        st.failing_gate = None;
        match image {
            None => {
                st.phase = Phase::Pending;
                st.current_step = 0;
                st.step_started_at = None;
                st.message = "waiting for a canary image (spec.canary.image or the canary Deployment)".into();
            }
            Some(img) if self.obs.stable.image.as_deref() == Some(img.as_str()) && self.obs.stable.available => {
                st.phase = Phase::Promoted;
                st.current_step = count(plan);
                st.step_started_at = None;
                st.message = format!("stable already runs {img}: nothing to promote");
            }
            Some(img) => {
                st.phase = Phase::Progressing;
                st.current_step = 1;
                st.step_started_at = Some(self.now);
                let step = &plan.steps[0];
                st.message = format!(
                    "step 1/{}: canary {img} at {}%, bake {}",
                    plan.steps.len(),
                    step.weight,
                    format_duration(step.bake)
                );
                let message = st.message.clone();
                self.event(EventType::Normal, Reason::Started, message);
            }
        }
    }

    /// Applies a new one-off action; returns true when it settled this tick.
    fn apply_action(&mut self, plan: &Plan, image: Option<&String>) -> bool {
        let Some(raw) = self.obs.action.as_deref() else {
            return false;
        };
        if self.st.last_applied_action.as_deref() == Some(raw) {
            return false;
        }
        self.st.last_applied_action = Some(raw.to_owned());
        let phase = self.st.phase;
        let running = matches!(phase, Phase::Progressing | Phase::Paused);
        let applied = match Action::parse(raw) {
            None => {
                let message =
                    format!("unknown action {raw:?}: expected abort, promote-full, retry or resume (optionally @<id>)");
                self.event(EventType::Warning, Reason::ActionIgnored, message);
                return false;
            }
            Some(Action::Abort) if running || phase == Phase::Pending => {
                self.rollback("aborted by user (scholarship.dev/action)".into(), "Aborted");
                self.event(
                    EventType::Warning,
                    Reason::Aborted,
                    "aborted by user: canary weight 0".into(),
                );
                true
            }
            Some(Action::PromoteFull) if running => {
                self.begin_promotion(plan, "promote-full requested: skipping remaining steps and gates");
                self.promote(plan, image);
                true
            }
            Some(Action::Retry) if phase == Phase::Failed => {
                self.start(plan, image.cloned());
                true
            }
            Some(Action::Resume) if running && self.st.current_step > 0 => {
                // Approves the current step; it advances once its bake and gates allow.
                self.st.approved_step = Some(self.st.current_step);
                false
            }
            Some(_) => {
                let message = format!("action {raw:?} does not apply in phase {phase:?}");
                self.event(EventType::Warning, Reason::ActionIgnored, message);
                return false;
            }
        };
        self.event(
            EventType::Normal,
            Reason::ActionAcknowledged,
            format!("applied action {raw:?}"),
        );
        applied
    }

    fn progress(&mut self, plan: &Plan, image: Option<&String>) {
        // Rollback criteria come first and are judged even while paused: a standing pause
        // must not keep a breaching canary in front of users.
        let trigger = self.judge_rollback(plan);
        let drill = self.drill(plan);
        let verdict = self.judge_gates(plan, drill);
        if let Some(reason) = trigger {
            self.rollback(format!("rollback: {reason}"), "RollbackCriterion");
            return;
        }
        if plan.paused {
            if self.st.paused_at.is_none() {
                self.st.paused_at = Some(self.now);
                self.event(
                    EventType::Normal,
                    Reason::Paused,
                    format!("paused by spec.paused at {}%", self.st.weight),
                );
            }
            self.st.phase = Phase::Paused;
            self.st.gates_passing_since = None;
            self.st.message = format!(
                "paused by spec.paused at step {}; the bake restarts on resume",
                self.step_label(plan)
            );
            return;
        }
        if self.st.paused_at.take().is_some() {
            self.st.step_started_at = Some(self.now);
            self.st.gates_passing_since = None;
            self.event(
                EventType::Normal,
                Reason::Resumed,
                format!("resumed: step {} bake restarts", self.step_label(plan)),
            );
        }
        match verdict {
            Verdict::Fail => self.st.gates_passing_since = None,
            Verdict::Hold => {}
            Verdict::Pass => {
                if self.st.gates_passing_since.is_none() {
                    self.st.gates_passing_since = Some(self.now);
                }
            }
        }

        let index = (self.st.current_step.max(1) as usize - 1).min(plan.steps.len() - 1);
        let step = &plan.steps[index];
        let in_step = self.elapsed_since(self.st.step_started_at);
        let green_for = self.elapsed_since(self.st.gates_passing_since);
        let baked = verdict != Verdict::Hold
            && self.st.gates_passing_since.is_some()
            && green_for >= step.bake
            && in_step >= step.bake;
        let approved = !step.require_approval || self.st.approved_step == Some(self.st.current_step);

        if baked && approved {
            if index + 1 < plan.steps.len() {
                let next = &plan.steps[index + 1];
                self.st.current_step += 1;
                self.st.step_started_at = Some(self.now);
                self.st.gates_passing_since = None;
                self.st.phase = Phase::Progressing;
                self.st.message = format!(
                    "step {}: canary at {}%, bake {}",
                    self.step_label(plan),
                    next.weight,
                    format_duration(next.bake)
                );
                let message = self.st.message.clone();
                self.event(EventType::Normal, Reason::StepAdvanced, message);
            } else {
                self.begin_promotion(plan, "all steps passed their gates");
                self.promote(plan, image);
            }
            return;
        }
        if baked {
            if self.st.phase != Phase::Paused {
                self.event(
                    EventType::Normal,
                    Reason::AwaitingApproval,
                    format!("step {} baked; waiting for approval", self.step_label(plan)),
                );
            }
            self.st.phase = Phase::Paused;
            self.st.message = format!(
                "step {} baked; approve with annotation scholarship.dev/action=resume",
                self.step_label(plan)
            );
            return;
        }
        self.st.phase = Phase::Progressing;
        if let Some(deadline) = plan.progress_deadline
            && in_step > step.bake + deadline
        {
            self.fail(format!(
                "step {} did not pass its gates within bake {} + progressDeadline {}",
                self.step_label(plan),
                format_duration(step.bake),
                format_duration(deadline)
            ));
            return;
        }
        self.st.message = match (&self.st.failing_gate, verdict) {
            (Some(gate), Verdict::Fail | Verdict::Hold) => {
                let detail = self.gate_detail(gate);
                let effect = if verdict == Verdict::Fail {
                    "the bake restarts when all gates pass"
                } else {
                    "holding"
                };
                format!(
                    "step {} at {}%: gate {detail}; {effect}",
                    self.step_label(plan),
                    step.weight
                )
            }
            _ => {
                let left = (step.bake - green_for.min(in_step)).max(TimeDelta::zero());
                format!(
                    "step {} at {}%: baking, {} of {} left",
                    self.step_label(plan),
                    step.weight,
                    format_duration(left),
                    format_duration(step.bake)
                )
            }
        };
    }

    fn gate_detail(&self, name: &str) -> String {
        match self.st.gates.iter().find(|g| g.name == name) {
            Some(GateStatus {
                state: GateState::Failing,
                value: Some(v),
                threshold,
                ..
            }) => format!("{name} failing: {v} (want {threshold})"),
            Some(GateStatus {
                state: GateState::Error,
                message: Some(m),
                ..
            }) => format!("{name} error: {m}"),
            Some(g) => format!("{name} {:?}", g.state),
            None => name.to_owned(),
        }
    }

    /// Updates every rollback window; returns the reason of the first criterion (in spec
    /// order) whose breach has held for its whole window.
    fn judge_rollback(&mut self, plan: &Plan) -> Option<String> {
        let mut trigger = None;
        let mut statuses = Vec::with_capacity(plan.criteria.len());
        for criterion in &plan.criteria {
            let previous = self.st.rollback.iter().find(|p| p.metric == criterion.metric);
            let reading = self.obs.criteria.get(&criterion.metric);
            let outcome = windows::evaluate(criterion, reading, previous, self.now);
            if trigger.is_none() {
                trigger = outcome.trigger;
            }
            statuses.push(outcome.status);
        }
        self.st.rollback = statuses;
        trigger
    }

    /// The current step's failover drill, advanced: the drill gate's reading and the note
    /// shown while it has none. `None` on a step without a drill.
    fn drill(&mut self, plan: &Plan) -> Option<(Reading, Option<String>)> {
        let step = self.st.current_step;
        let window = plan.drill_at(step)?;
        let tick = drill::tick(plan, window, step, self.st.drill.as_ref(), self.obs, self.now);
        if tick.status.is_some() {
            self.st.drill = tick.status;
        }
        if let Some((warning, message)) = tick.event {
            let type_ = if warning { EventType::Warning } else { EventType::Normal };
            self.event(type_, Reason::FailoverDrill, message);
        }
        Some((tick.reading, tick.note))
    }

    /// Judges every gate of the current step (with the drill's reading, on a drill step),
    /// records them in status and returns the combined verdict.
    fn judge_gates(&mut self, plan: &Plan, drill: Option<(Reading, Option<String>)>) -> Verdict {
        let mut combined = Verdict::Pass;
        let mut statuses = Vec::with_capacity(plan.gates.len());
        let mut passing = 0;
        // A gate that breaks the bake is more useful to show than one merely lacking data.
        let mut first_failing: Option<String> = None;
        let mut first_other: Option<String> = None;
        let step = self.st.current_step;
        for gate in plan.gates_at(step) {
            let previous = self.st.gates.iter().find(|g| g.name == gate.name);
            let previous_state = previous.map(|g| g.state);
            let (reading, note) = match (&gate.source, &drill) {
                (GateSource::FailoverDrill, Some((reading, note))) => (Some(reading), note.clone()),
                _ => (self.obs.gates.get(&gate.name), None),
            };
            let mut judgement = gates::judge(gate, reading, previous, self.now);
            if judgement.status.message.is_none() {
                judgement.status.message = note;
            }
            let state = judgement.status.state;
            match judgement.verdict {
                Verdict::Fail => combined = Verdict::Fail,
                Verdict::Hold if combined == Verdict::Pass => combined = Verdict::Hold,
                _ => {}
            }
            if state == GateState::Passing {
                passing += 1;
            } else if judgement.verdict == Verdict::Fail {
                first_failing.get_or_insert_with(|| gate.name.clone());
            } else {
                first_other.get_or_insert_with(|| gate.name.clone());
            }
            let bad = matches!(state, GateState::Failing | GateState::Error);
            let was_bad = matches!(previous_state, Some(GateState::Failing | GateState::Error));
            if bad && previous_state != Some(state) {
                let message = match (&judgement.status.value, &judgement.status.message) {
                    (Some(v), _) => format!(
                        "gate {} {:?}: {v} (want {})",
                        gate.name, state, judgement.status.threshold
                    ),
                    (None, Some(m)) => format!("gate {} {:?}: {m}", gate.name, state),
                    (None, None) => format!("gate {} {:?}", gate.name, state),
                };
                self.events.push(Event {
                    type_: EventType::Warning,
                    reason: Reason::GateFailing,
                    message,
                });
            } else if state == GateState::Passing && was_bad {
                self.events.push(Event {
                    type_: EventType::Normal,
                    reason: Reason::GateRecovered,
                    message: format!("gate {} passing again", gate.name),
                });
            }
            statuses.push(judgement.status);
        }
        self.st.gates_summary = format!("{passing}/{}", statuses.len());
        self.st.failing_gate = first_failing.or(first_other);
        self.st.gates = statuses;
        combined
    }

    fn begin_promotion(&mut self, plan: &Plan, why: &str) {
        // What a post-promotion rollback goes back to: the stable image before this release.
        // Not the canary's (a retried promotion may find it already set), and never erased.
        if let Some(stable) = &self.obs.stable.image
            && self.st.observed_canary_image.as_ref() != Some(stable)
        {
            self.st.previous_stable_image = Some(stable.clone());
        }
        self.st.phase = Phase::Promoting;
        self.st.current_step = count(plan);
        self.st.promotion_started_at = Some(self.now);
        self.st.paused_at = None;
        self.event(EventType::Normal, Reason::Promoting, format!("promoting: {why}"));
    }

    fn promote(&mut self, plan: &Plan, image: Option<&String>) {
        let Some(image) = image else {
            self.st.message = "promoting: waiting for a canary image".into();
            return;
        };
        let stable = &self.obs.stable;
        let stable_has_image = stable.image.as_deref() == Some(image.as_str());
        if stable_has_image && stable.available {
            self.st.phase = Phase::Promoted;
            self.st.message = format!("promoted {image}: stable runs it, canary weight 0");
            let message = self.st.message.clone();
            self.event(EventType::Normal, Reason::Promoted, message);
            if let Some(post) = plan.post_promotion {
                let until = self.now + post.watch;
                self.st.phase = Phase::Watching;
                self.st.watch_until = Some(until);
                // The canary's breaches say nothing about the stable track.
                self.st.rollback.clear();
                self.st.message = format!(
                    "promoted {image}; watching the stable track for {}",
                    format_duration(post.watch)
                );
            }
            return;
        }
        if let Some(deadline) = plan.progress_deadline
            && self.elapsed_since(self.st.promotion_started_at) > deadline
        {
            self.fail(format!(
                "promotion of {image} did not complete within progressDeadline {}",
                format_duration(deadline)
            ));
            return;
        }
        self.st.message = match plan.strategy {
            PromotionStrategy::Patch if !stable_has_image => {
                self.patch = Some(image.clone());
                format!("promoting: setting the stable image to {image}")
            }
            PromotionStrategy::Patch => {
                format!("promoting: waiting for the stable Deployment to be available with {image}")
            }
            PromotionStrategy::External => {
                format!("promoting: waiting for the stable Deployment to run {image} (promotion.strategy=external)")
            }
        };
    }

    fn rollback(&mut self, message: String, reason: &'static str) {
        self.st.phase = if self.obs.router_weight == Some(0) {
            Phase::RolledBack
        } else {
            Phase::RollingBack
        };
        self.st.gates_passing_since = None;
        self.st.paused_at = None;
        self.rollback_reason = Some(reason);
        self.event(EventType::Warning, Reason::RollbackStarted, message.clone());
        if self.st.phase == Phase::RolledBack {
            self.event(EventType::Warning, Reason::RolledBack, message.clone());
        }
        self.st.message = message;
    }

    fn fail(&mut self, message: String) {
        self.st.phase = Phase::Failed;
        self.st.gates_passing_since = None;
        self.event(
            EventType::Warning,
            Reason::ProgressDeadlineExceeded,
            format!("{message}; traffic back on stable, annotate scholarship.dev/action=retry to try again"),
        );
        self.st.message = message;
    }

    fn invalid_spec(mut self, error: &SpecError) -> Decision {
        let message = format!("invalid spec: {error}");
        if self.st.message != message || self.st.phase != Phase::Failed {
            self.event(EventType::Warning, Reason::InvalidSpec, message.clone());
        }
        self.st.phase = Phase::Failed;
        self.st.observed_generation = Some(self.obs.generation);
        self.st.message = message;
        self.st.weight = 0;
        let condition_changes = self.update_conditions();
        Decision {
            status: self.st,
            weight: 0,
            patch_stable_image: None,
            events: self.events,
            condition_changes,
            requeue_after: None,
        }
    }

    fn step_label(&self, plan: &Plan) -> String {
        format!("{}/{}", self.st.current_step, plan.steps.len())
    }

    /// Records the time-to-rollback bound; a Warning when it breaks `spec.rollbackWithin`
    /// (the API server checked `for` + interval, but cannot know the metric window).
    fn judge_rollback_bound(&mut self, plan: &Plan) {
        let bound = plan.rollback_bound(self.obs.metric_window);
        let label = bound.map(format_duration);
        if label == self.st.rollback_bound {
            return;
        }
        self.st.rollback_bound = label;
        if let (Some(bound), Some(within)) = (bound, plan.rollback_within)
            && bound > within
        {
            let message = format!(
                "time to rollback can reach {} (slowest rollback[].for + interval {} + metric window {}), beyond spec.rollbackWithin {}",
                format_duration(bound),
                format_duration(plan.interval),
                format_duration(self.obs.metric_window),
                format_duration(within)
            );
            self.event(EventType::Warning, Reason::RollbackBoundExceeded, message);
        }
    }

    fn finish(mut self, plan: &Plan) -> Decision {
        self.judge_rollback_bound(plan);
        let st = &mut self.st;
        st.weight = match st.phase {
            Phase::Progressing | Phase::Paused => {
                let index = (st.current_step.max(1) as usize - 1).min(plan.steps.len() - 1);
                plan.steps[index].weight
            }
            Phase::Promoting => plan.last_weight(),
            Phase::Pending
            | Phase::Promoted
            | Phase::Watching
            | Phase::RollingBack
            | Phase::RolledBack
            | Phase::Failed => 0,
        };
        st.step_label = format!("{}/{}", st.current_step, plan.steps.len());
        if st.gates_summary.is_empty() {
            st.gates_summary = format!("0/{}", plan.gates_at(st.current_step).count());
        }
        let requeue_after = if st.phase.is_terminal() {
            None
        } else {
            plan.interval.to_std().ok()
        };
        let weight = st.weight;
        let mut condition_changes = self.update_conditions();
        condition_changes.append(&mut self.reported_conditions);
        Decision {
            status: self.st,
            weight,
            patch_stable_image: self.patch,
            events: self.events,
            condition_changes,
            requeue_after,
        }
    }

    fn update_conditions(&mut self) -> Vec<Condition> {
        use ConditionStatus::{False, True};
        let phase = self.st.phase;
        let phase_reason = phase_reason(phase);
        let rolled_back_reason = self.rollback_reason.unwrap_or_else(|| {
            // Keep the reason recorded when the rollback started (e.g. Aborted).
            match self.st.conditions.iter().find(|c| c.type_ == ROLLED_BACK) {
                Some(c) if c.status == True && c.reason == "Aborted" => "Aborted",
                Some(c) if c.status == True && c.reason == POST_PROMOTION_BREACH => POST_PROMOTION_BREACH,
                _ => "RollbackCriterion",
            }
        });
        let promoted = matches!(phase, Phase::Promoted | Phase::Watching);
        let message = self.st.message.clone();
        let generation = self.st.observed_generation.unwrap_or(self.obs.generation);
        let desired: [(&str, ConditionStatus, &str); 4] = [
            (READY, if promoted { True } else { False }, phase_reason),
            (
                PROGRESSING,
                if matches!(phase, Phase::Progressing | Phase::Promoting | Phase::RollingBack) {
                    True
                } else {
                    False
                },
                phase_reason,
            ),
            (PROMOTED, if promoted { True } else { False }, phase_reason),
            match phase {
                Phase::RollingBack | Phase::RolledBack => (ROLLED_BACK, True, rolled_back_reason),
                _ => (ROLLED_BACK, False, phase_reason),
            },
        ];
        let mut changes = Vec::new();
        for (type_, status, reason) in desired {
            if let Some(c) = conditions::set_condition(
                &mut self.st.conditions,
                type_,
                status,
                reason,
                &message,
                generation,
                self.now,
            ) {
                changes.push(c);
            }
        }
        changes
    }
}

fn count(plan: &Plan) -> u32 {
    u32::try_from(plan.steps.len()).unwrap_or(u32::MAX)
}

fn phase_reason(phase: Phase) -> &'static str {
    match phase {
        Phase::Pending => "Pending",
        Phase::Progressing => "Progressing",
        Phase::Paused => "Paused",
        Phase::Promoting => "Promoting",
        Phase::Promoted => "Promoted",
        Phase::Watching => "Watching",
        Phase::RollingBack => "RollingBack",
        Phase::RolledBack => "RolledBack",
        Phase::Failed => "Failed",
    }
}
