//! Loading a model: from a URL, a local file, the hub or the cache, caching what builds.

use std::io::{Read, Seek};

use candle_core::quantized::GgmlDType;
use candle_core::Device;
use js_sys::Uint8Array;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use super::post::{post, post_error, scope, wasm_memory_bytes, Throttle};
use crate::engine::loader::{open_gguf, open_gguf_reader, LoadedModel, OpenedModel};
use crate::engine::memory_budget::{claim_session_memory, MemoryNeed, MOST_CANDIDATES};
use crate::engine::model::KvDtype;
use crate::web::error::{Context, Error, Result};
use crate::web::protocol::{Event, Failed, ModelSource, Phase};
use crate::web::{hub, opfs};

/// Builds the model of `source` and caches downloads and local files once they have built (so a
/// corrupt or cut-off file is never kept; a hub model, quantized straight into the cache, is
/// removed from it when it does not build). Files in the cache are read one tensor at a time.
pub(super) async fn load(source: ModelSource, attachment: JsValue) -> Result<(LoadedModel, Event)> {
    let (name, demo, loaded, from_cache) = match source {
        ModelSource::Url {
            url,
            name,
            demo,
            bytes,
        } => {
            if let Some(bytes) = bytes {
                check_memory(&name, bytes)?;
            }
            match cached_copy(&name, bytes).await {
                Some(file) => {
                    let loaded = build_cached(&name, &file).await?;
                    (name, demo, loaded, true)
                }
                None => {
                    let loaded = build_new(&name, NewFile::Url(&url)).await?;
                    (name, demo, loaded, false)
                }
            }
        }
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
            // Quantized straight into the cache, then read back like any cached model.
            let (file, from_cache) = match cached_copy(&name, None).await {
                Some(file) => (file, true),
                None => (from_hub(&base_url, &repo, &dtype, &name).await?, false),
            };
            match build_cached(&name, &file).await {
                Ok(loaded) => (name, false, loaded, from_cache),
                Err(e) => {
                    if !from_cache {
                        let _ = opfs::delete(&name).await;
                    }
                    return Err(e);
                }
            }
        }
        ModelSource::Cached { name } => {
            let file = opfs::file(&name)
                .await
                .context(format!("could not open the cached {name}"))?
                .ok_or_else(|| Error::Other(format!("{name} is not in the cache any more")))?;
            check_memory(&name, file.size() as u64)?;
            let loaded = build_cached(&name, &file).await?;
            (name, false, loaded, true)
        }
        ModelSource::File { name } => {
            let file: web_sys::File = attachment
                .dyn_into()
                .map_err(|_| Error::Other(format!("{name}: no file came with the request")))?;
            check_memory(&name, file.size() as u64)?;
            let loaded = build_new(&name, NewFile::Local(&file)).await?;
            (name, false, loaded, false)
        }
    };
    let mut loaded = loaded;
    // Half the cache's memory in wasm32's 4 GiB and half the bytes a decode step reads; the
    // logits stay within the f16 checkpoints' parity tolerance (tests/integration/parity).
    loaded.model.set_kv_dtype(KvDtype::F16);
    claim_session_memory(&name, loaded.model.config(), MOST_CANDIDATES).map_err(Error::Other)?;
    let ready = ready_event(&loaded, &name, demo, from_cache);
    Ok((loaded, ready))
}

/// A model file that is not in the cache yet.
#[derive(Clone, Copy)]
enum NewFile<'a> {
    /// To download.
    Url(&'a str),
    /// Chosen by the user.
    Local(&'a web_sys::File),
}

/// Why a new file could not be written to `{name}.partial`.
enum CopyError {
    /// The download or the local file failed: the load fails.
    Source(Error),
    /// The cache failed (quota, another tab writing the same file): load from memory instead.
    Storage(Error),
}

/// Builds a new file and caches it: written to `{name}.partial` in the cache, built from there
/// one tensor at a time, then renamed to `name` (deleted when it does not build). Without a
/// usable cache the file is read into memory, built, and stored if possible.
async fn build_new(name: &str, new: NewFile<'_>) -> Result<LoadedModel> {
    if let Ok(partial) = opfs::PartialFile::create(name).await {
        match copy_into(new, &partial).await {
            Ok(()) => return build_partial(name, partial).await,
            Err(CopyError::Source(e)) => {
                partial.discard().await;
                return Err(e);
            }
            Err(CopyError::Storage(_)) => partial.discard().await,
        }
    }
    let bytes = match new {
        NewFile::Url(url) => download(url).await?,
        NewFile::Local(file) => read_file(file).await?,
    };
    let loaded = build(name, &bytes)?;
    store(name, &bytes).await;
    Ok(loaded)
}

/// Builds the model in `partial`, then gives the file its name (or deletes it).
async fn build_partial(name: &str, partial: opfs::PartialFile) -> Result<LoadedModel> {
    let built = partial
        .reader()
        .context(format!("could not read {name} back from the cache"))
        .and_then(|reader| {
            let size = reader.size();
            post_build(size);
            build_reader(reader, name, size)
        });
    match built {
        Ok(loaded) => {
            post(&Event::Progress {
                phase: Phase::Store,
                bytes: 0,
                total: None,
            });
            if let Err(e) = partial.finish().await {
                not_cached(name, e.into());
            }
            Ok(loaded)
        }
        Err(e) => {
            partial.discard().await;
            Err(e)
        }
    }
}

/// Copies a new file into `partial` chunk by chunk, reporting progress.
async fn copy_into(
    new: NewFile<'_>,
    partial: &opfs::PartialFile,
) -> std::result::Result<(), CopyError> {
    match new {
        NewFile::Url(url) => {
            download_with(url, |offset, chunk, _| {
                partial
                    .write_js_at(offset, chunk)
                    .map_err(|e| CopyError::Storage(e.into()))
            })
            .await?;
        }
        NewFile::Local(file) => {
            const CHUNK: u64 = 16 << 20;
            let failed = |e: JsValue| {
                CopyError::Source(Error::doing(format!("could not read {}", file.name()), e))
            };
            let total = file.size() as u64;
            let mut offset = 0;
            let mut progress = Throttle::new(Phase::Read);
            while offset < total {
                progress.report(offset, Some(total));
                let end = (offset + CHUNK).min(total);
                let blob = file
                    .slice_with_f64_and_f64(offset as f64, end as f64)
                    .map_err(failed)?;
                let buffer = JsFuture::from(blob.array_buffer()).await.map_err(failed)?;
                partial
                    .write_js_at(offset, &Uint8Array::new(&buffer))
                    .map_err(|e| CopyError::Storage(e.into()))?;
                offset = end;
            }
            progress.done(total, Some(total));
        }
    }
    Ok(())
}

/// Builds the cached file `name` (`file`), reading it one tensor at a time; when it cannot be
/// opened so (another tab reads it), from a copy in memory.
async fn build_cached(name: &str, file: &web_sys::File) -> Result<LoadedModel> {
    match opfs::CachedFile::open(name).await {
        Ok(cached) => {
            post_build(cached.size());
            build_reader(cached.reader(), name, cached.size())
        }
        Err(_) => build(name, &read_file(file).await?),
    }
}

fn post_build(bytes: u64) {
    post(&Event::Progress {
        phase: Phase::Build,
        bytes,
        total: Some(bytes),
    });
}

fn build(name: &str, bytes: &[u8]) -> Result<LoadedModel> {
    post_build(bytes.len() as u64);
    build_checked(
        open_gguf(bytes, name, &Device::Cpu)?,
        name,
        bytes.len() as u64,
    )
}

/// Builds the model read through `reader` (`size` bytes) one tensor at a time.
fn build_reader<R: Read + Seek>(reader: R, name: &str, size: u64) -> Result<LoadedModel> {
    build_checked(open_gguf_reader(reader, name, &Device::Cpu)?, name, size)
}

/// Builds an opened model of a `size`-byte file, once its shape and type show that it fits in
/// memory.
fn build_checked(opened: OpenedModel<'_>, name: &str, size: u64) -> Result<LoadedModel> {
    MemoryNeed::of_opened(size, &opened)
        .check(name)
        .map_err(Error::Other)?;
    Ok(opened.build(&Device::Cpu)?)
}

/// Refuses a model file of `bytes`, its shape and type not known yet, that cannot fit in the
/// worker's WebAssembly memory, with a message naming `what` and the sizes.
fn check_memory(what: &str, bytes: u64) -> Result<()> {
    MemoryNeed::new(bytes, None)
        .check(what)
        .map_err(Error::Other)
}

fn ready_event(loaded: &LoadedModel, name: &str, demo: bool, from_cache: bool) -> Event {
    Event::Ready {
        identity: loaded.identity.clone(),
        name: name.to_string(),
        demo,
        from_cache,
        vocab_size: loaded.model.config().vocab_size,
        context_length: loaded.model.config().context_length,
        wasm_memory_bytes: wasm_memory_bytes(),
    }
}

/// Quantizes a hub repository to `dtype` (`q4_0` or `q8_0`) into the cache file `name`,
/// reporting progress; returns the cached file.
async fn from_hub(base_url: &str, repo: &str, dtype: &str, name: &str) -> Result<web_sys::File> {
    let dtype = match dtype {
        "q4_0" => GgmlDType::Q4_0,
        "q8_0" => GgmlDType::Q8_0,
        other => {
            return Err(crate::Error::Invalid(format!(
                "the hub loader quantizes to q4_0 or q8_0, not {other}"
            ))
            .into())
        }
    };
    let storage = |e: JsValue| {
        Error::doing(
            "the hub loader writes the quantized model into the browser's storage (Origin Private File System), and could not",
            e,
        )
    };
    let file = opfs::PartialFile::create(name).await.map_err(storage)?;
    let mut progress = Throttle::new(Phase::Quantize);
    let mut report = |bytes: u64, total: u64| {
        if bytes == total {
            progress.done(bytes, Some(total));
        } else {
            progress.report(bytes, Some(total));
        }
    };
    match hub::quantize_from_hub(base_url, repo, dtype, &file, &mut report).await {
        Ok(()) => file.finish().await.map_err(storage)?,
        Err(e) => {
            file.discard().await;
            return Err(e.into());
        }
    }
    opfs::file(name).await.map_err(storage)?.ok_or_else(|| {
        Error::Other(format!(
            "{name} vanished from the cache right after it was written"
        ))
    })
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
        not_cached(name, e.into());
    }
}

fn not_cached(name: &str, error: Error) {
    post_error(
        Failed::Cache,
        format!(
            "{name} was loaded but could not be cached ({error}); it will be downloaded again next time"
        ),
    );
}

async fn read_file(file: &web_sys::File) -> Result<Vec<u8>> {
    let total = file.size() as u64;
    post(&Event::Progress {
        phase: Phase::Read,
        bytes: 0,
        total: Some(total),
    });
    let buffer = JsFuture::from(file.array_buffer())
        .await
        .context(format!("could not read {}", file.name()))?;
    let bytes = Uint8Array::new(&buffer).to_vec();
    post(&Event::Progress {
        phase: Phase::Read,
        bytes: total,
        total: Some(total),
    });
    Ok(bytes)
}

/// Fetches `url` as bytes, reporting download progress.
async fn download(url: &str) -> Result<Vec<u8>> {
    let mut bytes = vec![];
    download_with(url, |_, chunk, total| {
        if bytes.is_empty() {
            bytes.reserve(total.unwrap_or(0) as usize);
        }
        let start = bytes.len();
        bytes.resize(start + chunk.length() as usize, 0);
        chunk.copy_to(&mut bytes[start..]);
        Ok(())
    })
    .await
    .map_err(|(CopyError::Source(e) | CopyError::Storage(e))| e)?;
    Ok(bytes)
}

/// Fetches `url`, handing each chunk of the body to `sink` with its offset and the announced
/// length, and reporting download progress.
async fn download_with(
    url: &str,
    mut sink: impl FnMut(u64, &Uint8Array, Option<u64>) -> std::result::Result<(), CopyError>,
) -> std::result::Result<(), CopyError> {
    let failed =
        |e: JsValue| CopyError::Source(Error::doing(format!("could not download {url}"), e));
    let response: web_sys::Response = JsFuture::from(scope().fetch_with_str(url))
        .await
        .map_err(failed)?
        .unchecked_into();
    if !response.ok() {
        return Err(CopyError::Source(Error::Other(format!(
            "could not download {url}: the server answered {} {}",
            response.status(),
            response.status_text()
        ))));
    }
    let total = response
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.parse::<u64>().ok());
    let body = response.body().ok_or_else(|| {
        CopyError::Source(Error::Other(format!(
            "could not download {url}: the response has no body"
        )))
    })?;
    // Too large for memory: refused from the announced length, before the body is read.
    if let Some(Err(e)) = total.map(|total| check_memory(url, total)) {
        let _ = body.cancel();
        return Err(CopyError::Source(e));
    }
    let reader: web_sys::ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let mut received = 0;
    let mut progress = Throttle::new(Phase::Download);
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
        if let Err(e) = sink(received, &value, total) {
            let _ = JsFuture::from(reader.cancel()).await;
            return Err(e);
        }
        received += u64::from(value.length());
        progress.report(received, total);
    }
    progress.done(received, Some(received));
    Ok(())
}
