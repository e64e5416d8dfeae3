//! The Hugging Face hub source (worker side): `config.json`, `tokenizer.json` and
//! `model.safetensors` of a BLOOM repository, read with HTTP range requests one tensor at a
//! time, quantized as each arrives (only one tensor is ever held dense), then written as a
//! GGUF file (`gguf::write_gguf`) that the worker caches and loads like any other.
//!
//! Files are fetched from `{base}/{repo}/resolve/main/{file}`; the base is configurable so a
//! local server can stand in for `https://huggingface.co` (it must answer range requests).

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::error::{Error, Result};
use crate::gguf::{tensor_layout, write_gguf, TensorTypes};
use crate::loader::{hf_name, open_hf, HfSource, TensorStore};
use crate::model::{Weight, WeightSource};
use crate::web::dom::js_error;

/// One tensor's entry in a safetensors header.
#[derive(Deserialize)]
struct TensorInfo {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// Weights prepared tensor by tensor (quantized, or dense for 1-D tensors), by llama.cpp name.
struct Prepared(HashMap<String, Weight>);

impl WeightSource for Prepared {
    fn weight(&mut self, name: &str, _shape: &[usize]) -> Result<Weight> {
        // Shapes were checked by `HfSource` when each tensor arrived.
        self.0
            .get(name)
            .cloned()
            .ok_or_else(|| Error::Format(format!("hub checkpoint: tensor `{name}` is missing")))
    }

    fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

/// Progress of a hub download: bytes fetched so far of all the tensors' bytes.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

fn fetch_error(url: &str, e: &wasm_bindgen::JsValue) -> Error {
    Error::Format(format!("{url}: {}", js_error(e)))
}

/// Fetches `url` (bytes `range` when given) as bytes.
async fn fetch(url: &str, range: Option<(u64, u64)>) -> Result<Vec<u8>> {
    let init = web_sys::RequestInit::new();
    let headers = web_sys::Headers::new().map_err(|e| fetch_error(url, &e))?;
    if let Some((start, end)) = range {
        headers
            .set("Range", &format!("bytes={start}-{}", end - 1))
            .map_err(|e| fetch_error(url, &e))?;
    }
    init.set_headers(&headers);
    let request =
        web_sys::Request::new_with_str_and_init(url, &init).map_err(|e| fetch_error(url, &e))?;
    let scope: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let response: web_sys::Response = JsFuture::from(scope.fetch_with_request(&request))
        .await
        .map_err(|e| fetch_error(url, &e))?
        .unchecked_into();
    let expected = if range.is_some() { 206 } else { 200 };
    if response.status() != expected {
        return Err(Error::Format(format!(
            "{url}: the server answered {} {} (expected {expected}{})",
            response.status(),
            response.status_text(),
            if range.is_some() {
                ": it must support range requests"
            } else {
                ""
            }
        )));
    }
    let buffer = JsFuture::from(response.array_buffer().map_err(|e| fetch_error(url, &e))?)
        .await
        .map_err(|e| fetch_error(url, &e))?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

fn dtype_of(name: &str, dtype: &str) -> Result<DType> {
    match dtype {
        "F32" => Ok(DType::F32),
        "F16" => Ok(DType::F16),
        "BF16" => Ok(DType::BF16),
        other => Err(Error::Format(format!(
            "model.safetensors: tensor `{name}` has dtype {other}; expected F32, F16 or BF16"
        ))),
    }
}

/// Downloads `repo` from the hub at `base`, quantizes it to `dtype` (q4_0 or q8_0) and
/// returns the GGUF file's bytes. `progress(done, total)` follows the tensor bytes.
pub async fn quantize_from_hub(
    base: &str,
    repo: &str,
    dtype: GgmlDType,
    progress: Progress<'_>,
) -> Result<Vec<u8>> {
    let root = format!("{}/{repo}/resolve/main", base.trim_end_matches('/'));
    let config_json =
        String::from_utf8_lossy(&fetch(&format!("{root}/config.json"), None).await?).into_owned();
    let tokenizer_json = fetch(&format!("{root}/tokenizer.json"), None).await?;
    let weights_url = format!("{root}/model.safetensors");
    let size = fetch(&weights_url, Some((0, 8))).await?;
    let header_len = u64::from_le_bytes(
        size.as_slice()
            .try_into()
            .map_err(|_| Error::Format(format!("{weights_url}: shorter than 8 bytes")))?,
    );
    if header_len > 100 << 20 {
        return Err(Error::Format(format!(
            "{weights_url}: a header of {header_len} bytes is not a safetensors header"
        )));
    }
    let header_bytes = fetch(&weights_url, Some((8, 8 + header_len))).await?;
    let mut header: HashMap<String, serde_json::Value> = serde_json::from_slice(&header_bytes)
        .map_err(|e| Error::Format(format!("{weights_url}: header is not valid JSON: {e}")))?;
    header.remove("__metadata__");
    let data_start = 8 + header_len;
    let hash: String = Sha256::new()
        .chain_update(&header_bytes)
        .chain_update(config_json.as_bytes())
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();

    // Checks config and tokenizer (the tensors are read below, one at a time).
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
    let layout = tensor_layout(&config);
    let mut infos = Vec::with_capacity(layout.len());
    for (gguf_name, _) in &layout {
        let hf = hf_name(gguf_name).unwrap_or_else(|| gguf_name.clone());
        let (key, value) = [format!("transformer.{hf}"), hf.clone()]
            .into_iter()
            .find_map(|k| header.get(&k).map(|v| (k, v.clone())))
            .ok_or_else(|| {
                Error::Format(format!(
                    "{weights_url}: tensor `transformer.{hf}` (or `{hf}`) is missing"
                ))
            })?;
        let info: TensorInfo = serde_json::from_value(value)
            .map_err(|e| Error::Format(format!("{weights_url}: tensor `{key}`: {e}")))?;
        infos.push((key, info));
    }
    let total: u64 = infos
        .iter()
        .map(|(_, i)| i.data_offsets[1].saturating_sub(i.data_offsets[0]))
        .sum();
    let mut done = 0;
    let mut prepared = HashMap::with_capacity(layout.len());
    let mut source_dtype = String::new();
    for ((gguf_name, shape), (key, info)) in layout.iter().zip(infos) {
        let [start, end] = info.data_offsets;
        let bytes = fetch(&weights_url, Some((data_start + start, data_start + end))).await?;
        let dtype_in = dtype_of(&key, &info.dtype)?;
        source_dtype = info.dtype.to_lowercase();
        let tensor = Tensor::from_raw_buffer(&bytes, dtype_in, &info.shape, &Device::Cpu)
            .map_err(|e| Error::Format(format!("{weights_url}: tensor `{key}`: {e}")))?;
        drop(bytes);
        let mut one = HfSource::new(
            TensorStore::Loaded(HashMap::from([(key.clone(), tensor)])),
            &config,
            &weights_url,
            &Device::Cpu,
        );
        let dense = one.weight(gguf_name, shape)?;
        let weight = if shape.len() == 1 {
            dense
        } else {
            let quantized = QTensor::quantize(&dense.to_dense()?, dtype)
                .map_err(|e| Error::Format(format!("cannot quantize `{key}`: {e}")))?;
            Weight::Quantized(Arc::new(quantized))
        };
        prepared.insert(gguf_name.clone(), weight);
        done += end - start;
        progress(done, total);
    }
    opened.identity.quantization = source_dtype;
    opened.source = Box::new(Prepared(prepared));
    let mut out = Cursor::new(Vec::new());
    write_gguf(&mut out, opened, TensorTypes::default_for(dtype), |_| {})?;
    Ok(out.into_inner())
}
