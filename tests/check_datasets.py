#!/usr/bin/env python3
"""Checks that a `storywriter export` directory loads with Hugging Face `datasets`.

Usage (from the repository root):

    python3 tests/check_datasets.py [EXPORT_DIR]

Without EXPORT_DIR it exports tests/fixtures/records_sample.jsonl (the records of
tests/integration/dataset/) into a temporary directory with the storywriter binary:
$STORYWRITER_BIN if set, else `cargo run --quiet --bin storywriter --`.

It loads records.jsonl, preferences.jsonl and unpaired.jsonl with `load_dataset("json", data_files=...)`,
checks columns, types, row counts and values against the JSON lines (the preference pairs are
recomputed here independently from the records, and so are the unpaired labels and ranks), then
loads the configs of the dataset card (`load_dataset(EXPORT_DIR, "records")`, "preferences",
"unpaired").

Exit status 0 when every check passes, 1 when one fails (each failure is printed). When
`datasets` is not installed it prints "SKIPPED: datasets not installed" and exits 0.
"""

import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "records_sample.jsonl"

RECORD_COLUMNS = [
    "schema", "record_id", "story_id", "step", "candidate", "parent_record_id", "input_text",
    "input_ids", "params", "policy", "param_table",
    "seed", "output_text", "output_ids", "logprobs",
    "finish_reason", "chosen", "chosen_by", "created_at", "chosen_at", "model", "app_version",
    "display_position", "mix_slot", "order_seed", "log_propensity", "decision_ms",
    "rejected_all_at", "edited_at", "edited_text",
]
UNPAIRED_COLUMNS = [
    "prompt", "completion", "label", "rank", "rejected_all", "story_id", "step", "record_id",
    "display_position", "params", "chosen_by",
]
PAIR_COLUMNS = [
    "prompt", "chosen", "rejected", "story_id", "step", "parent_record_id", "chosen_record_id",
    "rejected_record_id", "chosen_params", "rejected_params", "chosen_by", "model",
]
PARAM_FIELDS = [
    "greedy", "temperature", "top_k", "top_p", "min_p", "typical_p", "repetition_penalty",
    "max_new_tokens", "stop_at_sentence_end",
]

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)
        print(f"FAIL: {message}")
    return condition


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def expected_pairs(records):
    """(chosen_record_id, rejected_record_id) of every pair, computed as the card documents."""
    rounds = defaultdict(list)
    seen = set()
    for r in records:
        if r["record_id"] in seen:
            continue
        seen.add(r["record_id"])
        rounds[(r["story_id"], r["step"], r["parent_record_id"])].append(r)

    def round_order(key):
        story, step, parent = key
        return (story, step, parent is not None, parent or "")

    pairs = []
    for key in sorted(rounds, key=round_order):
        members = sorted(rounds[key], key=lambda r: (r["candidate"], r["record_id"]))
        chosen = [r for r in members if r["chosen"]]
        if len(chosen) != 1:
            continue
        (c,) = chosen
        for other in members:
            if other["chosen"] or other["input_text"] != c["input_text"]:
                continue
            if other["output_text"] == c["output_text"]:
                continue
            pairs.append((c["record_id"], other["record_id"]))
    return pairs


def expected_unpaired(records):
    """(record_id, label, rank) of every unpaired row, computed as the card documents."""
    rounds = defaultdict(list)
    seen = set()
    for r in records:
        if r["record_id"] not in seen:
            seen.add(r["record_id"])
            rounds[(r["story_id"], r["step"], r["parent_record_id"])].append(r)
    rows = []
    for key in sorted(rounds, key=lambda k: (k[0], k[1], k[2] is not None, k[2] or "")):
        members = sorted(rounds[key], key=lambda r: (r["candidate"], r["record_id"]))
        chosen = [r for r in members if r["chosen"]]
        if len(chosen) > 1:
            continue
        for r in members:
            rejected = r.get("rejected_all_at") is not None and not r["chosen"]
            if chosen and r["input_text"] != chosen[0]["input_text"]:
                continue
            if not chosen and not rejected:
                continue
            rank = (0 if r["chosen"] else 1) if chosen else None
            rows.append((r["record_id"], r["chosen"], rank))
    return rows


def check_unpaired(ds, rows, records):
    check(ds.column_names == UNPAIRED_COLUMNS, f"unpaired columns: {ds.column_names}")
    check(ds.num_rows == len(rows), f"unpaired: {ds.num_rows} rows, file has {len(rows)} lines")
    got = sorted((r["record_id"], r["label"], r["rank"]) for r in ds)
    want = sorted(expected_unpaired(records))
    check(got == want, f"unpaired rows differ from the records:\n  got  {got}\n  want {want}")


def export_fixture(out_dir):
    binary = os.environ.get("STORYWRITER_BIN")
    command = [binary] if binary else ["cargo", "run", "--quiet", "--bin", "storywriter", "--"]
    command += ["export", str(FIXTURE), "--output-dir", str(out_dir)]
    print("running:", " ".join(command))
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        print(f"FAIL: storywriter export exited with {result.returncode}")
        sys.exit(1)


def check_records(ds, rows):
    check(ds.column_names == RECORD_COLUMNS, f"records columns: {ds.column_names}")
    check(ds.num_rows == len(rows), f"records: {ds.num_rows} rows, file has {len(rows)} lines")
    ids = [row["record_id"] for row in rows]
    check(len(set(ids)) == len(ids), "records.jsonl repeats a record_id")
    f = ds.features
    check(f["seed"].dtype == "int64", f"seed type {f['seed']}")
    check(f["chosen"].dtype == "bool", f"chosen type {f['chosen']}")
    check(f["output_text"].dtype == "string", f"output_text type {f['output_text']}")
    check(f["params"]["temperature"].dtype == "float64", f"params type {f['params']}")
    check(sorted(f["params"]) == sorted(PARAM_FIELDS), f"params fields {sorted(f['params'])}")
    for got, want in zip(ds, rows):
        rid = want["record_id"]
        for key in ("record_id", "story_id", "step", "candidate", "parent_record_id",
                    "input_text", "output_text", "input_ids", "output_ids", "seed", "chosen",
                    "chosen_by", "chosen_at", "finish_reason", "model", "params"):
            if not check(got[key] == want[key], f"record {rid} {key}: {got[key]!r} != {want[key]!r}"):
                break
        check(len(got["logprobs"]) == len(want["logprobs"])
              and all(abs(a - b) < 1e-9 for a, b in zip(got["logprobs"], want["logprobs"])),
              f"record {rid} logprobs differ")


def check_preferences(ds, pair_rows, records):
    check(ds.column_names == PAIR_COLUMNS, f"preferences columns: {ds.column_names}")
    by_id = {r["record_id"]: r for r in records}
    want = expected_pairs(records)
    check(ds.num_rows == len(pair_rows) == len(want),
          f"preferences: {ds.num_rows} rows, file {len(pair_rows)} lines, expected {len(want)}")
    # Same pairs; the order may differ (rows that give a column its type come first).
    got = sorted((row["chosen_record_id"], row["rejected_record_id"]) for row in ds)
    want = sorted(want)
    check(got == want, f"preference pairs differ from the records:\n  got  {got}\n  want {want}")
    for key in ("prompt", "chosen", "rejected", "chosen_by"):
        check(ds.features[key].dtype == "string", f"{key} type {ds.features[key]}")
    for row in ds:
        c, r = by_id.get(row["chosen_record_id"]), by_id.get(row["rejected_record_id"])
        if not check(c is not None and r is not None, f"pair ids unknown: {row}"):
            continue
        check(row["prompt"] == c["input_text"] == r["input_text"], f"prompt of {row['chosen_record_id']}")
        check(row["chosen"] == c["output_text"], f"chosen text of {row['chosen_record_id']}")
        check(row["rejected"] == r["output_text"], f"rejected text of {row['rejected_record_id']}")
        check(row["chosen"] != row["rejected"], f"identical texts in pair {row['chosen_record_id']}")
        check(row["chosen_params"] == c["params"] and row["rejected_params"] == r["params"],
              f"params of pair {row['chosen_record_id']}/{row['rejected_record_id']}")
        check(row["chosen_by"] == c["chosen_by"] and row["model"] == c["model"],
              f"chosen_by/model of pair {row['chosen_record_id']}")


def main():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        import datasets
    except ImportError:
        print("SKIPPED: datasets not installed (pip install datasets)")
        return 0
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    print(f"datasets {datasets.__version__}")

    with tempfile.TemporaryDirectory(prefix="storywriter-check-") as tmp:
        if len(sys.argv) > 1:
            out_dir = Path(sys.argv[1])
        else:
            out_dir = Path(tmp) / "export"
            export_fixture(out_dir)
        cache = str(Path(tmp) / "hf-cache")
        records_path = out_dir / "records.jsonl"
        pairs_path = out_dir / "preferences.jsonl"
        records = read_jsonl(records_path)
        pair_rows = read_jsonl(pairs_path)
        if len(sys.argv) == 1:
            check(len(records) == len(read_jsonl(FIXTURE)), "export lost or added records")

        load = datasets.load_dataset
        rec = load("json", data_files=str(records_path), split="train", cache_dir=cache)
        check_records(rec, records)
        card = (out_dir / "README.md").read_text(encoding="utf-8")
        check(card.startswith("---\n"), "README.md has no YAML front matter")
        by_config = {"records": load(str(out_dir), "records", split="train", cache_dir=cache)}
        check(by_config["records"].num_rows == rec.num_rows, "records config row count")
        check(by_config["records"].column_names == RECORD_COLUMNS, "records config columns")
        print(f"records.jsonl: {rec.num_rows} rows, {len(rec.column_names)} columns; "
              f"config `records`: {by_config['records'].num_rows} rows")

        if not pair_rows:
            # datasets cannot load an empty file: the card must not list the config then.
            check(not expected_pairs(records), "preferences.jsonl is empty but pairs were expected")
            check("config_name: preferences" not in card, "card lists an empty preferences config")
            print("preferences.jsonl: empty (no round with exactly one choice)")
        else:
            prefs = load("json", data_files=str(pairs_path), split="train", cache_dir=cache)
            check_preferences(prefs, pair_rows, records)
            by_config["preferences"] = load(str(out_dir), "preferences", split="train",
                                            cache_dir=cache)
            check(by_config["preferences"].num_rows == prefs.num_rows,
                  "preferences config row count")
            check(by_config["preferences"].column_names == PAIR_COLUMNS,
                  "preferences config columns")
            check(by_config["preferences"][0] == prefs[0], "preferences config first row")
            print(f"preferences.jsonl: {prefs.num_rows} rows, columns {prefs.column_names}; "
                  f"config `preferences`: {by_config['preferences'].num_rows} rows")

        unpaired_path = out_dir / "unpaired.jsonl"
        unpaired_rows = read_jsonl(unpaired_path)
        if not unpaired_rows:
            check(not expected_unpaired(records), "unpaired.jsonl is empty but rows were expected")
            check("config_name: unpaired" not in card, "card lists an empty unpaired config")
        else:
            unpaired = load("json", data_files=str(unpaired_path), split="train", cache_dir=cache)
            check_unpaired(unpaired, unpaired_rows, records)
            by_config["unpaired"] = load(str(out_dir), "unpaired", split="train", cache_dir=cache)
            check(by_config["unpaired"].num_rows == unpaired.num_rows, "unpaired config row count")
            print(f"unpaired.jsonl: {unpaired.num_rows} rows; "
                  f"config `unpaired`: {by_config['unpaired'].num_rows} rows")

    if failures:
        print(f"FAILED: {len(failures)} check(s) failed")
        return 1
    print("OK: the export loads with Hugging Face datasets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
