//! The Hugging Face hub source (worker side): `config.json`, `tokenizer.json` and
//! `model.safetensors` of a BLOOM repository, read with HTTP range requests a piece at a time
//! (a tensor, or a block of rows of a large one), quantized as each piece arrives and written
//! straight into the GGUF file in the cache (`gguf::plan_gguf` lays the file out before any
//! tensor is read), which the worker then loads like any other cached model. Memory stays
//! bounded by a piece, whatever the model's size.
//!
//! Files are fetched from `{base}/{repo}/resolve/main/{file}` through `web::hub_fetch`
//! (redirects, retries, resumed ranges); the base is configurable so a local server can stand
//! in for `https://huggingface.co` (it must answer range requests).

use std::collections::HashMap;

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};
use sha2::{Digest, Sha256};

use crate::engine::gguf::format::dtype_name;
use crate::engine::gguf::{plan_gguf, PlannedTensor, TensorTypes};
use crate::engine::loader::{open_hf, qkv_hf_to_contiguous, TensorStore};
use crate::engine::memory_budget::MemoryNeed;
use crate::engine::st_header::{header_len, header_tensors, HeaderTensor};
use crate::error::{Error, Result};
use crate::web::hub_fetch::HubFetch;
use crate::web::opfs::PartialFile;

/// Tensors are read in pieces of whole rows, at most this many values each (16 MB as f32):
/// the embedding table of bloom-560m (257 M values) takes 62 range requests.
const PIECE_VALUES: usize = 4 << 20;

/// Progress of a hub download: bytes fetched so far of all the tensors' bytes.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// Downloads `repo` from the hub at `base`, quantizes it to `dtype` (q4_0 or q8_0) and writes
/// the GGUF file into `file` as the pieces arrive. `progress(done, total)` follows the tensor
/// bytes.
pub async fn quantize_from_hub(
    base: &str,
    repo: &str,
    dtype: GgmlDType,
    file: &PartialFile,
    progress: Progress<'_>,
) -> Result<()> {
    let root = format!("{}/{repo}/resolve/main", base.trim_end_matches('/'));
    let mut hub = HubFetch::new();
    let config_json =
        String::from_utf8_lossy(&hub.file(&format!("{root}/config.json")).await?).into_owned();
    let tokenizer_json = hub.file(&format!("{root}/tokenizer.json")).await?;
    let weights_url = format!("{root}/model.safetensors");
    let size = hub.range(&weights_url, 0, 8).await?;
    let header_len = header_len(&size, &weights_url)?;
    let header_bytes = hub.range(&weights_url, 8, 8 + header_len).await?;
    let data_start = 8 + header_len;
    let hash: String = Sha256::new()
        .chain_update(&header_bytes)
        .chain_update(config_json.as_bytes())
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();

    // Checks config and tokenizer (the tensors are read below, a piece at a time).
    let name = repo.rsplit('/').next().unwrap_or(repo);
    let mut opened = open_hf(
        &config_json,
        &tokenizer_json,
        TensorStore::Loaded(HashMap::new()),
        name,
        hash,
        &Device::Cpu,
    )?;
    let config = opened.config.clone();
    let tensors = header_tensors(&header_bytes, &config, &weights_url)?;
    if let Some(t) = tensors
        .iter()
        .find(|t| t.gguf_name == "blk.0.ffn_up.weight")
    {
        // As `open_hf` records it for a local checkpoint.
        opened.identity.quantization = t.info.dtype.to_lowercase();
    }

    let plan = plan_gguf(&opened, TensorTypes::default_for(dtype))?;
    // Refused before any tensor is fetched when the quantized file cannot fit in memory.
    let what = format!("{repo} quantized to {}", dtype_name(dtype));
    MemoryNeed::new(plan.file_bytes, Some(&config))
        .check(&what)
        .map_err(Error::Format)?;
    let write_error = |e: wasm_bindgen::JsValue| {
        Error::Format(format!(
            "could not write the model into the browser's storage: {}",
            crate::web::error::Error::from(e)
        ))
    };
    file.set_len(plan.file_bytes).map_err(write_error)?;

    let total: u64 = tensors
        .iter()
        .map(|t| t.info.data_offsets[1] - t.info.data_offsets[0])
        .sum();
    let mut done = 0;
    for HeaderTensor {
        gguf_name,
        shape,
        key,
        dtype: element,
        info,
    } in &tensors
    {
        // The file's tensors made from this one: itself, and a separate `output.weight`.
        let targets: Vec<&PlannedTensor> = plan
            .tensors
            .iter()
            .filter(|t| t.source == *gguf_name)
            .collect();
        let (rows, row_len) = match shape[..] {
            [rows, row_len] => (rows, row_len),
            _ => (1, shape.iter().product()),
        };
        let row_bytes = row_len * element.size_in_bytes();
        // QKV rows are reordered across the whole tensor, so it is read whole.
        let qkv = gguf_name.contains(".attn_qkv.");
        let piece_rows = if qkv {
            rows
        } else {
            (PIECE_VALUES / row_len).clamp(1, rows)
        };
        for first in (0..rows).step_by(piece_rows) {
            let n = piece_rows.min(rows - first);
            let from = data_start + info.data_offsets[0] + (first * row_bytes) as u64;
            let bytes = hub
                .range(&weights_url, from, from + (n * row_bytes) as u64)
                .await?;
            let piece_shape = if shape.len() == 2 {
                vec![n, row_len]
            } else {
                shape.clone()
            };
            let piece = Tensor::from_raw_buffer(&bytes, *element, &piece_shape, &Device::Cpu)
                .and_then(|t| t.to_dtype(DType::F32))
                .map_err(|e| Error::Format(format!("{weights_url}: tensor `{key}`: {e}")))?;
            drop(bytes);
            let piece = if qkv {
                qkv_hf_to_contiguous(&piece, config.n_head)?
            } else {
                piece
            };
            for target in &targets {
                let data = target.quantize(&piece)?;
                file.write_at(target.offset + first as u64 * target.row_bytes(), &data)
                    .map_err(write_error)?;
            }
            done += (n * row_bytes) as u64;
            progress(done, total);
        }
    }
    // The header last: a file cut short (a closed tab) does not even start like a GGUF file.
    file.write_at(0, &plan.header).map_err(write_error)?;
    Ok(())
}
