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

use std::sync::atomic::{AtomicBool, Ordering};

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
}
