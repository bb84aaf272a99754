//! The WooCommerce simulator's state: products (simple, variable, variations), orders and
//! webhooks, as the shop's database holds them.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Simple,
    Variable,
    Variation,
}

#[derive(Debug, Clone)]
pub(super) struct Product {
    pub(super) id: u64,
    pub(super) name: String,
    pub(super) kind: Kind,
    pub(super) parent_id: u64,
    pub(super) sku: String,
    pub(super) manage_stock: bool,
    pub(super) stock_quantity: Option<i64>,
    pub(super) stock_status: String,
    pub(super) backorders: String,
    pub(super) low_stock_amount: Option<i64>,
    pub(super) variations: Vec<u64>,
    pub(super) created: String,
    pub(super) modified: String,
}

#[derive(Debug, Clone)]
pub(super) struct Line {
    pub(super) id: u64,
    pub(super) product_id: u64,
    pub(super) variation_id: u64,
    pub(super) sku: String,
    pub(super) quantity: i64,
    pub(super) name: String,
    /// Units restocked by refunds (meta `_restock_refunded_items`).
    pub(super) restocked: i64,
}

#[derive(Debug, Clone)]
pub(super) struct Order {
    pub(super) id: u64,
    pub(super) status: String,
    pub(super) created: String,
    pub(super) modified: String,
    /// `date_paid`: set on the move to a paid status (processing or
    /// completed) and kept after, as WooCommerce does.
    pub(super) paid: Option<String>,
    pub(super) lines: Vec<Line>,
    pub(super) refunds: Vec<(u64, i64)>,
    pub(super) key: String,
}

pub(super) struct Webhook {
    pub(super) url: String,
    pub(super) status: String,
    pub(super) failure_count: u32,
}

pub(super) struct WooState {
    pub(super) products: BTreeMap<u64, Product>,
    pub(super) orders: BTreeMap<u64, Order>,
    pub(super) refunds: BTreeMap<u64, super::refunds::SimRefund>,
    pub(super) next_post: u64,
    pub(super) next_line: u64,
    pub(super) nonces: HashSet<String>,
    pub(super) webhook: Option<Webhook>,
    pub(super) bucket: Option<(f64, Instant)>,
    clock: Option<SimClock>,
}

impl WooState {
    pub(super) fn new(c: &Config) -> WooState {
        WooState {
            products: BTreeMap::new(),
            orders: BTreeMap::new(),
            refunds: BTreeMap::new(),
            next_post: 100,
            next_line: 1,
            nonces: HashSet::new(),
            webhook: c.webhook_url.clone().map(|url| Webhook {
                url,
                status: "active".into(),
                failure_count: 0,
            }),
            bucket: c.rate_limit.map(|(burst, _)| (burst, Instant::now())),
            clock: c.clock.clone(),
        }
    }

    pub(super) fn post_id(&mut self) -> u64 {
        self.next_post += 1;
        self.next_post
    }

    pub(super) fn by_sku(&self, sku: &str) -> Option<&Product> {
        self.products
            .values()
            .find(|p| p.sku == sku && p.kind != Kind::Variable)
    }

    pub(super) fn listing(&self, p: &Product) -> SimListing {
        let mut external = Map::new();
        if p.kind == Kind::Variation {
            external.insert("product_id".into(), json!(p.parent_id));
            external.insert("variation_id".into(), json!(p.id));
        } else {
            external.insert("product_id".into(), json!(p.id));
        }
        SimListing {
            sku: p.sku.clone(),
            external,
            quantity: p.stock_quantity.unwrap_or(0),
            availability: match p.stock_status.as_str() {
                "instock" => "in_stock",
                "onbackorder" => "backorder",
                _ => "out_of_stock",
            }
            .into(),
        }
    }

    /// A variable parent's status is derived from its children ( rule 6).
    pub(super) fn sync_parent(&mut self, parent: u64) {
        let Some(p) = self.products.get(&parent) else {
            return;
        };
        let statuses: Vec<String> = p
            .variations
            .iter()
            .filter_map(|v| self.products.get(v).map(|c| c.stock_status.clone()))
            .collect();
        let status = if statuses.iter().any(|s| s == "instock") {
            "instock"
        } else if statuses.iter().any(|s| s == "onbackorder") {
            "onbackorder"
        } else {
            "outofstock"
        };
        if let Some(p) = self.products.get_mut(&parent) {
            p.stock_status = status.into();
        }
    }
}

/// Core's automatic status for managed stock (UNCONFIRMED rule 7): at or below 0 the
/// item is out of stock unless backorders are allowed.
pub(super) fn auto_status(p: &mut Product) {
    if p.manage_stock && p.kind != Kind::Variable {
        let q = p.stock_quantity.unwrap_or(0);
        p.stock_status = if q > 0 {
            "instock".into()
        } else if p.backorders == "no" {
            "outofstock".into()
        } else {
            "onbackorder".into()
        };
    }
}

/// The `include` collection parameter (a comma list of ids): only
/// those resources are listed, and the totals count only them.
pub(super) fn include_ids(ctx: &Ctx) -> Option<std::collections::HashSet<u64>> {
    let raw = ctx
        .query
        .iter()
        .find(|(k, _)| k == "include" || k == "include[]")
        .map(|(_, v)| v.clone())?;
    Some(
        raw.split(',')
            .filter_map(|id| id.trim().parse::<u64>().ok())
            .collect(),
    )
}

pub(super) struct Woo {
    pub(super) config: Config,
    pub(super) core: Arc<SimCore>,
    pub(super) state: Arc<Mutex<WooState>>,
    pub(super) home: String,
}

impl WooState {
    /// The shop's time as its dates are written (the simulated shop keeps
    /// GMT; to the second).
    pub(super) fn now_local(&self) -> String {
        let now = self
            .clock
            .as_ref()
            .map_or_else(chrono::Utc::now, SimClock::now);
        now.format("%Y-%m-%dT%H:%M:%S").to_string()
    }
}
