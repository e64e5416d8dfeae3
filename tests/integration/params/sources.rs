//! Loading tables from files and URLs, and `storywriter params`.

use super::*;

/// Serves one HTTP response on a local port; returns the URL.
fn serve_once(status: &str, body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/params/steps.json",
        listener.local_addr().unwrap()
    );
    let status = status.to_string();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut byte = [0u8];
        while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
            request.push(byte[0]);
        }
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).unwrap();
    });
    url
}

/// A table unlike the bundled one, and the same table read back from its JSON (serde_json's
/// default float parsing may differ from the written value in the last bit).
fn distinct_table() -> (StepTable, StepTable) {
    let mut table = table_of(vec![row(1, 0.6, 20.0), row(2, 0.65, 22.0)]);
    table.source.kind = "selection-logs".into();
    let (parsed, warnings) = StepTable::from_json(&table.to_json_pretty(), "text", VOCAB).unwrap();
    assert!(warnings.is_empty());
    (table, parsed)
}

#[test]
fn a_table_is_fetched_from_a_url() {
    let (table, parsed) = distinct_table();
    let url = serve_once("200 OK", table.to_json_pretty());
    let (loaded, warnings) = read_table(&url, VOCAB).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(loaded, parsed);
}

#[test]
fn a_failing_url_is_an_error_naming_it() {
    // A port that was just closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/steps.json");
    let error = read_table(&url, VOCAB).unwrap_err().to_string();
    assert!(error.contains(&url), "{error}");

    let url = serve_once("404 Not Found", "no".into());
    let error = read_table(&url, VOCAB).unwrap_err().to_string();
    assert!(error.contains("404"), "{error}");
}

#[test]
fn an_invalid_served_table_is_an_error_with_the_reason() {
    let mut value = bundled_value();
    set(&mut value, "/steps/1/top_k/std", json!("wide"));
    let url = serve_once("200 OK", value.to_string());
    let error = read_table(&url, VOCAB).unwrap_err().to_string();
    assert!(
        error.contains(&format!("{url}: steps[1].top_k.std: expected a number")),
        "{error}"
    );
}

#[test]
fn tables_load_from_files() {
    let dir = std::env::temp_dir().join(format!("storywriter-params-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("steps.json");
    let (table, parsed) = distinct_table();
    std::fs::write(&path, table.to_json_pretty()).unwrap();
    let spec = path.to_str().unwrap();
    assert_eq!(read_table(spec, VOCAB).unwrap(), (parsed, vec![]));
    let missing = dir.join("missing.json");
    let error = read_table(missing.to_str().unwrap(), VOCAB).unwrap_err();
    assert!(error.to_string().contains("missing.json"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}

// ----- the command line -----

fn storywriter(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_storywriter"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn cli_prints_each_candidates_policy_and_parameters() {
    let out = storywriter(&[
        "params",
        "--step",
        "3",
        "--policy",
        "step-mean,coupled-random",
        "--seed",
        "5",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["step"], 3);
    assert_eq!(report["warnings"], json!([]));
    let mix: PolicyMix = "step-mean,coupled-random".parse().unwrap();
    let printed: Vec<(SamplingParams, Policy)> = report["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let params = serde_json::from_value(c["params"].clone()).unwrap();
            (params, c["policy"].as_str().unwrap().parse().unwrap())
        })
        .collect();
    assert_eq!(printed, candidate_params(&StepTable::bundled(), &mix, 3, 5));
}

#[test]
fn cli_reports_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"schema":"storywriter.step-params/1","global":{}}"#,
    )
    .unwrap();
    let bad = bad.to_str().unwrap();
    for (args, says) in [
        (
            vec!["params", "--table", "/nonexistent/steps.json"],
            "/nonexistent/steps.json",
        ),
        (vec!["params", "--table", bad], bad),
        (vec!["params", "--policy", "step-mean,hot"], "hot"),
        (vec!["params", "--step", "0"], "--step"),
    ] {
        let out = storywriter(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
