//! The writer's commit signal: a counter that moves with every commit and
//! wakes whoever waits on it. Waiters wake in the order they began to wait
//! (`tokio::sync::Notify`): a watch channel would spread them over shards
//! picked at random, so the dispatcher's channel workers would wake in a
//! different order on each run of the same simulated day.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

#[derive(Default)]
struct Shared {
    count: AtomicU64,
    notify: Notify,
}

/// The writer's end.
#[derive(Clone, Default)]
pub struct CommitSignal {
    shared: Arc<Shared>,
}

impl CommitSignal {
    pub fn new() -> CommitSignal {
        CommitSignal::default()
    }

    /// One more commit: every waiter wakes.
    pub fn announce(&self) {
        self.shared.count.fetch_add(1, Ordering::AcqRel);
        self.shared.notify.notify_waiters();
    }

    /// A waiter that has seen every commit so far.
    pub fn subscribe(&self) -> Commits {
        Commits {
            seen: self.shared.count.load(Ordering::Acquire),
            shared: self.shared.clone(),
        }
    }
}

/// A waiter's end: like a watch receiver, it knows which commits it has seen.
pub struct Commits {
    shared: Arc<Shared>,
    seen: u64,
}

impl Commits {
    /// Marks every commit so far as seen.
    pub fn mark_seen(&mut self) {
        self.seen = self.shared.count.load(Ordering::Acquire);
    }

    /// Returns when a commit this waiter has not seen happened (at once if
    /// one already did), and marks it seen. Cancel-safe.
    pub async fn changed(&mut self) {
        loop {
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            // Registered before the count is read, so an announce between
            // the read and the wait is not missed.
            notified.as_mut().enable();
            let now = self.shared.count.load(Ordering::Acquire);
            if now != self.seen {
                self.seen = now;
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_waiter_sees_each_commit_once_and_waiters_wake_in_the_order_they_waited() {
        let signal = CommitSignal::new();
        let mut early = signal.subscribe();
        signal.announce();
        // A commit before the wait is news at once, then only once.
        tokio::time::timeout(Duration::from_secs(1), early.changed())
            .await
            .expect("the earlier commit");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), early.changed())
                .await
                .is_err(),
            "no commit since"
        );
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for n in 0..8 {
            let mut commits = signal.subscribe();
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                commits.changed().await;
                order.lock().expect("lock").push(n);
            }));
            // Each waiter waits before the next subscribes.
            tokio::task::yield_now().await;
        }
        signal.announce();
        for task in tasks {
            task.await.expect("task");
        }
        assert_eq!(*order.lock().expect("lock"), (0..8).collect::<Vec<_>>());
    }
}
