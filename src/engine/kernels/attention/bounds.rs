//! Bounds on the scores of chunks of keys, by which the decode kernel leaves out the keys whose
//! softmax weight is sure to be 0. Far in the past, ALiBi's bias `slope · j` puts a key's score
//! so far below its row's largest that the softmax's floor (`tiles::WEIGHT_FLOOR`) gives it
//! weight 0: reading its key and value only to multiply by 0 is most of a long story's reads for
//! the heads of steep slopes.
//!
//! Each whole chunk of [`CHUNK`] keys of a buffer row keeps the ball that holds its keys: their
//! mean and their largest distance from it, so that `q · k ≤ q · center + |q| · radius` for
//! every key `k` of the chunk (Cauchy–Schwarz). A chunk whose bound, plus its largest bias,
//! is below the floor under a biased score already computed for the query, is skipped: scores
//! −∞, weights 0, its values not read. Those are the weights the kernel gave its keys before, so
//! the contexts are the same bit for bit.

use std::sync::{Mutex, MutexGuard, PoisonError};

use super::lanes::{Lanes, LANES};
use super::stored::Stored;
use super::tiles::WEIGHT_FLOOR;

/// Keys of one chunk: one ball per [`CHUNK`] positions of a buffer row (`d + 1` f32 for
/// `CHUNK · d` keys, 1/64 of an f16 cache's keys and values for heads of 64).
pub(crate) const CHUNK: usize = 64;

/// The balls of the whole chunks of keys of one layer of a cache block, per buffer row
/// (`sequence · n_head + head`), computed as attention first reads them. Positions are only
/// ever appended to a block (or cut off by [`Self::truncate`]), so a whole chunk's ball stays
/// true.
#[derive(Debug, Default)]
pub struct KeyBounds {
    rows: Vec<Mutex<Balls>>,
}

/// The balls of one buffer row's whole chunks, in order.
#[derive(Debug, Default)]
pub(super) struct Balls {
    /// The centers, `d` per chunk.
    centers: Vec<f32>,
    /// The radii, one per chunk.
    radii: Vec<f32>,
}

impl KeyBounds {
    /// Room for the balls of `rows` buffer rows (`batch · n_head`), none computed yet.
    pub fn new(rows: usize) -> Self {
        Self {
            rows: (0..rows).map(|_| Mutex::default()).collect(),
        }
    }

    /// Forgets the chunks not wholly below position `len` (the block was cut there; its
    /// positions from `len` on will be written again).
    pub fn truncate(&mut self, len: usize) {
        let chunks = len / CHUNK;
        for balls in &mut self.rows {
            let balls = balls.get_mut().unwrap_or_else(PoisonError::into_inner);
            if balls.radii.len() > chunks {
                let d = balls.centers.len() / balls.radii.len();
                balls.radii.truncate(chunks);
                balls.centers.truncate(chunks * d);
            }
        }
    }

    /// The balls of buffer row `row` (each head's kernel takes its own rows only), if the
    /// block has that row.
    pub(super) fn row(&self, row: usize) -> Option<MutexGuard<'_, Balls>> {
        let balls = self.rows.get(row)?;
        Some(balls.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Balls {
    /// Computes the balls of the whole chunks of the first `n` keys of `keys` (rows of `d`) not
    /// computed yet.
    #[inline(always)]
    pub(super) fn extend<T: Stored>(&mut self, keys: &[T], n: usize, d: usize) {
        let body = d - d % LANES;
        for chunk in keys[..n * d].chunks_exact(CHUNK * d).skip(self.radii.len()) {
            let mut center = vec![0f32; d];
            for key in chunk.chunks_exact(d) {
                for c in (0..body).step_by(LANES) {
                    // SAFETY: c + LANES ≤ d, within the key and the center.
                    unsafe {
                        let sum =
                            Lanes::load(center.as_ptr().add(c)).add(T::load(key.as_ptr().add(c)));
                        sum.store(center.as_mut_ptr().add(c));
                    }
                }
                for (c, x) in center[body..].iter_mut().zip(&key[body..]) {
                    *c += x.to_f32();
                }
            }
            center.iter_mut().for_each(|c| *c /= CHUNK as f32);
            let radius = chunk
                .chunks_exact(d)
                .map(|key| {
                    let mut squares = Lanes::splat(0.0);
                    for c in (0..body).step_by(LANES) {
                        // SAFETY: as above.
                        let diff = unsafe {
                            T::load(key.as_ptr().add(c)).sub(Lanes::load(center.as_ptr().add(c)))
                        };
                        squares = squares.mul_add(diff, diff);
                    }
                    let tail: f32 = key[body..]
                        .iter()
                        .zip(&center[body..])
                        .map(|(x, c)| (x.to_f32() - c).powi(2))
                        .sum();
                    (squares.to_array().iter().sum::<f32>() + tail).sqrt()
                })
                .fold(0f32, f32::max);
            self.centers.extend(center);
            self.radii.push(radius);
        }
    }

    /// An upper bound of `q · k` over chunk `chunk`'s keys, for a query `q` of norm `norm`;
    /// `None` while the chunk's ball is not computed.
    fn bound(&self, chunk: usize, q: &[f32], norm: f32) -> Option<f32> {
        let radius = self.radii.get(chunk)?;
        let center = &self.centers[chunk * q.len()..][..q.len()];
        let dot: f32 = q.iter().zip(center).map(|(a, b)| a * b).sum();
        Some(dot + norm * radius)
    }

    /// Whether chunk `chunk`'s keys all get weight 0 from every query `(q, |q|, seen)` of
    /// `queries`, `seen` the largest biased score computed for it so far and `bias` the
    /// chunk's largest ALiBi bias. False for a chunk whose ball is not computed.
    pub(super) fn below_floor<'q>(
        &self,
        chunk: usize,
        bias: f32,
        queries: impl IntoIterator<Item = (&'q [f32], f32, f32)>,
    ) -> bool {
        queries.into_iter().all(|(q, norm, seen)| {
            let Some(bound) = self.bound(chunk, q, norm) else {
                return false;
            };
            let bound = bound + bias;
            // A margin for rounding, far above f32's (a millionth of the magnitudes); false
            // while nothing is seen (−∞) and for NaN.
            bound + 1.0 + 1e-3 * (bound.abs() + seen.abs()) < seen + WEIGHT_FLOOR
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys of head size `d` spread over `[-3, 3)`, a mean of 1 added to every other column.
    fn keys(n: usize, d: usize) -> Vec<f32> {
        (0..n * d)
            .map(|i| ((i as f32 * 0.618_034).fract() * 6.0 - 3.0) + (i % 2) as f32)
            .collect()
    }

    #[test]
    fn a_chunk_s_ball_bounds_every_key_s_score() {
        for d in [64, 68] {
            let keys = keys(2 * CHUNK + 5, d);
            let mut balls = Balls::default();
            balls.extend(&keys, 2 * CHUNK + 5, d);
            assert_eq!(balls.radii.len(), 2, "whole chunks only");
            for seed in 0..20 {
                let q: Vec<f32> = (0..d)
                    .map(|i| ((i * 31 + seed * 17) as f32 * 0.754_877).fract() * 4.0 - 2.0)
                    .collect();
                let norm = q.iter().map(|x| x * x).sum::<f32>().sqrt();
                for (chunk, keys) in keys.chunks_exact(CHUNK * d).enumerate() {
                    let bound = balls.bound(chunk, &q, norm).expect("computed");
                    for key in keys.chunks_exact(d) {
                        let score: f32 = q.iter().zip(key).map(|(a, b)| a * b).sum();
                        assert!(score <= bound, "d {d}: {score} > {bound}");
                    }
                }
            }
        }
    }

    #[test]
    fn truncating_forgets_the_chunks_cut() {
        let d = 8;
        let keys = keys(3 * CHUNK, d);
        let mut bounds = KeyBounds::new(2);
        bounds.row(1).expect("row 1").extend(&keys, 3 * CHUNK, d);
        assert!(bounds.row(2).is_none());
        let far_below = |bounds: &KeyBounds, chunk| {
            let q = [0.5f32; 8];
            let norm = 0.5 * 8f32.sqrt();
            bounds
                .row(1)
                .expect("row 1")
                .below_floor(chunk, 0.0, [(&q[..], norm, 1e4)])
        };
        assert!(far_below(&bounds, 2));
        bounds.truncate(2 * CHUNK - 1);
        assert!(far_below(&bounds, 0));
        assert!(!far_below(&bounds, 1), "a cut chunk is never skipped");
        // Extended again, the chunks are those of the keys written since.
        bounds.row(1).expect("row 1").extend(&keys, 2 * CHUNK, d);
        assert!(far_below(&bounds, 1));
    }
}
