//! The Amazon simulator's state: listings with their fulfillment availability, feeds and
//! their documents, reports and their documents, orders, pagination tokens and the access tokens issued.

use super::*;

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Availability {
    pub(super) quantity: i64,
    pub(super) lead_time: Option<i64>,
    pub(super) restock_date: Option<String>,
}

#[derive(Debug, Clone)]
pub(super) struct Listing {
    pub(super) sku: String,
    pub(super) asin: String,
    pub(super) product_type: String,
    /// The `DEFAULT` (merchant-fulfilled) `fulfillment_availability` entry.
    pub(super) fa: Option<Availability>,
    /// Other top-level attributes, stored as sent.
    pub(super) attrs: Map<String, Value>,
    pub(super) created: DateTime<Utc>,
    pub(super) updated: DateTime<Utc>,
    pub(super) applied_seq: u64,
}

impl Listing {
    pub(super) fn quantity(&self) -> i64 {
        self.fa.as_ref().map(|f| f.quantity).unwrap_or(0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FeedStatus {
    InQueue,
    InProgress,
    Done,
    Cancelled,
    Fatal,
}

impl FeedStatus {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            FeedStatus::InQueue => "IN_QUEUE",
            FeedStatus::InProgress => "IN_PROGRESS",
            FeedStatus::Done => "DONE",
            FeedStatus::Cancelled => "CANCELLED",
            FeedStatus::Fatal => "FATAL",
        }
    }
}

pub(super) struct Feed {
    pub(super) id: String,
    pub(super) feed_type: String,
    pub(super) marketplace_ids: Vec<Value>,
    pub(super) input_doc: String,
    pub(super) created: DateTime<Utc>,
    pub(super) started: Option<DateTime<Utc>>,
    pub(super) ended: Option<DateTime<Utc>>,
    pub(super) status: FeedStatus,
    pub(super) result_doc: Option<String>,
}

pub(super) struct Document {
    pub(super) content_type: String,
    pub(super) body: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub(super) struct OrderItem {
    pub(super) id: String,
    pub(super) sku: String,
    pub(super) asin: String,
    pub(super) quantity: i64,
}

#[derive(Debug, Clone)]
pub(super) struct Order {
    pub(super) id: String,
    pub(super) created: DateTime<Utc>,
    pub(super) updated: DateTime<Utc>,
    /// A v2026 `FulfillmentStatus`.
    pub(super) status: &'static str,
    pub(super) items: Vec<OrderItem>,
    pub(super) refunded: bool,
}

pub(super) struct PageToken {
    pub(super) key: String,
    pub(super) offset: usize,
    pub(super) issued: Instant,
}

#[derive(Default)]
pub(super) struct AmzState {
    pub(super) listings: BTreeMap<String, Listing>,
    pub(super) feeds: BTreeMap<String, Feed>,
    pub(super) docs: HashMap<String, Document>,
    pub(super) orders: Vec<Order>,
    pub(super) tokens: HashMap<String, Instant>,
    pub(super) tokens_issued: u64,
    pub(super) buckets: HashMap<String, (f64, Instant)>,
    pub(super) seq: u64,
    pub(super) next_feed: u64,
    pub(super) feed_outcomes: VecDeque<FeedStatus>,
    pub(super) page_tokens: HashMap<String, PageToken>,
    pub(super) reports: BTreeMap<String, Report>,
    pub(super) next_report: u64,
    pub(super) report_outcomes: VecDeque<FeedStatus>,
    pub(super) report_docs: HashMap<String, ReportDocument>,
    /// Pre-signed report URL signature → (report document id, issued).
    pub(super) report_urls: HashMap<String, (String, Instant)>,
}

pub(super) struct Amazon {
    pub(super) config: Config,
    pub(super) core: Arc<SimCore>,
    pub(super) state: Mutex<AmzState>,
    pub(super) base_url: String,
}

pub(super) type Sim = Arc<Amazon>;

impl Amazon {
    /// The marketplace's wall clock: the configured simulated one, or the
    /// system's.
    pub(super) fn now(&self) -> DateTime<Utc> {
        self.config
            .clock
            .as_ref()
            .map_or_else(Utc::now, crate::SimClock::now)
    }
}

pub(super) fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}
