//! GGUF files whose tensors or metadata are wrong.

use super::*;

#[test]
fn bad_gguf_tensors() {
    let mut cases = Cases::default();
    let huge = 1u64 << 40;

    let b = changed(|g| g.tensor("token_embd.weight").dims = vec![huge, huge]);
    cases.err(
        "token_embd 2^40 × 2^40",
        &["x.gguf", "token_embd.weight"],
        || load_gguf(&b),
    );
    let b = changed(|g| g.tensor("blk.0.ffn_up.weight").dims = vec![huge, huge]);
    cases.err(
        "ffn_up 2^40 × 2^40",
        &["x.gguf", "blk.0.ffn_up.weight"],
        || load_gguf(&b),
    );
    let b = changed(|g| g.tensor("blk.0.ffn_up.weight").dims = vec![1 << 20; 4]);
    cases.err(
        "ffn_up 4 × 2^20 dims",
        &["x.gguf", "blk.0.ffn_up.weight"],
        || load_gguf(&b),
    );
    let b = changed(|g| g.tensor("blk.1.ffn_down.weight").dims = vec![1 << 20, 1 << 20]);
    cases.err(
        "ffn_down 2^20 × 2^20 (a terabyte)",
        &["x.gguf", "blk.1.ffn_down.weight", "end of the file"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.tensors.push(TensorEntry {
            name: "extra.weight".into(),
            dims: vec![huge, huge],
            dtype: 0,
            offset: 0,
        })
    });
    cases.err(
        "unused tensor 2^40 × 2^40",
        &["x.gguf", "extra.weight"],
        || load_gguf(&b),
    );

    let b = changed(|g| g.tensor("blk.0.attn_qkv.weight").offset = 1 << 62);
    cases.err(
        "tensor offset 2^62",
        &["x.gguf", "blk.0.attn_qkv.weight", "end of the file"],
        || load_gguf(&b),
    );
    let b = changed(|g| g.tensor("blk.0.attn_qkv.weight").offset = u64::MAX);
    cases.err(
        "tensor offset 2^64-1",
        &["x.gguf", "blk.0.attn_qkv.weight", "end of the file"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        let len = g.data.len() as u64;
        g.tensor("output_norm.weight").offset = len - 8;
    });
    cases.err(
        "tensor running past the end",
        &["x.gguf", "output_norm.weight", "end of the file"],
        || load_gguf(&b),
    );

    let b =
        changed(|g| g.tensor("blk.0.ffn_up.weight").dtype = format::ggml_type_id(GgmlDType::F32));
    cases.err(
        "q8_0 tensor declared f32",
        &["x.gguf", "blk.0.ffn_up.weight"],
        || load_gguf(&b),
    );
    let b =
        changed(|g| g.tensor("blk.1.ffn_up.weight").dtype = format::ggml_type_id(GgmlDType::Q8_1));
    cases.err(
        "tensor of an unloadable type (q8_1)",
        &["x.gguf", "blk.1.ffn_up.weight", "q8_1"],
        || load_gguf(&b),
    );
    let b =
        changed(|g| g.tensor("output_norm.weight").dtype = format::ggml_type_id(GgmlDType::Q8K));
    cases.err(
        "tensor of an unloadable type (q8k)",
        &["x.gguf", "output_norm.weight", "q8k"],
        || load_gguf(&b),
    );
    let b =
        changed(|g| g.tensor("blk.0.attn_norm.bias").dtype = format::ggml_type_id(GgmlDType::Q4K));
    cases.err(
        "32 values in 256-value blocks",
        &["x.gguf", "blk.0.attn_norm.bias", "block"],
        || load_gguf(&b),
    );
    let b =
        changed(|g| g.tensor("blk.0.ffn_up.weight").dtype = format::ggml_type_id(GgmlDType::Q4K));
    cases.err(
        "rows of 32 values in 256-value blocks",
        &["x.gguf", "blk.0.ffn_up.weight"],
        || load_gguf(&b),
    );
    let b =
        changed(|g| g.tensor("blk.0.attn_norm.bias").dtype = format::ggml_type_id(GgmlDType::F16));
    cases.no_panic("f32 bias declared f16 (fits: garbage but loadable)", || {
        load_gguf(&b)
    });

    let b = changed(|g| g.tensor("blk.0.ffn_up.weight").dims.reverse());
    cases.err(
        "ffn_up transposed",
        &["x.gguf", "blk.0.ffn_up.weight", "[32, 128]", "[128, 32]"],
        || load_gguf(&b),
    );
    let b = changed(|g| g.tensor("blk.1.attn_output.weight").dims = vec![32]);
    cases.err(
        "attn_output 1-D",
        &["x.gguf", "blk.1.attn_output.weight", "[32]", "[32, 32]"],
        || load_gguf(&b),
    );

    let b = changed(|g| {
        g.remove_tensor("blk.1.ffn_down.weight");
    });
    cases.err(
        "missing ffn_down",
        &["x.gguf", "blk.1.ffn_down.weight", "missing"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.remove_tensor("token_embd.weight");
    });
    cases.err(
        "missing token_embd",
        &["x.gguf", "token_embd.weight", "missing"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.remove_tensor("output_norm.bias");
    });
    cases.err(
        "missing output_norm.bias",
        &["x.gguf", "output_norm.bias", "missing"],
        || load_gguf(&b),
    );
    cases.finish();
}

#[test]
fn bad_gguf_metadata() {
    let mut cases = Cases::default();
    let s = |v: &str| Value::String(v.into());

    let b = changed(|g| {
        g.set("general.architecture", s("llama"));
    });
    cases.err(
        "architecture llama",
        &["x.gguf", "general.architecture", "llama", "bloom"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.remove("general.architecture");
    });
    cases.err(
        "no architecture",
        &["x.gguf", "general.architecture"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.set("general.architecture", Value::U32(7));
    });
    cases.err(
        "architecture not a string",
        &["x.gguf", "general.architecture"],
        || load_gguf(&b),
    );

    for align in [Value::U32(0), Value::U8(0), Value::I32(0), Value::U32(3)] {
        let b = changed(|g| {
            g.set("general.alignment", align.clone());
        });
        cases.err(
            &format!("alignment {align:?}"),
            &["x.gguf", "general.alignment"],
            || load_gguf(&b),
        );
    }

    let b = changed(|g| {
        g.remove("bloom.block_count");
    });
    cases.err("no block_count", &["x.gguf", "bloom.block_count"], || {
        load_gguf(&b)
    });
    let b = changed(|g| {
        g.set("bloom.block_count", Value::U64(1 << 40));
    });
    cases.err("block_count 2^40", &["x.gguf", "n_layer"], || load_gguf(&b));
    let b = changed(|g| {
        g.set("bloom.block_count", s("two"));
    });
    cases.err(
        "block_count a string",
        &["x.gguf", "bloom.block_count"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.set("bloom.block_count", Value::U32(3));
    });
    cases.err(
        "block_count beyond the tensors",
        &["x.gguf", "blk.2.", "missing"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.set("bloom.embedding_length", Value::U32(64));
    });
    cases.err(
        "wrong embedding_length",
        &["x.gguf", "embedding_length"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.set("bloom.embedding_length", Value::U32(64))
            .set("bloom.feed_forward_length", Value::U32(256));
    });
    cases.err(
        "wrong embedding_length and ffn",
        &["x.gguf", "token_embd.weight", "[384, 32]", "[384, 64]"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.set("bloom.attention.head_count", Value::U32(5));
    });
    cases.err(
        "head_count not dividing the width",
        &["x.gguf", "n_head"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.set("bloom.attention.layer_norm_epsilon", Value::F32(f32::NAN));
    });
    cases.err("epsilon NaN", &["x.gguf", "layer_norm_epsilon"], || {
        load_gguf(&b)
    });

    // Tokenizer metadata.
    let b = changed(|g| {
        g.remove("tokenizer.ggml.tokens");
    });
    cases.err("no tokens", &["x.gguf", "tokenizer.ggml.tokens"], || {
        load_gguf(&b)
    });
    let b = changed(|g| {
        g.set(
            "tokenizer.ggml.tokens",
            Value::Array(vec![Value::U32(1); 384]),
        );
    });
    cases.err(
        "tokens not strings",
        &["x.gguf", "tokenizer.ggml.tokens", "string"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.set("tokenizer.ggml.tokens", s("abc"));
    });
    cases.err(
        "tokens not an array",
        &["x.gguf", "tokenizer.ggml.tokens"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.remove("tokenizer.ggml.merges");
    });
    cases.err("no merges", &["x.gguf", "tokenizer.ggml.merges"], || {
        load_gguf(&b)
    });
    let b = changed(|g| {
        g.set("tokenizer.ggml.merges", Value::Array(vec![s("zz qq")]));
    });
    cases.err("merge of unknown tokens", &["x.gguf", "tokenizer"], || {
        load_gguf(&b)
    });
    let b = changed(|g| {
        g.set("tokenizer.ggml.model", s("llama"));
    });
    cases.err(
        "tokenizer model llama",
        &["x.gguf", "tokenizer.ggml.model", "llama"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.set("tokenizer.ggml.model", Value::U32(3));
    });
    cases.err(
        "tokenizer model not a string",
        &["x.gguf", "tokenizer.ggml.model"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.set("tokenizer.ggml.pre", s("gpt-2"));
    });
    cases.err(
        "pre-tokenizer gpt-2",
        &["x.gguf", "tokenizer.ggml.pre", "gpt-2"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.set(
            "tokenizer.ggml.token_type",
            Value::Array(vec![Value::I32(1); 10]),
        );
    });
    cases.err(
        "10 token types",
        &["x.gguf", "tokenizer.ggml.token_type", "10"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.set(
            "tokenizer.ggml.token_type",
            Value::Array(vec![s("normal"); 384]),
        );
    });
    cases.err(
        "token types not integers",
        &["x.gguf", "tokenizer.ggml.token_type"],
        || load_gguf(&b),
    );

    // Token ids beyond the embedding table.
    let b = changed(|g| {
        let mut tokens = g.get("tokenizer.ggml.tokens").to_vec().unwrap().clone();
        let mut types = g.get("tokenizer.ggml.token_type").to_vec().unwrap().clone();
        for i in tokens.len()..500 {
            tokens.push(Value::String(format!("extra{i}")));
            types.push(Value::I32(1));
        }
        g.set("tokenizer.ggml.tokens", Value::Array(tokens))
            .set("tokenizer.ggml.token_type", Value::Array(types));
    });
    cases.err(
        "500 tokens for 384 rows",
        &["x.gguf", "499", "beyond the embedding", "384"],
        || load_gguf(&b),
    );
    let b = changed(|g| g.tensor("token_embd.weight").dims = vec![32, 200]);
    cases.err(
        "embedding of 200 rows for 384 tokens",
        &["x.gguf", "beyond the embedding", "200"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.set("tokenizer.ggml.eos_token_id", Value::U32(100_000));
    });
    cases.err(
        "eos id beyond the embedding",
        &["x.gguf", "eos", "100000", "384"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.set("tokenizer.ggml.bos_token_id", Value::U32(384));
    });
    cases.err(
        "bos id beyond the embedding",
        &["x.gguf", "bos", "384"],
        || load_gguf(&b),
    );

    // Odd but not necessarily wrong: must not panic.
    let b = changed(|g| {
        let mut tokens = g.get("tokenizer.ggml.tokens").to_vec().unwrap().clone();
        tokens[1] = s("");
        tokens[5] = s("!");
        g.set("tokenizer.ggml.tokens", Value::Array(tokens));
    });
    cases.no_panic("empty control token and a duplicate token", || {
        let model = load_gguf(&b)?;
        let ids = model.tokenizer.encode("Hello, world!")?;
        model.tokenizer.decode(&ids)
    });
    cases.finish();
}
