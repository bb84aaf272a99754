//! Waiting on the calling thread, for stores under a simulated clock
//! ([`crate::open_simulated`]): a simulation runs on one thread, and a store
//! call that completes before that thread does anything else keeps every run
//! of a seed in the same order.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Drives `future` to completion on this thread (it must be woken from
/// another thread: the writer's answer). Outside tokio's cooperative
/// budget: a task that has spent its budget gets its wake-up deferred until
/// it yields to the scheduler, which this loop never does — a poll loop
/// applying a few hundred order changes in one go would wait forever.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(tokio::task::unconstrained(future));
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// Waits for a store thread to end: on this thread when `simulated` (an
/// awaited join would let the paused clock, and every task with it, run on
/// for as long as the thread takes in real time), else off the async threads.
pub(crate) async fn join(thread: std::thread::JoinHandle<()>, simulated: bool) {
    if simulated {
        let _ = thread.join();
    } else {
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}
