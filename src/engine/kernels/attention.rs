//! Attention of one new position per sequence (a decode step) over the KV cache's blocks, read
//! in place from their buffers, in one pass: scores, ALiBi biases, softmax and the weighted sum
//! of the values for each head.
//!
//! As candle ops, a decode step's attention copied the filled part of each block out of its
//! buffer, ran a 64-deep product of 1–3 rows per head as a general matrix product, and then
//! concatenated, biased, normalized and summed the blocks' results in five more ops; at a story
//! of 1,500 tokens that cost as much as all of BLOOM-560m's weights, and in the threaded web
//! build each op also paid a hand-off to rayon's threads. These loops read the keys and values
//! where they lie, once per step (keys and values shared by the batch once for all its
//! sequences), the heads in parallel when there is enough work (natively on candle's thread
//! pool, on wasm32 on rayon's), in register tiles (`tiles`: four keys' scores against the
//! batch's queries at once, the softmax a vector at a time, the contexts' columns held in
//! registers while every value row is added; explicit simd128 on wasm32, vectorized by the
//! compiler for AVX2 natively, and for an f16 cache on x86 written by hand with AVX2, or with
//! AVX-512 where the CPU has it: `x86`). An f16 cache is widened to f32 in registers as it is
//! read (with F16C natively); every product and sum is f32. No crate offers attention over
//! candle's storage without those copies, hence this file.
//!
//! The scores go from the newest keys to the oldest, and a chunk of keys so far back that
//! ALiBi's bias is sure to give them weight 0 (`bounds`) is neither read nor weighed: at 1,500
//! tokens, 58% of the chunks of the benchmarks' random BLOOM-560m (a trained model's scores
//! spread wider, so that its bounds leave out fewer).

mod bounds;
mod lanes;
mod stored;
mod tiles;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use bounds::KeyBounds;

pub(crate) use bounds::CHUNK;
use candle_core::{CpuStorage, DType, Layout, Storage, Tensor};
use lanes::LANES;
use stored::Stored;
#[cfg(target_arch = "x86_64")]
use stored::{has_avx512, has_f16c, F16c, F16cAvx512, X86Loops};

/// One block of the cache as [`decode`] reads it: key and value buffers `(1 or b, n_head,
/// capacity, head_dim)` of which the first `n` positions count, the first at key position
/// `start`.
pub struct DecodePart<'a> {
    /// Keys.
    pub k: &'a Tensor,
    /// Values.
    pub v: &'a Tensor,
    /// Key position of the buffer's first position.
    pub start: usize,
    /// Filled positions.
    pub n: usize,
    /// The bounds on the scores of the keys' whole chunks, kept with the buffers (see
    /// [`KeyBounds`]); without them every key is scored.
    pub bounds: Option<&'a KeyBounds>,
}

/// The contiguous data of a tensor of element type `T` and its four dimensions.
fn data_4d<'a, T: Stored>(
    storage: &'a CpuStorage,
    layout: &Layout,
    what: &str,
) -> candle_core::Result<(&'a [T], [usize; 4])> {
    let Some(data) = T::data(storage) else {
        candle_core::bail!("decode attention needs {} {what}", T::NAME)
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("decode attention needs contiguous {what}, got {layout:?}")
    };
    let dims: [usize; 4] = layout
        .shape()
        .dims()
        .try_into()
        .map_err(|_| candle_core::Error::Msg(format!("{what} must have 4 dimensions")))?;
    Ok((&data[start..end], dims))
}

/// Checks that a buffer `(bb, h, capacity, d)` fits a batch `b` of `h` heads, `len` positions.
fn check_buffer(b: usize, h: usize, len: usize, buffer: [usize; 4]) -> candle_core::Result<()> {
    let [bb, bh, capacity, _] = buffer;
    if !(bb == 1 || bb == b) || bh != h || len > capacity {
        candle_core::bail!("decode attention: buffer {buffer:?} for {b}×{h} heads, {len} positions")
    }
    Ok(())
}

/// The rows of `out` (`(b, h, row_len)`, row-major) grouped by head: `groups[head][seq]`.
fn rows_by_head(out: &mut [f32], h: usize, row_len: usize) -> Vec<Vec<&mut [f32]>> {
    let mut groups: Vec<Vec<&mut [f32]>> = (0..h).map(|_| vec![]).collect();
    for (row, chunk) in out.chunks_exact_mut(row_len).enumerate() {
        groups[row % h].push(chunk);
    }
    groups
}

/// Multiply-adds below which a kernel call runs on the calling thread: waking rayon's threads
/// costs more than it saves for a short story (in the threaded web build, ~30 µs a call, 14
/// calls a layer).
const PARALLEL_WORK: usize = 1 << 20;

/// Runs `kernel` for every head's rows of `out` (see [`rows_by_head`]), on rayon's threads when
/// the call does at least [`PARALLEL_WORK`] multiply-adds (`work`), natively with AVX2 and FMA
/// where the CPU has them (`run` is inlined into a function compiled for them; the loops are
/// written to vectorize).
fn for_each_head<T: Stored>(
    out: &mut [f32],
    (h, row_len): (usize, usize),
    work: usize,
    kernel: &DecodeKernel<'_, T>,
) {
    let mut groups: Vec<_> = rows_by_head(out, h, row_len)
        .into_iter()
        .enumerate()
        .collect();
    // The heads of gentle slopes first: they skip the fewest keys (see `bounds`), so that the
    // threads taking the cheap heads last end together.
    groups.sort_by(|(a, _), (b, _)| kernel.slopes[*a].abs().total_cmp(&kernel.slopes[*b].abs()));
    #[cfg(target_arch = "x86_64")]
    {
        /// # Safety
        /// The CPU must support AVX2, FMA and F16C.
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn with_avx2<T: Stored>(
            kernel: &DecodeKernel<'_, T>,
            head: usize,
            rows: &mut [&mut [f32]],
        ) {
            kernel.run(head, rows)
        }
        /// # Safety
        /// The CPU must support AVX-512F and VL, AVX2, FMA and F16C.
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
        unsafe fn with_avx512<T: Stored>(
            kernel: &DecodeKernel<'_, T>,
            head: usize,
            rows: &mut [&mut [f32]],
        ) {
            kernel.run(head, rows)
        }
        if T::X86 == X86Loops::Avx512 {
            // SAFETY: a type read by the AVX-512 loops is only used where the CPU has them
            // (see `attend`).
            let run = |(head, mut rows): (usize, Vec<&mut [f32]>)| unsafe {
                with_avx512(kernel, head, &mut rows)
            };
            return run_groups(groups, work, run);
        }
        if has_f16c() {
            // SAFETY: AVX2, FMA and F16C were detected just above.
            let run = |(head, mut rows): (usize, Vec<&mut [f32]>)| unsafe {
                with_avx2(kernel, head, &mut rows)
            };
            return run_groups(groups, work, run);
        }
    }
    run_groups(groups, work, |(head, mut rows)| kernel.run(head, &mut rows));
}

/// Runs `run` on every head's group of rows: in parallel when `work` is at least
/// [`PARALLEL_WORK`], else in turn on the calling thread (a parallel call would still hand the
/// work to the pool and wait). In parallel natively on candle's thread pool, where the step's
/// products run (on rayon's, that pool's threads spun through attention on the same cores:
/// 8 ms of a 1,500-token step), and on rayon's threads on wasm32 (candle's pool has none there),
/// shared out as the products are (`awake::share_units`).
fn run_groups<'a>(
    groups: Vec<(usize, Vec<&'a mut [f32]>)>,
    work: usize,
    run: impl Fn((usize, Vec<&'a mut [f32]>)) + Sync + Send,
) {
    if work < PARALLEL_WORK {
        groups.into_iter().for_each(run);
        return;
    }
    // Each group taken once by whichever thread reaches its index.
    let groups: Vec<_> = groups
        .into_iter()
        .map(|group| std::sync::Mutex::new(Some(group)))
        .collect();
    let take = |i: usize| {
        if let Some(group) = groups[i].lock().ok().and_then(|mut g| g.take()) {
            run(group);
        }
    };
    #[cfg(target_arch = "wasm32")]
    super::awake::share_units(groups.len(), take);
    #[cfg(not(target_arch = "wasm32"))]
    candle_core::utils::barrier_pool().execute_chunked(groups.len(), |range| range.for_each(take));
}

/// The row of a buffer `(bb, h, capacity, d)` holding sequence `seq`'s positions of head
/// `head`: a shared buffer (`bb` = 1) holds one sequence for all.
fn buffer_row(buffer: [usize; 4], seq: usize, head: usize) -> usize {
    let [bb, h, ..] = buffer;
    if bb == 1 {
        head
    } else {
        seq * h + head
    }
}

/// Where sequence `seq`'s positions of head `head` start in a buffer `(bb, h, capacity, d)`.
fn buffer_start(buffer: [usize; 4], seq: usize, head: usize) -> usize {
    let [_, _, capacity, d] = buffer;
    buffer_row(buffer, seq, head) * capacity * d
}

/// A [`DecodePart`]'s buffers as slices.
struct PartData<'a, T> {
    k: &'a [T],
    v: &'a [T],
    /// `(1 or b, n_head, capacity, head_dim)`, the same for keys and values.
    dims: [usize; 4],
    start: usize,
    n: usize,
    bounds: Option<&'a KeyBounds>,
}

impl<T> PartData<'_, T> {
    /// The groups of the batch's sequences that read the same keys: `(first, count)`, all
    /// of them for a shared buffer, else each alone.
    fn groups(&self, b: usize) -> Vec<(usize, usize)> {
        if self.dims[0] == 1 {
            vec![(0, b)]
        } else {
            (0..b).map(|seq| (seq, 1)).collect()
        }
    }

    /// The index in [`Self::groups`] of sequence `seq`'s group.
    fn group_of(&self, seq: usize) -> usize {
        if self.dims[0] == 1 {
            0
        } else {
            seq
        }
    }
}

thread_local! {
    /// A decode kernel's scores and probabilities, kept by each thread between calls.
    static SCRATCH: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// One head of [`decode`]: for each sequence, scores `q · kⱼ + slope · j` over every part's
/// keys, their softmax, and the context `Σ pⱼ vⱼ`.
struct DecodeKernel<'a, T> {
    /// Queries `(b, h, 1, d)`.
    q: &'a [f32],
    /// Each part's buffers.
    parts: Vec<PartData<'a, T>>,
    slopes: &'a [f32],
    h: usize,
    d: usize,
    /// Key positions in all.
    total: usize,
    /// Whether the queries are consecutive positions of one sequence, the last keys theirs
    /// ([`piece`]): query `i` of `b` does not see the last `b − 1 − i` keys.
    causal: bool,
    /// The queries times [`Stored::DOWN`] when the keys and values are read by
    /// [`Stored::load_down`] (see [`down_scaled`]).
    scaled_q: Option<Vec<f32>>,
}

/// The queries times `T::DOWN`, so that the kernel may read the keys and values by
/// [`Stored::load_down`] (for an f16 cache on wasm32, three operations for four halves instead
/// of four) and weigh them by probabilities times `T::DOWN`: every product then has the same
/// exact value, so every sum the same f32. `None` when there is nothing to leave out, when a
/// query times `T::DOWN` would overflow (at 2¹⁶ and more, or not finite), or when `d` leaves
/// values past the last whole chunk of lanes (summed one by one from [`Stored::to_f32`]).
fn down_scaled<T: Stored>(q: &[f32], d: usize) -> Option<Vec<f32>> {
    const BELOW_OVERFLOW: f32 = 65_536.0;
    let scalable =
        T::DOWN != 1.0 && d.is_multiple_of(LANES) && q.iter().all(|x| x.abs() < BELOW_OVERFLOW);
    scalable.then(|| q.iter().map(|x| x * T::DOWN).collect())
}

impl<T: Stored> DecodeKernel<'_, T> {
    /// Fills head `head`'s context of each sequence (`contexts[seq]`, `head_dim` long).
    ///
    /// The scores go from the newest keys to the oldest, a chunk ([`CHUNK`]) at a time, so that
    /// the largest biased score computed so far tells which older chunks' weights are sure to
    /// be 0 (see `bounds`): those keys and values are not read, and their weights not computed.
    #[inline(always)]
    fn run(&self, head: usize, contexts: &mut [&mut [f32]]) {
        match &self.scaled_q {
            Some(scaled) => self.run_loaded::<true>(head, contexts, scaled),
            None => self.run_loaded::<false>(head, contexts, self.q),
        }
    }

    /// [`Self::run`], the keys and values read by [`Stored::load`], or with `DOWN` by
    /// [`Stored::load_down`]; `tile_q`: the queries the score tiles multiply them by (`self.q`,
    /// or with `DOWN` those times [`Stored::DOWN`]).
    #[inline(always)]
    fn run_loaded<const DOWN: bool>(
        &self,
        head: usize,
        contexts: &mut [&mut [f32]],
        tile_q: &[f32],
    ) {
        let (h, d, total) = (self.h, self.d, self.total);
        let b = contexts.len();
        // Each sequence's query of this head.
        fn head_rows(q: &[f32], b: usize, (h, d, head): (usize, usize, usize)) -> Vec<&[f32]> {
            (0..b).map(|seq| &q[(seq * h + head) * d..][..d]).collect()
        }
        let (queries, tile_queries) = (
            head_rows(self.q, b, (h, d, head)),
            head_rows(tile_q, b, (h, d, head)),
        );
        // The keys each query sees: all, or in a piece those up to its own position.
        let seen_len: Vec<usize> = (0..b)
            .map(|i| total - if self.causal { b - 1 - i } else { 0 })
            .collect();
        // Scores, then probabilities: `(b, total)`, every one written below (in a buffer the
        // thread keeps: its allocation and zeroing cost a long story's step 0.4 ms).
        let mut scratch = SCRATCH.take();
        if scratch.len() < b * total {
            scratch.resize(b * total, 0.0);
        }
        let p = &mut scratch[..b * total];
        let (skipped, maxima) = self.scores::<DOWN>(head, (&queries, &tile_queries), &seen_len, p);
        // softmax(scores + slope · j) over the keys each query sees, in f32 as BLOOM does, from
        // the first key (rounded down to whole lanes) it did not skip.
        let rows = p.chunks_exact_mut(total).zip(&seen_len).zip(maxima);
        for (i, ((row, &len), max)) in rows.enumerate() {
            let first = self
                .parts
                .iter()
                .zip(&skipped)
                .find_map(|(part, skipped)| {
                    let group = part.group_of(i);
                    let chunk = skipped[group].iter().position(|&skip| !skip)?;
                    Some(part.start + chunk * CHUNK)
                })
                .unwrap_or(len)
                .min(len);
            let first = first - first % LANES;
            let (row, hidden) = row.split_at_mut(len);
            let (before, seen) = row.split_at_mut(first);
            before.fill(0.0);
            tiles::softmax(seen, max, if DOWN { T::DOWN } else { 1.0 });
            hidden.fill(0.0);
        }
        for context in contexts.iter_mut() {
            context.fill(0.0);
        }
        for (part, skipped) in self.parts.iter().zip(&skipped) {
            for ((first, count), skipped) in part.groups(b).into_iter().zip(skipped) {
                let values = &part.v[buffer_start(part.dims, first, head)..][..part.n * d];
                // Runs of chunks not skipped (a skipped key's weight is 0: its product adds
                // nothing).
                let mut a = 0;
                while a < part.n {
                    let chunk = a / CHUNK;
                    let run = skipped[chunk..].iter().take_while(|&&s| !s).count();
                    if run == 0 {
                        a += CHUNK;
                        continue;
                    }
                    let e = (a + run * CHUNK).min(part.n);
                    let weights: Vec<&[f32]> = p
                        .chunks_exact(total)
                        .skip(first)
                        .take(count)
                        .map(|row| &row[part.start + a..part.start + e])
                        .collect();
                    let values = &values[a * d..e * d];
                    let contexts = &mut contexts[first..first + count];
                    tiles::accumulate::<T, DOWN>(&weights, values, d, contexts);
                    a = e;
                }
            }
        }
        SCRATCH.set(scratch);
    }

    /// Head `head`'s biased scores `q · kⱼ + slope · j` of every query (`queries`, each seeing
    /// the first `seen_len` keys; the score tiles take `tile_queries`, see
    /// [`Self::run_loaded`]) into `p` (`(b, total)`), −∞ for the keys of the chunks it
    /// skips: returns for each part, each of its groups ([`PartData::groups`]) and each chunk
    /// whether it was skipped, and each query's largest biased score over the keys it sees.
    #[inline(always)]
    fn scores<const DOWN: bool>(
        &self,
        head: usize,
        (queries, tile_queries): (&[&[f32]], &[&[f32]]),
        seen_len: &[usize],
        p: &mut [f32],
    ) -> (Vec<Vec<Vec<bool>>>, Vec<f32>) {
        let (d, total, b) = (self.d, self.total, queries.len());
        let slope = self.slopes[head];
        let norms: Vec<f32> = queries
            .iter()
            .map(|q| q.iter().map(|x| x * x).sum::<f32>().sqrt())
            .collect();
        // The largest biased score computed so far for each query: at most its row's largest,
        // and that largest once every chunk is done.
        let mut seen = vec![f32::NEG_INFINITY; b];
        let mut skipped: Vec<Vec<Vec<bool>>> = vec![vec![]; self.parts.len()];
        for (part, skipped) in self.parts.iter().zip(skipped.iter_mut()).rev() {
            for (first, count) in part.groups(b) {
                let group = first..first + count;
                let keys = &part.k[buffer_start(part.dims, first, head)..][..part.n * d];
                let mut balls = part
                    .bounds
                    .and_then(|bounds| bounds.row(buffer_row(part.dims, first, head)));
                if let Some(balls) = balls.as_mut() {
                    balls.extend(keys, part.n, d);
                }
                let mut flags = vec![false; part.n.div_ceil(CHUNK)];
                for (chunk, a) in (0..part.n).step_by(CHUNK).enumerate().rev() {
                    let e = (a + CHUNK).min(part.n);
                    let (from, to) = (part.start + a, part.start + e);
                    let mut rows: Vec<&mut [f32]> = p
                        .chunks_exact_mut(total)
                        .skip(first)
                        .take(count)
                        .map(|row| &mut row[from..to])
                        .collect();
                    let bias = (slope * from as f32).max(slope * (to - 1) as f32);
                    let skip = balls.as_ref().is_some_and(|balls| {
                        let group = group.clone();
                        let queries = group.map(|i| (queries[i], norms[i], seen[i]));
                        balls.below_floor(chunk, bias, queries)
                    });
                    if skip {
                        rows.iter_mut().for_each(|row| row.fill(f32::NEG_INFINITY));
                        flags[chunk] = true;
                        continue;
                    }
                    let keys = &keys[a * d..e * d];
                    tiles::scores::<T, DOWN>(&tile_queries[group.clone()], keys, d, &mut rows);
                    for (i, row) in group.clone().zip(rows.iter_mut()) {
                        let visible = &mut row[..seen_len[i].clamp(from, to) - from];
                        seen[i] = seen[i].max(tiles::add_biases(visible, from, slope));
                    }
                }
                skipped.push(flags);
            }
        }
        (skipped, seen)
    }
}

/// The CPU storage of a tensor (attention runs on the CPU only).
fn cpu(guard: &Storage) -> candle_core::Result<&CpuStorage> {
    match guard {
        Storage::Cpu(storage) => Ok(storage),
        _ => candle_core::bail!("decode attention runs on the CPU"),
    }
}

/// softmax(slope · j + q · kⱼ) · v over the keys of every part, for queries `(b, n_head, 1,
/// head_dim)` (one per sequence, already scaled) → `(b, n_head, 1, head_dim)`. `slopes`: the
/// ALiBi slope of each head. Every key is visible (a decode step's query comes last).
pub fn decode(q: &Tensor, parts: &[DecodePart<'_>], slopes: &[f32]) -> candle_core::Result<Tensor> {
    let q = q.contiguous()?;
    let (q_guard, q_layout) = q.storage_and_layout();
    let (q_data, [b, h, s, d]) = data_4d::<f32>(cpu(&q_guard)?, q_layout, "queries")?;
    if s != 1 || slopes.len() != h {
        candle_core::bail!(
            "decode attention of queries {:?}, {} slopes",
            q_layout.shape(),
            slopes.len()
        )
    }
    let out = attend(q_data, ([b, h, d], parts, slopes), false)?;
    Tensor::from_vec(out, (b, h, 1, d), q.device())
}

/// The attention context `(1, n_head, s, head_dim)` of a short piece of one sequence (the
/// words a writer typed before a round), queries `(1, n_head, s, head_dim)` (already scaled):
/// [`decode`]'s pass with the `s` queries as one batch over shared keys, query `i` seeing the
/// keys up to its own position, the piece's own the last `s` of `parts`. Every part must be a
/// single sequence's (batch 1). Cheaper than the running softmax of general pieces for a few
/// queries over a long story: one pass reads each key and value once for all the queries.
pub fn piece(q: &Tensor, parts: &[DecodePart<'_>], slopes: &[f32]) -> candle_core::Result<Tensor> {
    let (one, h, s, d) = q.dims4()?;
    let total = parts.iter().map(|p| p.n).sum::<usize>();
    if one != 1
        || slopes.len() != h
        || s > total
        || parts.iter().any(|p| p.k.dim(0).ok() != Some(1))
    {
        candle_core::bail!(
            "piece attention of queries {:?} over {total} keys, {} slopes, batches {:?}",
            q.shape(),
            slopes.len(),
            parts
                .iter()
                .map(|p| p.k.dims().first().copied())
                .collect::<Vec<_>>()
        )
    }
    // (s, h, 1, d): the queries as a batch of one position each.
    let q = q.transpose(0, 2)?.contiguous()?;
    let (q_guard, q_layout) = q.storage_and_layout();
    let (q_data, _) = data_4d::<f32>(cpu(&q_guard)?, q_layout, "queries")?;
    let out = attend(q_data, ([s, h, d], parts, slopes), true)?;
    Tensor::from_vec(out, (s, h, 1, d), q.device())?
        .transpose(0, 2)?
        .contiguous()
}

/// [`decode`] (or with `causal`, [`piece`]) over the parts' keys and values as they are
/// stored: the contexts `(b, h, 1, d)`, row-major.
fn attend(
    q: &[f32],
    shape: ([usize; 3], &[DecodePart<'_>], &[f32]),
    causal: bool,
) -> candle_core::Result<Vec<f32>> {
    match shape.1.first().map(|p| p.k.dtype()) {
        #[cfg(target_arch = "x86_64")]
        Some(DType::F16) if has_avx512() => attend_stored::<F16cAvx512>(q, shape, causal),
        #[cfg(target_arch = "x86_64")]
        Some(DType::F16) if has_f16c() => attend_stored::<F16c>(q, shape, causal),
        Some(DType::F16) => attend_stored::<half::f16>(q, shape, causal),
        _ => attend_stored::<f32>(q, shape, causal),
    }
}

/// [`decode`] (or with `causal`, [`piece`]) over keys and values stored as `T`: the contexts
/// `(b, h, 1, d)`, row-major.
fn attend_stored<T: Stored>(
    q: &[f32],
    ([b, h, d], parts, slopes): ([usize; 3], &[DecodePart<'_>], &[f32]),
    causal: bool,
) -> candle_core::Result<Vec<f32>> {
    let guards: Vec<_> = parts
        .iter()
        .map(|p| (p.k.storage_and_layout(), p.v.storage_and_layout()))
        .collect();
    let mut buffers = Vec::with_capacity(parts.len());
    for (part, ((k_guard, k_layout), (v_guard, v_layout))) in parts.iter().zip(&guards) {
        let (k, k_dims) = data_4d::<T>(cpu(k_guard)?, k_layout, "keys")?;
        let (v, v_dims) = data_4d::<T>(cpu(v_guard)?, v_layout, "values")?;
        check_buffer(b, h, part.n, k_dims)?;
        if k_dims != v_dims || k_dims[3] != d {
            candle_core::bail!("decode attention: keys {k_dims:?}, values {v_dims:?}, head_dim {d}")
        }
        buffers.push(PartData {
            k,
            v,
            dims: k_dims,
            start: part.start,
            n: part.n,
            bounds: part.bounds,
        });
    }
    let total = parts.iter().map(|p| p.n).sum::<usize>();
    if total == 0 || buffers.iter().any(|p| p.start + p.n > total) {
        candle_core::bail!("decode attention over parts that do not cover 0..{total}")
    }
    let kernel = DecodeKernel {
        q,
        parts: buffers,
        slopes,
        h,
        d,
        total,
        causal,
        scaled_q: down_scaled::<T>(q, d),
    };
    let mut out = vec![0f32; b * h * d];
    for_each_head(&mut out, (h, d), 2 * b * h * total * d, &kernel);
    Ok(out)
}

#[cfg(test)]
mod tests;
