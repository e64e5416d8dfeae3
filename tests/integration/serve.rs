//! `storywriter serve` over real sockets: media types, cache headers, byte ranges, HEAD,
//! conditional requests, and paths that try to leave the served directories.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running `storywriter serve` over a temporary site, stopped on drop.
struct Served {
    child: Child,
    host: String,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP response.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The bytes of the test model file: 1000 bytes, no two neighbours alike.
fn model_bytes() -> Vec<u8> {
    (0..1000u32).map(|i| (i % 251) as u8).collect()
}

/// Layout: DIR/Cargo.toml, DIR/site/Cargo.toml (targets of traversal attempts),
/// DIR/site/dist (the app), DIR/site/models, DIR/site/outside/secret.txt and a symlink to it in
/// dist/.
fn serve() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    let write = |path: &Path, data: &[u8]| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    };
    write(&dir.path().join("Cargo.toml"), b"[package] # outer\n");
    write(&site.join("Cargo.toml"), b"[package] # site\n");
    write(&site.join("outside/secret.txt"), b"secret\n");
    let dist = site.join("dist");
    write(
        &dist.join("index.html"),
        b"<!doctype html><title>app</title>\n",
    );
    write(&dist.join("app_bg.wasm"), b"\0asm\x01\0\0\0");
    write(&dist.join("app.js"), b"export {};\n");
    write(&dist.join("style.css"), b"body {}\n");
    write(&dist.join("manifest.webmanifest"), b"{}\n");
    write(
        &dist.join("icon.svg"),
        b"<svg xmlns='http://www.w3.org/2000/svg'/>\n",
    );
    write(&dist.join("params/steps.json"), b"{}\n");
    std::os::unix::fs::symlink(site.join("outside/secret.txt"), dist.join("escape.txt")).unwrap();
    std::os::unix::fs::symlink(site.join("outside"), dist.join("escape-dir")).unwrap();
    write(&site.join("models/tiny.gguf"), &model_bytes());
    write(&site.join("models/tiny.safetensors"), b"{}");
    write(&site.join("models/index.json"), b"{\"models\":[]}\n");

    let mut child = Command::new(env!("CARGO_BIN_EXE_storywriter"))
        .args(["serve", "--addr", "127.0.0.1:0", "--root"])
        .arg(&dist)
        .arg("--models")
        .arg(site.join("models"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let host = first
        .trim()
        .strip_prefix("serving http://")
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();
    Served {
        child,
        host,
        _dir: dir,
    }
}

impl Served {
    /// Sends `METHOD TARGET` with extra header lines, exactly as written (no normalisation of
    /// `..`, unlike HTTP client libraries), and reads the whole response.
    fn request(&self, method: &str, target: &str, headers: &[&str]) -> Reply {
        let mut stream = TcpStream::connect(&self.host).unwrap();
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.host
        );
        for h in headers {
            head.push_str(h);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("no end of headers");
        let head = String::from_utf8(raw[..split].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .map(|line| {
                let (name, value) = line.split_once(':').unwrap();
                (name.trim().to_owned(), value.trim().to_owned())
            })
            .collect();
        Reply {
            status,
            headers,
            body: raw[split + 4..].to_vec(),
        }
    }

    fn get(&self, target: &str) -> Reply {
        self.request("GET", target, &[])
    }
}

#[test]
fn files_have_their_media_types_and_no_cache() {
    let served = serve();
    for (path, media_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/index.html", "text/html; charset=utf-8"),
        ("/app_bg.wasm", "application/wasm"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/manifest.webmanifest", "application/manifest+json"),
        ("/icon.svg", "image/svg+xml"),
        ("/params/steps.json", "application/json"),
        ("/models/index.json", "application/json"),
        ("/models/tiny.gguf", "application/octet-stream"),
        ("/models/tiny.safetensors", "application/octet-stream"),
    ] {
        let reply = served.get(path);
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.header("Content-Type"), Some(media_type), "{path}");
        assert_eq!(reply.header("Cache-Control"), Some("no-cache"), "{path}");
        assert_eq!(reply.header("Accept-Ranges"), Some("bytes"), "{path}");
    }
    assert_eq!(served.get("/").body, b"<!doctype html><title>app</title>\n");
    assert_eq!(served.get("/models/tiny.gguf").body, model_bytes());
    assert_eq!(served.get("/app.js?v=2#top").status, 200);
}

#[test]
fn every_answer_makes_the_page_cross_origin_isolated() {
    let served = serve();
    let ranged = served.request("GET", "/models/tiny.gguf", &["Range: bytes=0-3"]);
    let refused = served.request("POST", "/index.html", &["Content-Length: 0"]);
    for reply in [served.get("/"), served.get("/missing.js"), ranged, refused] {
        assert_eq!(
            reply.header("Cross-Origin-Opener-Policy"),
            Some("same-origin")
        );
        assert_eq!(
            reply.header("Cross-Origin-Embedder-Policy"),
            Some("require-corp")
        );
        assert_eq!(
            reply.header("Cross-Origin-Resource-Policy"),
            Some("cross-origin")
        );
    }
}

#[test]
fn byte_ranges_answer_206_or_416() {
    let served = serve();
    let model = model_bytes();
    let range = |spec: &str| served.request("GET", "/models/tiny.gguf", &[spec]);

    let reply = range("Range: bytes=10-19");
    assert_eq!(reply.status, 206);
    assert_eq!(reply.header("Content-Range"), Some("bytes 10-19/1000"));
    assert_eq!(reply.header("Content-Length"), Some("10"));
    assert_eq!(reply.body, &model[10..20]);

    let reply = range("Range: bytes=990-");
    assert_eq!(reply.status, 206);
    assert_eq!(reply.header("Content-Range"), Some("bytes 990-999/1000"));
    assert_eq!(reply.body, &model[990..]);

    let reply = range("Range: bytes=-16");
    assert_eq!(reply.status, 206);
    assert_eq!(reply.header("Content-Range"), Some("bytes 984-999/1000"));
    assert_eq!(reply.body, &model[984..]);

    let reply = range("Range: bytes=995-5000");
    assert_eq!(reply.status, 206);
    assert_eq!(reply.header("Content-Range"), Some("bytes 995-999/1000"));
    assert_eq!(reply.body, &model[995..]);

    for unsatisfiable in [
        "Range: bytes=1000-",
        "Range: bytes=5000-6000",
        "Range: bytes=-0",
    ] {
        let reply = range(unsatisfiable);
        assert_eq!(reply.status, 416, "{unsatisfiable}");
        assert_eq!(reply.header("Content-Range"), Some("bytes */1000"));
        assert!(reply.body.is_empty());
    }

    // Several ranges or a malformed one: the whole file, as RFC 9110 allows.
    for ignored in [
        "Range: bytes=0-1,5-6",
        "Range: bytes=9-3",
        "Range: lines=1-2",
    ] {
        let reply = range(ignored);
        assert_eq!(reply.status, 200, "{ignored}");
        assert_eq!(reply.body, model);
    }

    // If-Range with another version's tag: the whole (new) file.
    let reply = served.request(
        "GET",
        "/models/tiny.gguf",
        &["Range: bytes=0-9", "If-Range: \"other\""],
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), 1000);
}

#[test]
fn head_sends_the_headers_without_the_body() {
    let served = serve();
    let reply = served.request("HEAD", "/models/tiny.gguf", &[]);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("Content-Length"), Some("1000"));
    assert_eq!(
        reply.header("Content-Type"),
        Some("application/octet-stream")
    );
    assert!(reply.body.is_empty());

    let reply = served.request("HEAD", "/models/tiny.gguf", &["Range: bytes=0-99"]);
    assert_eq!(reply.status, 206);
    assert_eq!(reply.header("Content-Length"), Some("100"));
    assert!(reply.body.is_empty());
}

#[test]
fn an_unchanged_file_answers_304() {
    let served = serve();
    let etag = served.get("/app.js").header("ETag").unwrap().to_owned();
    let reply = served.request("GET", "/app.js", &[&format!("If-None-Match: {etag}")]);
    assert_eq!(reply.status, 304);
    assert!(reply.body.is_empty());
    let reply = served.request("GET", "/app.js", &["If-None-Match: \"stale\""]);
    assert_eq!(reply.status, 200);
}

#[test]
fn paths_outside_the_roots_are_not_found() {
    let served = serve();
    for target in [
        "/../Cargo.toml",
        "/../../Cargo.toml",
        "/models/../Cargo.toml",
        "/models/../../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/%2E%2E/%2e%2e/Cargo.toml",
        "/models/%2e%2e/%2e%2e/Cargo.toml",
        "/..%2fCargo.toml",
        "/models/..%2f..%2fCargo.toml",
        "/%2e%2e%5cCargo.toml",
        "/outside/secret.txt",
        "/escape.txt",
        "/escape-dir/secret.txt",
        "//etc/passwd",
        "/%2fetc/passwd",
        "/index.html%00.js",
    ] {
        let reply = served.get(target);
        assert_eq!(reply.status, 404, "{target}");
        let body = String::from_utf8_lossy(&reply.body);
        assert!(
            !body.contains("[package]") && !body.contains("secret") && !body.contains("root:"),
            "{target}: {body}"
        );
    }
}

#[test]
fn missing_files_directories_and_other_methods_are_refused() {
    let served = serve();
    assert_eq!(served.get("/missing.js").status, 404);
    assert_eq!(served.get("/models/missing.gguf").status, 404);
    // No directory listings: the models directory and app directories without index.html.
    assert_eq!(served.get("/models/").status, 404);
    assert_eq!(served.get("/params/").status, 404);
    let reply = served.request("POST", "/index.html", &["Content-Length: 0"]);
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("Allow"), Some("GET, HEAD"));
}
