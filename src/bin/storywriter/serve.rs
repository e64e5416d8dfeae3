//! `storywriter serve`: a static file server for the built web app (at `/`) and a model
//! directory (at `/models/`), for running the app on this machine.
//!
//! GET and HEAD only; single byte ranges (`Range: bytes=a-b`, `a-`, `-n`) answer 206 or 416,
//! which the page's hub loader relies on; every file is sent with `Cache-Control: no-cache` and
//! an ETag, so a reload always sees a rebuilt app and an unchanged file costs a 304. Paths that
//! leave the two roots (`..`, also percent-encoded, or symlinks pointing outside) and
//! directories other than the app root answer 404: there are no listings.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use percent_encoding::percent_decode_str;
use tiny_http::{Header, Method, Request, Response, ResponseBox, Server};

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
    let server = Arc::new(
        Server::http(args.addr).map_err(|e| anyhow!("cannot listen on {}: {e}", args.addr))?,
    );
    let addr = server
        .server_addr()
        .to_ip()
        .context("the server is not listening on an IP address")?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "serving http://{addr}/")?;
    stdout.flush()?;
    drop(stdout);
    eprintln!("app: {}", site.root.display());
    if let Some(models) = &site.models {
        eprintln!("models: {}", models.display());
    }
    eprintln!("press Ctrl-C to stop");

    let stopper = Arc::clone(&server);
    ctrlc::set_handler(move || stopper.unblock()).context("cannot install the Ctrl-C handler")?;
    for request in server.incoming_requests() {
        let site = Arc::clone(&site);
        // One thread per request, so a long model download does not hold up the page.
        std::thread::spawn(move || site.answer(request));
    }
    eprintln!("stopped");
    Ok(())
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
    /// Answers one request and logs it.
    fn answer(&self, request: Request) {
        let (response, note) = match request.method() {
            Method::Get | Method::Head => match self.resolve(request.url()) {
                Some(path) => file_response(&request, &path),
                None => (plain(404, "not found"), String::new()),
            },
            _ => {
                let mut response = plain(405, "only GET and HEAD");
                response.add_header(header("Allow", "GET, HEAD"));
                (response, String::new())
            }
        };
        eprintln!(
            "{} {} {} {}{note}",
            request.remote_addr().map_or("-".into(), |a| a.to_string()),
            request.method(),
            request.url(),
            response.status_code().0,
        );
        if let Err(e) = request.respond(response) {
            eprintln!("error: cannot send the response: {e}");
        }
    }

    /// The file a request path names, or None when it is outside the roots or not a file.
    fn resolve(&self, url: &str) -> Option<PathBuf> {
        let path = url.split(['?', '#']).next()?;
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
fn file_response(request: &Request, path: &Path) -> (ResponseBox, String) {
    let opened = File::open(path).and_then(|file| {
        let meta = file.metadata()?;
        Ok((file, meta))
    });
    let (mut file, meta) = match opened {
        Ok(opened) => opened,
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            return (plain(404, "not found"), String::new());
        }
    };
    let len = meta.len();
    let modified = meta
        .modified()
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |age| age.as_nanos());
    let etag = format!("\"{len:x}-{modified:x}\"");
    let request_header = |name: &'static str| {
        request
            .headers()
            .iter()
            .find(|h| h.field.equiv(name))
            .map(|h| h.value.as_str().to_owned())
    };
    let headers = [
        header("Content-Type", content_type(path)),
        header("Cache-Control", "no-cache"),
        header("ETag", &etag),
        header("Accept-Ranges", "bytes"),
        header("X-Content-Type-Options", "nosniff"),
    ];

    if let Some(tags) = request_header("If-None-Match") {
        if tags
            .split(',')
            .any(|tag| tag.trim() == etag || tag.trim() == "*")
        {
            return (
                with_headers(Response::empty(304).boxed(), headers),
                String::new(),
            );
        }
    }
    let range_applies = request_header("If-Range").is_none_or(|tag| tag.trim() == etag);
    let range = match request_header("Range") {
        Some(value) if range_applies => parse_range(&value, len),
        _ => ByteRange::Whole,
    };
    match range {
        ByteRange::Whole => {
            let response = Response::new(200.into(), Vec::new(), file, Some(len as usize), None);
            (with_headers(response.boxed(), headers), String::new())
        }
        ByteRange::Part { start, end } => {
            if let Err(e) = file.seek(SeekFrom::Start(start)) {
                eprintln!("error: {}: {e}", path.display());
                return (plain(500, "cannot read the file"), String::new());
            }
            let count = end - start + 1;
            let body = file.take(count);
            let mut response =
                Response::new(206.into(), Vec::new(), body, Some(count as usize), None);
            response.add_header(header(
                "Content-Range",
                &format!("bytes {start}-{end}/{len}"),
            ));
            (
                with_headers(response.boxed(), headers),
                format!(" bytes {start}-{end}/{len}"),
            )
        }
        ByteRange::Unsatisfiable => {
            let mut response = Response::empty(416).boxed();
            response.add_header(header("Content-Range", &format!("bytes */{len}")));
            (response, format!(" (file has {len} bytes)"))
        }
    }
}

fn with_headers<const N: usize>(mut response: ResponseBox, headers: [Header; N]) -> ResponseBox {
    for h in headers {
        response.add_header(h);
    }
    response
}

fn plain(status: u16, text: &str) -> ResponseBox {
    Response::from_string(format!("{status} {text}\n"))
        .with_status_code(status)
        .with_header(header("Content-Type", "text/plain; charset=utf-8"))
        .boxed()
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes())
        .expect("header names and values are ASCII")
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
