//! Ordered parallel loading: several reader threads load (read, relocate, hash) files at once,
//! and the writer gets them back in manifest order, with a fixed bound on the memory in between.
//!
//! Work arrives as batches of entries, already in order. A reader takes a whole batch (so
//! batches are taken in order) and hands its results over in parts of at most `part_bytes`
//! loaded bytes. Every part holds one of `parts_in_flight` tokens until the writer has written
//! it, so at most that many parts wait, whatever the size of the tree. The one part the writer is
//! waiting for never waits for a token: readers ahead of it cannot starve it, so the pool
//! cannot deadlock.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::Scope;

/// How the pool is sized.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolConfig {
    pub readers: usize,
    /// A part is handed over once it holds this many loaded bytes (or its batch ends).
    pub part_bytes: usize,
    /// Parts loaded but not yet written, at most.
    pub parts_in_flight: usize,
}

/// Starts `config.readers` threads in `scope` that run `load` on every item of every batch
/// from `batches`, and returns the results in the order of the batches and their items.
/// `load` returns a result and the bytes it holds in memory.
///
/// Dropping the returned iterator stops the readers; the thread sending batches sees its
/// channel hung up once they have stopped.
pub(crate) fn load_in_order<'scope, T, O, F>(
    scope: &'scope Scope<'scope, '_>,
    batches: Receiver<Vec<T>>,
    config: PoolConfig,
    load: &'scope F,
) -> Ordered<(T, O)>
where
    T: Send + 'scope,
    O: Send + 'scope,
    F: Fn(&T) -> (O, usize) + Sync,
{
    let budget = Arc::new(Budget::new(config.parts_in_flight));
    let queue = Arc::new(Mutex::new(Queue { batches, taken: 0 }));
    let (parts_tx, parts_rx) = mpsc::channel();
    for _ in 0..config.readers.max(1) {
        let (queue, budget, parts_tx) = (queue.clone(), budget.clone(), parts_tx.clone());
        scope.spawn(move || {
            // The queue (and with it the batches' receiver) is dropped when the last reader
            // ends, which is what tells the sender to stop.
            while let Some((seq, batch)) = take(&queue) {
                if read_batch(seq, batch, config, load, &budget, &parts_tx).is_none() {
                    return;
                }
            }
        });
    }
    Ordered {
        parts: parts_rx,
        pending: BTreeMap::new(),
        next: (0, 0),
        holding: false,
        budget,
    }
}

/// The loaded items, part by part, in order.
pub(crate) struct Ordered<T> {
    parts: Receiver<Part<T>>,
    /// Parts that arrived before the one the writer needs.
    pending: BTreeMap<(usize, usize), Part<T>>,
    /// (batch, part) the writer needs next.
    next: (usize, usize),
    /// Whether the part last handed out holds a token, given back on the next call.
    holding: bool,
    budget: Arc<Budget>,
}

impl<T> Iterator for Ordered<T> {
    type Item = Vec<T>;

    fn next(&mut self) -> Option<Vec<T>> {
        // The writer asks again only once it has written the previous part: its memory is free.
        if std::mem::take(&mut self.holding) {
            self.budget.release();
        }
        loop {
            if let Some(part) = self.pending.remove(&self.next) {
                self.holding = part.token;
                self.next = match part.last {
                    true => (self.next.0 + 1, 0),
                    false => (self.next.0, self.next.1 + 1),
                };
                self.budget.advance(self.next);
                return Some(part.items);
            }
            match self.parts.recv() {
                Ok(part) => {
                    self.pending.insert((part.batch, part.index), part);
                }
                // Every reader has ended: readers end early only when this iterator is gone,
                // so every part has arrived.
                Err(_) => {
                    assert!(
                        self.pending.is_empty(),
                        "a reader ended before its batch did"
                    );
                    return None;
                }
            }
        }
    }
}

impl<T> Drop for Ordered<T> {
    fn drop(&mut self) {
        // A writer that stops early must not leave readers waiting for tokens it will never
        // give back.
        self.budget.close();
    }
}

struct Part<T> {
    batch: usize,
    index: usize,
    last: bool,
    token: bool,
    items: Vec<T>,
}

struct Queue<T> {
    batches: Receiver<Vec<T>>,
    taken: usize,
}

/// The next batch and its number; taken under one lock, so numbers follow the batches' order.
fn take<T>(queue: &Mutex<Queue<T>>) -> Option<(usize, Vec<T>)> {
    let mut queue = lock(queue);
    let batch = queue.batches.recv().ok()?;
    queue.taken += 1;
    Some((queue.taken - 1, batch))
}

/// Loads one batch, sending it in parts. `None` once the writer has gone.
fn read_batch<T, O, F>(
    seq: usize,
    batch: Vec<T>,
    config: PoolConfig,
    load: &F,
    budget: &Budget,
    parts: &mpsc::Sender<Part<(T, O)>>,
) -> Option<()>
where
    F: Fn(&T) -> (O, usize),
{
    let count = batch.len();
    let mut items = Vec::new();
    let mut bytes = 0;
    let mut index = 0;
    let mut token = budget.acquire((seq, 0))?;
    for (i, item) in batch.into_iter().enumerate() {
        let (out, held) = load(&item);
        items.push((item, out));
        bytes += held;
        let last = i + 1 == count;
        if last || bytes >= config.part_bytes {
            let items = std::mem::take(&mut items);
            let part = Part {
                batch: seq,
                index,
                last,
                token,
                items,
            };
            parts.send(part).ok()?;
            (index, bytes) = (index + 1, 0);
            if !last {
                token = budget.acquire((seq, index))?;
            }
        }
    }
    if count == 0 {
        // An empty batch still ends, or the writer would wait for it.
        let part = Part {
            batch: seq,
            index,
            last: true,
            token,
            items,
        };
        parts.send(part).ok()?;
    }
    Some(())
}

/// The tokens that bound the parts in flight.
struct Budget {
    state: Mutex<BudgetState>,
    changed: Condvar,
}

struct BudgetState {
    free: usize,
    /// The (batch, part) the writer waits for.
    next: (usize, usize),
    closed: bool,
}

impl Budget {
    fn new(tokens: usize) -> Budget {
        Budget {
            state: Mutex::new(BudgetState {
                free: tokens.max(1),
                next: (0, 0),
                closed: false,
            }),
            changed: Condvar::new(),
        }
    }

    /// Waits for a token to load `part`; `Some(false)` lets the part the writer waits for go
    /// ahead without one. `None` once the writer has gone.
    fn acquire(&self, part: (usize, usize)) -> Option<bool> {
        let mut state = lock(&self.state);
        loop {
            if state.closed {
                return None;
            }
            if state.free > 0 {
                state.free -= 1;
                return Some(true);
            }
            if state.next == part {
                return Some(false);
            }
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn release(&self) {
        lock(&self.state).free += 1;
        self.changed.notify_all();
    }

    fn advance(&self, next: (usize, usize)) {
        lock(&self.state).next = next;
        self.changed.notify_all();
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.changed.notify_all();
    }
}

/// A poisoned lock only means another thread panicked; the scope reports that panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads `sizes` (each item holds that many bytes) with `readers` threads, and checks that
    /// the writer sees every item once, in order, and that the bytes loaded but not yet written
    /// never pass the bound: the parts holding tokens, the one the writer waits for, and one
    /// part being filled by each reader.
    fn check(sizes: &[usize], batch: usize, readers: usize) {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let config = PoolConfig {
            readers,
            part_bytes: 10,
            parts_in_flight: 3,
        };
        let biggest = sizes.iter().copied().max().unwrap_or(0);
        let bound = (config.parts_in_flight + 1 + readers) * (config.part_bytes + biggest);
        let (outstanding, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let load = |&(i, size): &(usize, usize)| {
            // Uneven work, so readers finish out of order.
            std::thread::sleep(std::time::Duration::from_micros((i % 7) as u64 * 50));
            most.fetch_max(outstanding.fetch_add(size, SeqCst) + size, SeqCst);
            (i * 2, size)
        };
        let seen: Vec<(usize, usize)> = std::thread::scope(|scope| {
            let (tx, rx) = mpsc::sync_channel(2);
            let items: Vec<(usize, usize)> = sizes.iter().copied().enumerate().collect();
            scope.spawn(move || {
                for chunk in items.chunks(batch) {
                    if tx.send(chunk.to_vec()).is_err() {
                        return;
                    }
                }
            });
            let mut seen = vec![];
            for part in load_in_order(scope, rx, config, &load) {
                // A slow writer, so readers run ahead as far as the budget lets them.
                std::thread::sleep(std::time::Duration::from_micros(200));
                for ((i, size), out) in part {
                    outstanding.fetch_sub(size, SeqCst);
                    seen.push((i, out));
                }
            }
            seen
        });
        let expected: Vec<(usize, usize)> = (0..sizes.len()).map(|i| (i, i * 2)).collect();
        assert_eq!(seen, expected, "readers={readers} batch={batch}");
        let most = most.load(SeqCst);
        assert!(
            most <= bound,
            "{most} bytes waiting, bound {bound} (readers={readers} batch={batch})"
        );
    }

    #[test]
    fn every_item_comes_back_once_in_order() {
        let sizes: Vec<usize> = (0..300).map(|i| (i * 7) % 13).collect();
        let big: Vec<usize> = (0..200).map(|i| if i % 3 == 0 { 40 } else { 1 }).collect();
        check(&big, 32, 2);
        for (batch, readers) in [(1, 1), (5, 1), (5, 4), (32, 3), (300, 2), (7, 8)] {
            check(&sizes, batch, readers);
        }
        check(&[], 4, 3);
        check(&[100], 4, 3);
    }

    #[test]
    fn a_writer_that_stops_early_releases_the_readers() {
        let load = |i: &usize| (*i, 1);
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::sync_channel(1);
            scope.spawn(move || {
                for i in 0..1000usize {
                    if tx.send(vec![i; 4]).is_err() {
                        return;
                    }
                }
            });
            let config = PoolConfig {
                readers: 3,
                part_bytes: 1,
                parts_in_flight: 2,
            };
            let mut ordered = load_in_order(scope, rx, config, &load);
            assert_eq!(ordered.next().unwrap().len(), 1);
            drop(ordered);
            // The scope joins every thread: this test hangs if any is left waiting.
        });
    }
}
