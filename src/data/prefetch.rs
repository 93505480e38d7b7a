//! Loading on background threads with a bounded queue, so the device never waits on disk
//! while the memory held by loaded-but-unused cases stays bounded.
//!
//! Workers take item indices in order from a shared counter and send results through a
//! bounded channel; the consumer hands them out strictly in index order. Each item is a pure
//! function of its index (the caller seeds any randomness from it), so the sequence is the
//! same whatever the number of workers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// An in-order iterator over `produce(0..count)` computed ahead on worker threads.
pub struct Prefetcher<T: Send + 'static> {
    rx: Option<Receiver<(usize, T)>>,
    pending: BTreeMap<usize, T>,
    next: usize,
    count: usize,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl<T: Send + 'static> Prefetcher<T> {
    /// Start `workers` threads computing `produce(i)` for `i in 0..count`, at most `capacity`
    /// finished items waiting in the queue.
    pub fn spawn(count: usize, workers: usize, capacity: usize, produce: impl Fn(usize) -> T + Send + Sync + 'static) -> Self {
        let (tx, rx) = sync_channel(capacity.max(1));
        let produce = Arc::new(produce);
        let counter = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..workers.max(1).min(count.max(1)))
            .map(|_| {
                let (tx, produce, counter, stop): (SyncSender<(usize, T)>, _, _, _) = (tx.clone(), produce.clone(), counter.clone(), stop.clone());
                std::thread::spawn(move || {
                    loop {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let i = counter.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            break;
                        }
                        if tx.send((i, produce(i))).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        Self { rx: Some(rx), pending: BTreeMap::new(), next: 0, count, stop, workers }
    }
}

impl<T: Send + 'static> Iterator for Prefetcher<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        if self.next >= self.count {
            return None;
        }
        let rx = self.rx.as_ref()?;
        while !self.pending.contains_key(&self.next) {
            let (i, item) = rx.recv().ok()?; // a worker panicked: end early
            self.pending.insert(i, item);
        }
        let item = self.pending.remove(&self.next);
        self.next += 1;
        item
    }
}

impl<T: Send + 'static> Drop for Prefetcher<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receiver unblocks workers waiting to send.
        self.rx.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_come_in_order_whatever_the_workers() {
        for workers in [1, 2, 5] {
            let got: Vec<usize> = Prefetcher::spawn(50, workers, 3, |i| {
                std::thread::sleep(std::time::Duration::from_micros(((i * 7919) % 13) as u64 * 50));
                i * i
            })
            .collect();
            assert_eq!(got, (0..50).map(|i| i * i).collect::<Vec<_>>());
        }
    }

    #[test]
    fn dropping_early_stops_the_workers() {
        let mut p = Prefetcher::spawn(1000, 2, 2, |i| i);
        assert_eq!(p.next(), Some(0));
        drop(p); // must not hang
    }
}
