//! A quantized matrix cut into blocks of rows that candle multiplies on rayon's threads: for
//! the types our simd128 kernels do not take (the q4_k or q6_k output projection) on wasm32,
//! where candle's own thread pool has no threads. Each output value is candle's own, bit for bit.

use std::borrow::Cow;

use candle_core::quantized::{QMatMul, QStorage, QTensor};
use candle_core::{Module, Tensor, D};
use rayon::prelude::*;

use crate::error::Result;

/// The 2-D quantized matrix `W` (n × k) as blocks of consecutive rows.
#[derive(Debug, Clone)]
pub struct RowSplit {
    parts: Vec<QMatMul>,
}

impl RowSplit {
    /// Cuts `q` into `parts` blocks of rows (the last one shorter); copies the bytes once.
    pub fn new(q: &QTensor, parts: usize) -> Result<Self> {
        let (n, k) = q.shape().dims2()?;
        let data = q.data()?;
        let row_bytes = data.len() / n.max(1);
        let rows = n.div_ceil(parts.max(1)).max(1);
        let parts = (0..n)
            .step_by(rows)
            .map(|first| {
                let end = (first + rows).min(n);
                let bytes = Cow::Borrowed(&data[first * row_bytes..end * row_bytes]);
                let storage = QStorage::from_data(bytes, &q.device(), q.dtype())?;
                Ok(QMatMul::from_qtensor(QTensor::new(
                    storage,
                    (end - first, k),
                )?)?)
            })
            .collect::<Result<_>>()?;
        Ok(Self { parts })
    }

    /// `x (…, k) · Wᵀ` → `(…, n)`, the blocks on rayon's threads.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.contiguous()?;
        let parts: Vec<Tensor> = self
            .parts
            .par_iter()
            .map(|part| part.forward(&x))
            .collect::<candle_core::Result<_>>()?;
        Ok(Tensor::cat(&parts, D::Minus1)?)
    }
}
