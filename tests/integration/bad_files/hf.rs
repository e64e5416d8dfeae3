//! Hugging Face directories with bad configs, tokenizers or tensors.

use super::*;

/// Writes a Hugging Face directory: `config.json`, `tokenizer.json`, `model.safetensors`.
fn hf_dir(
    label: &str,
    config_json: &str,
    tokenizer_json: &str,
    tensors: &HashMap<String, Tensor>,
) -> TempDir {
    let dir = TempDir::new(label);
    std::fs::write(dir.path().join("config.json"), config_json).unwrap();
    std::fs::write(dir.path().join("tokenizer.json"), tokenizer_json).unwrap();
    candle_core::safetensors::save(tensors, dir.path().join("model.safetensors")).unwrap();
    dir
}

fn valid_hf_dir(label: &str) -> TempDir {
    let f = fixture();
    hf_dir(label, &f.config_json, &f.tokenizer_json, &f.tensors)
}

fn load_dir(dir: &TempDir) -> storywriter::Result<LoadedModel> {
    loader::native::load(dir.path(), &Device::Cpu)
}

/// The fixture's tensors with `change` applied.
fn tensors_with(change: impl FnOnce(&mut HashMap<String, Tensor>)) -> HashMap<String, Tensor> {
    let mut tensors = fixture().tensors.clone();
    change(&mut tensors);
    tensors
}

/// The fixture's `config.json` with `change` applied to its JSON object.
fn config_with(change: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) -> String {
    let mut json: serde_json::Value = serde_json::from_str(&fixture().config_json).unwrap();
    change(json.as_object_mut().unwrap());
    json.to_string()
}

#[test]
fn valid_hf_dirs_load() {
    let mut cases = Cases::default();
    let dir = valid_hf_dir("valid");
    cases.ok("valid directory", || load_dir(&dir));
    let unprefixed = tensors_with(|t| {
        *t = t
            .drain()
            .map(|(k, v)| (k.trim_start_matches("transformer.").to_string(), v))
            .collect();
    });
    let f = fixture();
    let dir = hf_dir("unprefixed", &f.config_json, &f.tokenizer_json, &unprefixed);
    cases.ok("valid directory without the transformer. prefix", || {
        load_dir(&dir)
    });
    cases.finish();
}

#[test]
fn bad_hf_config_and_tokenizer() {
    let mut cases = Cases::default();
    let f = fixture();

    let dir = valid_hf_dir("no-config");
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    cases.err("no config.json", &["config.json"], || load_dir(&dir));
    let dir = valid_hf_dir("no-tokenizer");
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    cases.err("no tokenizer.json", &["tokenizer.json"], || load_dir(&dir));

    let bad_configs: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "config not JSON",
            "{\"vocab_size\": 384,".into(),
            vec!["config.json"],
        ),
        ("config an array", "[1, 2]".into(), vec!["config.json"]),
        (
            "config not UTF-8",
            String::new(),
            vec!["config.json", "utf-8"],
        ),
        (
            "vocab_size a string",
            config_with(|c| {
                c.insert("vocab_size".into(), "many".into());
            }),
            vec!["config.json", "vocab_size"],
        ),
        (
            "vocab_size negative",
            config_with(|c| {
                c.insert("vocab_size".into(), (-1).into());
            }),
            vec!["config.json", "vocab_size"],
        ),
        (
            "vocab_size missing",
            config_with(|c| {
                c.remove("vocab_size");
            }),
            vec!["config.json", "vocab_size"],
        ),
        (
            "hidden_size missing",
            config_with(|c| {
                c.remove("hidden_size");
            }),
            vec!["config.json", "hidden_size"],
        ),
        (
            "hidden_size 2^40",
            config_with(|c| {
                c.insert("hidden_size".into(), (1u64 << 40).into());
            }),
            vec!["config.json", "hidden_size"],
        ),
        (
            "hidden_size a float",
            config_with(|c| {
                c.insert("hidden_size".into(), 32.5.into());
            }),
            vec!["config.json", "hidden_size"],
        ),
        (
            "n_head zero",
            config_with(|c| {
                c.insert("n_head".into(), 0.into());
            }),
            vec!["config.json", "n_head"],
        ),
        (
            "n_layer an array",
            config_with(|c| {
                c.insert("n_layer".into(), serde_json::json!([2]));
            }),
            vec!["config.json", "n_layer"],
        ),
        (
            "epsilon a string",
            config_with(|c| {
                c.insert("layer_norm_epsilon".into(), "tiny".into());
            }),
            vec!["config.json", "layer_norm_epsilon"],
        ),
        (
            "eos_token_id 2^40",
            config_with(|c| {
                c.insert("eos_token_id".into(), (1u64 << 40).into());
            }),
            vec!["config.json", "eos_token_id"],
        ),
        (
            "residual flag a number",
            config_with(|c| {
                c.insert("apply_residual_connection_post_layernorm".into(), 1.into());
            }),
            vec!["config.json", "apply_residual_connection_post_layernorm"],
        ),
    ];
    for (case, config, needles) in bad_configs {
        let dir = hf_dir("config", &config, &f.tokenizer_json, &f.tensors);
        if case == "config not UTF-8" {
            std::fs::write(dir.path().join("config.json"), b"{\"vocab_size\": \xff}").unwrap();
        }
        cases.err(case, &needles, || load_dir(&dir));
    }

    for (case, tokenizer) in [
        ("tokenizer not JSON", "{\"model\": "),
        ("tokenizer empty", ""),
        (
            "tokenizer JSON of the wrong shape",
            "{\"model\": {\"type\": \"BPE\", \"vocab\": 3}}",
        ),
    ] {
        let dir = hf_dir("tokenizer", &f.config_json, tokenizer, &f.tensors);
        cases.err(case, &["tokenizer.json"], || load_dir(&dir));
    }

    // Ids beyond the embedding: a smaller vocab_size, or an added token far out.
    let config = config_with(|c| {
        c.insert("vocab_size".into(), 200.into());
    });
    let dir = hf_dir("small-vocab", &config, &f.tokenizer_json, &f.tensors);
    let max_id = Tokenizer::byte_level().unwrap().max_token_id().to_string();
    cases.err(
        "tokenizer of 292 ids for 200 rows",
        &["beyond the embedding", &max_id, "200"],
        || load_dir(&dir),
    );
    // (tokenizers takes an added token's id from the model's vocabulary, so it goes there too.)
    let mut tokenizer: serde_json::Value = serde_json::from_str(&f.tokenizer_json).unwrap();
    tokenizer["model"]["vocab"]["<far>"] = 5000.into();
    tokenizer["added_tokens"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "id": 5000, "content": "<far>", "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true
        }));
    let dir = hf_dir(
        "far-token",
        &f.config_json,
        &tokenizer.to_string(),
        &f.tensors,
    );
    cases.err(
        "added token id 5000",
        &["beyond the embedding", "5000", "384"],
        || load_dir(&dir),
    );
    let config = config_with(|c| {
        c.insert("eos_token_id".into(), 384.into());
    });
    let dir = hf_dir("far-eos", &config, &f.tokenizer_json, &f.tensors);
    cases.err("eos_token_id beyond the embedding", &["eos", "384"], || {
        load_dir(&dir)
    });
    cases.finish();
}

#[test]
fn bad_hf_tensors() {
    let mut cases = Cases::default();
    let f = fixture();

    let tensors = tensors_with(|t| {
        t.remove("transformer.h.1.mlp.dense_4h_to_h.weight");
    });
    let dir = hf_dir("missing", &f.config_json, &f.tokenizer_json, &tensors);
    cases.err(
        "missing dense_4h_to_h",
        &["h.1.mlp.dense_4h_to_h.weight", "missing"],
        || load_dir(&dir),
    );
    let tensors = tensors_with(|t| {
        *t = t
            .drain()
            .filter(|(k, _)| k != "transformer.ln_f.bias")
            .map(|(k, v)| (k.trim_start_matches("transformer.").to_string(), v))
            .collect();
    });
    let dir = hf_dir(
        "missing-unprefixed",
        &f.config_json,
        &f.tokenizer_json,
        &tensors,
    );
    cases.err(
        "missing ln_f.bias, unprefixed names",
        &["ln_f.bias", "missing"],
        || load_dir(&dir),
    );
    let tensors = tensors_with(|t| {
        t.remove("transformer.word_embeddings.weight");
    });
    let dir = hf_dir(
        "missing-embeddings",
        &f.config_json,
        &f.tokenizer_json,
        &tensors,
    );
    cases.err(
        "missing word_embeddings",
        &["word_embeddings.weight", "missing"],
        || load_dir(&dir),
    );

    let tensors = tensors_with(|t| {
        let name = "transformer.h.0.mlp.dense_h_to_4h.weight";
        let w = t[name].t().unwrap().contiguous().unwrap();
        t.insert(name.into(), w);
    });
    let dir = hf_dir("transposed", &f.config_json, &f.tokenizer_json, &tensors);
    cases.err(
        "dense_h_to_4h transposed",
        &[
            "transformer.h.0.mlp.dense_h_to_4h.weight",
            "[32, 128]",
            "[128, 32]",
        ],
        || load_dir(&dir),
    );
    let tensors = tensors_with(|t| {
        let name = "transformer.word_embeddings.weight";
        let w = t[name].narrow(0, 0, 300).unwrap().contiguous().unwrap();
        t.insert(name.into(), w);
    });
    let dir = hf_dir(
        "short-embeddings",
        &f.config_json,
        &f.tokenizer_json,
        &tensors,
    );
    cases.err(
        "word_embeddings of 300 rows",
        &["word_embeddings.weight", "[300, 32]", "[384, 32]"],
        || load_dir(&dir),
    );
    let tensors = tensors_with(|t| {
        let name = "transformer.h.1.input_layernorm.weight";
        let w = t[name].to_dtype(candle_core::DType::U8).unwrap();
        t.insert(name.into(), w);
    });
    let dir = hf_dir("u8-norm", &f.config_json, &f.tokenizer_json, &tensors);
    cases.no_panic("layer norm stored as u8", || load_dir(&dir));

    // No weights at all, a bad index, a missing shard.
    let dir = valid_hf_dir("no-weights");
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    cases.err("no safetensors", &["model.safetensors"], || load_dir(&dir));
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        "{\"weight_map\": ",
    )
    .unwrap();
    cases.err("index not JSON", &["model.safetensors.index.json"], || {
        load_dir(&dir)
    });
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        "{\"metadata\": {}}",
    )
    .unwrap();
    cases.err(
        "index without weight_map",
        &["model.safetensors.index.json", "weight_map"],
        || load_dir(&dir),
    );
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        "{\"weight_map\": {\"a\": 3}}",
    )
    .unwrap();
    cases.err(
        "index with a number for a file",
        &["model.safetensors.index.json", "weight_map"],
        || load_dir(&dir),
    );
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        "{\"weight_map\": {\"a\": \"../../x\"}}",
    )
    .unwrap();
    cases.err(
        "index pointing outside the directory",
        &["model.safetensors.index.json", "../../x"],
        || load_dir(&dir),
    );

    let (first, second): (HashMap<_, _>, HashMap<_, _>) = f
        .tensors
        .clone()
        .into_iter()
        .partition(|(k, _)| k.contains(".h.0.") || k.contains("word_"));
    let shard = |i: usize| format!("model-0000{i}-of-00002.safetensors");
    let weight_map: serde_json::Map<String, serde_json::Value> = first
        .keys()
        .map(|k| (k.clone(), shard(1).into()))
        .chain(second.keys().map(|k| (k.clone(), shard(2).into())))
        .collect();
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map}).to_string();
    std::fs::write(dir.path().join("model.safetensors.index.json"), &index).unwrap();
    candle_core::safetensors::save(&first, dir.path().join(shard(1))).unwrap();
    candle_core::safetensors::save(&second, dir.path().join(shard(2))).unwrap();
    cases.ok("valid sharded directory", || load_dir(&dir));
    std::fs::remove_file(dir.path().join(shard(2))).unwrap();
    cases.err("index pointing at a missing shard", &[&shard(2)], || {
        load_dir(&dir)
    });

    // Truncated or corrupt safetensors.
    let dir = valid_hf_dir("truncated");
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    for k in 0..16 {
        let cut = bytes.len() * k / 16;
        std::fs::write(&path, &bytes[..cut]).unwrap();
        cases.err(
            &format!("safetensors truncated to {cut} of {}", bytes.len()),
            &["model.safetensors"],
            || load_dir(&dir),
        );
    }
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut corrupt = bytes.clone();
    corrupt[8] = b'!';
    std::fs::write(&path, &corrupt).unwrap();
    cases.err(
        "safetensors header not JSON",
        &["model.safetensors"],
        || load_dir(&dir),
    );
    let mut corrupt = bytes.clone();
    corrupt[..8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    std::fs::write(&path, &corrupt).unwrap();
    cases.err(
        "safetensors header length 2^60",
        &["model.safetensors"],
        || load_dir(&dir),
    );
    let header = serde_json::json!({
        "transformer.word_embeddings.weight":
            {"dtype": "F32", "shape": [1u64 << 40, 1u64 << 40], "data_offsets": [0, 16]}
    })
    .to_string();
    let mut crafted = (header.len() as u64).to_le_bytes().to_vec();
    crafted.extend_from_slice(header.as_bytes());
    crafted.extend_from_slice(&[0; 16]);
    std::fs::write(&path, &crafted).unwrap();
    cases.err(
        "safetensors tensor 2^40 × 2^40",
        &["model.safetensors"],
        || load_dir(&dir),
    );
    assert!(header_len < bytes.len());
    cases.finish();
}

#[test]
fn in_memory_hf_checkpoint() {
    let mut cases = Cases::default();
    let f = fixture();
    let open = |config: &str, tokenizer: &str, tensors: HashMap<String, Tensor>| {
        loader::open_hf(
            config,
            tokenizer.as_bytes(),
            TensorStore::Loaded(tensors),
            "mem",
            String::new(),
            &Device::Cpu,
        )
        .and_then(|opened| opened.build(&Device::Cpu))
    };
    cases.ok("valid in-memory checkpoint", || {
        open(&f.config_json, &f.tokenizer_json, f.tensors.clone())
    });
    let tensors = tensors_with(|t| {
        t.remove("transformer.h.0.self_attention.query_key_value.bias");
    });
    cases.err(
        "in memory: missing qkv bias",
        &["mem", "h.0.self_attention.query_key_value.bias"],
        || open(&f.config_json, &f.tokenizer_json, tensors),
    );
    let tensors = tensors_with(|t| {
        let name = "transformer.h.0.self_attention.query_key_value.weight";
        let w = t[name].narrow(0, 0, 48).unwrap().contiguous().unwrap();
        t.insert(name.into(), w);
    });
    cases.err(
        "in memory: qkv of half the rows",
        &["mem", "query_key_value.weight", "[48, 32]", "[96, 32]"],
        || open(&f.config_json, &f.tokenizer_json, tensors),
    );
    cases.finish();
}
