//! The model worker: loads a model (fetching, caching and reading GGUF files) and generates
//! rounds of candidates, posting [`Event`]s to the page. Generation runs synchronously inside
//! the worker, so the page stays responsive; the page stops a round by terminating the worker.

use std::cell::RefCell;
use std::ops::ControlFlow;
use std::rc::Rc;

use candle_core::quantized::GgmlDType;
use candle_core::Device;
use js_sys::{Array, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

use crate::generate::{generate, CandidateSpec};
use crate::loader::{load_gguf, LoadedModel};
use crate::story::round_input_ids;
use crate::web::dom::js_error;
use crate::web::protocol::{from_json, to_json, Event, Failed, ModelSource, Phase, Request};
use crate::web::{hub, opfs};

/// Progress reports are sent at most this often (milliseconds).
const PROGRESS_INTERVAL_MS: f64 = 100.0;

fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

/// Posts an event to the page.
fn post(event: &Event) {
    let _ = scope().post_message(&JsValue::from_str(&to_json(event)));
}

/// The size of this worker's WebAssembly memory, in bytes.
fn wasm_memory_bytes() -> u64 {
    let memory: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
    let buffer: js_sys::ArrayBuffer = memory.buffer().unchecked_into();
    u64::from(buffer.byte_length())
}

fn post_error(failed: Failed, message: String) {
    post(&Event::Error { failed, message });
}

/// Starts the worker: installs the message handler.
pub fn run() {
    console_error_panic_hook::set_once();
    let model: Rc<RefCell<Option<LoadedModel>>> = Rc::default();
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        let data = Array::from(&event.data());
        let json = data.get(0).as_string().unwrap_or_default();
        let attachment = data.get(1);
        let model = model.clone();
        wasm_bindgen_futures::spawn_local(async move {
            match from_json::<Request>(&json) {
                Ok(request) => handle(request, attachment, &model).await,
                Err(e) => post_error(Failed::Generate, e.to_string()),
            }
        });
    });
    scope().set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
    post(&Event::Started);
}

async fn handle(request: Request, attachment: JsValue, model: &RefCell<Option<LoadedModel>>) {
    match request {
        Request::LoadModel { source } => {
            // Free the old model first: two BLOOM-560m copies may not fit in wasm32 memory.
            model.replace(None);
            match load(source, attachment).await {
                Ok((loaded, ready)) => {
                    model.replace(Some(loaded));
                    post(&ready);
                }
                Err(message) => post_error(Failed::Load, message),
            }
        }
        Request::Generate {
            round,
            text,
            candidates,
        } => {
            let guard = model.borrow();
            let Some(loaded) = guard.as_ref() else {
                return post_error(Failed::Generate, "no model is loaded yet".into());
            };
            if let Err(e) = generate_round(loaded, round, &text, &candidates) {
                post_error(Failed::Generate, e.to_string());
            }
        }
        Request::ListCached => list_cached().await,
        Request::DeleteCached { name } => {
            if let Err(e) = opfs::delete(&name).await {
                post_error(
                    Failed::Cache,
                    format!("could not delete {name}: {}", js_error(&e)),
                );
            }
            list_cached().await;
        }
    }
}

async fn list_cached() {
    match opfs::list().await {
        Ok(models) => post(&Event::Cached { models }),
        Err(e) => post_error(
            Failed::Cache,
            format!("could not list the cached models: {}", js_error(&e)),
        ),
    }
}

fn generate_round(
    loaded: &LoadedModel,
    round: u64,
    text: &str,
    candidates: &[CandidateSpec],
) -> crate::Result<()> {
    let longest = candidates
        .iter()
        .map(|c| c.params.max_new_tokens)
        .max()
        .unwrap_or(0);
    let input_ids = round_input_ids(loaded, text, longest)?;
    let generation = generate(
        &loaded.model,
        &loaded.tokenizer,
        &input_ids,
        candidates,
        |token| {
            post(&Event::Token {
                round,
                candidate: token.candidate,
                text: token.text.to_string(),
            });
            ControlFlow::Continue(())
        },
    )?;
    post(&Event::RoundDone {
        round,
        input_ids,
        generation,
        wasm_memory_bytes: wasm_memory_bytes(),
    });
    Ok(())
}

/// Gets the model's bytes from `source` (caching downloads and local files), then builds it.
async fn load(source: ModelSource, attachment: JsValue) -> Result<(LoadedModel, Event), String> {
    let (name, demo, bytes, from_cache) = match source {
        ModelSource::Url {
            url,
            name,
            demo,
            bytes,
        } => match cached_copy(&name, bytes).await {
            Some(file) => (name, demo, read_file(&file).await?, true),
            None => {
                let data = download(&url).await?;
                store(&name, &data).await;
                (name, demo, data, false)
            }
        },
        ModelSource::Hub {
            base_url,
            repo,
            dtype,
        } => {
            let name = ModelSource::Hub {
                base_url: base_url.clone(),
                repo: repo.clone(),
                dtype: dtype.clone(),
            }
            .cache_name();
            match cached_copy(&name, None).await {
                Some(file) => (name, false, read_file(&file).await?, true),
                None => {
                    let data = from_hub(&base_url, &repo, &dtype).await?;
                    store(&name, &data).await;
                    (name, false, data, false)
                }
            }
        }
        ModelSource::Cached { name } => {
            let file = opfs::file(&name)
                .await
                .map_err(|e| format!("could not open the cached {name}: {}", js_error(&e)))?
                .ok_or_else(|| format!("{name} is not in the cache any more"))?;
            (name, false, read_file(&file).await?, true)
        }
        ModelSource::File { name } => {
            let file: web_sys::File = attachment
                .dyn_into()
                .map_err(|_| format!("{name}: no file came with the request"))?;
            let data = read_file(&file).await?;
            // Check the file before caching it, so a corrupt file is not kept.
            let loaded = build(&name, &data)?;
            store(&name, &data).await;
            let ready = ready_event(&loaded, &name, false, false);
            return Ok((loaded, ready));
        }
    };
    let loaded = build(&name, &bytes)?;
    let ready = ready_event(&loaded, &name, demo, from_cache);
    Ok((loaded, ready))
}

fn build(name: &str, bytes: &[u8]) -> Result<LoadedModel, String> {
    post(&Event::Progress {
        phase: Phase::Build,
        bytes: bytes.len() as u64,
        total: Some(bytes.len() as u64),
    });
    load_gguf(bytes, name, &Device::Cpu).map_err(|e| e.to_string())
}

fn ready_event(loaded: &LoadedModel, name: &str, demo: bool, from_cache: bool) -> Event {
    Event::Ready {
        identity: loaded.identity.clone(),
        name: name.to_string(),
        demo,
        from_cache,
        vocab_size: loaded.model.config().vocab_size,
        wasm_memory_bytes: wasm_memory_bytes(),
    }
}

/// Quantizes a hub repository to `dtype` (`q4_0` or `q8_0`), reporting progress.
async fn from_hub(base_url: &str, repo: &str, dtype: &str) -> Result<Vec<u8>, String> {
    let dtype = match dtype {
        "q4_0" => GgmlDType::Q4_0,
        "q8_0" => GgmlDType::Q8_0,
        other => {
            return Err(format!(
                "the hub loader quantizes to q4_0 or q8_0, not {other}"
            ))
        }
    };
    let mut last_report = f64::NEG_INFINITY;
    let mut report = |bytes: u64, total: u64| {
        let now = js_sys::Date::now();
        if now - last_report >= PROGRESS_INTERVAL_MS || bytes == total {
            last_report = now;
            post(&Event::Progress {
                phase: Phase::Quantize,
                bytes,
                total: Some(total),
            });
        }
    };
    hub::quantize_from_hub(base_url, repo, dtype, &mut report)
        .await
        .map_err(|e| e.to_string())
}

/// The cached file `name` when it is there and (if `bytes` is known) of that size.
async fn cached_copy(name: &str, bytes: Option<u64>) -> Option<web_sys::File> {
    let file = opfs::file(name).await.ok().flatten()?;
    let size = file.size() as u64;
    (size > 0 && bytes.is_none_or(|b| b == size)).then_some(file)
}

/// Stores a model in the cache; a failure (quota, private mode) is reported but not fatal.
async fn store(name: &str, bytes: &[u8]) {
    post(&Event::Progress {
        phase: Phase::Store,
        bytes: 0,
        total: Some(bytes.len() as u64),
    });
    if let Err(e) = opfs::store(name, bytes).await {
        post_error(
            Failed::Cache,
            format!(
                "{name} was loaded but could not be cached ({}); it will be downloaded again next time",
                js_error(&e)
            ),
        );
    }
}

async fn read_file(file: &web_sys::File) -> Result<Vec<u8>, String> {
    let total = file.size() as u64;
    post(&Event::Progress {
        phase: Phase::Read,
        bytes: 0,
        total: Some(total),
    });
    let buffer = JsFuture::from(file.array_buffer())
        .await
        .map_err(|e| format!("could not read {}: {}", file.name(), js_error(&e)))?;
    let bytes = Uint8Array::new(&buffer).to_vec();
    post(&Event::Progress {
        phase: Phase::Read,
        bytes: total,
        total: Some(total),
    });
    Ok(bytes)
}

/// Fetches `url` as bytes, reporting download progress.
async fn download(url: &str) -> Result<Vec<u8>, String> {
    let failed = |e: JsValue| format!("could not download {url}: {}", js_error(&e));
    let response: web_sys::Response = JsFuture::from(scope().fetch_with_str(url))
        .await
        .map_err(failed)?
        .unchecked_into();
    if !response.ok() {
        return Err(format!(
            "could not download {url}: the server answered {} {}",
            response.status(),
            response.status_text()
        ));
    }
    let total = response
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.parse::<u64>().ok());
    let body = response
        .body()
        .ok_or_else(|| format!("could not download {url}: the response has no body"))?;
    let reader: web_sys::ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let mut bytes = Vec::with_capacity(total.unwrap_or(0) as usize);
    let mut last_report = f64::NEG_INFINITY;
    loop {
        let chunk = JsFuture::from(reader.read()).await.map_err(failed)?;
        if js_sys::Reflect::get(&chunk, &"done".into())
            .map_err(failed)?
            .is_truthy()
        {
            break;
        }
        let value: Uint8Array = js_sys::Reflect::get(&chunk, &"value".into())
            .map_err(failed)?
            .unchecked_into();
        let start = bytes.len();
        bytes.resize(start + value.length() as usize, 0);
        value.copy_to(&mut bytes[start..]);
        let now = js_sys::Date::now();
        if now - last_report >= PROGRESS_INTERVAL_MS {
            last_report = now;
            post(&Event::Progress {
                phase: Phase::Download,
                bytes: bytes.len() as u64,
                total,
            });
        }
    }
    post(&Event::Progress {
        phase: Phase::Download,
        bytes: bytes.len() as u64,
        total: Some(bytes.len() as u64),
    });
    Ok(bytes)
}
