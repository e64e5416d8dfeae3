//! The hub loader's HTTP (worker side): a file or a byte range of one, read as the real hub
//! serves it. `resolve/main/…` may redirect (302) to a content server of another origin, which
//! the browser follows (both must allow the page with CORS); a busy server (429, 503, …) or a
//! dropped connection is tried again as `web::retry` says; a range cut off part way is resumed
//! from the byte where it stopped; and the file's ETag, when the page can read it, must stay the
//! same from piece to piece, so that pieces of two versions are never mixed. Anything else ends
//! the download with the URL (and where it redirected), the status and what to do.

use std::collections::HashMap;

use js_sys::Uint8Array;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::error::{Error, Result};
use crate::web::retry::{wait_in_words, Failure, Next, HUB_RETRIES};

/// Reads the files of one download, remembering each file's ETag.
#[derive(Default)]
pub struct HubFetch {
    etags: HashMap<String, String>,
}

/// How one attempt ended, when it did not end the download.
enum Attempt {
    /// The whole body arrived.
    Done,
    /// It failed in a way the policy may try again: `failure`, told as `what`, at `place` (the
    /// URL, and where it redirected).
    Failed {
        failure: Failure,
        what: String,
        place: String,
    },
}

fn browser_error(e: JsValue) -> String {
    crate::web::error::Error::from(e).to_string()
}

fn scope() -> web_sys::WorkerGlobalScope {
    js_sys::global().unchecked_into()
}

/// Resolves after `ms` milliseconds.
async fn sleep(ms: u64) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let _ = scope().set_timeout_with_callback_and_timeout_and_arguments_0(
            &resolve,
            i32::try_from(ms).unwrap_or(i32::MAX),
        );
    });
    let _ = JsFuture::from(promise).await;
}

/// The `bytes a-b/…` of a `Content-Range` header: `(a, b)`.
fn content_range(value: &str) -> Option<(u64, u64)> {
    let (first, last) = value
        .trim()
        .strip_prefix("bytes ")?
        .split('/')
        .next()?
        .split_once('-')?;
    Some((first.trim().parse().ok()?, last.trim().parse().ok()?))
}

impl HubFetch {
    /// A fetcher that has read nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The whole file at `url`.
    pub async fn file(&mut self, url: &str) -> Result<Vec<u8>> {
        self.read(url, None).await
    }

    /// Bytes `start..end` of the file at `url` (the server must answer range requests).
    pub async fn range(&mut self, url: &str, start: u64, end: u64) -> Result<Vec<u8>> {
        self.read(url, Some((start, end))).await
    }

    async fn read(&mut self, url: &str, range: Option<(u64, u64)>) -> Result<Vec<u8>> {
        let mut body = Vec::new();
        let mut failures = 0;
        loop {
            let before = body.len();
            let (failure, what, place) = match self.attempt(url, range, &mut body).await? {
                Attempt::Done => return Ok(body),
                Attempt::Failed {
                    failure,
                    what,
                    place,
                } => (failure, what, place),
            };
            // A range that moved on starts the count again; a whole file starts over.
            if range.is_some() && body.len() > before {
                failures = 0;
            }
            failures += 1;
            let message = match HUB_RETRIES.after(failures, &failure, js_sys::Date::now() as u64) {
                Next::WaitMs(ms) => {
                    web_sys::console::warn_1(
                        &format!("{place}: {what}; trying again in {}", wait_in_words(ms)).into(),
                    );
                    sleep(ms).await;
                    continue;
                }
                Next::Final => final_message(&failure, &what),
                Next::Exhausted(n) => {
                    format!("{what} ({n} attempts in a row failed): try again later")
                }
                Next::WaitTooLong(ms) => format!(
                    "{what}, and asks to wait {} before trying again: try again later",
                    wait_in_words(ms)
                ),
            };
            return Err(Error::Format(format!("{place}: {message}")));
        }
    }

    /// One request for what `body` still lacks of `range` (the whole file when `None`; then
    /// `body` starts empty), its bytes appended to `body`.
    async fn attempt(
        &mut self,
        url: &str,
        range: Option<(u64, u64)>,
        body: &mut Vec<u8>,
    ) -> Result<Attempt> {
        let failed = |failure, what: String, place: &str| Attempt::Failed {
            failure,
            what,
            place: place.to_string(),
        };
        if range.is_none() {
            body.clear();
        }
        let from = range.map(|(start, end)| (start + body.len() as u64, end));
        let response = match request(url, from).await {
            Ok(response) => response,
            Err(e) => {
                let what = format!(
                    "could not be reached ({}: the network failed, or the server does not allow \
                     this page with CORS)",
                    browser_error(e)
                );
                return Ok(failed(Failure::Network, what, url));
            }
        };
        let place = if response.redirected() {
            // A content server's signed URL: its address without the query says enough.
            let to = response.url();
            format!(
                "{url} (redirected to {})",
                to.split('?').next().unwrap_or(&to)
            )
        } else {
            url.to_string()
        };
        let header = |name: &str| response.headers().get(name).ok().flatten();
        let status = response.status();
        let expected = if range.is_some() { 206 } else { 200 };
        if status != expected {
            if let Some(body) = response.body() {
                let _ = body.cancel();
            }
            let what = format!(
                "the server answered {}{}",
                format!("{status} {}", response.status_text()).trim_end(),
                if status == 200 && range.is_some() {
                    " to a range request (expected 206): it must support range requests"
                } else {
                    ""
                }
            );
            let failure = Failure::Status {
                status,
                retry_after: header("retry-after"),
            };
            return Ok(failed(failure, what, &place));
        }
        if let (Some((first, end)), Some(value)) = (from, header("content-range")) {
            if content_range(&value) != Some((first, end - 1)) {
                return Err(Error::Format(format!(
                    "{place}: asked for bytes {first}-{}, the server sent `Content-Range: {value}`",
                    end - 1
                )));
            }
        }
        if let Some(etag) = header("etag") {
            match self.etags.get(url) {
                Some(known) if *known != etag => {
                    return Err(Error::Format(format!(
                        "{place}: the file changed on the server while it was read (ETag {known}, \
                         then {etag}): start the download again"
                    )))
                }
                Some(_) => {}
                None => {
                    self.etags.insert(url.to_string(), etag);
                }
            }
        }
        read_body(
            &response,
            body,
            from.map(|(_, end)| end - range.map_or(0, |r| r.0)),
        )
        .await
        .map(|cut| match cut {
            None => Attempt::Done,
            Some(what) => failed(Failure::Network, what, &place),
        })
        .map_err(|what| Error::Format(format!("{place}: {what}")))
    }
}

/// A GET of `url`, of bytes `from.0..from.1` when given.
async fn request(
    url: &str,
    from: Option<(u64, u64)>,
) -> std::result::Result<web_sys::Response, JsValue> {
    let init = web_sys::RequestInit::new();
    // The pieces go into the model cache; a copy in the HTTP cache would only double the disk
    // used (and its partial entries would answer a resumed range in pieces of their own).
    init.set_cache(web_sys::RequestCache::NoStore);
    let headers = web_sys::Headers::new()?;
    if let Some((first, end)) = from {
        headers.set("Range", &format!("bytes={first}-{}", end - 1))?;
    }
    init.set_headers(&headers);
    let request = web_sys::Request::new_with_str_and_init(url, &init)?;
    Ok(JsFuture::from(scope().fetch_with_request(&request))
        .await?
        .unchecked_into())
}

/// Appends `response`'s body to `body`, which must reach `length` bytes when given. `Ok(None)`
/// when it did, `Ok(Some(what))` when the body was cut off (a failure to try again), `Err` when
/// the server sent more than asked.
async fn read_body(
    response: &web_sys::Response,
    body: &mut Vec<u8>,
    length: Option<u64>,
) -> std::result::Result<Option<String>, String> {
    let Some(stream) = response.body() else {
        return Ok(
            (length.unwrap_or(0) > body.len() as u64).then(|| "the answer has no body".to_string())
        );
    };
    let reader: web_sys::ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
    let started = body.len();
    loop {
        let chunk = match JsFuture::from(reader.read()).await {
            Ok(chunk) => chunk,
            Err(e) => {
                return Ok(Some(format!(
                    "the connection was cut after {} bytes ({})",
                    body.len() - started,
                    browser_error(e)
                )))
            }
        };
        let field = |name: &str| js_sys::Reflect::get(&chunk, &name.into()).unwrap_or_default();
        if field("done").is_truthy() {
            break;
        }
        let value: Uint8Array = field("value").unchecked_into();
        let at = body.len();
        body.resize(at + value.length() as usize, 0);
        value.copy_to(&mut body[at..]);
        if length.is_some_and(|length| body.len() as u64 > length) {
            let _ = JsFuture::from(reader.cancel()).await;
            return Err(format!(
                "the server sent more than the {} bytes asked for",
                length.unwrap_or(0)
            ));
        }
    }
    Ok(match length {
        Some(length) if (body.len() as u64) < length => Some(format!(
            "the answer ended after {} of {length} bytes",
            body.len()
        )),
        _ => None,
    })
}

/// What a final status means for the writer.
fn final_message(failure: &Failure, what: &str) -> String {
    match failure {
        Failure::Status { status: 404, .. } => {
            "not found (404): check the repository name and the hub address".to_string()
        }
        Failure::Status {
            status: 401 | 403, ..
        } => format!(
            "{what}: the repository is not there, or it is private or gated (the hub loader \
             reads public repositories only): check the repository name and the hub address"
        ),
        _ => what.to_string(),
    }
}
