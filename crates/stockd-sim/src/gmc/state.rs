//! The Google simulator's state: product inputs and processed products that become visible
//! after a delay, local inventories, and per-method quota counters.

use super::*;

/// A value whose writes become visible after a delay; `None` is a delete.
#[derive(Debug, Clone, Default)]
pub(super) struct Delayed {
    pub(super) visible: Option<Value>,
    pub(super) pending: VecDeque<(Instant, Option<Value>)>,
}

impl Delayed {
    pub(super) fn now(v: Value) -> Delayed {
        Delayed {
            visible: Some(v),
            pending: VecDeque::new(),
        }
    }
    pub(super) fn settle(&mut self, now: Instant) {
        while let Some((at, _)) = self.pending.front() {
            if *at > now {
                break;
            }
            if let Some((_, v)) = self.pending.pop_front() {
                self.visible = v;
            }
        }
    }
    pub(super) fn push(&mut self, at: Instant, v: Option<Value>) {
        // Delays are constant, so pending writes stay in time order.
        self.pending.push_back((at, v));
    }
    /// The latest write, visible or not.
    pub(super) fn latest(&self) -> Option<&Value> {
        match self.pending.back() {
            Some((_, v)) => v.as_ref(),
            None => self.visible.as_ref(),
        }
    }
}

pub(super) struct Entry {
    /// `contentLanguage~feedLabel~offerId` (or `local~…` for legacy local products).
    pub(super) key: String,
    pub(super) offer_id: String,
    /// The product input as written, `None` once deleted.
    pub(super) input: Option<Value>,
    pub(super) version_number: Option<i64>,
    pub(super) processed: Delayed,
    pub(super) local: BTreeMap<String, Delayed>,
    pub(super) updates: VecDeque<Instant>,
}

#[derive(Default)]
pub(super) struct MethodQuota {
    pub(super) minute: VecDeque<Instant>,
    pub(super) day_start: Option<Instant>,
    pub(super) day_count: u64,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) products: BTreeMap<String, Entry>,
    pub(super) tokens: HashMap<String, Instant>,
    pub(super) quotas: BTreeMap<&'static str, MethodQuota>,
}

pub(super) struct Gmc {
    pub(super) config: Config,
    pub(super) key: Option<Vec<u8>>,
    pub(super) core: Arc<SimCore>,
    pub(super) base_url: String,
    pub(super) counters: GmcCounters,
    pub(super) state: Mutex<State>,
}

pub(super) const DAY: Duration = Duration::from_secs(24 * 3600);
pub(super) const MINUTE: Duration = Duration::from_secs(60);
