//! The rules document: what each channel may show of a variant's pool.
//!
//! `RulesDocument` is the document as written (TOML on disk, JSON over HTTP;
//! the binary parses both, unknown keys are refused by serde and the message
//! names the key). `RulesDocument::validate` checks it against the known
//! channels and names every wrong field by its path (`channels.bol.percent`,
//! `overrides[2].set.safety_stock`); only a valid document becomes `Rules`.
//!
//! # Precedence
//! Each of the four values (`safety_stock`, `percent`, `max_exposed`,
//! `min_listed`) is resolved on its own, for one channel × variant:
//! 1. the matching overrides that set it, most specific first: an exact sku
//!    beats a sku glob, a glob with a longer literal prefix (the text before
//!    its first `*`) beats a shorter one, any sku match beats a `product_id`
//!    match; between equally specific overrides the later one wins. An
//!    override without `channels` applies to every channel;
//! 2. `channels.<id>`;
//! 3. `defaults`;
//! 4. the built-in value: safety stock 0, 100 %, no cap, min listed 0.

use crate::catalog::Variant;
use crate::event::QTY_MAX;
use crate::ids::{ChannelId, ID_LEN_MAX};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Longest velocity window, in days.
pub const WINDOW_DAYS_MAX: i64 = 366;
/// Longest backorder horizon or handling time, in days.
pub const DAYS_MAX: i64 = 3_650;
/// Most pushes per channel × sku per day a budget may allow.
pub const PUSHES_PER_DAY_MAX: i64 = 10_000;

// ---------------------------------------------------------------------------
// The document as written.

/// The rules document as received. Every field is optional; `validate` turns
/// it into `Rules`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesDocument {
    #[serde(default)]
    pub defaults: RuleValues,
    /// Keyed by channel id.
    #[serde(default)]
    pub channels: BTreeMap<String, RuleValues>,
    #[serde(default)]
    pub overrides: Vec<OverrideDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preallocation: Option<PreallocationDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<EtaDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_budget: Option<ChangeBudgetDoc>,
}

/// The four values a rule level may set; each is optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleValues {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_stock: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_exposed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_listed: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideDoc {
    #[serde(rename = "match")]
    pub matcher: MatchDoc,
    /// Channel ids the override applies to; absent = all channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
    #[serde(default)]
    pub set: RuleValues,
}

/// Exactly one of `sku` (a glob where `*` matches any text) and `product_id`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<String>,
}

/// `order` (channel ids, first served first) or `by = "velocity"` with
/// `window_days`, never both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreallocationDoc {
    pub low_stock_threshold: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_days: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtaDoc {
    pub backorder_within_days: Option<i64>,
    /// `[min, max]` days from the ETA to shipping.
    pub handling_days: Option<(i64, i64)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeBudgetDoc {
    /// Pushes per channel × sku per rolling 24 hours, keyed by channel id.
    #[serde(default)]
    pub per_day: BTreeMap<String, i64>,
}

// ---------------------------------------------------------------------------
// Validation errors.

/// One problem with one field of a rules document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleError {
    /// Path of the field, e.g. `channels.bol.percent`, `overrides[2].set.safety_stock`.
    pub field: String,
    #[serde(flatten)]
    pub problem: RuleProblem,
}

impl RuleError {
    pub fn new(field: impl Into<String>, problem: RuleProblem) -> Self {
        Self {
            field: field.into(),
            problem,
        }
    }

    /// Stable machine-readable code of the problem.
    pub fn code(&self) -> &'static str {
        self.problem.code()
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl std::error::Error for RuleError {}

/// What is wrong with a field. `code()` is stable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum RuleProblem {
    /// The document could not be parsed (syntax, wrong type, unknown key);
    /// built by the binary from its parser's message, which names the key.
    #[error("{message}")]
    Unparsable { message: String },
    #[error("unknown channel {channel:?}")]
    UnknownChannel { channel: String },
    #[error("channel {channel:?} is listed twice")]
    DuplicateChannel { channel: String },
    #[error("not a valid id: {reason}")]
    InvalidId { reason: String },
    #[error("must not be negative (got {value})")]
    NegativeValue { value: i64 },
    #[error("must be between 0 and 100 (got {value})")]
    PercentOutOfRange { value: i64 },
    #[error("must be between {min} and {max} (got {value})")]
    OutOfRange { value: i64, min: i64, max: i64 },
    #[error("invalid sku pattern {pattern:?}: {reason}")]
    InvalidGlob { pattern: String, reason: String },
    #[error("must set exactly one of sku and product_id")]
    InvalidMatch,
    #[error("set either order or by (with window_days), not both")]
    ConflictingPreallocation,
    #[error("min {min} is greater than max {max}")]
    InvalidRange { min: i64, max: i64 },
    #[error("is required")]
    Missing,
    #[error("must be one of {expected} (got {value:?})")]
    InvalidValue { value: String, expected: String },
}

impl RuleProblem {
    pub fn code(&self) -> &'static str {
        match self {
            RuleProblem::Unparsable { .. } => "unparsable",
            RuleProblem::UnknownChannel { .. } => "unknown_channel",
            RuleProblem::DuplicateChannel { .. } => "duplicate_channel",
            RuleProblem::InvalidId { .. } => "invalid_id",
            RuleProblem::NegativeValue { .. } => "negative_value",
            RuleProblem::PercentOutOfRange { .. } => "percent_out_of_range",
            RuleProblem::OutOfRange { .. } => "out_of_range",
            RuleProblem::InvalidGlob { .. } => "invalid_glob",
            RuleProblem::InvalidMatch => "invalid_match",
            RuleProblem::ConflictingPreallocation => "conflicting_preallocation",
            RuleProblem::InvalidRange { .. } => "invalid_range",
            RuleProblem::Missing => "missing",
            RuleProblem::InvalidValue { .. } => "invalid_value",
        }
    }
}

// ---------------------------------------------------------------------------
// Validated rules.

/// The four values one rule level sets, checked (non-negative, percent ≤ 100).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RuleSet {
    pub safety_stock: Option<i64>,
    pub percent: Option<u32>,
    pub max_exposed: Option<i64>,
    pub min_listed: Option<i64>,
}

/// A sku pattern where `*` matches any text (possibly empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct SkuGlob(String);

impl From<SkuGlob> for String {
    fn from(glob: SkuGlob) -> String {
        glob.0
    }
}

impl SkuGlob {
    /// Checks a pattern: non-empty, at most `ID_LEN_MAX` characters, no
    /// control characters, no `**` (which means nothing more than `*`).
    pub fn parse(raw: impl Into<String>) -> Result<Self, RuleProblem> {
        let pattern: String = raw.into();
        let invalid = |reason: &str| RuleProblem::InvalidGlob {
            pattern: pattern.clone(),
            reason: reason.to_string(),
        };
        if pattern.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if pattern.chars().count() > ID_LEN_MAX {
            return Err(invalid("too long"));
        }
        if pattern.chars().any(char::is_control) {
            return Err(invalid("must not contain control characters"));
        }
        if pattern.contains("**") {
            return Err(invalid("`**` is not allowed; use `*`"));
        }
        Ok(Self(pattern))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the pattern has no `*` (an exact sku).
    pub fn is_exact(&self) -> bool {
        !self.0.contains('*')
    }

    /// Characters before the first `*`: the more, the more specific.
    pub fn literal_prefix_len(&self) -> usize {
        self.0.split('*').next().unwrap_or("").chars().count()
    }

    pub fn matches(&self, sku: &str) -> bool {
        let mut parts = self.0.split('*');
        let first = parts.next().unwrap_or("");
        let Some(mut rest) = sku.strip_prefix(first) else {
            return false;
        };
        let middle_and_last: Vec<&str> = parts.collect();
        let Some((last, middle)) = middle_and_last.split_last() else {
            // No `*` at all: the whole sku must be the literal.
            return rest.is_empty();
        };
        for part in middle {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last)
    }
}

/// What an override matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkuMatch {
    /// `match.sku` (exact when it has no `*`).
    Sku(SkuGlob),
    ProductId(String),
}

impl SkuMatch {
    fn matches(&self, variant: &Variant) -> bool {
        match self {
            SkuMatch::Sku(glob) => glob.matches(variant.sku.as_str()),
            SkuMatch::ProductId(id) => variant.product_id.as_deref() == Some(id.as_str()),
        }
    }

    /// Higher is more specific: (class, literal prefix length).
    fn specificity(&self) -> (u8, usize) {
        match self {
            SkuMatch::Sku(glob) if glob.is_exact() => (2, glob.literal_prefix_len()),
            SkuMatch::Sku(glob) => (1, glob.literal_prefix_len()),
            SkuMatch::ProductId(_) => (0, 0),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Override {
    pub matcher: SkuMatch,
    /// Absent = every channel.
    pub channels: Option<BTreeSet<ChannelId>>,
    pub set: RuleSet,
}

/// How channels are ranked when a low pool is partitioned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum PreallocationOrder {
    /// Channels in this order; channels not named come after, by id.
    Explicit { channels: Vec<ChannelId> },
    /// Units sold per channel over the trailing window, most first.
    Velocity { window_days: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preallocation {
    /// Partition when the variant's pool is at or below this.
    pub low_stock_threshold: i64,
    pub order: PreallocationOrder,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EtaRule {
    /// Show backorder only for an ETA at most this many days from today.
    pub backorder_within_days: u32,
    pub handling_days_min: u32,
    pub handling_days_max: u32,
}

/// A validated rules document. Built only by `RulesDocument::validate`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Rules {
    defaults: RuleSet,
    channels: BTreeMap<ChannelId, RuleSet>,
    overrides: Vec<Override>,
    preallocation: Option<Preallocation>,
    eta: Option<EtaRule>,
    pushes_per_day: BTreeMap<ChannelId, u32>,
}

/// Where an effective value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "index", rename_all = "snake_case")]
pub enum RuleSource {
    /// Nothing in the document sets it: the built-in value.
    Builtin,
    /// `defaults`.
    Default,
    /// `channels.<id>`.
    Channel,
    /// `overrides[index]`.
    Override(usize),
}

/// One resolved value and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved<T> {
    pub value: T,
    pub source: RuleSource,
}

/// The rule values that apply to one channel × variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectiveRule {
    pub safety_stock: Resolved<i64>,
    pub percent: Resolved<u32>,
    /// `None` = no cap.
    pub max_exposed: Resolved<Option<i64>>,
    pub min_listed: Resolved<i64>,
}

impl Rules {
    /// Resolves the four values for one channel × variant (see the module
    /// header for the precedence).
    pub fn effective(&self, channel: &ChannelId, variant: &Variant) -> EffectiveRule {
        // Matching overrides, most specific last; equal specificity keeps
        // document order, so the later one is found first from the end.
        let mut matching: Vec<(usize, &Override)> = self
            .overrides
            .iter()
            .enumerate()
            .filter(|(_, o)| o.channels.as_ref().is_none_or(|set| set.contains(channel)))
            .filter(|(_, o)| o.matcher.matches(variant))
            .collect();
        matching.sort_by_key(|(index, o)| (o.matcher.specificity(), *index));
        let channel_set = self.channels.get(channel);
        let resolve = |pick: &dyn Fn(&RuleSet) -> Option<i64>| -> Option<(i64, RuleSource)> {
            if let Some((index, o)) = matching.iter().rev().find(|(_, o)| pick(&o.set).is_some()) {
                return pick(&o.set).map(|v| (v, RuleSource::Override(*index)));
            }
            if let Some(v) = channel_set.and_then(pick) {
                return Some((v, RuleSource::Channel));
            }
            pick(&self.defaults).map(|v| (v, RuleSource::Default))
        };
        let or_builtin = |found: Option<(i64, RuleSource)>, builtin: i64| match found {
            Some((value, source)) => Resolved { value, source },
            None => Resolved {
                value: builtin,
                source: RuleSource::Builtin,
            },
        };
        let percent = or_builtin(resolve(&|s| s.percent.map(i64::from)), 100);
        let max_exposed = match resolve(&|s| s.max_exposed) {
            Some((value, source)) => Resolved {
                value: Some(value),
                source,
            },
            None => Resolved {
                value: None,
                source: RuleSource::Builtin,
            },
        };
        EffectiveRule {
            safety_stock: or_builtin(resolve(&|s| s.safety_stock), 0),
            percent: Resolved {
                // Validated to 0..=100.
                value: u32::try_from(percent.value).unwrap_or(100),
                source: percent.source,
            },
            max_exposed,
            min_listed: or_builtin(resolve(&|s| s.min_listed), 0),
        }
    }

    pub fn preallocation(&self) -> Option<&Preallocation> {
        self.preallocation.as_ref()
    }

    pub fn eta(&self) -> Option<&EtaRule> {
        self.eta.as_ref()
    }

    /// Pushes allowed per channel × sku per rolling 24 h; `None` = no budget.
    pub fn pushes_per_day(&self, channel: &ChannelId) -> Option<u32> {
        self.pushes_per_day.get(channel).copied()
    }

    pub fn overrides(&self) -> &[Override] {
        &self.overrides
    }
}

// ---------------------------------------------------------------------------
// Validation.

struct Check<'a> {
    known: &'a BTreeSet<&'a str>,
    errors: Vec<RuleError>,
}

impl Check<'_> {
    fn fail(&mut self, field: impl Into<String>, problem: RuleProblem) {
        self.errors.push(RuleError::new(field, problem));
    }

    fn channel(&mut self, field: &str, raw: &str) -> Option<ChannelId> {
        let id = match ChannelId::parse(raw) {
            Ok(id) => id,
            Err(e) => {
                self.fail(
                    field,
                    RuleProblem::InvalidId {
                        reason: e.to_string(),
                    },
                );
                return None;
            }
        };
        if !self.known.contains(raw) {
            self.fail(
                field,
                RuleProblem::UnknownChannel {
                    channel: raw.to_string(),
                },
            );
            return None;
        }
        Some(id)
    }

    /// A value in `0..=max`; negative values get their own code.
    fn count(&mut self, field: &str, value: i64, max: i64) -> Option<i64> {
        if value < 0 {
            self.fail(field, RuleProblem::NegativeValue { value });
            None
        } else if value > max {
            self.fail(field, RuleProblem::OutOfRange { value, min: 0, max });
            None
        } else {
            Some(value)
        }
    }

    fn values(&mut self, path: &str, values: &RuleValues) -> RuleSet {
        let mut qty = |name: &str, value: Option<i64>| {
            value.and_then(|v| self.count(&format!("{path}.{name}"), v, QTY_MAX))
        };
        let safety_stock = qty("safety_stock", values.safety_stock);
        let max_exposed = qty("max_exposed", values.max_exposed);
        let min_listed = qty("min_listed", values.min_listed);
        let percent = values.percent.and_then(|value| {
            let field = format!("{path}.percent");
            if value < 0 {
                self.fail(field, RuleProblem::NegativeValue { value });
                None
            } else if value > 100 {
                self.fail(field, RuleProblem::PercentOutOfRange { value });
                None
            } else {
                u32::try_from(value).ok()
            }
        });
        RuleSet {
            safety_stock,
            percent,
            max_exposed,
            min_listed,
        }
    }

    fn channel_list(&mut self, path: &str, raw: &[String]) -> Vec<ChannelId> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::with_capacity(raw.len());
        for (i, name) in raw.iter().enumerate() {
            let field = format!("{path}[{i}]");
            if let Some(id) = self.channel(&field, name) {
                if seen.insert(id.clone()) {
                    out.push(id);
                } else {
                    self.fail(
                        field,
                        RuleProblem::DuplicateChannel {
                            channel: name.clone(),
                        },
                    );
                }
            }
        }
        out
    }

    fn override_doc(&mut self, index: usize, doc: &OverrideDoc) -> Option<Override> {
        let path = format!("overrides[{index}]");
        let matcher = match (&doc.matcher.sku, &doc.matcher.product_id) {
            (Some(pattern), None) => match SkuGlob::parse(pattern.clone()) {
                Ok(glob) => Some(SkuMatch::Sku(glob)),
                Err(problem) => {
                    self.fail(format!("{path}.match.sku"), problem);
                    None
                }
            },
            (None, Some(id)) if id.is_empty() => {
                self.fail(
                    format!("{path}.match.product_id"),
                    RuleProblem::InvalidId {
                        reason: "must not be empty".into(),
                    },
                );
                None
            }
            (None, Some(id)) => Some(SkuMatch::ProductId(id.clone())),
            _ => {
                self.fail(format!("{path}.match"), RuleProblem::InvalidMatch);
                None
            }
        };
        let channels = doc
            .channels
            .as_ref()
            .map(|raw| self.channel_list(&format!("{path}.channels"), raw))
            .map(|list| list.into_iter().collect());
        let set = self.values(&format!("{path}.set"), &doc.set);
        Some(Override {
            matcher: matcher?,
            channels,
            set,
        })
    }

    fn preallocation(&mut self, doc: &PreallocationDoc) -> Option<Preallocation> {
        let threshold = match doc.low_stock_threshold {
            Some(v) => self.count("preallocation.low_stock_threshold", v, QTY_MAX),
            None => {
                self.fail("preallocation.low_stock_threshold", RuleProblem::Missing);
                None
            }
        };
        let order = match (&doc.order, &doc.by) {
            (Some(_), Some(_)) => {
                self.fail("preallocation", RuleProblem::ConflictingPreallocation);
                None
            }
            (Some(_), None) if doc.window_days.is_some() => {
                self.fail(
                    "preallocation.window_days",
                    RuleProblem::ConflictingPreallocation,
                );
                None
            }
            (Some(list), None) => Some(PreallocationOrder::Explicit {
                channels: self.channel_list("preallocation.order", list),
            }),
            (None, Some(by)) if by != "velocity" => {
                self.fail(
                    "preallocation.by",
                    RuleProblem::InvalidValue {
                        value: by.clone(),
                        expected: "\"velocity\"".into(),
                    },
                );
                None
            }
            (None, Some(_)) => match doc.window_days {
                None => {
                    self.fail("preallocation.window_days", RuleProblem::Missing);
                    None
                }
                Some(value) if !(1..=WINDOW_DAYS_MAX).contains(&value) => {
                    let problem = if value < 0 {
                        RuleProblem::NegativeValue { value }
                    } else {
                        RuleProblem::OutOfRange {
                            value,
                            min: 1,
                            max: WINDOW_DAYS_MAX,
                        }
                    };
                    self.fail("preallocation.window_days", problem);
                    None
                }
                Some(value) => u32::try_from(value)
                    .ok()
                    .map(|window_days| PreallocationOrder::Velocity { window_days }),
            },
            (None, None) => {
                self.fail("preallocation.order", RuleProblem::Missing);
                None
            }
        };
        Some(Preallocation {
            low_stock_threshold: threshold?,
            order: order?,
        })
    }

    fn eta(&mut self, doc: &EtaDoc) -> Option<EtaRule> {
        let within = match doc.backorder_within_days {
            Some(v) => self.count("eta.backorder_within_days", v, DAYS_MAX),
            None => {
                self.fail("eta.backorder_within_days", RuleProblem::Missing);
                None
            }
        };
        let handling = match doc.handling_days {
            Some((min, max)) => {
                let min = self.count("eta.handling_days[0]", min, DAYS_MAX);
                let max = self.count("eta.handling_days[1]", max, DAYS_MAX);
                match (min, max) {
                    (Some(min), Some(max)) if min > max => {
                        self.fail("eta.handling_days", RuleProblem::InvalidRange { min, max });
                        None
                    }
                    (Some(min), Some(max)) => Some((min, max)),
                    _ => None,
                }
            }
            None => {
                self.fail("eta.handling_days", RuleProblem::Missing);
                None
            }
        };
        let (min, max) = handling?;
        Some(EtaRule {
            backorder_within_days: u32::try_from(within?).ok()?,
            handling_days_min: u32::try_from(min).ok()?,
            handling_days_max: u32::try_from(max).ok()?,
        })
    }
}

impl RulesDocument {
    /// Checks the whole document against the known channels. Every problem is
    /// reported, each naming its field; any problem rejects the document.
    pub fn validate(&self, known_channels: &[ChannelId]) -> Result<Rules, Vec<RuleError>> {
        let known: BTreeSet<&str> = known_channels.iter().map(ChannelId::as_str).collect();
        let mut check = Check {
            known: &known,
            errors: Vec::new(),
        };
        let defaults = check.values("defaults", &self.defaults);
        let mut channels = BTreeMap::new();
        for (name, values) in &self.channels {
            let path = format!("channels.{name}");
            let id = check.channel(&path, name);
            let set = check.values(&path, values);
            if let Some(id) = id {
                channels.insert(id, set);
            }
        }
        let overrides: Vec<Override> = self
            .overrides
            .iter()
            .enumerate()
            .filter_map(|(i, doc)| check.override_doc(i, doc))
            .collect();
        let preallocation = self
            .preallocation
            .as_ref()
            .and_then(|doc| check.preallocation(doc));
        let eta = self.eta.as_ref().and_then(|doc| check.eta(doc));
        let mut pushes_per_day = BTreeMap::new();
        if let Some(budget) = &self.change_budget {
            for (name, &value) in &budget.per_day {
                let field = format!("change_budget.per_day.{name}");
                let id = check.channel(&field, name);
                let n = if value < 0 {
                    check.fail(field, RuleProblem::NegativeValue { value });
                    None
                } else if !(1..=PUSHES_PER_DAY_MAX).contains(&value) {
                    check.fail(
                        field,
                        RuleProblem::OutOfRange {
                            value,
                            min: 1,
                            max: PUSHES_PER_DAY_MAX,
                        },
                    );
                    None
                } else {
                    u32::try_from(value).ok()
                };
                if let (Some(id), Some(n)) = (id, n) {
                    pushes_per_day.insert(id, n);
                }
            }
        }
        if !check.errors.is_empty() {
            return Err(check.errors);
        }
        Ok(Rules {
            defaults,
            channels,
            overrides,
            preallocation,
            eta,
            pushes_per_day,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matching() {
        let cases = [
            ("TEE-*", "TEE-RED-M", true),
            ("TEE-*", "TEE-", true),
            ("TEE-*", "TSHIRT", false),
            ("*-M", "TEE-RED-M", true),
            ("*-M", "TEE-RED-L", false),
            ("T*R*M", "TEE-RED-M", true),
            ("T*R*M", "TEE-RM", true),
            ("T*R*M", "TRM", true),
            ("T*R*M", "TM", false),
            ("AB*BA", "ABA", false),
            ("AB*BA", "ABBA", true),
            ("*", "anything", true),
            ("EXACT", "EXACT", true),
            ("EXACT", "EXACTLY", false),
        ];
        for (pattern, sku, expect) in cases {
            let glob = SkuGlob::parse(pattern).unwrap();
            assert_eq!(glob.matches(sku), expect, "{pattern} ~ {sku}");
        }
        assert_eq!(SkuGlob::parse("TEE-RED*").unwrap().literal_prefix_len(), 7);
        assert!(SkuGlob::parse("A**").is_err());
        assert!(SkuGlob::parse("").is_err());
    }
}
