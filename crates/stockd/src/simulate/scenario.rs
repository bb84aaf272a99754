//! The scenario file of `stockd simulate` (TOML): the catalog, the channels,
//! the demand over the day, the warehouse, the faults and the rules. Unknown
//! fields are refused; every bound is checked with a stable error code.

use serde::Deserialize;
use serde_json::Value;

/// One simulated day (or part of one).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    /// Simulated hours of trading (the peak hour counts from the start).
    pub hours: f64,
    pub catalog: Catalog,
    pub demand: Demand,
    #[serde(default)]
    pub warehouse: Warehouse,
    pub channels: Vec<ChannelSpec>,
    #[serde(default)]
    pub faults: FaultRates,
    /// The active rules document (as `PUT /v1/rules` takes it); `--rules`
    /// runs a candidate beside it.
    #[serde(default = "empty_rules")]
    pub rules: toml::Value,
}

fn empty_rules() -> toml::Value {
    toml::Value::Table(Default::default())
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub variants: usize,
    /// Opening stock per variant, drawn uniformly from `[min, max]`.
    pub opening_stock: [i64; 2],
    /// Kits (bundles) besides the variants, listed on every channel: no
    /// stock of their own, sold from their components'. Default none.
    #[serde(default)]
    pub kits: usize,
    /// Components per kit (distinct variants), drawn from `[min, max]`.
    #[serde(default = "default_kit_components")]
    pub kit_components: [usize; 2],
    /// Units of each component in one kit, drawn from `[min, max]`.
    #[serde(default = "default_kit_component_qty")]
    pub kit_component_qty: [i64; 2],
}

fn default_kit_components() -> [usize; 2] {
    [2, 3]
}
fn default_kit_component_qty() -> [i64; 2] {
    [1, 2]
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Demand {
    /// Order attempts per hour over all channels outside the peak.
    pub orders_per_hour: f64,
    /// The hour (from the start) whose demand is `peak_factor` times the rest.
    #[serde(default)]
    pub peak_hour: Option<u32>,
    #[serde(default = "one")]
    pub peak_factor: f64,
    /// Units per order line, drawn uniformly from 1 to this.
    #[serde(default = "one_unit")]
    pub max_qty: i64,
    /// Share (0..1) of placed orders their customer cancels later.
    #[serde(default)]
    pub cancel_rate: f64,
    /// Share (0..1) of demand on the 10 % best-selling variants.
    #[serde(default = "default_hot_share")]
    pub hot_share: f64,
}

fn one() -> f64 {
    1.0
}
fn one_unit() -> i64 {
    1
}
fn default_hot_share() -> f64 {
    0.5
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Warehouse {
    /// Supplier deliveries per hour (one variant each).
    #[serde(default)]
    pub receipts_per_hour: f64,
    /// Units per delivery, drawn uniformly from `[min, max]`.
    #[serde(default = "default_receipt_qty")]
    pub receipt_qty: [i64; 2],
    /// The merchant's warehouses (location ids), each sellable on every
    /// channel; opening stock is spread over them and each delivery goes to
    /// one. Default: one warehouse, `WH1`.
    #[serde(default)]
    pub locations: Vec<String>,
    /// Cycle counts per hour, each of one variant at one warehouse.
    #[serde(default)]
    pub counts_per_hour: f64,
    /// Units a count finds missing (damage, theft, mis-picks), drawn
    /// uniformly from `[min, max]`; the count reports what is really there.
    #[serde(default)]
    pub count_shrink: [i64; 2],
    /// Customer returns per hour (of orders shipped before the day), each of
    /// one variant at one warehouse: `return_received`, then
    /// `return_verified` after the inspection.
    #[serde(default)]
    pub returns_per_hour: f64,
    /// Units per return, drawn uniformly from `[min, max]`.
    #[serde(default = "default_return_qty")]
    pub return_qty: [i64; 2],
    /// Seconds from a return's arrival to its inspection, drawn uniformly
    /// from `[min, max]`.
    #[serde(default = "default_inspect_after_secs")]
    pub inspect_after_secs: [u64; 2],
    /// The chance that a returned unit is found sellable (the rest is
    /// written off).
    #[serde(default = "default_return_sellable")]
    pub return_sellable: f64,
    /// Seconds from an order to its shipment, drawn uniformly from `[min,
    /// max]`: the warehouse reads where stockd reserved the order
    /// (`GET /v1/orders/{id}`), picks those units if they are on its shelves
    /// (else the order waits for stock, tried again every half hour) and
    /// sends `ship`. Absent: nothing ships in the day. Orders a customer
    /// cancels do not ship.
    #[serde(default)]
    pub ship_after_secs: Option<[u64; 2]>,
}

fn default_receipt_qty() -> [i64; 2] {
    [5, 20]
}

fn default_return_qty() -> [i64; 2] {
    [1, 2]
}

fn default_inspect_after_secs() -> [u64; 2] {
    [600, 7_200]
}

fn default_return_sellable() -> f64 {
    0.8
}

impl Warehouse {
    /// The warehouses of the day (`WH1` when none are named).
    pub fn locations(&self) -> Vec<String> {
        if self.locations.is_empty() {
            vec!["WH1".to_string()]
        } else {
            self.locations.clone()
        }
    }
}

/// The channels a scenario can run (each on its in-process simulator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Shopify,
    Woocommerce,
    Bol,
    Amazon,
    /// Google Merchant Center: listings with an availability, no orders
    /// (its shoppers buy in the shop).
    Gmc,
}

impl ChannelKind {
    pub fn kind(self) -> &'static str {
        match self {
            ChannelKind::Shopify => "shopify",
            ChannelKind::Woocommerce => "woocommerce",
            ChannelKind::Bol => "bol",
            ChannelKind::Amazon => "amazon",
            ChannelKind::Gmc => "gmc",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    pub kind: ChannelKind,
    /// stockd's channel id.
    pub id: String,
    /// Share of the demand (shares are normalised over all channels); 0
    /// (the default) on Google Merchant Center, which takes no orders.
    #[serde(default)]
    pub share: f64,
    /// Simulated seconds between reads of recently modified orders, the
    /// backstop for lost webhooks (default 60, as in production; 0 turns
    /// it off).
    #[serde(default)]
    pub order_poll_secs: Option<f64>,
}

impl ChannelSpec {
    /// How often stockd polls this channel's orders; `None`: it does not.
    pub fn order_poll(&self) -> Option<std::time::Duration> {
        match self.order_poll_secs {
            None => Some(std::time::Duration::from_secs(60)),
            Some(secs) if secs > 0.0 => Some(std::time::Duration::from_secs_f64(secs)),
            Some(_) => None,
        }
    }
}

/// Fault rates; every draw comes from the seed.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRates {
    /// Probability that a channel API request fails with a 5xx.
    #[serde(default)]
    pub error_5xx_rate: f64,
    /// Outages per channel per simulated hour, each `outage_secs` long.
    #[serde(default)]
    pub outages_per_hour: f64,
    #[serde(default = "default_outage_secs")]
    pub outage_secs: f64,
    /// 429 storms per channel per simulated hour, each `storm_secs` long.
    #[serde(default)]
    pub storms_per_hour: f64,
    #[serde(default = "default_storm_secs")]
    pub storm_secs: f64,
    /// Probability that an order webhook is lost for good.
    #[serde(default)]
    pub webhook_loss_rate: f64,
    /// Probability that an order webhook is delivered twice.
    #[serde(default)]
    pub webhook_duplicate_rate: f64,
    /// Webhooks leave after a random delay of up to this (and reorder).
    #[serde(default)]
    pub webhook_delay_ms: u64,
    /// Every channel API request takes this long to answer (slow
    /// responses; simulated time). Default 0: at once.
    #[serde(default)]
    pub response_ms: u64,
    /// Crashes of stockd's process per simulated hour: its state is dropped
    /// at once and it starts again on the same database `crash_down_secs`
    /// later (webhooks meanwhile are refused, deliveries retried).
    #[serde(default)]
    pub crashes_per_hour: f64,
    #[serde(default = "default_crash_down_secs")]
    pub crash_down_secs: f64,
    /// Probability that a warehouse message stockd took is delivered again
    /// 1–60 s later, as an inbound bus redelivers a message whose
    /// acknowledgement it did not get. It must apply once.
    #[serde(default)]
    pub inbound_redelivery_rate: f64,
    /// Windows per simulated hour in which stockd's database takes no
    /// writes (another process holds its write lock: a backup, a
    /// migration), each `db_outage_secs` long; reads go on.
    #[serde(default)]
    pub db_outages_per_hour: f64,
    #[serde(default = "default_db_outage_secs")]
    pub db_outage_secs: f64,
}

fn default_crash_down_secs() -> f64 {
    30.0
}

fn default_db_outage_secs() -> f64 {
    30.0
}

fn default_outage_secs() -> f64 {
    60.0
}
fn default_storm_secs() -> f64 {
    20.0
}

/// A scenario that cannot run, with a stable code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ScenarioError {
    /// `scenario_unreadable`, `scenario_invalid_toml` or `scenario_invalid`.
    pub code: &'static str,
    pub message: String,
}

fn invalid(message: impl Into<String>) -> ScenarioError {
    ScenarioError {
        code: "scenario_invalid",
        message: message.into(),
    }
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &std::path::Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            code: "scenario_unreadable",
            message: format!("{}: {e}", path.display()),
        })?;
        Scenario::parse(&text)
    }

    /// Parses and checks a scenario.
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| ScenarioError {
            code: "scenario_invalid_toml",
            message: e.to_string(),
        })?;
        scenario.check()?;
        Ok(scenario)
    }

    fn check(&self) -> Result<(), ScenarioError> {
        let finite_positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(invalid(format!("{name} must be a positive number")))
            }
        };
        let rate = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(invalid(format!("{name} must be within 0..1")))
            }
        };
        finite_positive("hours", self.hours)?;
        if self.hours > 24.0 * 7.0 {
            return Err(invalid("hours must be at most 168"));
        }
        if self.catalog.variants == 0 || self.catalog.variants > 1_000_000 {
            return Err(invalid("catalog.variants must be within 1..1000000"));
        }
        let c = &self.catalog;
        if c.kits > c.variants {
            return Err(invalid("catalog.kits must be at most catalog.variants"));
        }
        let [lo, hi] = c.kit_components;
        if lo < 1 || hi < lo || hi > c.variants.min(20) {
            return Err(invalid(
                "catalog.kit_components must be [min, max] with 1 <= min <= max <= 20 and \
                 at most catalog.variants",
            ));
        }
        let [lo, hi] = c.kit_component_qty;
        if lo < 1 || hi < lo || hi > 100 {
            return Err(invalid(
                "catalog.kit_component_qty must be [min, max] with 1 <= min <= max <= 100",
            ));
        }
        let [lo, hi] = self.catalog.opening_stock;
        if lo < 0 || hi < lo || hi > 1_000_000 {
            return Err(invalid(
                "catalog.opening_stock must be [min, max] with 0 <= min <= max <= 1000000",
            ));
        }
        finite_positive("demand.orders_per_hour", self.demand.orders_per_hour)?;
        finite_positive("demand.peak_factor", self.demand.peak_factor)?;
        if !(1..=1_000).contains(&self.demand.max_qty) {
            return Err(invalid("demand.max_qty must be within 1..1000"));
        }
        rate("demand.cancel_rate", self.demand.cancel_rate)?;
        rate("demand.hot_share", self.demand.hot_share)?;
        let w = &self.warehouse;
        if !(w.receipts_per_hour.is_finite() && w.receipts_per_hour >= 0.0) {
            return Err(invalid("warehouse.receipts_per_hour must be >= 0"));
        }
        let [lo, hi] = w.receipt_qty;
        if lo < 1 || hi < lo || hi > 1_000_000 {
            return Err(invalid(
                "warehouse.receipt_qty must be [min, max] with 1 <= min <= max <= 1000000",
            ));
        }
        if w.locations.len() > 100 {
            return Err(invalid("warehouse.locations names at most 100 warehouses"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for l in &w.locations {
            // Also a path segment of `PUT /v1/locations/{id}`: kept to
            // characters a path carries as they are.
            let plain = l
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !plain || stockd_core::LocationId::parse(l.clone()).is_err() {
                return Err(invalid(format!(
                    "warehouse.locations: {l:?} is not a location id (letters, digits, . _ -)"
                )));
            }
            if !seen.insert(l) {
                return Err(invalid(format!("warehouse.locations: {l} twice")));
            }
        }
        if !(w.counts_per_hour.is_finite() && w.counts_per_hour >= 0.0) {
            return Err(invalid("warehouse.counts_per_hour must be >= 0"));
        }
        let [lo, hi] = w.count_shrink;
        if lo < 0 || hi < lo || hi > 1_000 {
            return Err(invalid(
                "warehouse.count_shrink must be [min, max] with 0 <= min <= max <= 1000",
            ));
        }
        if !(w.returns_per_hour.is_finite() && w.returns_per_hour >= 0.0) {
            return Err(invalid("warehouse.returns_per_hour must be >= 0"));
        }
        let [lo, hi] = w.return_qty;
        if lo < 1 || hi < lo || hi > 1_000 {
            return Err(invalid(
                "warehouse.return_qty must be [min, max] with 1 <= min <= max <= 1000",
            ));
        }
        let [lo, hi] = w.inspect_after_secs;
        if lo < 1 || hi < lo || hi > 7 * 86_400 {
            return Err(invalid(
                "warehouse.inspect_after_secs must be [min, max] with 1 <= min <= max <= 604800",
            ));
        }
        rate("warehouse.return_sellable", w.return_sellable)?;
        if let Some([lo, hi]) = w.ship_after_secs {
            if lo < 1 || hi < lo || hi > 7 * 86_400 {
                return Err(invalid(
                    "warehouse.ship_after_secs must be [min, max] with 1 <= min <= max <= 604800",
                ));
            }
        }
        if self.channels.is_empty() {
            return Err(invalid("channels must name at least one channel"));
        }
        let mut ids = std::collections::BTreeSet::new();
        let mut kinds = std::collections::BTreeSet::new();
        for c in &self.channels {
            if c.kind == ChannelKind::Gmc {
                if c.share != 0.0 || c.order_poll_secs.is_some() {
                    return Err(invalid(format!(
                        "channels[{}]: Google Merchant Center takes no orders (its shoppers \
                         buy in the shop): no share, no order_poll_secs",
                        c.id
                    )));
                }
            } else {
                finite_positive(&format!("channels[{}].share", c.id), c.share)?;
            }
            stockd_core::ChannelId::parse(c.id.clone())
                .map_err(|_| invalid(format!("channels: {:?} is not a channel id", c.id)))?;
            if !ids.insert(c.id.clone()) {
                return Err(invalid(format!("channels: {} twice", c.id)));
            }
            if let Some(secs) = c.order_poll_secs {
                if !(secs.is_finite() && (0.0..=86_400.0).contains(&secs)) {
                    return Err(invalid(format!(
                        "channels[{}].order_poll_secs must be within 0..86400",
                        c.id
                    )));
                }
                // bol.com pushes no orders: its polls are its only way in,
                // and a poll reads at most the last hour's changes.
                if c.kind == ChannelKind::Bol && !(1.0..=3_000.0).contains(&secs) {
                    return Err(invalid(format!(
                        "channels[{}].order_poll_secs must be within 1..3000 on bol.com \
                         (no order webhooks; a poll reads the last hour at most)",
                        c.id
                    )));
                }
            }
            // Amazon's order polls are paced by `searchOrders`' own rate.
            if c.kind == ChannelKind::Amazon && c.order_poll_secs.is_some() {
                return Err(invalid(format!(
                    "channels[{}].order_poll_secs is not taken on amazon (its polls follow \
                     the searchOrders rate; notifications bring orders first)",
                    c.id
                )));
            }
            if !kinds.insert(c.kind) {
                return Err(invalid(format!(
                    "channels: one {} channel per scenario",
                    c.kind.kind()
                )));
            }
        }
        let f = &self.faults;
        rate("faults.error_5xx_rate", f.error_5xx_rate)?;
        rate("faults.webhook_loss_rate", f.webhook_loss_rate)?;
        rate("faults.webhook_duplicate_rate", f.webhook_duplicate_rate)?;
        rate("faults.inbound_redelivery_rate", f.inbound_redelivery_rate)?;
        for (name, v) in [
            ("faults.outages_per_hour", f.outages_per_hour),
            ("faults.storms_per_hour", f.storms_per_hour),
        ] {
            if !(v.is_finite() && (0.0..=60.0).contains(&v)) {
                return Err(invalid(format!("{name} must be within 0..60")));
            }
        }
        finite_positive("faults.outage_secs", f.outage_secs)?;
        if !(f.crashes_per_hour.is_finite() && (0.0..=60.0).contains(&f.crashes_per_hour)) {
            return Err(invalid("faults.crashes_per_hour must be within 0..60"));
        }
        finite_positive("faults.crash_down_secs", f.crash_down_secs)?;
        if !(f.db_outages_per_hour.is_finite() && (0.0..=60.0).contains(&f.db_outages_per_hour)) {
            return Err(invalid("faults.db_outages_per_hour must be within 0..60"));
        }
        finite_positive("faults.db_outage_secs", f.db_outage_secs)?;
        finite_positive("faults.storm_secs", f.storm_secs)?;
        if f.response_ms > 60_000 || f.webhook_delay_ms > 3_600_000 {
            return Err(invalid(
                "faults.response_ms must be at most 60000 and faults.webhook_delay_ms at most 3600000",
            ));
        }
        Ok(())
    }

    /// The rules document as JSON.
    pub fn rules_json(&self) -> Value {
        toml_to_json(&self.rules)
    }
}

/// A TOML value as JSON (dates become strings).
pub fn toml_to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = include_str!("../../../../scenarios/small.toml");

    #[test]
    fn simulate_scenario_small_parses() {
        let s = Scenario::parse(SMALL).expect("small scenario");
        assert!(s.channels.len() >= 2);
        assert!(s.rules_json().is_object());
    }

    #[test]
    fn simulate_scenario_peak_day_parses() {
        let s = Scenario::parse(include_str!("../../../../scenarios/peak-day.toml"))
            .expect("peak-day scenario");
        assert_eq!((s.hours, s.catalog.variants), (24.0, 10_000));
        assert_eq!(s.demand.peak_factor, 10.0);
        assert!(s.faults.crashes_per_hour > 0.0);
        // The five channels (Google showing availability), three warehouses.
        assert_eq!((s.channels.len(), s.warehouse.locations().len()), (5, 3));
        assert_eq!(s.catalog.kits, 100);
        assert!(s.warehouse.ship_after_secs.is_some());
        let sweep = Scenario::parse(include_str!("../../../../scenarios/sweep.toml"))
            .expect("sweep scenario");
        assert_eq!(
            // Four selling channels and Google showing availability.
            (sweep.channels.len(), sweep.warehouse.locations().len()),
            (5, 3)
        );
        assert!(sweep.catalog.kits > 0);
    }

    #[test]
    fn simulate_scenario_refuses_bad_warehouses_and_counts() {
        let with = |extra: &str| SMALL.replace("[warehouse]\n", &format!("[warehouse]\n{extra}\n"));
        let ok = Scenario::parse(&with("locations = [\"A\", \"B\"]\ncounts_per_hour = 5.0"))
            .expect("two warehouses");
        assert_eq!(ok.warehouse.locations(), vec!["A", "B"]);
        assert_eq!(
            Scenario::parse(SMALL).unwrap().warehouse.locations(),
            vec!["WH1"]
        );
        for (extra, needle) in [
            ("locations = [\"A\", \"A\"]", "A twice"),
            ("locations = [\"bad id\"]", "not a location id"),
            ("counts_per_hour = -1.0", "counts_per_hour"),
            ("count_shrink = [3, 1]", "count_shrink"),
            ("returns_per_hour = -2.0", "returns_per_hour"),
            ("return_qty = [0, 1]", "return_qty"),
            ("inspect_after_secs = [0, 10]", "inspect_after_secs"),
            ("return_sellable = 1.5", "return_sellable"),
            ("ship_after_secs = [600, 60]", "ship_after_secs"),
        ] {
            let e = Scenario::parse(&with(extra)).unwrap_err();
            assert!(e.message.contains(needle), "{extra}: {}", e.message);
        }
    }

    #[test]
    fn simulate_scenario_refuses_bad_crash_rates() {
        let bad = SMALL.replace("crashes_per_hour = 1.0", "crashes_per_hour = -1.0");
        assert_ne!(bad, SMALL, "the fixture sets crashes_per_hour");
        let e = Scenario::parse(&bad).unwrap_err();
        assert!(e.message.contains("crashes_per_hour"), "{}", e.message);
        let bad = SMALL.replace("crash_down_secs = 30.0", "crash_down_secs = 0.0");
        let e = Scenario::parse(&bad).unwrap_err();
        assert!(e.message.contains("crash_down_secs"), "{}", e.message);
        let e = Scenario::parse(&SMALL.replace(
            "crashes_per_hour = 1.0",
            "crashes_per_hour = 1.0\ndb_outages_per_hour = -1.0",
        ))
        .unwrap_err();
        assert!(e.message.contains("db_outages_per_hour"), "{}", e.message);
    }

    #[test]
    fn simulate_scenario_refuses_unknown_fields_and_bad_rates() {
        let e = Scenario::parse(&format!("bogus = 1\n{SMALL}")).unwrap_err();
        assert_eq!(e.code, "scenario_invalid_toml");
        let bad = SMALL.replace("error_5xx_rate = 0.02", "error_5xx_rate = 2.0");
        assert_ne!(bad, SMALL, "the fixture sets error_5xx_rate");
        let e = Scenario::parse(&bad).unwrap_err();
        assert_eq!(e.code, "scenario_invalid");
        assert!(e.message.contains("error_5xx_rate"), "{}", e.message);
        // bol.com pushes no orders: its polls cannot be turned off.
        let bol = format!(
            "{SMALL}\n[[channels]]\nkind = \"bol\"\nid = \"bol-main\"\nshare = 1.0\norder_poll_secs = 0\n"
        );
        let e = Scenario::parse(&bol).unwrap_err();
        assert_eq!(e.code, "scenario_invalid");
        assert!(e.message.contains("bol.com"), "{}", e.message);
        // Google Merchant Center takes no orders: no share of the demand.
        let google =
            format!("{SMALL}\n[[channels]]\nkind = \"gmc\"\nid = \"google\"\nshare = 0.2\n");
        let e = Scenario::parse(&google).unwrap_err();
        assert_eq!(e.code, "scenario_invalid");
        assert!(e.message.contains("no orders"), "{}", e.message);
        let google = format!("{SMALL}\n[[channels]]\nkind = \"gmc\"\nid = \"google\"\n");
        assert!(Scenario::parse(&google).is_ok());
    }
}
