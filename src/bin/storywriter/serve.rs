//! `storywriter serve`: a static file server for the built web app (at `/`) and a model
//! directory (at `/models/`), for running the app on this machine.
//!
//! GET and HEAD only; single byte ranges (`Range: bytes=a-b`, `a-`, `-n`) answer 206 or 416,
//! which the page's hub loader relies on; every file is sent with `Cache-Control: no-cache` and
//! an ETag, so a reload always sees a rebuilt app and an unchanged file costs a 304. Paths that
//! leave the two roots (`..`, also percent-encoded, or symlinks pointing outside) and
//! directories other than the app root answer 404: there are no listings.
//!
//! Every answer makes the page cross-origin isolated (`Cross-Origin-Opener-Policy:
//! same-origin`, `Cross-Origin-Embedder-Policy: require-corp`), which the threaded wasm build
//! needs for its shared memory, and carries `Cross-Origin-Resource-Policy: cross-origin`, so an
//! isolated page elsewhere may still embed the app in an iframe or fetch a model.
//!
//! Built on axum (hyper) with a two-worker tokio runtime; each connection is its own task, so
//! a long model download does not hold up the page.

use std::future::IntoFuture;
use std::io::SeekFrom;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{
    ACCEPT_RANGES, ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG,
    IF_NONE_MATCH, IF_RANGE, RANGE, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use clap::Args;
use percent_encoding::percent_decode_str;
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

/// Options of `storywriter serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// The built web app (trunk's `dist/`), served at `/`; `/` is its index.html.
    #[arg(long, default_value = "dist")]
    pub root: PathBuf,
    /// A directory of model files and their index.json, served at `/models/`.
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
}

/// Serves until Ctrl-C. The first line on stdout is `serving http://ADDR/`; a line per request
/// goes to stderr.
pub fn run(args: ServeArgs) -> Result<()> {
    let site = Arc::new(Site {
        root: canonical_dir(&args.root, "--root")?,
        models: args
            .models
            .as_deref()
            .map(|dir| canonical_dir(dir, "--models"))
            .transpose()?,
    });
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(site, args.addr))
}

async fn serve(site: Arc<Site>, addr: SocketAddr) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let addr = listener.local_addr()?;
    // stdout is line-buffered: the line is out before the first request is taken.
    println!("serving http://{addr}/");
    eprintln!("app: {}", site.root.display());
    if let Some(models) = &site.models {
        eprintln!("models: {}", models.display());
    }
    eprintln!("press Ctrl-C to stop");

    let app = Router::new()
        .fallback(answer)
        .with_state(site)
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::select! {
        served = axum::serve(listener, app).into_future() => served?,
        stop = tokio::signal::ctrl_c() => stop.context("cannot wait for Ctrl-C")?,
    }
    eprintln!("stopped");
    Ok(())
}

/// The headers that make the app cross-origin isolated (threads) and embeddable.
const ISOLATION: [(&str, &str); 3] = [
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-embedder-policy", "require-corp"),
    ("cross-origin-resource-policy", "cross-origin"),
];

/// Answers one request and logs it.
async fn answer(
    State(site): State<Arc<Site>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (mut response, note) = match *request.method() {
        Method::GET | Method::HEAD => match site.resolve(request.uri().path()) {
            Some(path) => file_response(request.headers(), &path).await,
            None => (plain(StatusCode::NOT_FOUND, "not found"), String::new()),
        },
        _ => {
            let refusal = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD");
            (
                ([(ALLOW, "GET, HEAD")], refusal).into_response(),
                String::new(),
            )
        }
    };
    let headers = response.headers_mut();
    for (name, value) in ISOLATION {
        headers.insert(name, HeaderValue::from_static(value));
    }
    eprintln!(
        "{remote} {} {} {}{note}",
        request.method(),
        request.uri(),
        response.status().as_u16(),
    );
    response
}

fn canonical_dir(dir: &Path, option: &str) -> Result<PathBuf> {
    let canonical = dir
        .canonicalize()
        .with_context(|| format!("{option} {}: cannot open", dir.display()))?;
    if !canonical.is_dir() {
        anyhow::bail!("{option} {}: not a directory", dir.display());
    }
    Ok(canonical)
}

/// The two served directories, canonicalized.
struct Site {
    root: PathBuf,
    models: Option<PathBuf>,
}

impl Site {
    /// The file a request path names, or None when it is outside the roots or not a file.
    fn resolve(&self, path: &str) -> Option<PathBuf> {
        let decoded = percent_decode_str(path).decode_utf8().ok()?;
        let rest = decoded.strip_prefix('/')?;
        let (base, relative, listable) = match (&self.models, rest.strip_prefix("models/")) {
            (Some(models), Some(relative)) => (models, relative, false),
            _ => (&self.root, rest, true),
        };
        let mut path = base.clone();
        for segment in relative.split('/') {
            match segment {
                "" | "." => {}
                ".." => return None,
                _ if segment.contains(['\\', '\0']) => return None,
                _ => path.push(segment),
            }
        }
        // Symlinks are followed, but the target must still be inside the root.
        let mut path = path.canonicalize().ok()?;
        if !path.starts_with(base) {
            return None;
        }
        if path.is_dir() && listable {
            path.push("index.html");
        }
        path.is_file().then_some(path)
    }
}

/// A byte range asked for by a `Range` header, for a file of a known length.
#[derive(Debug, PartialEq)]
enum ByteRange {
    /// No range, a malformed one or several: the whole file (RFC 9110 allows ignoring them).
    Whole,
    /// Bytes `start..=end`, clipped to the file.
    Part { start: u64, end: u64 },
    /// A range that starts past the end of the file: 416.
    Unsatisfiable,
}

fn parse_range(value: &str, len: u64) -> ByteRange {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return ByteRange::Whole;
    };
    let Some((first, last)) = spec.split_once('-') else {
        return ByteRange::Whole;
    };
    if spec.contains(',') {
        return ByteRange::Whole;
    }
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        return match last.parse::<u64>() {
            Ok(0) => ByteRange::Unsatisfiable,
            Ok(_) if len == 0 => ByteRange::Unsatisfiable,
            Ok(suffix) => ByteRange::Part {
                start: len.saturating_sub(suffix),
                end: len - 1,
            },
            Err(_) => ByteRange::Whole,
        };
    }
    let Ok(start) = first.parse::<u64>() else {
        return ByteRange::Whole;
    };
    let end = if last.is_empty() {
        u64::MAX
    } else {
        match last.parse::<u64>() {
            Ok(end) if end >= start => end,
            _ => return ByteRange::Whole,
        }
    };
    if start >= len {
        return ByteRange::Unsatisfiable;
    }
    ByteRange::Part {
        start,
        end: end.min(len - 1),
    }
}

/// The response for an existing file: 200, 206, 304 or 416; the note tells the log the range.
async fn file_response(request: &HeaderMap, path: &Path) -> (Response, String) {
    let opened = async {
        let file = File::open(path).await?;
        let meta = file.metadata().await?;
        Ok::<_, std::io::Error>((file, meta))
    };
    let (mut file, meta) = match opened.await {
        Ok(opened) => opened,
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            return (plain(StatusCode::NOT_FOUND, "not found"), String::new());
        }
    };
    let len = meta.len();
    let modified = meta
        .modified()
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |age| age.as_nanos());
    let etag = format!("\"{len:x}-{modified:x}\"");
    let request_header = |name| request.get(name).and_then(|value| value.to_str().ok());
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(ETAG, etag.parse().expect("the tag is ASCII"));
    headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));

    if let Some(tags) = request_header(IF_NONE_MATCH) {
        if tags
            .split(',')
            .any(|tag| tag.trim() == etag || tag.trim() == "*")
        {
            return (
                (StatusCode::NOT_MODIFIED, headers).into_response(),
                String::new(),
            );
        }
    }
    let range_applies = request_header(IF_RANGE).is_none_or(|tag| tag.trim() == etag);
    let range = match request_header(RANGE) {
        Some(value) if range_applies => parse_range(value, len),
        _ => ByteRange::Whole,
    };
    match range {
        ByteRange::Whole => {
            headers.insert(CONTENT_LENGTH, len.into());
            let body = Body::from_stream(ReaderStream::new(file));
            ((headers, body).into_response(), String::new())
        }
        ByteRange::Part { start, end } => {
            if let Err(e) = file.seek(SeekFrom::Start(start)).await {
                eprintln!("error: {}: {e}", path.display());
                let failure = plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the file");
                return (failure, String::new());
            }
            let count = end - start + 1;
            headers.insert(CONTENT_LENGTH, count.into());
            let content_range = format!("bytes {start}-{end}/{len}");
            headers.insert(CONTENT_RANGE, content_range.parse().expect("ASCII"));
            let body = Body::from_stream(ReaderStream::new(file.take(count)));
            let response = (StatusCode::PARTIAL_CONTENT, headers, body).into_response();
            (response, format!(" {content_range}"))
        }
        ByteRange::Unsatisfiable => {
            let content_range = [(CONTENT_RANGE, format!("bytes */{len}"))];
            let response = (StatusCode::RANGE_NOT_SATISFIABLE, content_range).into_response();
            (response, format!(" (file has {len} bytes)"))
        }
    }
}

fn plain(status: StatusCode, text: &str) -> Response {
    let content_type = [(CONTENT_TYPE, "text/plain; charset=utf-8")];
    let text = format!("{} {text}\n", status.as_u16());
    (status, content_type, text).into_response()
}

/// The media type of a file, by extension; `application/wasm` lets browsers compile the app
/// while it downloads.
fn content_type(path: &Path) -> &'static str {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("json" | "map") => "application/json",
        Some("jsonl") => "application/jsonl",
        Some("webmanifest") => "application/manifest+json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_range, ByteRange};

    #[test]
    fn ranges_follow_rfc_9110() {
        let part = |start, end| ByteRange::Part { start, end };
        assert_eq!(parse_range("bytes=0-9", 100), part(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), part(90, 99));
        assert_eq!(parse_range("bytes=90-500", 100), part(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), part(90, 99));
        assert_eq!(parse_range("bytes=-500", 100), part(0, 99));
        assert_eq!(parse_range("bytes=100-", 100), ByteRange::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), ByteRange::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-0", 0), ByteRange::Unsatisfiable);
        assert_eq!(parse_range("bytes=5-2", 100), ByteRange::Whole);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), ByteRange::Whole);
        assert_eq!(parse_range("items=0-9", 100), ByteRange::Whole);
        assert_eq!(parse_range("bytes=x-9", 100), ByteRange::Whole);
    }
}
