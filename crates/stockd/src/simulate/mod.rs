//! `stockd simulate`: a trading day in simulated time, per seed. The real
//! router, writer (SQLite in a temporary folder), dispatcher and connectors
//! run on one thread against the channel simulators started in process: the
//! connectors' requests call the simulators' routers directly, and the
//! simulators' webhooks call stockd's router. Time is tokio's paused clock
//! (a day passes as fast as the work allows) and the store and dispatcher
//! take "now" from it; every random draw — demand, faults, webhook loss,
//! duplication and delay, backoff jitter — comes from the seed, so a seed
//! gives the same report byte for byte.
//!
//! The simulation keeps its own truth (`truth.rs`): what each channel sold,
//! as the simulator answered its customers, and the units the warehouse
//! received. The checkers hold stockd's ledger, stock and the channels'
//! read-back to it after the day has gone quiet.

mod process;
pub mod scenario;
mod transport;
pub mod truth;
mod warehouse;

use crate::outbound::dispatch::{Connection, UpdateClass};
use crate::outbound::stats::Rng;
use axum::body::Body;
use chrono::{DateTime, TimeZone, Utc};
use scenario::{ChannelKind, Scenario};
use serde::Serialize;
use serde_json::{json, Value};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use stockd_core::ChannelId;
use stockd_sim::{Faults, InMemorySim, SimOptions, WebhookDelivery, WebhookSink};
use tower::ServiceExt as _;
use truth::{Figures, LedgerOrder, StockdState, Target, Truth, Violation};
use warehouse::{pick, warehouse_event, Pick, WarehouseClient, WarehouseSent};

/// Where a simulated day starts (a Black Friday).
const EPOCH_MS: i64 = 1_795_737_600_000; // 2026-11-27T00:00:00Z
/// After the traffic stops: webhook retries and pushes settle within this.
const QUIESCENCE: Duration = Duration::from_secs(10 * 60);
/// Shopify's webhook retries in the simulation: 2 s, 4 s, … (8.5 min in all;
/// Shopify's own take hours, which only lengthens the quiet time).
const SHOPIFY_WEBHOOK_RETRIES: u32 = 8;

/// Why a simulation could not run (not a failed check: those are in the report).
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error(transparent)]
    Scenario(#[from] scenario::ScenarioError),
    /// `simulate_setup`: stockd refused the scenario's set-up.
    #[error("simulate_setup: {0}")]
    Setup(String),
}

fn setup(e: impl std::fmt::Display) -> SimulateError {
    SimulateError::Setup(e.to_string())
}

/// One seed's report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeedReport {
    pub seed: u64,
    pub scenario: String,
    /// `active` or `candidate` (`--rules`).
    pub rules: String,
    pub simulated_hours: f64,
    pub listings: u64,
    pub total: Figures,
    pub by_channel: BTreeMap<String, Figures>,
    pub targets: BTreeMap<&'static str, Target>,
    pub invariant_violations: Vec<Violation>,
    /// Faults the simulators injected (requests, items and webhook copies).
    pub injected_faults: u64,
    /// Times stockd's process crashed and started again on its database.
    pub process_crashes: u64,
    /// Windows in which stockd's database took no writes, and the
    /// warehouse messages stockd refused meanwhile (503; each sent again
    /// until taken).
    pub db_outages: u64,
    pub inbound_refused: u64,
    /// Dead letters still standing at the end (not superseded by a newer
    /// desired state): listings stockd gave up on until someone retries.
    pub dead_letters: u64,
    /// Cycle counts the warehouses sent, and the units they found missing.
    pub warehouse_counts: u64,
    /// Customer returns that arrived, and their units the inspection found
    /// unsellable (written off).
    pub returns_received: u64,
    pub returned_units_unsellable: i64,
    /// Warehouse messages delivered again (`faults.inbound_redelivery_rate`).
    pub inbound_redeliveries: u64,
    /// Listings whose raise the channel's change budget still held at the
    /// end (Google: updates "up to twice per day"); not counted as drift.
    pub held_by_budget: u64,
    pub units_written_off: i64,
    /// Order lines of kits (in `total.order_lines` too).
    pub kit_order_lines: u64,
    /// Orders the warehouse shipped (`warehouse.ship_after_secs`), and
    /// orders due to ship that still waited for stock at the end of the day
    /// (their units were not on the shelves stockd reserved them at).
    pub orders_shipped: u64,
    pub orders_waiting_for_stock: u64,
}

/// A simulated clock: the paused tokio clock of the simulation's thread,
/// from `EPOCH_MS`. Other threads (the store's writer) read the last value
/// the simulation's thread saw, which is current whenever the writer works:
/// the simulation's thread reads the clock before it hands the writer work.
struct SimClock {
    start: tokio::time::Instant,
    thread: std::thread::ThreadId,
    latest_ms: AtomicI64,
}

impl SimClock {
    fn new() -> Arc<SimClock> {
        Arc::new(SimClock {
            start: tokio::time::Instant::now(),
            thread: std::thread::current().id(),
            latest_ms: AtomicI64::new(EPOCH_MS),
        })
    }

    fn now(&self) -> DateTime<Utc> {
        let ms = if std::thread::current().id() == self.thread {
            let ms = EPOCH_MS + self.start.elapsed().as_millis() as i64;
            self.latest_ms.fetch_max(ms, Ordering::AcqRel);
            ms
        } else {
            self.latest_ms.load(Ordering::Acquire)
        };
        Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
    }

    fn elapsed_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
}

/// stockd's API, called in process.
#[derive(Clone)]
struct Api {
    router: axum::Router,
}

impl Api {
    /// Posts one warehouse message: stockd's answer for it, or `None` when
    /// stockd could not take it now (its storage unavailable: 503), and the
    /// warehouse sends it again later.
    async fn post_event(&self, event: &Value) -> Result<Option<Value>, SimulateError> {
        let path = "/v1/events";
        match self.call("POST", path, Some(json!([event]))).await? {
            (status, answer) if status.is_success() => Ok(Some(answer)),
            (axum::http::StatusCode::SERVICE_UNAVAILABLE, _) => Ok(None),
            (status, answer) => Err(setup(format!("POST {path}: {status}: {answer}"))),
        }
    }

    /// A request whose answer must be a success: its JSON body.
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, SimulateError> {
        match self.call(method, path, body).await? {
            (status, answer) if status.is_success() => Ok(answer),
            (status, answer) => Err(setup(format!("{method} {path}: {status}: {answer}"))),
        }
    }

    /// A request: the answer's status and JSON body (`null` when empty,
    /// the text when not JSON).
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(axum::http::StatusCode, Value), SimulateError> {
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .map_err(setup)?;
        let response = self.router.clone().oneshot(request).await.map_err(setup)?;
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .map_err(setup)?;
        if bytes.is_empty() {
            return Ok((status, Value::Null));
        }
        let answer = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok((status, answer))
    }
}

/// Where webhooks reach stockd: its router while the process is up.
type RouterCell = Arc<RwLock<Option<axum::Router>>>;

/// A webhook delivered into stockd's router: the answer's status (503, as
/// a refused connection, while the process is down).
async fn deliver(router: &RouterCell, d: WebhookDelivery) -> u16 {
    let up = router.read().ok().and_then(|r| r.clone());
    let Some(router) = up else {
        return 503;
    };
    let path = d
        .url
        .find("/v1/")
        .map_or(d.url.as_str(), |i| &d.url[i..])
        .to_string();
    let mut request = axum::http::Request::builder().method("POST").uri(path);
    for (k, v) in &d.headers {
        request = request.header(k.as_str(), v.as_str());
    }
    let Ok(request) = request.header("host", "127.0.0.1").body(Body::from(d.body)) else {
        return 400;
    };
    match router.clone().oneshot(request).await {
        Ok(response) => response.status().as_u16(),
        Err(never) => match never {},
    }
}

/// A channel of the simulation: its simulator and stockd's id for it.
struct SimChannel {
    kind: ChannelKind,
    id: String,
    share: f64,
    /// How often stockd polls the channel's orders (`ChannelSpec::order_poll`).
    order_poll: Option<Duration>,
    sim: Arc<InMemorySim>,
}

const SECRET: &str = "simulated-channel-secret";
const WOO_KEY: &str = "ck_simulated_0123456789abcdef";
const WOO_SECRET: &str = "cs_simulated_0123456789abcdef";
const BOL_CLIENT_ID: &str = "simulated-bol-client";

/// The in-process transport to the simulators.
type SimTransport = Arc<dyn stockd_channels::Transport>;

/// Starts the simulators, reached through the returned transport.
fn simulators(
    scenario: &Scenario,
    seed: u64,
    router: &RouterCell,
    clock: &stockd_store::Clock,
    trace: Option<Arc<transport::Trace>>,
) -> (Vec<SimChannel>, SimTransport) {
    let sink: WebhookSink = {
        let router = router.clone();
        let trace = trace.clone();
        Arc::new(move |d| {
            let router = router.clone();
            let trace = trace.clone();
            Box::pin(async move {
                let url = trace.is_some().then(|| d.url.clone());
                let status = deliver(&router, d).await;
                if let (Some(trace), Some(url)) = (trace, url) {
                    trace.event(format_args!("WEBHOOK {url} {status}"));
                }
                status
            })
        })
    };
    let mut sims = Vec::new();
    let mut hosts = BTreeMap::new();
    for (i, spec) in scenario.channels.iter().enumerate() {
        let options = SimOptions {
            seed: Some(seed.wrapping_mul(31).wrapping_add(i as u64 + 1)),
            webhook_sink: Some(sink.clone()),
        };
        let hook = format!(
            "http://stockd.sim/v1/webhooks/{}/{}",
            spec.kind.kind(),
            spec.id
        );
        let (host, sim) = match spec.kind {
            ChannelKind::Shopify => {
                let base = format!("http://{}.shopify.sim", spec.id);
                let sim = stockd_sim::shopify::start_in_memory(
                    stockd_sim::shopify::Config {
                        access_token: SECRET.into(),
                        webhook_secret: SECRET.into(),
                        webhook_url: Some(hook),
                        webhook_retry_delays: (0..SHOPIFY_WEBHOOK_RETRIES)
                            .map(|n| Duration::from_secs(2 << n))
                            .collect(),
                        clock: Some(stockd_sim::SimClock(clock.clone())),
                        ..Default::default()
                    },
                    &base,
                    options,
                );
                (base, sim)
            }
            ChannelKind::Woocommerce => {
                let base = format!("https://{}.woo.sim", spec.id);
                let sim = stockd_sim::woocommerce::start_in_memory(
                    stockd_sim::woocommerce::Config {
                        consumer_key: WOO_KEY.into(),
                        consumer_secret: WOO_SECRET.into(),
                        webhook_secret: SECRET.into(),
                        webhook_url: Some(hook),
                        https_terminated: true,
                        clock: Some(stockd_sim::SimClock(clock.clone())),
                        ..Default::default()
                    },
                    &base,
                    options,
                );
                (base, sim)
            }
            ChannelKind::Amazon => {
                // One simulator answers SP-API and the LWA token host;
                // ORDER_CHANGE notifications come as webhooks.
                let base = format!("https://{}.amazon.sim", spec.id);
                let sim = stockd_sim::amazon::start_in_memory(
                    stockd_sim::amazon::Config {
                        notification_url: Some(hook),
                        notification_secret: SECRET.into(),
                        clock: Some(stockd_sim::SimClock(clock.clone())),
                        ..Default::default()
                    },
                    &base,
                    options,
                );
                (base, sim)
            }
            ChannelKind::Gmc => {
                // One simulator answers the Merchant API and the token
                // endpoint; it checks the JWTs against the demo key.
                let base = format!("https://{}.gmc.sim", spec.id);
                let sim = stockd_sim::gmc::start_in_memory(
                    stockd_sim::gmc::Config {
                        // How Google enforces "up to twice per day" is
                        // unconfirmed (the simulator's refusal of a third
                        // update is a guess): the day measures stockd's own
                        // change budget, which holds raises and never a
                        // decrease.
                        updates_per_product_per_day: 0,
                        ..crate::demo::channels::gmc_sim_config()
                    },
                    &base,
                    options,
                )
                .expect("the demo key is an RSA public key");
                (base, sim)
            }
            ChannelKind::Bol => {
                // One simulator answers the API and the login host.
                let base = format!("https://{}.bol.sim", spec.id);
                let sim = stockd_sim::bol::start_in_memory(
                    stockd_sim::bol::Config {
                        client_id: BOL_CLIENT_ID.into(),
                        client_secret: SECRET.into(),
                        clock: Some(stockd_sim::SimClock(clock.clone())),
                        ..Default::default()
                    },
                    &base,
                    options,
                );
                (base, sim)
            }
        };
        let sim = Arc::new(sim);
        hosts.insert(host, sim.clone());
        sims.push(SimChannel {
            kind: spec.kind,
            id: spec.id.clone(),
            share: spec.share,
            order_poll: spec.order_poll(),
            sim,
        });
    }
    let transport: SimTransport = Arc::new(transport::InMemoryTransport::new(hosts, trace));
    (sims, transport)
}

/// stockd's connectors to the simulators (new ones for each start of the
/// process, as a restarted process builds them).
fn connectors(
    sims: &[SimChannel],
    transport: &SimTransport,
    clock: &stockd_store::Clock,
) -> Vec<Connection> {
    sims.iter()
        .map(|c| {
            let connector: Arc<dyn stockd_channels::Connector> = match c.kind {
                ChannelKind::Shopify => Arc::new(stockd_channels::shopify::Shopify::with_clock(
                    stockd_channels::shopify::Config {
                        shop_url: c.sim.sim.base_url.clone(),
                        access_token: SECRET.into(),
                        webhook_secret: SECRET.into(),
                        order_poll_interval: c.order_poll,
                        ..Default::default()
                    },
                    transport.clone(),
                    clock.clone(),
                )),
                ChannelKind::Woocommerce => {
                    Arc::new(stockd_channels::woocommerce::WooCommerce::with_clock(
                        stockd_channels::woocommerce::Config {
                            site_url: c.sim.sim.base_url.clone(),
                            consumer_key: WOO_KEY.into(),
                            consumer_secret: WOO_SECRET.into(),
                            webhook_secret: SECRET.into(),
                            rate_limit: None,
                            order_poll_interval: c.order_poll,
                            ..Default::default()
                        },
                        transport.clone(),
                        clock.clone(),
                    ))
                }
                ChannelKind::Amazon => {
                    let sim = stockd_sim::amazon::Config::default();
                    let base = &c.sim.sim.base_url;
                    Arc::new(stockd_channels::amazon::Amazon::with_clock(
                        stockd_channels::amazon::Config {
                            endpoint: base.clone(),
                            lwa_url: format!("{base}/auth/o2/token"),
                            client_id: sim.client_id,
                            client_secret: sim.client_secret,
                            refresh_token: sim.refresh_token,
                            seller_id: sim.seller_id,
                            marketplace_id: sim.marketplace_id,
                            notification_secret: SECRET.into(),
                            ..Default::default()
                        },
                        transport.clone(),
                        clock.clone(),
                    ))
                }
                ChannelKind::Gmc => Arc::new(stockd_channels::gmc::Gmc::new(
                    crate::demo::channels::gmc_connector_config(&c.sim.sim.base_url),
                    transport.clone(),
                )),
                ChannelKind::Bol => {
                    let defaults = stockd_channels::bol::Config::default();
                    Arc::new(stockd_channels::bol::Bol::with_clock(
                        stockd_channels::bol::Config {
                            api_url: c.sim.sim.base_url.clone(),
                            login_url: c.sim.sim.base_url.clone(),
                            client_id: BOL_CLIENT_ID.into(),
                            client_secret: SECRET.into(),
                            order_poll_interval: c
                                .order_poll
                                .unwrap_or(defaults.order_poll_interval),
                            ..defaults
                        },
                        transport.clone(),
                        clock.clone(),
                    ))
                }
            };
            Connection {
                channel: ChannelId::parse(c.id.clone()).expect("checked by the scenario"),
                connector,
            }
        })
        .collect()
}

/// Something the day brings, at a simulated moment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Happening {
    Order {
        channel: usize,
        sku: usize,
        qty: i64,
        cancel_after_ms: Option<u64>,
        ship_after_ms: Option<u64>,
    },
    Cancel {
        order: usize,
    },
    /// The warehouse picks order `order` of the books and ships it.
    Ship {
        order: usize,
    },
    Receipt {
        sku: usize,
        location: usize,
        qty: i64,
    },
    /// A cycle count that finds up to `shrink` units missing.
    Count {
        sku: usize,
        location: usize,
        shrink: i64,
    },
    /// A customer's return (of an order shipped before the day) arrives.
    Return {
        sku: usize,
        location: usize,
        qty: i64,
    },
    /// Return number `rma` is inspected: `sellable` of its units go back on
    /// the shelf.
    Inspect {
        rma: u64,
        sku: usize,
        location: usize,
        qty: i64,
        sellable: i64,
    },
    Faults {
        channel: usize,
        outage: bool,
    },
    /// stockd's process dies and comes back `down_ms` later.
    Crash {
        down_ms: u64,
    },
    Restart,
    /// Another process takes the database's write lock for `down_ms`.
    DbOutage {
        down_ms: u64,
    },
    DbBack,
    /// The warehouse's client sends what waits again after stockd refused
    /// the first of it.
    Flush,
    /// The warehouse message `sent[n]` delivered again.
    Redeliver {
        n: usize,
    },
}

/// Makes a delivery or a count of (variant, warehouse, units).
type WarehouseHappening = fn(usize, usize, i64) -> Happening;

/// How long the warehouse's client waits before it sends a delivery or a
/// count again that stockd did not take (it was down).
const RECEIPT_RETRY_MS: u64 = 5_000;
/// How long a pick waits for an order stockd has not heard of yet (its
/// webhook lost: a poll or a reconciliation brings it).
const SHIP_UNKNOWN_RETRY_MS: u64 = 10 * 60_000;
/// How long a pick waits for stock that is not on the shelf (a backorder).
const SHIP_SHORT_RETRY_MS: u64 = 30 * 60_000;

/// Draws the day's demand, deliveries and fault windows from the seed.
fn schedule(scenario: &Scenario, channel_shares: &[f64], rng: &mut Rng) -> Vec<(u64, Happening)> {
    let day_ms = (scenario.hours * 3_600_000.0) as u64;
    let variants = scenario.catalog.variants;
    let hot = (variants / 10).max(1);
    // Kits come after the variants in the SKU list; the best sellers are
    // variants.
    let sellable = variants + scenario.catalog.kits;
    let share_sum: f64 = channel_shares.iter().sum();
    let mut out = Vec::new();
    // Orders: a Poisson process whose rate follows the hour (the peak hour ×).
    let mut t = 0.0_f64;
    loop {
        let hour = (t / 3_600_000.0) as u32;
        let rate_per_ms = scenario.demand.orders_per_hour / 3_600_000.0
            * if Some(hour) == scenario.demand.peak_hour {
                scenario.demand.peak_factor
            } else {
                1.0
            };
        t += -(1.0 - rng.next_unit()).ln() / rate_per_ms;
        if t >= day_ms as f64 {
            break;
        }
        let mut pick = rng.next_unit() * share_sum;
        let channel = channel_shares
            .iter()
            .position(|s| {
                pick -= s;
                pick < 0.0
            })
            .unwrap_or_else(|| channel_shares.iter().rposition(|s| *s > 0.0).unwrap_or(0));
        let sku = if rng.next_unit() < scenario.demand.hot_share {
            rng.below(hot as u64) as usize
        } else {
            rng.below(sellable as u64) as usize
        };
        let qty = 1 + rng.below(scenario.demand.max_qty as u64) as i64;
        let cancel_after_ms =
            (rng.next_unit() < scenario.demand.cancel_rate).then(|| 60_000 + rng.below(3_600_000));
        // Drawn only when the day ships (days without keep their draws);
        // an order its customer cancels does not ship.
        let ship_after_ms = scenario.warehouse.ship_after_secs.and_then(|[lo, hi]| {
            let after_ms = (lo + rng.below(hi - lo + 1)) * 1_000;
            cancel_after_ms.is_none().then_some(after_ms)
        });
        out.push((
            t as u64,
            Happening::Order {
                channel,
                sku,
                qty,
                cancel_after_ms,
                ship_after_ms,
            },
        ));
    }
    let w = &scenario.warehouse;
    let locations = w.locations().len() as u64;
    // One warehouse draws no location (the seeds of one-warehouse days
    // keep their days).
    let location = |rng: &mut Rng| {
        if locations > 1 {
            rng.below(locations) as usize
        } else {
            0
        }
    };
    // Deliveries and counts: each a variant, a warehouse and units drawn
    // uniformly from `[min, max]`, at Poisson times.
    let kinds: [(f64, [i64; 2], WarehouseHappening); 3] = [
        (w.receipts_per_hour, w.receipt_qty, |sku, location, qty| {
            Happening::Receipt { sku, location, qty }
        }),
        (
            w.counts_per_hour,
            w.count_shrink,
            |sku, location, shrink| Happening::Count {
                sku,
                location,
                shrink,
            },
        ),
        (w.returns_per_hour, w.return_qty, |sku, location, qty| {
            Happening::Return { sku, location, qty }
        }),
    ];
    for (per_hour, [lo, hi], happening) in kinds {
        if per_hour <= 0.0 {
            continue;
        }
        let mut t = 0.0_f64;
        loop {
            t += -(1.0 - rng.next_unit()).ln() / (per_hour / 3_600_000.0);
            if t >= day_ms as f64 {
                break;
            }
            let sku = rng.below(variants as u64) as usize;
            let units = lo + rng.below((hi - lo + 1) as u64) as i64;
            let location = location(rng);
            out.push((t as u64, happening(sku, location, units)));
        }
    }
    let f = &scenario.faults;
    let hours = scenario.hours;
    for channel in 0..channel_shares.len() {
        for (per_hour, outage) in [(f.outages_per_hour, true), (f.storms_per_hour, false)] {
            let faults = Happening::Faults { channel, outage };
            scatter(per_hour * hours, day_ms, faults, rng, &mut out);
        }
    }
    if f.db_outages_per_hour > 0.0 {
        let down_ms = (f.db_outage_secs * 1_000.0) as u64;
        let outage = Happening::DbOutage { down_ms };
        scatter(f.db_outages_per_hour * hours, day_ms, outage, rng, &mut out);
    }
    if f.crashes_per_hour > 0.0 {
        let down_ms = (f.crash_down_secs * 1_000.0) as u64;
        let crash = Happening::Crash { down_ms };
        scatter(f.crashes_per_hour * hours, day_ms, crash, rng, &mut out);
    }
    out.sort();
    out
}

/// `expected` times `happening` at uniform moments of the day (the
/// fraction of one drawn).
fn scatter(
    expected: f64,
    day_ms: u64,
    happening: Happening,
    rng: &mut Rng,
    out: &mut Vec<(u64, Happening)>,
) {
    let times = expected.floor() as u64 + u64::from(rng.next_unit() < expected.fract());
    for _ in 0..times {
        out.push((rng.below(day_ms.max(1)), happening.clone()));
    }
}

/// The faults every request and webhook meets outside the fault windows.
fn base_faults(scenario: &Scenario) -> Faults {
    let f = &scenario.faults;
    Faults {
        error_5xx_rate: f.error_5xx_rate,
        lose_webhook_rate: f.webhook_loss_rate,
        duplicate_webhook_rate: f.webhook_duplicate_rate,
        delay_webhooks_ms: f.webhook_delay_ms,
        latency_ms: f.response_ms,
        ..Default::default()
    }
}

/// Runs one seed on a fresh thread-local runtime with paused time.
pub fn run_seed(
    scenario: &Scenario,
    seed: u64,
    rules: &Value,
    label: &str,
) -> Result<SeedReport, SimulateError> {
    run_seed_traced(scenario, seed, rules, label, None)
}

/// [`run_seed`], writing every channel request and webhook delivery to
/// `trace` when given.
pub fn run_seed_traced(
    scenario: &Scenario,
    seed: u64,
    rules: &Value,
    label: &str,
    trace: Option<&transport::TraceFile>,
) -> Result<SeedReport, SimulateError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(setup)?;
    runtime.block_on(async {
        let trace = trace.map(|file| {
            transport::Trace::start(file.clone(), &format!("seed {seed} rules {label}"))
        });
        day(scenario, seed, rules, label, trace).await
    })
}

async fn day(
    scenario: &Scenario,
    seed: u64,
    rules: &Value,
    label: &str,
    trace: Option<Arc<transport::Trace>>,
) -> Result<SeedReport, SimulateError> {
    let dir = tempfile::tempdir().map_err(setup)?;
    let clock = SimClock::new();
    let store_clock: stockd_store::Clock = {
        let clock = clock.clone();
        Arc::new(move || clock.now())
    };
    let path = dir.path().join("stockd-simulate.db");
    let router_cell: RouterCell = Arc::new(RwLock::new(None));
    let (sims, transport) = simulators(scenario, seed, &router_cell, &store_clock, trace);
    let wiring = process::Wiring {
        path: path.to_string_lossy().into_owned(),
        clock: store_clock.clone(),
        router: router_cell,
        kpis: Arc::new(crate::outbound::dispatch::SyncKpis::default()),
        seed,
    };
    let kpis = wiring.kpis.clone();
    let mut up = wiring.open(connectors(&sims, &transport, &store_clock))?;

    let mut rng = Rng::new(seed ^ 0x5151_7A7E_D0D0_CAFE);
    let kits = draw_kits(scenario, seed);
    let (skus, opening) = seed_catalog(&up.api, scenario, &sims, rules, &kits, &mut rng).await?;
    let mut truth = Truth {
        kits: kits.into_iter().collect(),
        ..Truth::default()
    };
    for (sku, location, qty) in &opening {
        truth.receive(sku, location, *qty);
    }
    let mut starts = 0_u64;
    let channel_ids: Vec<ChannelId> = sims.iter().map(|c| channel_id(&c.id)).collect();
    up.dispatch(&wiring, starts).await;
    // The first push of every listing is set-up, not traffic.
    settle(&*up.store, &channel_ids, Duration::from_secs(3_600)).await;
    // stockd while it runs; `None` between a crash and its restart.
    let mut up = Some(up);
    let baseline: BTreeMap<String, [usize; 2]> = sims
        .iter()
        .map(|c| (c.id.clone(), kpis.sample_counts(&channel_id(&c.id))))
        .collect();
    let start_ms = clock.elapsed_ms();

    let base = base_faults(scenario);
    for c in &sims {
        c.sim.sim.set_faults(base.clone());
    }
    let shares: Vec<f64> = sims.iter().map(|c| c.share).collect();
    let mut queue: BinaryHeap<Reverse<(u64, u64, Happening)>> = BinaryHeap::new();
    for (n, (t, h)) in schedule(scenario, &shares, &mut rng)
        .into_iter()
        .enumerate()
    {
        queue.push(Reverse((t, n as u64, h)));
    }
    let mut next_n = queue.len() as u64;
    let mut sent_kinds = WarehouseSent::default();
    let locations = scenario.warehouse.locations();
    let mut crashes = 0_u64;
    let mut client = WarehouseClient::new(scenario.faults.inbound_redelivery_rate);
    // What redeliveries did, and the orders a pick left waiting for stock.
    let mut redeliveries = 0_u64;
    let mut waiting_for_stock: BTreeSet<usize> = BTreeSet::new();
    let day_ms = (scenario.hours * 3_600_000.0) as u64;
    let mut redelivered_applied: Vec<Violation> = Vec::new();
    let mut pick_violations: Vec<Violation> = Vec::new();
    // Another process's hold on the database's write lock, while it lasts.
    let mut db_lock: Option<stockd_store::SqliteWriteLock> = None;
    let mut db_outages = 0_u64;
    let day_start = tokio::time::Instant::now();
    while let Some(Reverse((t, _, happening))) = queue.pop() {
        tokio::time::sleep_until(day_start + Duration::from_millis(t)).await;
        let at_ms = clock.elapsed_ms() - start_ms;
        match happening {
            Happening::Order {
                channel,
                sku,
                qty,
                cancel_after_ms,
                ship_after_ms,
            } => {
                let c = &sims[channel];
                let sku = &skus[sku];
                match c.sim.sim.buy(&[(sku.clone(), qty)]).await {
                    Ok(order_id) => {
                        let order = truth.sold(&c.id, order_id, sku, qty, at_ms);
                        if let Some(after) = cancel_after_ms {
                            queue.push(Reverse((t + after, next_n, Happening::Cancel { order })));
                            next_n += 1;
                        }
                        // Shipping is the day's: a pick due after it waits for tomorrow.
                        if let Some(after) = ship_after_ms.filter(|after| t + after < day_ms) {
                            queue.push(Reverse((t + after, next_n, Happening::Ship { order })));
                            next_n += 1;
                        }
                    }
                    Err(_) => truth.refused(&c.id, sku, qty),
                }
            }
            Happening::Cancel { order } => {
                let o = &truth.orders[order];
                let c = sims
                    .iter()
                    .find(|c| c.id == o.channel)
                    .expect("the order's channel");
                if c.sim.sim.cancel_order(&o.order_id).await.is_ok() {
                    truth.cancelled(order);
                }
            }
            Happening::Receipt { .. }
            | Happening::Count { .. }
            | Happening::Return { .. }
            | Happening::Inspect { .. } => {
                let Some((event, then)) = warehouse_event(
                    happening,
                    &scenario.warehouse,
                    &skus,
                    &locations,
                    &mut truth,
                    &mut sent_kinds,
                    &mut rng,
                ) else {
                    continue;
                };
                if let Some((after, next)) = then {
                    queue.push(Reverse((t + after, next_n, next)));
                    next_n += 1;
                }
                client.waiting.push_back(event);
                for (after, next) in client.flush(up.as_ref(), &mut rng).await? {
                    queue.push(Reverse((t + after, next_n, next)));
                    next_n += 1;
                }
            }
            Happening::Ship { order } => {
                let Some(process) = &up else {
                    queue.push(Reverse((t + RECEIPT_RETRY_MS, next_n, happening)));
                    next_n += 1;
                    continue;
                };
                let retry_after = match pick(&process.api, &truth, order).await? {
                    Pick::Ship(picks) => {
                        waiting_for_stock.remove(&order);
                        truth.ship(order, &picks);
                        let o = &truth.orders[order];
                        client.waiting.push_back(json!({
                            "key": format!("ship-{}-{}", o.channel, o.order_id), "type": "ship",
                            "channel": o.channel, "order_id": o.order_id}));
                        for (after, next) in client.flush(up.as_ref(), &mut rng).await? {
                            queue.push(Reverse((t + after, next_n, next)));
                            next_n += 1;
                        }
                        None
                    }
                    Pick::Settled => None,
                    Pick::Unknown => Some(SHIP_UNKNOWN_RETRY_MS),
                    Pick::Short => {
                        waiting_for_stock.insert(order);
                        Some(SHIP_SHORT_RETRY_MS)
                    }
                    Pick::NotTheOrder(listed) => {
                        let o = &truth.orders[order];
                        pick_violations.push(Violation {
                            seed,
                            invariant: "pick_list_not_the_order",
                            event: format!(
                                "order {} on {} sold {:?}; stockd's pick list holds {listed:?}",
                                o.order_id,
                                o.channel,
                                truth.units_of(order)
                            ),
                            at_ms,
                        });
                        None
                    }
                };
                if let Some(after) = retry_after.filter(|after| t + after < day_ms) {
                    queue.push(Reverse((t + after, next_n, happening)));
                    next_n += 1;
                }
            }
            Happening::Flush => {
                client.retry_due = false;
                for (after, next) in client.flush(up.as_ref(), &mut rng).await? {
                    queue.push(Reverse((t + after, next_n, next)));
                    next_n += 1;
                }
            }
            Happening::Redeliver { n } => {
                let answer = match &up {
                    Some(process) => process.api.post_event(&client.sent[n]).await?,
                    None => None,
                };
                let Some(answer) = answer else {
                    queue.push(Reverse((t + RECEIPT_RETRY_MS, next_n, happening)));
                    next_n += 1;
                    continue;
                };
                redeliveries += 1;
                let status = answer["results"][0]["status"].as_str().unwrap_or("none");
                if status != "duplicate" {
                    redelivered_applied.push(Violation {
                        seed,
                        invariant: "inbound_not_exactly_once",
                        event: format!(
                            "warehouse message {} delivered again was answered {status}",
                            client.sent[n]["key"]
                        ),
                        at_ms,
                    });
                }
            }
            Happening::Faults { channel, outage } => {
                let f = &scenario.faults;
                let window = if outage {
                    Faults {
                        outage_secs: f.outage_secs,
                        ..base.clone()
                    }
                } else {
                    Faults {
                        throttle_storm_secs: f.storm_secs,
                        ..base.clone()
                    }
                };
                sims[channel].sim.sim.set_faults(window);
            }
            Happening::Crash { down_ms } => {
                if let Some(process) = up.take() {
                    process.crash(&wiring).await;
                    crashes += 1;
                    queue.push(Reverse((t + down_ms, next_n, Happening::Restart)));
                    next_n += 1;
                }
            }
            Happening::Restart => {
                if up.is_none() {
                    let mut process = match wiring.open(connectors(&sims, &transport, &store_clock))
                    {
                        Ok(process) => process,
                        // stockd cannot start while its database takes
                        // no writes (it migrates first): its supervisor
                        // starts it again.
                        Err(_) if db_lock.is_some() => {
                            queue.push(Reverse((t + RECEIPT_RETRY_MS, next_n, Happening::Restart)));
                            next_n += 1;
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    starts += 1;
                    process.dispatch(&wiring, starts).await;
                    up = Some(process);
                    // The warehouse's client sends what waited meanwhile.
                    for (after, next) in client.flush(up.as_ref(), &mut rng).await? {
                        queue.push(Reverse((t + after, next_n, next)));
                        next_n += 1;
                    }
                }
            }
            Happening::DbOutage { down_ms } => {
                if db_lock.is_none() {
                    db_lock =
                        Some(stockd_store::hold_sqlite_write_lock(&wiring.path).map_err(setup)?);
                    db_outages += 1;
                    queue.push(Reverse((t + down_ms, next_n, Happening::DbBack)));
                    next_n += 1;
                }
            }
            Happening::DbBack => db_lock = None,
        }
    }
    // The day is over: faults stop; webhook retries and pushes settle.
    for c in &sims {
        c.sim.sim.set_faults(Faults::default());
    }
    let traffic_end = tokio::time::Instant::now()
        .max(day_start + Duration::from_secs_f64(scenario.hours * 3_600.0));
    tokio::time::sleep_until(traffic_end + QUIESCENCE).await;
    let up = up.ok_or_else(|| setup("stockd was down at the end of the day"))?;
    settle(&*up.store, &channel_ids, Duration::from_secs(3_600)).await;
    let end_ms = clock.elapsed_ms() - start_ms;

    let ledger = ledger_orders(&*up.store).await?;
    let dead_letters = standing_dead_letters(&*up.store).await?;
    let stockd = stockd_state(&*up.store, &sims, &skus).await?;
    let injected_faults = sims.iter().map(|c| c.sim.sim.stats().injected_faults).sum();
    up.stop(&wiring).await;
    for c in sims.iter() {
        c.sim.sim.set_faults(Faults::default());
    }

    let mut violations = truth::check_exactly_once(seed, &truth, &ledger);
    violations.extend(truth::check_units(seed, &truth, &stockd));
    violations.extend(truth::check_drift(seed, end_ms, &stockd));
    violations.extend(redelivered_applied);
    violations.extend(pick_violations);
    violations.sort_by_key(|v| v.at_ms);
    // Every update's latency, and the protective updates' alone.
    let latency = |id: &str| {
        let (channel, mark) = (
            channel_id(id),
            baseline.get(id).copied().unwrap_or_default(),
        );
        let protective = kpis.class_samples(&channel, UpdateClass::Protective);
        let protective = protective[mark[0].min(protective.len())..].to_vec();
        (kpis.samples_since(&channel, mark), protective)
    };
    let by_channel: BTreeMap<String, Figures> = sims
        .iter()
        .map(|c| {
            let (all, protective) = latency(&c.id);
            let figures = truth::figures(&truth, &stockd, Some(&c.id), all, protective);
            (c.id.clone(), figures)
        })
        .collect();
    let (all, protective): (Vec<Vec<f64>>, Vec<Vec<f64>>) =
        sims.iter().map(|c| latency(&c.id)).unzip();
    let total = truth::figures(&truth, &stockd, None, all.concat(), protective.concat());
    Ok(SeedReport {
        seed,
        scenario: scenario.name.clone(),
        rules: label.to_string(),
        simulated_hours: scenario.hours,
        listings: stockd.desired.len() as u64,
        targets: truth::targets(&total),
        total,
        by_channel,
        invariant_violations: violations,
        injected_faults,
        process_crashes: crashes,
        db_outages,
        inbound_refused: client.refused,
        dead_letters,
        warehouse_counts: sent_kinds.counts,
        returns_received: sent_kinds.returns,
        returned_units_unsellable: truth.returned_unsellable.values().sum(),
        inbound_redeliveries: redeliveries,
        held_by_budget: stockd.held_by_budget.len() as u64,
        units_written_off: truth.written_off.values().sum(),
        kit_order_lines: truth
            .orders
            .iter()
            .filter(|o| truth.kits.contains_key(&o.sku))
            .count() as u64,
        orders_shipped: truth.orders.iter().filter(|o| o.shipped).count() as u64,
        orders_waiting_for_stock: waiting_for_stock.len() as u64,
    })
}

fn channel_id(id: &str) -> ChannelId {
    ChannelId::parse(id.to_string()).expect("checked by the scenario")
}

fn draw_kits(scenario: &Scenario, seed: u64) -> Vec<(String, Vec<(String, i64)>)> {
    let c = &scenario.catalog;
    let mut rng = Rng::new(seed ^ 0x4B17_5EED_0000_0001);
    (0..c.kits)
        .map(|i| {
            let [lo, hi] = c.kit_components;
            let n = lo + rng.below((hi - lo + 1) as u64) as usize;
            let mut picked: Vec<usize> = Vec::with_capacity(n);
            while picked.len() < n {
                let v = rng.below(c.variants as u64) as usize;
                if !picked.contains(&v) {
                    picked.push(v);
                }
            }
            let [qlo, qhi] = c.kit_component_qty;
            let components = picked
                .into_iter()
                .map(|v| {
                    let qty = qlo + rng.below((qhi - qlo + 1) as u64) as i64;
                    (variant_sku(v), qty)
                })
                .collect();
            (format!("KIT-{i:05}"), components)
        })
        .collect()
}

fn variant_sku(n: usize) -> String {
    format!("SIM-{n:06}")
}

/// Creates the locations, variants, kits, channels, rules, opening stock
/// and the listings (on each simulator and in stockd). Returns the SKUs
/// (variants, then kits) and the opening stock (SKU, location, units).
async fn seed_catalog(
    api: &Api,
    scenario: &Scenario,
    sims: &[SimChannel],
    rules: &Value,
    kits: &[(String, Vec<(String, i64)>)],
    rng: &mut Rng,
) -> Result<(Vec<String>, Vec<(String, String, i64)>), SimulateError> {
    let locations = scenario.warehouse.locations();
    for (n, location) in locations.iter().enumerate() {
        api.send(
            "PUT",
            &format!("/v1/locations/{location}"),
            Some(
                json!({"name": format!("Warehouse {location}"), "sellable": true,
                        "priority": n + 1}),
            ),
        )
        .await?;
    }
    let variants: Vec<String> = (0..scenario.catalog.variants).map(variant_sku).collect();
    let skus: Vec<String> = variants
        .iter()
        .cloned()
        .chain(kits.iter().map(|(kit, _)| kit.clone()))
        .collect();
    for chunk in skus.chunks(1_000) {
        let body: Vec<Value> = chunk
            .iter()
            .map(|sku| json!({"sku": sku, "title": format!("Simulated {sku}")}))
            .collect();
        api.send("POST", "/v1/variants", Some(Value::Array(body)))
            .await?;
    }
    for (kit, components) in kits {
        let components: Vec<Value> = components
            .iter()
            .map(|(sku, qty)| json!({"sku": sku, "qty": qty}))
            .collect();
        api.send(
            "PUT",
            &format!("/v1/bundles/{kit}"),
            Some(json!({ "components": components })),
        )
        .await?;
    }
    for c in sims {
        api.send(
            "PUT",
            &format!("/v1/channels/{}", c.id),
            Some(json!({"kind": c.kind.kind()})),
        )
        .await?;
    }
    api.send(
        "PUT",
        "/v1/rules",
        Some(json!({"rules": rules, "message": "simulation rules"})),
    )
    .await?;
    let [lo, hi] = scenario.catalog.opening_stock;
    let mut opening: Vec<(String, String, i64)> = Vec::new();
    for sku in &variants {
        // Spread over the warehouses: each takes a random part of what is
        // left, the last the rest (one warehouse draws nothing more).
        let mut left = lo + rng.below((hi - lo + 1) as u64) as i64;
        for (n, location) in locations.iter().enumerate() {
            let part = if n + 1 == locations.len() {
                left
            } else {
                rng.below(left as u64 + 1) as i64
            };
            left -= part;
            if part > 0 {
                opening.push((sku.clone(), location.clone(), part));
            }
        }
    }
    let receipts: Vec<Value> = opening
        .iter()
        .map(|(sku, location, qty)| {
            json!({"key": format!("opening-{sku}-{location}"), "type": "receipt", "sku": sku,
                   "location": location, "qty": qty})
        })
        .collect();
    for chunk in receipts.chunks(1_000) {
        api.send("POST", "/v1/events", Some(Value::Array(chunk.to_vec())))
            .await?;
    }
    for c in sims {
        let items: Vec<(String, i64)> = skus.iter().map(|s| (s.clone(), 0)).collect();
        let listings: Vec<Value> = c
            .sim
            .sim
            .add_listings(&items)
            .iter()
            .map(|l| json!({"sku": l.sku, "external": l.external}))
            .collect();
        for chunk in listings.chunks(1_000) {
            api.send(
                "POST",
                &format!("/v1/channels/{}/listings", c.id),
                Some(Value::Array(chunk.to_vec())),
            )
            .await?;
        }
    }
    Ok((skus, opening))
}

/// Waits (at most `limit` of simulated time) until no listing lags and
/// every update a channel accepted is acknowledged (bol's process statuses):
/// an acknowledgement counted after the wait would count as traffic.
async fn settle(store: &dyn stockd_store::Store, channels: &[ChannelId], limit: Duration) {
    let until = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < until {
        // Raises the change budget holds wait for tomorrow, not for the day
        // to end.
        let mut quiet = matches!(store.outbox(None, None, true, 1_000).await,
            Ok(rows) if rows.len() < 1_000 && rows.iter().all(held_by_budget));
        for channel in channels {
            if !quiet {
                break;
            }
            quiet = matches!(store.outbox_accepted(channel, 1).await, Ok(rows) if rows.is_empty());
        }
        if quiet {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Dead letters whose state is still the one the channel should show.
async fn standing_dead_letters(store: &dyn stockd_store::Store) -> Result<u64, SimulateError> {
    let mut standing = 0;
    let mut after_id = 0;
    loop {
        let page = store.dead_letters(after_id, 1_000).await.map_err(setup)?;
        let Some(last) = page.last() else {
            return Ok(standing);
        };
        after_id = last.id;
        standing += page.iter().filter(|d| !d.superseded).count() as u64;
    }
}

/// Every order and cancellation in stockd's ledger.
async fn ledger_orders(store: &dyn stockd_store::Store) -> Result<Vec<LedgerOrder>, SimulateError> {
    let mut out = Vec::new();
    let mut after_seq = 0;
    loop {
        let page = store
            .ledger(&stockd_store::LedgerQuery {
                sku: None,
                after_seq,
                limit: 1_000,
            })
            .await
            .map_err(setup)?;
        let Some(last) = page.last() else { break };
        after_seq = last.seq;
        for row in &page {
            if row.kind == "order" || row.kind == "cancel" {
                out.push(LedgerOrder {
                    channel: row.event["channel"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    order_id: row.event["order_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    kind: row.kind.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// stockd's stock and desired states, and what each channel shows.
async fn stockd_state(
    store: &dyn stockd_store::Store,
    sims: &[SimChannel],
    skus: &[String],
) -> Result<StockdState, SimulateError> {
    let mut state = StockdState::default();
    // Google shows an availability, not a quantity: there the two sides
    // compare as availabilities.
    let by_availability: std::collections::BTreeSet<&str> = sims
        .iter()
        .filter(|c| c.kind == ChannelKind::Gmc)
        .map(|c| c.id.as_str())
        .collect();
    for sku in skus {
        let parsed = stockd_core::Sku::parse(sku.clone()).map_err(setup)?;
        if let Some(view) = store.stock(&parsed).await.map_err(setup)? {
            state
                .stock
                .insert(sku.clone(), (view.on_hand, view.reserved));
            for at in &view.locations {
                let key = (sku.clone(), at.location.to_string());
                state.on_hand_at.insert(key.clone(), at.on_hand);
                state.pending_return_at.insert(key, at.pending_return);
            }
        }
    }
    let mut after: Option<(ChannelId, stockd_core::Sku)> = None;
    loop {
        let page = store
            .outbox(None, after.as_ref().map(|(c, s)| (c, s)), false, 1_000)
            .await
            .map_err(setup)?;
        let Some(last) = page.last() else { break };
        after = Some((last.channel.clone(), last.sku.clone()));
        for row in &page {
            let channel = row.channel.as_str();
            if held_by_budget(row) {
                state
                    .held_by_budget
                    .insert((channel.to_string(), row.sku.as_str().to_string()));
            }
            let desired = if by_availability.contains(channel) {
                availability_code(&row.desired.availability)
            } else {
                row.desired.quantity
            };
            state
                .desired
                .insert((channel.to_string(), row.sku.as_str().to_string()), desired);
        }
    }
    for c in sims {
        let by_availability = by_availability.contains(c.id.as_str());
        for l in c.sim.sim.listings() {
            let shown = if by_availability {
                match l.availability.as_str() {
                    "in_stock" => {
                        availability_code(&stockd_core::availability::Availability::InStock)
                    }
                    "backorder" => {
                        availability_code(&stockd_core::availability::Availability::Backorder)
                    }
                    _ => availability_code(&stockd_core::availability::Availability::OutOfStock),
                }
            } else {
                l.quantity
            };
            state.shown.insert((c.id.clone(), l.sku), shown);
        }
    }
    Ok(state)
}

/// A row whose raise waits for the channel's change budget.
fn held_by_budget(row: &stockd_store::outbox::OutboxRow) -> bool {
    row.dirty_since.is_some()
        && !row.protective
        && row.last_error.as_deref() == Some(crate::outbound::dispatch::HELD_BY_BUDGET)
}

/// An availability as the number the drift check compares.
fn availability_code(availability: &stockd_core::availability::Availability) -> i64 {
    match availability {
        stockd_core::availability::Availability::OutOfStock => 0,
        stockd_core::availability::Availability::InStock => 1,
        stockd_core::availability::Availability::Backorder => 2,
    }
}

/// What `stockd simulate` runs.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    pub scenario: Scenario,
    pub seeds: Vec<u64>,
    /// A candidate rules document: each seed runs under both.
    pub candidate_rules: Option<Value>,
    /// Where to write every run's channel requests and webhook deliveries.
    pub trace: Option<std::path::PathBuf>,
    /// Days run at once, each on a thread of its own (1 with a trace, whose
    /// lines would interleave). The report is the same for any number.
    pub jobs: usize,
}

/// The `--report` document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub scenario: String,
    pub seeds: Vec<u64>,
    pub runs: Vec<SeedReport>,
    /// Broken invariants over every run (0 is the only pass).
    pub invariant_violations: usize,
}

/// Runs every seed (and the candidate rules beside the active ones).
pub fn run(options: &SimulateOptions) -> Result<Report, SimulateError> {
    let active = options.scenario.rules_json();
    let trace: Option<transport::TraceFile> = match &options.trace {
        None => None,
        Some(path) => {
            let file = std::fs::File::create(path).map_err(|e| {
                SimulateError::Setup(format!("cannot write {}: {e}", path.display()))
            })?;
            Some(Arc::new(std::sync::Mutex::new(std::io::BufWriter::new(
                file,
            ))))
        }
    };
    // Every day to run, in report order: each seed under the active rules,
    // then under the candidate.
    let mut days: Vec<(u64, &Value, &str)> = Vec::new();
    for &seed in &options.seeds {
        days.push((seed, &active, "active"));
        if let Some(candidate) = &options.candidate_rules {
            days.push((seed, candidate, "candidate"));
        }
    }
    let bar = crate::import::progress_bar(
        days.len() as u64,
        "{bar:40} {pos}/{len} days {elapsed} (about {eta} left)",
    );
    let jobs = if trace.is_some() {
        1
    } else {
        options.jobs.max(1)
    };
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done: std::sync::Mutex<Vec<Option<Result<SeedReport, SimulateError>>>> =
        std::sync::Mutex::new((0..days.len()).map(|_| None).collect());
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(&(seed, rules, label)) = days.get(i) else {
            break;
        };
        let run = run_seed_traced(&options.scenario, seed, rules, label, trace.as_ref());
        let failed = run.is_err();
        if let Ok(mut done) = done.lock() {
            done[i] = Some(run);
        }
        bar.inc(1);
        if failed {
            // Nothing after a failed day is needed: stop taking more.
            next.store(days.len(), Ordering::Relaxed);
        }
    };
    std::thread::scope(|scope| {
        for _ in 1..jobs.min(days.len()) {
            scope.spawn(work);
        }
        work();
    });
    bar.finish_and_clear();
    let done = done
        .into_inner()
        .map_err(|_| setup("a simulated day panicked"))?;
    // The first failure in report order, as one thread would have met it.
    let mut runs = Vec::with_capacity(done.len());
    for run in done {
        match run {
            Some(run) => runs.push(run?),
            None => break,
        }
    }
    if let Some(file) = &trace {
        use std::io::Write as _;
        if let Ok(mut file) = file.lock() {
            file.flush().map_err(setup)?;
        }
    }
    Ok(Report {
        scenario: options.scenario.name.clone(),
        seeds: options.seeds.clone(),
        invariant_violations: runs.iter().map(|r| r.invariant_violations.len()).sum(),
        runs,
    })
}

/// The printed table: one line per run and channel.
pub fn table(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>6} {:<9} {:<14} {:>7} {:>9} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>6} {:>10}",
        "seed",
        "rules",
        "channel",
        "lines",
        "oversell",
        "cancel",
        "drift",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "prot p95",
        "lost",
        "violations"
    );
    for run in &report.runs {
        let rows = run
            .by_channel
            .iter()
            .map(|(c, f)| (c.as_str(), f, String::new()))
            .chain([(
                "total",
                &run.total,
                run.invariant_violations.len().to_string(),
            )]);
        for (channel, f, violations) in rows {
            let _ = writeln!(
                out,
                "{:>6} {:<9} {:<14} {:>7} {:>8.3}% {:>8.3}% {:>7} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>6} {:>10}",
                run.seed,
                run.rules,
                channel,
                f.order_lines,
                f.oversell_rate * 100.0,
                f.cancel_ratio * 100.0,
                f.drift,
                f.latency_ms.p50,
                f.latency_ms.p95,
                f.latency_ms.p99,
                f.latency_ms_protective.p95,
                f.lost_sales,
                violations
            );
        }
    }
    let _ = writeln!(out, "invariant violations: {}", report.invariant_violations);
    out
}

/// `A..B` (B excluded) or a single seed.
pub fn parse_seeds(text: &str) -> Result<Vec<u64>, String> {
    let bad = || format!("seeds_invalid: {text:?} is not N or A..B with A < B");
    match text.split_once("..") {
        Some((a, b)) => {
            let a: u64 = a.trim().parse().map_err(|_| bad())?;
            let b: u64 = b.trim().parse().map_err(|_| bad())?;
            if a >= b || b - a > 1_000_000 {
                return Err(bad());
            }
            Ok((a..b).collect())
        }
        None => Ok(vec![text.trim().parse().map_err(|_| bad())?]),
    }
}

#[cfg(test)]
mod tests;
