//! rayon's threads kept looking for work while a forward pass runs.
//!
//! A decode step hands rayon ~100 matrix products of a fraction of a millisecond each. Between
//! two of them a thread with nothing to do goes to sleep after a few idle rounds, and the next
//! product must wake it again: on wasm an `Atomics.wait` / `notify` pair between Web Workers,
//! tens of microseconds each time, while the caller (the web worker, outside the pool) sleeps
//! and is woken for every product too. On wasm32 [`with_threads_awake`] moves the whole pass
//! onto a pool thread and keeps the others spinning on [`rayon::yield_now`], taking each
//! product's pieces as soon as they appear; the threads go back to rayon's usual sleep when the
//! pass returns. Built on rayon's own jobs (no second pool): the pieces are still rayon's,
//! stolen as usual. Natively the pass runs where it is called (see [`with_threads_awake`]).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// On wasm32, [`keep_threads_awake`]; natively `op` where it is called: there the x86 kernels
/// and candle's own matmuls run on candle's thread pool beside rayon's, and a spinning rayon
/// thread would take a core from them (a native round of three candidates took twice as long).
pub fn with_threads_awake<R: Send>(op: impl FnOnce() -> R + Send) -> R {
    if cfg!(target_arch = "wasm32") {
        keep_threads_awake(op)
    } else {
        op()
    }
}

/// Runs `op` on a thread of rayon's pool while every other thread of the pool looks for work
/// without sleeping. With a pool of one thread, `op` still runs on it, and its products then
/// run where they are called, handing nothing over.
pub fn keep_threads_awake<R: Send>(op: impl FnOnce() -> R + Send) -> R {
    let threads = rayon::current_num_threads();
    let done = AtomicBool::new(false);
    rayon::scope(|scope| {
        let owner = rayon::current_thread_index();
        for _ in 1..threads {
            let done = &done;
            scope.spawn(move |_| {
                // The thread running `op` may take this job back while it waits for a piece
                // inside `op`: spinning there would wait for itself.
                if rayon::current_thread_index() == owner {
                    return;
                }
                while !done.load(Ordering::Acquire) {
                    if rayon::yield_now() != Some(rayon::Yield::Executed) {
                        std::hint::spin_loop();
                    }
                }
            });
        }
        let result = op();
        done.store(true, Ordering::Release);
        result
    })
}

/// Claims per thread a [`share_units`] call's units are handed out in: enough for the threads
/// to end together, few enough that claiming (one atomic addition the threads contend for)
/// costs nothing next to the units.
const CLAIMS_PER_THREAD: usize = 8;

/// Runs `unit(i)` for every `i` in `0..count`, on the calling thread and on every other thread
/// of rayon's pool, each claiming runs of units from a shared counter until none is left; the
/// caller returns once every unit is done.
///
/// Why not a parallel iterator: at the end of one, a thread whose half is done and whose other
/// half was taken waits on a latch, and on wasm32 rayon soon puts it to sleep there
/// (`Atomics.wait`); the thread that ends last must wake it. A decode step runs ~100 products of
/// a fraction of a millisecond, and in the page that sleep and wake cost tens of microseconds
/// each. Here the caller spins on the counter of units done instead, which is only ever short:
/// the units still running when it runs out are the only ones left. The other threads take
/// their share as rayon jobs (at once inside [`keep_threads_awake`]); one that starts late finds
/// nothing left.
pub fn share_units(count: usize, unit: impl Fn(usize) + Sync) {
    let threads = rayon::current_num_threads().min(count);
    if threads <= 1 {
        (0..count).for_each(unit);
        return;
    }
    let run = count.div_ceil(threads * CLAIMS_PER_THREAD);
    let (next, done) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let work = || loop {
        let first = next.fetch_add(run, Ordering::Relaxed);
        if first >= count {
            break;
        }
        let units = first..count.min(first + run);
        // Counted done even if a unit panics, so that the caller's wait ends and the scope
        // passes the panic on.
        let _counted = Counted(&done, units.len());
        units.for_each(&unit);
    };
    rayon::scope(|scope| {
        for _ in 1..threads {
            scope.spawn(|_| work());
        }
        work();
        while done.load(Ordering::Acquire) < count {
            std::hint::spin_loop();
        }
    });
}

/// Adds its units to the counter of units done when dropped.
struct Counted<'a>(&'a AtomicUsize, usize);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(self.1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use rayon::prelude::*;

    use super::keep_threads_awake;

    #[test]
    fn products_inside_give_what_they_give_outside_and_the_pass_returns() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let sum = |n: u64| (0..n).into_par_iter().map(|i| i * i).sum::<u64>();
        let outside: Vec<u64> = (1..200).map(sum).collect();
        let inside = pool.install(|| keep_threads_awake(|| (1..200).map(sum).collect::<Vec<_>>()));
        assert_eq!(inside, outside);
        // Nested: a pass inside a pass still returns.
        let nested = pool.install(|| keep_threads_awake(|| keep_threads_awake(|| sum(1000))));
        assert_eq!(nested, sum(1000));
    }

    #[test]
    fn shared_units_each_run_once_inside_and_outside_a_pass() {
        use std::sync::atomic::{AtomicUsize, Ordering};

        use super::share_units;

        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for count in [0, 1, 2, 5, 24, 1000, 15_680] {
            let runs: Vec<AtomicUsize> = (0..count).map(|_| AtomicUsize::new(0)).collect();
            let unit = |i: usize| {
                runs[i].fetch_add(1, Ordering::Relaxed);
            };
            pool.install(|| share_units(count, unit));
            pool.install(|| keep_threads_awake(|| share_units(count, unit)));
            share_units(count, unit);
            assert!(
                runs.iter().all(|r| r.load(Ordering::Relaxed) == 3),
                "{count} units"
            );
        }
    }
}
