//! The model cache in the Origin Private File System (used from the worker): GGUF files by
//! name in the origin's root directory.

use js_sys::{Array, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    FileSystemDirectoryHandle, FileSystemFileHandle, FileSystemGetFileOptions,
    FileSystemReadWriteOptions, FileSystemSyncAccessHandle,
};

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

/// A cache file written in place, at any offset, through a `FileSystemSyncAccessHandle`
/// (dedicated workers only): it is `{name}.partial` until [`PartialFile::finish`] renames it
/// to `name`, so the cache never holds half a model under a model's name.
pub struct PartialFile {
    directory: FileSystemDirectoryHandle,
    handle: FileSystemFileHandle,
    access: FileSystemSyncAccessHandle,
    name: String,
}

impl PartialFile {
    /// Creates (or empties) `{name}.partial` for writing.
    pub async fn create(name: &str) -> Result<Self, JsValue> {
        let directory = root().await?;
        let options = FileSystemGetFileOptions::new();
        options.set_create(true);
        let handle: FileSystemFileHandle = JsFuture::from(
            directory.get_file_handle_with_options(&format!("{name}.partial"), &options),
        )
        .await?
        .unchecked_into();
        let access: FileSystemSyncAccessHandle = JsFuture::from(handle.create_sync_access_handle())
            .await?
            .unchecked_into();
        access.truncate_with_f64(0.0)?;
        Ok(Self {
            directory,
            handle,
            access,
            name: name.to_string(),
        })
    }

    /// Sets the file's length (new bytes are zeros). Chromium lengthens a file only as far as
    /// the origin's quota allows, without an error: a shorter file is reported as a full storage.
    pub fn set_len(&self, bytes: u64) -> Result<(), JsValue> {
        self.access.truncate_with_f64(bytes as f64)?;
        let size = self.access.get_size()? as u64;
        if size != bytes {
            return Err(JsValue::from_str(&format!(
                "the browser's storage for this page is full: {} could be made only {size} of \
                 its {bytes} bytes long. Free some space (delete cached models under \"Models\", \
                 or other sites' data in the browser's settings) and try again",
                self.name
            )));
        }
        Ok(())
    }

    /// Writes `bytes` at `offset`.
    pub fn write_at(&self, offset: u64, bytes: &[u8]) -> Result<(), JsValue> {
        let mut written = 0;
        while written < bytes.len() {
            let options = FileSystemReadWriteOptions::new();
            options.set_at((offset + written as u64) as f64);
            let n = self
                .access
                .write_with_u8_array_and_options(&bytes[written..], &options)?;
            if n <= 0.0 {
                return Err(JsValue::from_str(
                    "the file system wrote nothing (disk full?)",
                ));
            }
            written += n as usize;
        }
        Ok(())
    }

    /// Writes the JavaScript bytes `bytes` at `offset` (without copying them into wasm memory).
    pub fn write_js_at(&self, offset: u64, bytes: &Uint8Array) -> Result<(), JsValue> {
        let mut written = 0;
        while written < bytes.length() {
            let options = FileSystemReadWriteOptions::new();
            options.set_at((offset + u64::from(written)) as f64);
            let n = self.access.write_with_js_u8_array_and_options(
                &bytes.subarray(written, bytes.length()),
                &options,
            )?;
            if n <= 0.0 {
                return Err(JsValue::from_str(
                    "the file system wrote nothing (disk full?)",
                ));
            }
            written += n as u32;
        }
        Ok(())
    }

    /// Reads the file as written so far.
    pub fn reader(&self) -> Result<SyncReader<'_>, JsValue> {
        Ok(SyncReader::new(
            &self.access,
            self.access.get_size()? as u64,
        ))
    }

    /// Flushes and closes the file and gives it its name (replacing any file of that name); on
    /// failure the partial file is deleted.
    pub async fn finish(self) -> Result<(), JsValue> {
        let renamed = self.rename().await;
        if renamed.is_err() {
            self.discard().await;
        }
        renamed
    }

    async fn rename(&self) -> Result<(), JsValue> {
        self.access.flush()?;
        self.access.close();
        match JsFuture::from(self.directory.remove_entry(&self.name)).await {
            Err(e) if !is_not_found(&e) => return Err(e),
            _ => {}
        }
        // `FileSystemHandle.move` is not in web-sys's stable API yet.
        let rename: js_sys::Function = js_sys::Reflect::get(&self.handle, &"move".into())?
            .dyn_into()
            .map_err(|_| {
                JsValue::from_str("this browser cannot rename files (FileSystemHandle.move)")
            })?;
        let renamed: js_sys::Promise = rename
            .call1(&self.handle, &JsValue::from_str(&self.name))?
            .dyn_into()?;
        JsFuture::from(renamed).await?;
        Ok(())
    }

    /// Closes and deletes the file (after a failure).
    pub async fn discard(&self) {
        self.access.close();
        let name = format!("{}.partial", self.name);
        let _ = JsFuture::from(self.directory.remove_entry(&name)).await;
    }
}

/// A cached file opened for reading through a `FileSystemSyncAccessHandle` (dedicated workers
/// only), closed when dropped. While it is open nobody else can open the file this way (another
/// tab's worker gets an error, and can read the file as a `File` instead).
pub struct CachedFile {
    access: FileSystemSyncAccessHandle,
    len: u64,
}

impl CachedFile {
    /// Opens the cached file `name`.
    pub async fn open(name: &str) -> Result<Self, JsValue> {
        let handle: FileSystemFileHandle = JsFuture::from(root().await?.get_file_handle(name))
            .await?
            .unchecked_into();
        let access: FileSystemSyncAccessHandle = JsFuture::from(handle.create_sync_access_handle())
            .await?
            .unchecked_into();
        match access.get_size() {
            Ok(len) => Ok(Self {
                access,
                len: len as u64,
            }),
            Err(e) => {
                access.close();
                Err(e)
            }
        }
    }

    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.len
    }

    /// Reads the file from its start.
    pub fn reader(&self) -> SyncReader<'_> {
        SyncReader::new(&self.access, self.len)
    }
}

impl Drop for CachedFile {
    fn drop(&mut self) {
        self.access.close();
    }
}

/// A file read through a `FileSystemSyncAccessHandle`: `std::io::Read + Seek`, so that
/// [`crate::engine::loader::open_gguf_reader`] reads a model from the cache one tensor at a time.
pub struct SyncReader<'a> {
    access: &'a FileSystemSyncAccessHandle,
    position: u64,
    len: u64,
}

impl<'a> SyncReader<'a> {
    /// Most bytes read in one call: the browser may stage them in a copy of that size.
    const MAX_READ: usize = 16 << 20;

    fn new(access: &'a FileSystemSyncAccessHandle, len: u64) -> Self {
        Self {
            access,
            position: 0,
            len,
        }
    }

    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.len
    }
}

impl std::io::Read for SyncReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // In u64: what is left of the file may not fit a wasm32 usize.
        let wanted = (buf.len().min(Self::MAX_READ) as u64)
            .min(self.len.saturating_sub(self.position)) as usize;
        if wanted == 0 {
            return Ok(0);
        }
        let options = FileSystemReadWriteOptions::new();
        options.set_at(self.position as f64);
        let n = self
            .access
            .read_with_u8_array_and_options(&mut buf[..wanted], &options)
            .map_err(|e| std::io::Error::other(crate::web::error::Error::from(e)))?;
        self.position += n as u64;
        Ok(n as usize)
    }
}

impl std::io::Seek for SyncReader<'_> {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let position = match to {
            std::io::SeekFrom::Start(n) => Some(n),
            std::io::SeekFrom::End(d) => self.len.checked_add_signed(d),
            std::io::SeekFrom::Current(d) => self.position.checked_add_signed(d),
        };
        self.position = position.ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the start of the file",
            )
        })?;
        Ok(self.position)
    }
}

/// The cached files with their sizes, by name; `.partial` files left by a cut-off download are
/// removed.
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
        let name = pair.get(0).as_string().unwrap_or_default();
        if name.ends_with(".partial") {
            // Left by a download or hub load that was cut off (a closed tab, a killed worker):
            // removed, unless another tab is writing it now (its access handle locks it, so the
            // removal fails and it stays); never listed as a model.
            let _ = JsFuture::from(directory.remove_entry(&name)).await;
            continue;
        }
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
