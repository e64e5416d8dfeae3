//! The model cache in the Origin Private File System (used from the worker): GGUF files by
//! name in the origin's root directory.

use js_sys::{Array, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{FileSystemDirectoryHandle, FileSystemFileHandle, FileSystemGetFileOptions};

use crate::web::protocol::CachedModel;

/// The cache directory (the OPFS root).
async fn root() -> Result<FileSystemDirectoryHandle, JsValue> {
    let scope: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let directory = JsFuture::from(scope.navigator().storage().get_directory()).await?;
    Ok(directory.unchecked_into())
}

/// The cached file `name`, or `None` when there is none.
pub async fn file(name: &str) -> Result<Option<web_sys::File>, JsValue> {
    let directory = root().await?;
    let handle = match JsFuture::from(directory.get_file_handle(name)).await {
        Ok(handle) => handle.unchecked_into::<FileSystemFileHandle>(),
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let file = JsFuture::from(handle.get_file()).await?;
    Ok(Some(file.unchecked_into()))
}

fn is_not_found(error: &JsValue) -> bool {
    error
        .dyn_ref::<js_sys::Error>()
        .is_some_and(|e| e.name() == "NotFoundError" || e.name() == "TypeMismatchError")
}

/// Stores `bytes` as `name` (replacing any file of that name). On failure the partial file is
/// removed so that a later visit never loads half a model.
pub async fn store(name: &str, bytes: &[u8]) -> Result<(), JsValue> {
    let directory = root().await?;
    let options = FileSystemGetFileOptions::new();
    options.set_create(true);
    let handle: FileSystemFileHandle =
        JsFuture::from(directory.get_file_handle_with_options(name, &options))
            .await?
            .unchecked_into();
    let written = async {
        let stream: web_sys::FileSystemWritableFileStream =
            JsFuture::from(handle.create_writable())
                .await?
                .unchecked_into();
        // Write in pieces so no second full-size copy is made in JavaScript memory.
        for chunk in bytes.chunks(16 << 20) {
            let view = Uint8Array::from(chunk);
            JsFuture::from(stream.write_with_js_u8_array(&view)?).await?;
        }
        JsFuture::from(stream.close()).await?;
        Ok::<(), JsValue>(())
    }
    .await;
    if written.is_err() {
        let _ = JsFuture::from(directory.remove_entry(name)).await;
    }
    written
}

/// The cached files with their sizes, by name.
pub async fn list() -> Result<Vec<CachedModel>, JsValue> {
    let directory = root().await?;
    let entries = directory.entries();
    let mut models = vec![];
    loop {
        let next = JsFuture::from(entries.next()?).await?;
        if js_sys::Reflect::get(&next, &"done".into())?.is_truthy() {
            break;
        }
        let pair: Array = js_sys::Reflect::get(&next, &"value".into())?.unchecked_into();
        let handle = pair.get(1);
        if let Some(handle) = handle.dyn_ref::<FileSystemFileHandle>() {
            let file: web_sys::File = JsFuture::from(handle.get_file()).await?.unchecked_into();
            models.push(CachedModel {
                name: file.name(),
                bytes: file.size() as u64,
            });
        }
    }
    models.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(models)
}

/// Deletes the cached file `name`.
pub async fn delete(name: &str) -> Result<(), JsValue> {
    JsFuture::from(root().await?.remove_entry(name)).await?;
    Ok(())
}
