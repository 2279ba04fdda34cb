//! The first pass over a request: each message planned against the policy, refused or allowed
//! with the counters it must fit in, before any counter moves.

use serde_json::Value;

use super::access::{decide_with_rule, ToolDecision};
use super::integrity::{self, Standing};
use super::meta::RequestMeta;
use super::outcome::{CallRecord, Detection, Guarded, Outcome};
use super::slot::counter_slot;
use super::targets::{decide_target, governed, Governed};
use crate::counters::{current, CasStore, CounterError, StoreError};
use crate::decision::Decision;
use crate::guard::scan as guard;
use crate::json::strict;
use crate::policy::caller::Caller;
use crate::policy::guard::{Direction, GuardAction};
use crate::policy::pins::Class;
use crate::policy::rules::{Charge, Unreadable};
use crate::policy::ToolRule;
use crate::policy::{CounterId, Policy, RefusalMode};
use crate::protocol::jsonrpc::{Body, Id, Message, MessageKind, INVALID_REQUEST};
use crate::protocol::listing::ListingKind;
use crate::reply::{self, Refusal};
use crate::services::approval::{self, ApprovalQuery};
use crate::target::Target;

/// What the first pass decided for one message.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Planned {
    /// Why the message is refused, if it is.
    pub(crate) refusal: Option<Refusal>,
    /// The counters an allowed request must fit in.
    pub(crate) charges: Option<Vec<Charge>>,
    /// What happened to a request that was decided, for the audit record and metrics.
    pub(crate) record: Option<CallRecord>,
    /// The entry that decided it (a tool's, a resource's, …) is in shadow mode.
    pub(crate) shadow: bool,
    /// A request that passes undecided and whose answer lists entries to filter.
    pub(crate) listing: Option<ListingKind>,
    /// An allowed tool call whose result its guard reads.
    pub(crate) guarded: Option<Guarded>,
}

impl Planned {
    pub(crate) fn uses(&self, counter: CounterId) -> bool {
        self.charges
            .iter()
            .flatten()
            .any(|charge| charge.counter == counter)
    }

    fn refused(refusal: Refusal, record: Option<CallRecord>) -> Planned {
        Planned {
            refusal: Some(refusal),
            record,
            ..Planned::default()
        }
    }
}

/// One counter the request charges: the amount of all its calls together, and the message if
/// it does not fit.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Total {
    pub(crate) counter: CounterId,
    pub(crate) amount: u64,
    pub(crate) reason: Option<String>,
}

/// The request after the first pass.
#[derive(Debug)]
pub(crate) struct Plan<'a> {
    pub(crate) body: Body<'a>,
    /// One per message of `body`, in order.
    pub(crate) entries: Vec<Planned>,
    /// In counter order, the order they are charged in.
    pub(crate) totals: Vec<Total>,
    /// A call that needs a human's approval and has none yet: asked before any counter moves.
    pub(crate) approval: Option<ApprovalQuery>,
}

impl<'a> Plan<'a> {
    pub(crate) fn make(
        policy: &Policy,
        caller: &Caller,
        meta: &RequestMeta,
        store: &mut dyn CasStore,
        body: Body<'a>,
    ) -> Plan<'a> {
        let mut planner = Planner {
            policy,
            caller,
            meta,
            store,
            in_batch: matches!(body, Body::Batch(_)),
            approval: None,
            totals: Vec::new(),
        };
        let entries = body
            .messages()
            .iter()
            .map(|message| planner.plan(message))
            .collect();
        let Planner {
            approval, totals, ..
        } = planner;
        Plan {
            body,
            entries,
            totals,
            approval,
        }
    }

    pub(crate) fn refuses(&self) -> bool {
        self.entries.iter().any(|entry| entry.refusal.is_some())
    }

    /// The whole request refused for the refusals in it.
    pub(crate) fn refuse(self, refusal_mode: RefusalMode) -> Outcome {
        let (refusals, records): (Vec<_>, Vec<_>) = self
            .entries
            .into_iter()
            .map(|entry| (entry.refusal, entry.record))
            .unzip();
        let reply = reply::for_body(&self.body, refusals, refusal_mode);
        Outcome::reply(reply, records.into_iter().flatten().collect())
    }
}

/// What planning one message needs.
struct Planner<'a> {
    policy: &'a Policy,
    caller: &'a Caller<'a>,
    meta: &'a RequestMeta<'a>,
    store: &'a mut dyn CasStore,
    in_batch: bool,
    approval: Option<ApprovalQuery>,
    totals: Vec<Total>,
}

impl Planner<'_> {
    fn plan(&mut self, message: &Message) -> Planned {
        match &message.kind {
            MessageKind::ToolCall { .. } => self.plan_call(message),
            MessageKind::Invalid { code, problem } => Planned::refused(
                Refusal::Invalid {
                    code: *code,
                    problem: problem.clone(),
                },
                None,
            ),
            MessageKind::Named { .. } | MessageKind::Other { .. } => self.plan_target(message),
            MessageKind::Response => Planned::default(),
        }
    }

    /// A request a `resources`, `prompts` or `methods` block may decide: its target, caller and
    /// arguments against the policy.
    fn plan_target(&mut self, message: &Message) -> Planned {
        let (target, rule) = match governed(self.policy, message) {
            Governed::Passes => {
                let listing = message
                    .method()
                    .and_then(ListingKind::of)
                    .filter(|kind| self.policy.targets.filters(*kind));
                return Planned {
                    listing,
                    ..Planned::default()
                };
            }
            Governed::Invalid(e) => {
                let refusal = Refusal::Invalid {
                    code: e.code,
                    problem: e.problem,
                };
                return Planned::refused(refusal, None);
            }
            Governed::Decided { target, rule } => (target, rule),
        };
        // Only rules read arguments: without any, they stay unparsed text.
        let arguments = if rule.is_some_and(|r| !r.rules.is_empty()) {
            match message.arguments.map(rule_arguments).transpose() {
                Ok(arguments) => arguments,
                Err(problem) => return Planned::refused(invalid(problem), None),
            }
        } else {
            None
        };
        let (policy, caller) = (self.policy, self.caller);
        let (decision, path) = self.with_counters(|read_counter| {
            decide_target(
                policy,
                caller,
                &target,
                rule,
                arguments.as_ref(),
                read_counter,
            )
        });
        let call = Call {
            target,
            id: &message.id,
            arguments: None,
            audited: false,
            class: None,
            detections: Vec::new(),
        };
        let mut planned = self.decided(call, decision, path);
        planned.shadow = rule.is_some_and(|r| r.shadow);
        planned
    }

    /// `decide`, reading counters as they stand before this request.
    fn with_counters<T>(
        &mut self,
        decide: impl FnOnce(&mut dyn FnMut(CounterId) -> Result<u64, CounterError>) -> T,
    ) -> T {
        let Planner {
            policy,
            caller,
            meta,
            store,
            ..
        } = self;
        let mut read_counter = |id: CounterId| -> Result<u64, CounterError> {
            let spec = policy.counter(id).ok_or_else(|| {
                CounterError::Store(StoreError(format!("counter #{id} is not defined")))
            })?;
            let slot = counter_slot(policy, meta.namespace, spec, caller, meta.session);
            current(&mut **store, &slot, spec.window, meta.now)
        };
        decide(&mut read_counter)
    }

    /// A tools/call: its tool, caller and arguments against the policy. Conditions on counters
    /// read them as they stand before this request.
    fn plan_call(&mut self, message: &Message) -> Planned {
        let Message {
            id,
            kind: MessageKind::ToolCall { name },
            arguments,
        } = message
        else {
            return Planned::default();
        };
        let standing =
            integrity::standing(self.policy, &mut *self.store, self.meta.namespace, name);
        let class = standing
            .hints()
            .and_then(|hints| self.policy.classes.class_of(hints))
            .map(|(class, _)| class);
        let mut call = Call {
            target: Target::Tool(name.clone()),
            id,
            arguments: *arguments,
            audited: self.policy.audit_reads_arguments(),
            class,
            detections: Vec::new(),
        };
        let entry = self.policy.entry(name, class);
        // Only rules read arguments: without any, they stay unparsed text.
        let arguments = if self.policy.reads_arguments(entry) {
            match call.arguments.map(rule_arguments).transpose() {
                Ok(arguments) => arguments,
                Err(problem) => return Planned::refused(invalid(problem), None),
            }
        } else {
            None
        };
        let (policy, caller) = (self.policy, self.caller);
        let (decision, rule) = self.with_counters(|read_counter| {
            decide_with_rule(
                policy,
                caller,
                name,
                class,
                arguments.as_ref(),
                read_counter,
            )
        });
        let decision = match self.integrity(&call, &standing, decision) {
            Ok(decision) => decision,
            Err(refused) => return *refused,
        };
        let decision = match self.guard_arguments(&mut call, entry, decision) {
            Ok(decision) => decision,
            Err(refused) => return *refused,
        };
        let mut planned = self.decided(call, decision, rule);
        planned.shadow = self.policy.entry(name, class).is_some_and(|t| t.shadow);
        let guards_results = self
            .policy
            .guard(self.policy.entry(name, class))
            .is_some_and(|g| g.results.is_some());
        if guards_results && planned.refusal.is_none() {
            planned.guarded = message.id.as_ref().map(|id| Guarded {
                id: id.value().clone(),
                tool: name.clone(),
                class,
            });
        }
        planned
    }

    /// What `decision` (by the policy element at `rule`) makes of `call`.
    fn decided(&mut self, call: Call, decision: ToolDecision, rule: String) -> Planned {
        match decision {
            ToolDecision::Deny {
                unreadable: Some(Unreadable { counter: id, error }),
                ..
            } => {
                let counter = self
                    .policy
                    .counter(id)
                    .map_or_else(|| format!("#{id}"), |spec| spec.name.clone());
                let problem = error.to_string();
                let detail = format!("counter {counter} could not be read: {problem}");
                let refusal = Refusal::CannotEnforce {
                    target: call.target.clone(),
                    counter,
                    problem,
                };
                let record = call.record(refusal.decision(), detail, rule);
                Planned::refused(refusal, Some(record))
            }
            ToolDecision::Deny { reason, .. } => {
                let refusal = Refusal::Denied {
                    target: call.target.clone(),
                    reason: reason.clone(),
                };
                let record = call.record(Decision::Denied, reason, rule);
                Planned::refused(refusal, Some(record))
            }
            ToolDecision::Allow {
                charges,
                shadow_denials,
                approval,
            } => {
                let approved_note = match approval {
                    None => None,
                    Some(approval_rule) => match self.ask_approval(&call, approval_rule) {
                        Ok(note) => note,
                        Err(refused) => return *refused,
                    },
                };
                self.add_to_totals(&charges);
                // Shadowed refusals are reported, and the call goes on.
                let (decision, detail) = if shadow_denials.is_empty() {
                    (Decision::Allowed, approved_note.unwrap_or_default())
                } else {
                    let what: Vec<String> = shadow_denials
                        .iter()
                        .map(|(r, p)| format!("{r} ({p})"))
                        .collect();
                    (Decision::WouldDeny, what.join("; "))
                };
                Planned {
                    charges: Some(charges),
                    record: Some(call.record(decision, detail, rule)),
                    ..Planned::default()
                }
            }
        }
    }

    /// A call its access allowed, against its arguments guard: what the detectors found is
    /// recorded; under `block` (outside shadow mode) the call is refused.
    fn guard_arguments(
        &self,
        call: &mut Call,
        entry: Option<&ToolRule>,
        decision: ToolDecision,
    ) -> Result<ToolDecision, Box<Planned>> {
        let Some((guard, rule)) = self
            .policy
            .guard(entry)
            .and_then(|g| g.arguments.as_ref().map(|r| (g, r)))
        else {
            return Ok(decision);
        };
        if !matches!(decision, ToolDecision::Allow { .. }) {
            return Ok(decision);
        }
        let found = match call
            .arguments
            .map(|text| guard::scan_json(&rule.detectors, text))
            .transpose()
        {
            Ok(found) => found.unwrap_or_default(),
            Err(problem) => return Err(Box::new(Planned::refused(invalid(problem), None))),
        };
        if found.is_empty() {
            return Ok(decision);
        }
        let path = format!("{}.arguments", guard.path);
        let what = guard::summary(&found);
        call.detections = found
            .into_iter()
            .map(|(detector, count)| Detection {
                detector,
                count,
                direction: Direction::Arguments,
                action: rule.action,
            })
            .collect();
        let shadow = self.policy.in_shadow(entry);
        if rule.action != GuardAction::Block || shadow {
            let ToolDecision::Allow {
                charges,
                mut shadow_denials,
                approval,
            } = decision
            else {
                return Ok(decision);
            };
            if rule.action == GuardAction::Block {
                shadow_denials.push((format!("the arguments carry {what}"), path));
            }
            return Ok(ToolDecision::Allow {
                charges,
                shadow_denials,
                approval,
            });
        }
        let reason =
            format!("the arguments carry {what}; calls carrying them are refused ({path})");
        let refusal = Refusal::Denied {
            target: call.target.clone(),
            reason: reason.clone(),
        };
        let record = call.clone().record(refusal.decision(), reason, path);
        Err(Box::new(Planned::refused(refusal, Some(record))))
    }

    /// A call its access allowed, against its pin (`integrity::judge`).
    fn integrity(
        &self,
        call: &Call,
        standing: &Standing,
        decision: ToolDecision,
    ) -> Result<ToolDecision, Box<Planned>> {
        let tool = call.target.name();
        let refused = match integrity::judge(self.policy, tool, call.class, standing, decision) {
            Ok(decision) => return Ok(decision),
            Err(refused) => refused,
        };
        let target = call.target.clone();
        let refusal = if refused.unknown {
            Refusal::CannotEnforce {
                target,
                counter: "pins".to_owned(),
                problem: refused.problem.clone(),
            }
        } else {
            Refusal::Denied {
                target,
                reason: refused.problem.clone(),
            }
        };
        let record = call
            .clone()
            .record(refusal.decision(), refused.problem, refused.rule);
        Err(Box::new(Planned::refused(refusal, Some(record))))
    }

    /// A call the rule at `approval_rule` makes wait for a human. `Ok(Some(note))`: approved
    /// (who approved it, for the audit record); `Ok(None)`: to be asked, once every other
    /// message is planned; `Err`: refused.
    fn ask_approval(
        &mut self,
        call: &Call,
        approval_rule: String,
    ) -> Result<Option<String>, Box<Planned>> {
        let name = call.target.name();
        let query = approval::query(
            self.policy,
            self.meta.namespace,
            self.meta.identity,
            name,
            call.id.clone(),
            call.arguments,
            &approval_rule,
        )
        .map_err(|problem| Box::new(Planned::refused(invalid(problem), None)))?;
        match self.meta.approved {
            Some(approved) if approved.digest == query.digest => Ok(Some(approved.note.to_owned())),
            _ if self.in_batch => {
                let reason =
                    "this call needs a human's approval; send it alone, not in a JSON-RPC batch"
                        .to_owned();
                let refusal = Refusal::Denied {
                    target: call.target.clone(),
                    reason: reason.clone(),
                };
                let record = call.clone().record(Decision::Denied, reason, approval_rule);
                Err(Box::new(Planned::refused(refusal, Some(record))))
            }
            _ => {
                self.approval = Some(query);
                Ok(None)
            }
        }
    }

    /// Kept in counter order, the order they are charged in.
    fn add_to_totals(&mut self, charges: &[Charge]) {
        for charge in charges {
            match self
                .totals
                .binary_search_by_key(&charge.counter, |total| total.counter)
            {
                Ok(at) => {
                    if let Some(total) = self.totals.get_mut(at) {
                        total.amount = total.amount.saturating_add(charge.amount);
                        if total.reason.is_none() {
                            total.reason.clone_from(&charge.reason);
                        }
                    }
                }
                Err(at) => self.totals.insert(
                    at,
                    Total {
                        counter: charge.counter,
                        amount: charge.amount,
                        reason: charge.reason.clone(),
                    },
                ),
            }
        }
    }
}

/// A decided message, seen as its parts.
#[derive(Clone)]
struct Call<'m> {
    target: Target,
    id: &'m Option<Id>,
    /// A tool call's arguments as sent, in the body.
    arguments: Option<&'m str>,
    /// The audit record reads the arguments (their hash, or themselves): the call's record
    /// keeps a copy, which outlives the body.
    audited: bool,
    /// The tool's risk class, from its pin.
    class: Option<Class>,
    /// What its guard's detectors found in it.
    detections: Vec<Detection>,
}

impl Call<'_> {
    /// The record of this call, decided.
    fn record(self, decision: Decision, detail: String, rule: String) -> CallRecord {
        CallRecord {
            target: self.target,
            decision,
            detail,
            rule,
            id: self.id.clone(),
            arguments: self.arguments.filter(|_| self.audited).map(str::to_owned),
            class: self.class,
            detections: self.detections,
        }
    }
}

fn invalid(problem: String) -> Refusal {
    Refusal::Invalid {
        code: INVALID_REQUEST,
        problem,
    }
}

/// The arguments as rules read them. Parsed by our own reader: `serde_json::Value` (with the
/// `raw_value` feature this crate needs) reads an object whose only key is
/// `$serde_json::private::RawValue` as the JSON inside its string, which the server would not.
/// Keys differing only in case are refused at any depth, as in the message and its params:
/// a server that folds case (Go) would read another value than the rule checked.
fn rule_arguments(text: &str) -> Result<Value, String> {
    let value = strict::from_slice(text.as_bytes()).map_err(|e| e.to_string())?;
    match first_case_collision(&value) {
        Some((a, b)) => Err(format!(
            "argument keys \"{a}\" and \"{b}\" differ only in case"
        )),
        None => Ok(value),
    }
}

fn first_case_collision(value: &Value) -> Option<(String, String)> {
    match value {
        Value::Object(map) => strict::case_folding_collision(map)
            .or_else(|| map.values().find_map(first_case_collision)),
        Value::Array(items) => items.iter().find_map(first_case_collision),
        _ => None,
    }
}
