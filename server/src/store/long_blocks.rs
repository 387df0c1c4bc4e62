//! Atomic blocks that run long — scripts past their first few milliseconds — and the map shards
//! they hold.
//!
//! A short block is invisible here: whoever needs one of its shards waits on the shard's lock
//! for microseconds, as for any write. A long one registers ([`LongBlocks::register`]), so that
//! nothing on a runtime thread blocks on its shards for the whole of its run: a command that
//! needs them waits asynchronously ([`Gate::Wait`]), or, once the block has run past the
//! busy-reply threshold, is answered BUSY ([`Gate::Busy`]); the active expiry, eviction and
//! prefetching skip them ([`LongBlocks::holds`]). Commands on other shards are served as usual.
//! While none is registered, all of that is one relaxed load ([`LongBlocks::active`]).

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

/// [`LongBlock::state`]: it has written.
const WROTE: u8 = 1;
/// [`LongBlock::state`]: SCRIPT KILL asked it to stop.
const KILL: u8 = 2;
/// [`LongBlock::state`]: a shutdown asked it to stop.
const SHUTDOWN: u8 = 4;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::watch;

/// The shards a block holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// Every shard.
    All,
    /// These, in any order.
    Some(Vec<usize>),
}

impl Held {
    /// Whether `self` and `needed` share a shard.
    fn meets(&self, needed: &Held) -> bool {
        match (self, needed) {
            (Held::All, _) | (_, Held::All) => true,
            (Held::Some(held), Held::Some(needed)) => {
                needed.iter().any(|shard| held.contains(shard))
            }
        }
    }
}

/// Why a long block is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SCRIPT KILL: only a block that has written nothing is asked.
    Kill,
    /// A shutdown that does not save (SHUTDOWN NOSAVE), or one that saves while the block has
    /// written nothing: its writes, if any, are never seen.
    Shutdown,
}

/// One long block, shared between its runner and the registry.
#[derive(Debug)]
pub struct LongBlock {
    started: Instant,
    held: Mutex<Held>,
    busy: AtomicBool,
    /// [`WROTE`], [`KILL`], [`SHUTDOWN`]: one word, so that a kill and the first write are
    /// ordered (a kill never lands after a write it did not see).
    state: AtomicU8,
}

impl LongBlock {
    /// When the block started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Why it is asked to stop, if it is.
    pub fn stop(&self) -> Option<Stop> {
        let state = self.state.load(Ordering::Acquire);
        if state & SHUTDOWN != 0 {
            Some(Stop::Shutdown)
        } else if state & KILL != 0 {
            Some(Stop::Kill)
        } else {
            None
        }
    }

    /// Marks the block as writing, unless it was asked to stop first: then false, and the
    /// write must not run.
    pub fn start_writing(&self) -> bool {
        self.state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |state| {
                (state & (KILL | SHUTDOWN) == 0).then_some(state | WROTE)
            })
            .is_ok()
    }

    /// Asks it to stop for SCRIPT KILL, unless it has written: whether it was asked.
    fn ask_kill(&self) -> bool {
        self.state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |state| {
                (state & WROTE == 0).then_some(state | KILL)
            })
            .is_ok()
    }

    /// Whether it has passed the busy-reply threshold.
    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks it to stop for a shutdown: with `saving`, only if it has written nothing (its
    /// half-done writes would be saved otherwise).
    fn ask_shutdown(&self, saving: bool) {
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |state| {
                (!saving || state & WROTE == 0).then_some(state | SHUTDOWN)
            });
    }
}

/// What a command that needs some shards does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Runs: no long block holds what it needs.
    Go,
    /// Waits until the registry changes past this generation (a block ends or turns busy), then
    /// asks again.
    Wait(u64),
    /// Is answered BUSY: a block past the busy-reply threshold holds what it needs.
    Busy,
}

/// What SCRIPT KILL did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Killed {
    /// Every long block that had written nothing was asked to stop.
    Asked,
    /// No long block runs.
    NoneRunning,
    /// Every long block has written: none can be stopped without breaking its atomicity.
    AllWrote,
}

/// The registry of long blocks.
#[derive(Debug)]
pub struct LongBlocks {
    /// Blocks registered: the hot path's one load.
    count: AtomicUsize,
    blocks: Mutex<Vec<Arc<LongBlock>>>,
    /// Bumped when a block ends, turns busy or changes what it holds.
    generation: Arc<watch::Sender<u64>>,
    /// Long scripts run again off the runtime's threads at once, at most: each such thread
    /// builds an interpreter of its own (up to its memory limit), so their count is bounded.
    offload_slots: tokio::sync::Semaphore,
}

/// How many long scripts run off the runtime's threads at once; more wait for a slot.
pub const OFFLOADED_AT_ONCE: usize = 4;

impl Default for LongBlocks {
    fn default() -> Self {
        LongBlocks {
            count: AtomicUsize::new(0),
            blocks: Mutex::new(Vec::new()),
            generation: Arc::new(watch::Sender::new(0)),
            offload_slots: tokio::sync::Semaphore::new(OFFLOADED_AT_ONCE),
        }
    }
}

impl LongBlocks {
    /// Whether any long block runs (a relaxed load: a block registered an instant ago may be
    /// missed, which only means waiting on a shard lock as for any short block).
    #[inline]
    pub fn active(&self) -> bool {
        self.count.load(Ordering::Relaxed) != 0
    }

    fn blocks(&self) -> MutexGuard<'_, Vec<Arc<LongBlock>>> {
        self.blocks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a block holding `held` (or about to take it), started at `started`.
    pub fn register(&self, held: Held, started: Instant, wrote: bool) -> Arc<LongBlock> {
        let block = Arc::new(LongBlock {
            started,
            held: Mutex::new(held),
            busy: AtomicBool::new(false),
            state: AtomicU8::new(if wrote { WROTE } else { 0 }),
        });
        let mut blocks = self.blocks();
        blocks.push(Arc::clone(&block));
        self.count.store(blocks.len(), Ordering::Relaxed);
        drop(blocks);
        self.bump();
        block
    }

    /// Removes `block`: it has left its atomic block.
    pub fn unregister(&self, block: &Arc<LongBlock>) {
        let mut blocks = self.blocks();
        blocks.retain(|b| !Arc::ptr_eq(b, block));
        self.count.store(blocks.len(), Ordering::Relaxed);
        drop(blocks);
        self.bump();
    }

    /// `block` now holds `held`.
    pub fn set_held(&self, block: &LongBlock, held: Held) {
        *block.held() = held;
        self.bump();
    }

    /// `block` has run past the busy-reply threshold: those waiting for it get BUSY.
    pub fn set_busy(&self, block: &LongBlock) {
        if !block.busy.swap(true, Ordering::AcqRel) {
            self.bump();
        }
    }

    fn bump(&self) {
        let generation = Arc::clone(&self.generation);
        let bump = move || generation.send_modify(|generation| *generation += 1);
        if super::on_multi_thread_worker() {
            // The script's own thread bumps: a wake from a worker puts the woken task in that
            // worker's next-task slot, which no other worker takes, and this worker may run
            // the script for seconds yet. From a thread of the blocking pool, the woken go
            // to the shared queue.
            drop(tokio::task::spawn_blocking(bump));
        } else {
            bump();
        }
    }

    /// Whether a long block holds `shard` (for the tasks that skip such shards).
    #[inline]
    pub fn holds(&self, shard: usize) -> bool {
        self.active() && self.held_slow(shard)
    }

    #[cold]
    fn held_slow(&self, shard: usize) -> bool {
        self.blocks().iter().any(|block| match &*block.held() {
            Held::All => true,
            Held::Some(held) => held.contains(&shard),
        })
    }

    /// What a command needing `needed` does now (see [`Gate`]).
    pub fn gate(&self, needed: &Held) -> Gate {
        let generation = *self.generation.borrow();
        let mut wait = false;
        for block in self.blocks().iter() {
            if block.held().meets(needed) {
                if block.is_busy() {
                    return Gate::Busy;
                }
                wait = true;
            }
        }
        if wait {
            Gate::Wait(generation)
        } else {
            Gate::Go
        }
    }

    /// Resolves once the registry has changed past `generation`.
    pub async fn changed_since(&self, generation: u64) {
        let mut changes = self.generation.subscribe();
        // The sender lives as long as `self`, which outlives this borrow.
        let _ = changes.wait_for(|now| *now != generation).await;
    }

    /// A slot for a long script to run off the runtime's threads (see [`OFFLOADED_AT_ONCE`]);
    /// `None` only if the slots were closed, which they never are.
    pub async fn offload_slot(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.offload_slots.acquire().await.ok()
    }

    /// SCRIPT KILL: asks every long block that has written nothing to stop.
    pub fn kill(&self) -> Killed {
        let blocks = self.blocks();
        if blocks.is_empty() {
            return Killed::NoneRunning;
        }
        let mut asked = false;
        for block in blocks.iter() {
            asked |= block.ask_kill();
        }
        if asked {
            Killed::Asked
        } else {
            Killed::AllWrote
        }
    }

    /// A shutdown begins: every long block that has written nothing stops, and with `saving`
    /// false (nothing will be saved) every one.
    pub fn stop_for_shutdown(&self, saving: bool) {
        for block in self.blocks().iter() {
            block.ask_shutdown(saving);
        }
    }

    /// How many long blocks run, and how many of them are past the threshold (for INFO).
    pub fn counts(&self) -> (usize, usize) {
        let blocks = self.blocks();
        let busy = blocks.iter().filter(|block| block.is_busy()).count();
        (blocks.len(), busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_waits_for_a_long_block_on_its_shards_and_is_busy_once_it_is() {
        let blocks = LongBlocks::default();
        assert!(!blocks.active());
        assert_eq!(blocks.gate(&Held::All), Gate::Go);
        let block = blocks.register(Held::Some(vec![3, 7]), Instant::now(), false);
        assert!(blocks.active() && blocks.holds(7) && !blocks.holds(4));
        assert_eq!(blocks.gate(&Held::Some(vec![1, 2])), Gate::Go);
        let Gate::Wait(generation) = blocks.gate(&Held::Some(vec![1, 7])) else {
            panic!("a command on a held shard must wait");
        };
        assert!(matches!(blocks.gate(&Held::All), Gate::Wait(_)));
        blocks.set_busy(&block);
        assert_ne!(*blocks.generation.borrow(), generation, "waiters are woken");
        assert_eq!(blocks.gate(&Held::Some(vec![7])), Gate::Busy);
        assert_eq!(blocks.gate(&Held::Some(vec![8])), Gate::Go);
        blocks.unregister(&block);
        assert!(!blocks.active() && !blocks.holds(7));
        assert_eq!(blocks.gate(&Held::Some(vec![7])), Gate::Go);
    }

    #[test]
    fn a_block_taking_every_shard_holds_each() {
        let blocks = LongBlocks::default();
        let block = blocks.register(Held::Some(vec![1]), Instant::now(), false);
        blocks.set_held(&block, Held::All);
        assert!(blocks.holds(900));
        assert!(matches!(blocks.gate(&Held::Some(vec![5])), Gate::Wait(_)));
    }

    #[test]
    fn kill_asks_only_the_blocks_that_wrote_nothing() {
        let blocks = LongBlocks::default();
        assert_eq!(blocks.kill(), Killed::NoneRunning);
        let wrote = blocks.register(Held::Some(vec![1]), Instant::now(), true);
        assert_eq!(blocks.kill(), Killed::AllWrote);
        let racing = blocks.register(Held::Some(vec![3]), Instant::now(), false);
        assert_eq!(blocks.kill(), Killed::Asked);
        assert!(!racing.start_writing(), "a killed script must not write");
        blocks.unregister(&racing);
        assert_eq!(wrote.stop(), None);
        let clean = blocks.register(Held::Some(vec![2]), Instant::now(), false);
        assert_eq!(blocks.kill(), Killed::Asked);
        assert_eq!((clean.stop(), wrote.stop()), (Some(Stop::Kill), None));
        blocks.stop_for_shutdown(true);
        assert_eq!((clean.stop(), wrote.stop()), (Some(Stop::Shutdown), None));
        blocks.stop_for_shutdown(false);
        assert_eq!(wrote.stop(), Some(Stop::Shutdown));
    }

    #[tokio::test]
    async fn a_waiter_wakes_when_the_block_ends() {
        let blocks = Arc::new(LongBlocks::default());
        let block = blocks.register(Held::All, Instant::now(), false);
        let Gate::Wait(generation) = blocks.gate(&Held::Some(vec![0])) else {
            panic!("must wait");
        };
        let waiter = {
            let blocks = Arc::clone(&blocks);
            tokio::spawn(async move { blocks.changed_since(generation).await })
        };
        blocks.unregister(&block);
        waiter.await.unwrap();
        assert_eq!(blocks.gate(&Held::Some(vec![0])), Gate::Go);
    }
}
