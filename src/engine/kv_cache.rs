//! The keys and values of every layer, kept in blocks of positions that sequences share.
//!
//! A cache is a list of blocks, oldest first. A block holds, for every layer, keys and values
//! `(batch, n_head, capacity, head_dim)` of which the first `len` positions are filled. A block
//! of batch 1 in a cache of batch `b` is shared by all `b` sequences: three candidates read the
//! story's keys and values from the same memory (attention multiplies their queries with it as
//! one matrix), and only the positions they generated are theirs. Blocks are reference-counted:
//! forking a cache, keeping a candidate's cache after its round, or keeping the story's cache
//! for the next round copies nothing, and a block is only written in place while one cache
//! holds it (otherwise the next positions go into a new block).
//!
//! Memory grows by blocks of at most [`BLOCK`] positions, never by doubling a buffer and copying
//! it; a forward pass of many tokens runs in pieces that end at block boundaries, and attention
//! goes over the blocks one at a time (a running softmax), so its scores never cover more than
//! `BLOCK` queries by `BLOCK` keys at once, however long the story (chunked prefill).

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

use crate::engine::kernels::attention::{self, DecodePart, KeyBounds};
use crate::engine::kernels::f16;
use crate::error::{Error, Result};
use running::{key_bias, piece_attention, Part};

mod running;

/// The most positions a block holds (and so the most queries of one piece of a forward pass).
pub const BLOCK: usize = 256;

/// The most queries of a single sequence's piece that attend in one pass over the cache in
/// place ([`attention::piece`]), as a decode step does; longer pieces go over the blocks with
/// a running softmax. The words a writer types before a round are a few tokens: six of them
/// over a 1,500-token story took 0.14 s the other way and take 0.06 s this one (0.04 s over a
/// short story).
const SHORT_PIECE: usize = 16;

/// What a cache stores keys and values as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KvDtype {
    /// Single precision: the logits of `transformers` to within f32 rounding.
    #[default]
    F32,
    /// Half precision: half the memory and half the bytes a decode step reads; keys and values
    /// are rounded to f16 (a relative error of at most 2⁻¹¹) and every product stays f32.
    F16,
}

impl From<KvDtype> for DType {
    fn from(dtype: KvDtype) -> Self {
        match dtype {
            KvDtype::F32 => DType::F32,
            KvDtype::F16 => DType::F16,
        }
    }
}

impl std::str::FromStr for KvDtype {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            other => Err(Error::Invalid(format!(
                "KV cache type {other:?}: expected f32 or f16"
            ))),
        }
    }
}

/// One layer's keys and values in a block.
#[derive(Debug)]
struct LayerKv {
    /// Keys `(batch, n_head, capacity, head_dim)`.
    k: Tensor,
    /// Values, shaped as the keys.
    v: Tensor,
    /// Bounds on the scores of the keys' whole chunks, computed as attention reads them.
    bounds: KeyBounds,
}

impl LayerKv {
    /// Keys and values `(batch, n_head, capacity, head_dim)`, no bounds computed yet.
    fn new(k: Tensor, v: Tensor) -> Result<Self> {
        let (batch, n_head, _, _) = k.dims4()?;
        let bounds = KeyBounds::new(batch * n_head);
        Ok(Self { k, v, bounds })
    }
}

/// Positions of every layer for a batch of sequences (or one shared sequence).
#[derive(Debug)]
struct Block {
    /// Per layer, keys and values; `None` until written.
    layers: Vec<Option<LayerKv>>,
    /// Sequences it holds: 1 (shared by the whole batch) or the cache's batch.
    batch: usize,
    /// Filled positions.
    len: usize,
    /// Positions it has room for.
    capacity: usize,
}

impl Block {
    fn new(n_layer: usize, batch: usize, capacity: usize) -> Self {
        Self {
            layers: (0..n_layer).map(|_| None).collect(),
            batch,
            len: 0,
            capacity,
        }
    }

    /// Layer `layer`'s filled keys and values, `(batch, n_head, len + extra, head_dim)`.
    fn filled(&self, layer: usize, extra: usize) -> Result<(Tensor, Tensor)> {
        let LayerKv { k, v, .. } = self.layers[layer]
            .as_ref()
            .ok_or_else(|| Error::Invalid(format!("layer {layer} of the cache is empty")))?;
        let n = self.len + extra;
        Ok((k.narrow(2, 0, n)?, v.narrow(2, 0, n)?))
    }

    /// A compact copy of the positions `from..to`, each layer's tensors passed through `f`
    /// (e.g. to pick sequences), with room for `capacity` positions.
    fn copy(
        &self,
        from: usize,
        to: usize,
        capacity: usize,
        f: impl Fn(&Tensor) -> Result<Tensor>,
    ) -> Result<Self> {
        let mut batch = self.batch;
        let layers = self
            .layers
            .iter()
            .map(|slot| {
                let Some(LayerKv { k, v, .. }) = slot else {
                    return Ok(None);
                };
                let mut part = |t: &Tensor| -> Result<Tensor> {
                    let t = f(&t.narrow(2, from, to - from)?)?.contiguous()?;
                    batch = t.dim(0)?;
                    with_capacity(&t, capacity)
                };
                Ok(Some(LayerKv::new(part(k)?, part(v)?)?))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            layers,
            batch,
            len: to - from,
            capacity: capacity.max(to - from),
        })
    }
}

/// `t` `(batch, n_head, len, head_dim)` in a buffer with room for `capacity` positions.
fn with_capacity(t: &Tensor, capacity: usize) -> Result<Tensor> {
    let (b, h, len, d) = t.dims4()?;
    if capacity <= len {
        return Ok(t.clone());
    }
    let buf = Tensor::zeros((b, h, capacity, d), t.dtype(), t.device())?;
    buf.slice_set(t, 2, 0)?;
    Ok(buf)
}

/// The keys and values of every layer for a batch of sequences of equal length.
///
/// Cloning is cheap (blocks are shared); see the module documentation.
#[derive(Debug, Clone)]
pub struct KvCache {
    blocks: Vec<Arc<Block>>,
    n_layer: usize,
    /// What keys and values are stored as: f32, or f16 (half the memory, widened to f32 as
    /// attention reads them).
    dtype: DType,
    batch: usize,
    len: usize,
    /// Room the next new block is made with, at most [`BLOCK`].
    next_capacity: usize,
    /// The ALiBi biases and mask of the piece being run, built by its first layer and reused
    /// by the others (they are the same for every layer).
    biases: Option<(BiasKey, Vec<Tensor>)>,
}

/// What a piece's biases depend on: the cached positions, the piece's length, and each part's
/// first key position and length.
type BiasKey = (usize, usize, Vec<(usize, usize)>);

impl KvCache {
    /// An empty cache for one sequence of a model with `n_layer` blocks, storing keys and values
    /// as `dtype` (f32 or f16).
    pub fn new(n_layer: usize, dtype: KvDtype) -> Self {
        Self {
            blocks: vec![],
            n_layer,
            dtype: dtype.into(),
            batch: 1,
            len: 0,
            next_capacity: BLOCK,
            biases: None,
        }
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of sequences in the batch.
    pub fn batch_size(&self) -> usize {
        self.batch
    }

    /// Number of blocks (shared and own) the positions are kept in.
    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// Bytes of keys and values this cache holds (shared blocks counted once per cache).
    pub fn bytes(&self) -> usize {
        self.blocks
            .iter()
            .flat_map(|b| b.layers.iter().flatten())
            .map(|l| (l.k.elem_count() + l.v.elem_count()) * l.k.dtype().size_in_bytes())
            .sum()
    }

    /// Makes the next new block with room for `positions` (at most [`BLOCK`]): the round's
    /// longest candidate, so that a candidate's own positions take no more memory than it can
    /// use.
    pub fn reserve(&mut self, positions: usize) {
        self.next_capacity = positions.clamp(1, BLOCK);
    }

    /// How many of `wanted` new positions the next piece of a forward pass of batch `batch`
    /// takes: the room left in the last block when it can be written in place, else a new
    /// block's.
    pub(crate) fn next_piece(&mut self, batch: usize, wanted: usize) -> usize {
        if let Some(last) = self.blocks.last_mut() {
            if let Some(block) = Arc::get_mut(last) {
                if block.batch == batch && block.len < block.capacity {
                    return wanted.min(block.capacity - block.len);
                }
            }
        }
        wanted.min(BLOCK)
    }

    /// Starts a piece of `s` positions for a batch of `batch` (as [`Self::next_piece`] sized
    /// it): a new block when the last one cannot take them in place.
    pub(crate) fn begin_piece(&mut self, batch: usize, s: usize) -> Result<()> {
        if !self.is_empty() && batch != self.batch {
            return Err(Error::Invalid(format!(
                "batch of {batch} sequences does not match the cache's {}",
                self.batch
            )));
        }
        self.batch = batch;
        let writable = self
            .blocks
            .last_mut()
            .and_then(Arc::get_mut)
            .is_some_and(|b| b.batch == batch && b.len + s <= b.capacity);
        if !writable {
            let capacity = self.next_capacity.max(s);
            self.blocks
                .push(Arc::new(Block::new(self.n_layer, batch, capacity)));
        }
        Ok(())
    }

    /// Writes the piece's keys and values `(batch, n_head, s, head_dim)` of layer `layer` into
    /// the last block and returns the attention context `(batch, n_head, s, head_dim)` of the
    /// piece's queries `q` (already scaled) over every cached position and the piece itself,
    /// with ALiBi biases `slope · j` for key j (`slopes`: one per head) and the causal mask.
    ///
    /// A piece of several queries goes over the blocks one at a time with a running softmax
    /// (the maximum, the sum of exponentials and the weighted values rescaled as each block
    /// raises the maximum), so that no score matrix wider than a block is ever held: memory
    /// stays the same however long the story. A decode step (one query), or a piece of at most
    /// [`SHORT_PIECE`] queries of one sequence, reads the buffers in place in one pass.
    pub(crate) fn attend(
        &mut self,
        layer: usize,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        slopes: &[f32],
    ) -> Result<Tensor> {
        let s = k.dim(2)?;
        let past = self.len;
        let block = self
            .blocks
            .last_mut()
            .and_then(Arc::get_mut)
            .ok_or_else(|| Error::Invalid("no writable block: begin_piece first".into()))?;
        let slot = &mut block.layers[layer];
        if slot.is_none() {
            let (b, h, _, d) = k.dims4()?;
            let zeros = || Tensor::zeros((b, h, block.capacity, d), self.dtype, k.device());
            *slot = Some(LayerKv::new(zeros()?, zeros()?)?);
        }
        let LayerKv {
            k: k_buf, v: v_buf, ..
        } = slot.as_ref().expect("allocated above");
        let stored = |t: &Tensor| -> Result<Tensor> {
            Ok(match self.dtype {
                DType::F16 => f16::narrow_finite(t)?,
                _ => t.contiguous()?,
            })
        };
        k_buf.slice_set(&stored(k)?, 2, block.len)?;
        v_buf.slice_set(&stored(v)?, 2, block.len)?;
        // Every block's first key position and filled positions, the last one including the
        // piece.
        let last = self.blocks.len() - 1;
        let mut start = 0;
        let mut spans = Vec::with_capacity(self.blocks.len());
        for (i, block) in self.blocks.iter().enumerate() {
            let n = block.len + if i == last { s } else { 0 };
            spans.push((start, n));
            start += n;
        }
        // Every block's key and value buffers of this layer.
        let buffers = self
            .blocks
            .iter()
            .map(|block| {
                block.layers[layer]
                    .as_ref()
                    .ok_or_else(|| Error::Invalid(format!("layer {layer} of the cache is empty")))
            })
            .collect::<Result<Vec<_>>>()?;
        if s == 1 || (k.dim(0)? == 1 && s <= SHORT_PIECE) {
            // A decode step, or a few typed tokens of one sequence: one pass over the blocks in
            // place, the biases computed as it goes.
            let parts: Vec<DecodePart<'_>> = buffers
                .into_iter()
                .zip(&spans)
                .map(|(layer, &(start, n))| DecodePart {
                    k: &layer.k,
                    v: &layer.v,
                    start,
                    n,
                    bounds: Some(&layer.bounds),
                })
                .collect();
            return Ok(if s == 1 {
                attention::decode(q, &parts, slopes)?
            } else {
                attention::piece(q, &parts, slopes)?
            });
        }
        let key = (past, s, spans);
        let biases = match &self.biases {
            Some((built, biases)) if *built == key => biases.clone(),
            _ => {
                let device = q.device();
                let biases = key
                    .2
                    .iter()
                    .map(|&(first, n)| key_bias((slopes, device), past, s, first, n))
                    .collect::<Result<Vec<_>>>()?;
                self.biases = Some((key.clone(), biases.clone()));
                biases
            }
        };
        let parts: Vec<Part<'_>> = buffers
            .into_iter()
            .zip(&key.2)
            .map(|(layer, &(_, n))| Part {
                k: &layer.k,
                v: &layer.v,
                n,
            })
            .collect();
        piece_attention(q, &parts, &biases)
    }

    /// Ends a piece of `s` positions: they count as cached from now on.
    pub(crate) fn end_piece(&mut self, s: usize) {
        if let Some(block) = self.blocks.last_mut().and_then(Arc::get_mut) {
            block.len += s;
        }
        self.len += s;
    }

    /// `n` sequences continuing this single-sequence cache, as one batch; they share every
    /// cached position (nothing is copied).
    pub fn fork(&self, n: usize) -> Result<Self> {
        if self.batch != 1 {
            return Err(Error::Invalid(format!(
                "only a single-sequence cache can be forked, this one holds {}",
                self.batch
            )));
        }
        let mut forked = self.clone();
        forked.batch = n.max(1);
        Ok(forked)
    }

    /// Keeps only the sequences at `indices` of the batch, in that order. Shared blocks stay
    /// shared; the sequences' own positions are copied.
    pub fn select(&self, indices: &[usize]) -> Result<Self> {
        let batch = self.batch;
        if let Some(bad) = indices.iter().find(|&&i| i >= batch) {
            return Err(Error::Invalid(format!(
                "sequence {bad} is not in a batch of {batch}"
            )));
        }
        let ids: Vec<u32> = indices.iter().map(|&i| i as u32).collect();
        let ids = Tensor::new(ids.as_slice(), &self.device())?;
        let blocks = self
            .blocks
            .iter()
            .map(|b| {
                if b.batch == 1 {
                    // Shared by every sequence, so by every selection of them.
                    return Ok(b.clone());
                }
                let pick = |t: &Tensor| Ok(t.contiguous()?.index_select(&ids, 0)?);
                Ok(Arc::new(b.copy(0, b.len, b.len, pick)?))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            blocks,
            batch: indices.len().max(1),
            ..self.clone()
        })
    }

    /// Forgets every position from `len` on.
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        let mut start = 0;
        let mut kept = vec![];
        for mut block in std::mem::take(&mut self.blocks) {
            if start >= len {
                break;
            }
            let keep = (len - start).min(block.len);
            if keep < block.len {
                match Arc::get_mut(&mut block) {
                    Some(b) => {
                        b.len = keep;
                        for layer in b.layers.iter_mut().flatten() {
                            layer.bounds.truncate(keep);
                        }
                    }
                    // Shared with another cache: keep a copy of the part we need.
                    None => match block.copy(0, keep, block.capacity, |t| Ok(t.clone())) {
                        Ok(copy) => block = Arc::new(copy),
                        Err(_) => break,
                    },
                }
            }
            start += block.len;
            kept.push(block);
        }
        self.len = start;
        self.blocks = kept;
    }

    /// Drops the `n` oldest positions, keeping the rest (ALiBi needs no re-encoding: its bias
    /// only depends on key distances).
    pub fn slide(&self, n: usize) -> Result<Self> {
        let n = n.min(self.len);
        let mut skipped = 0;
        let mut blocks = vec![];
        for block in &self.blocks {
            if skipped + block.len <= n {
                skipped += block.len;
                continue;
            }
            let from = n.saturating_sub(skipped);
            skipped += from;
            blocks.push(if from == 0 {
                block.clone()
            } else {
                let rest = block.len - from;
                Arc::new(block.copy(from, block.len, rest, |t| Ok(t.clone()))?)
            });
        }
        Ok(Self {
            blocks,
            len: self.len - n,
            ..self.clone()
        })
    }

    /// Merges runs of small blocks (a story's cache grows by a candidate's positions at a
    /// time) into blocks of up to [`BLOCK`] positions, so attention keeps few pieces.
    pub fn compact(&mut self) -> Result<()> {
        let mut merged: Vec<Arc<Block>> = vec![];
        let mut run: Vec<Arc<Block>> = vec![];
        let flush = |run: &mut Vec<Arc<Block>>, merged: &mut Vec<Arc<Block>>| -> Result<()> {
            match run.len() {
                0 => {}
                1 => merged.push(run.pop().expect("one block")),
                _ => {
                    let len: usize = run.iter().map(|b| b.len).sum();
                    let layers = (0..run[0].layers.len())
                        .map(|layer| {
                            let parts = run
                                .iter()
                                .map(|b| b.filled(layer, 0))
                                .collect::<Result<Vec<_>>>()?;
                            let cat = |i: usize| -> Result<Tensor> {
                                let ts: Vec<&Tensor> = parts
                                    .iter()
                                    .map(|p| if i == 0 { &p.0 } else { &p.1 })
                                    .collect();
                                with_capacity(&Tensor::cat(&ts, 2)?, len)
                            };
                            Ok(Some(LayerKv::new(cat(0)?, cat(1)?)?))
                        })
                        .collect::<Result<_>>()?;
                    merged.push(Arc::new(Block {
                        layers,
                        batch: run[0].batch,
                        len,
                        capacity: len,
                    }));
                    run.clear();
                }
            }
            Ok(())
        };
        for block in std::mem::take(&mut self.blocks) {
            let run_len: usize = run.iter().map(|b| b.len).sum();
            let fits = run
                .first()
                .is_none_or(|first| first.batch == block.batch && run_len + block.len <= BLOCK);
            if !fits {
                flush(&mut run, &mut merged)?;
            }
            run.push(block);
        }
        flush(&mut run, &mut merged)?;
        self.blocks = merged;
        Ok(())
    }

    fn device(&self) -> Device {
        self.blocks
            .iter()
            .flat_map(|b| b.layers.iter().flatten())
            .next()
            .map_or(Device::Cpu, |l| l.k.device().clone())
    }
}

#[cfg(test)]
mod tests;
