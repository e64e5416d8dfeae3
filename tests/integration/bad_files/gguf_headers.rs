//! GGUF files cut short, with a wrong magic or version, or hand-made headers.

use super::*;

#[test]
fn valid_gguf_loads() {
    let mut cases = Cases::default();
    let bytes = &fixture().gguf;
    cases.ok("valid gguf", || load_gguf(bytes));
    cases.ok("valid gguf, rewritten by the test's writer", || {
        load_gguf(&changed(|_| {}))
    });
    let dir = TempDir::new("valid-gguf");
    let path = dir.path().join("model.gguf");
    std::fs::write(&path, bytes).unwrap();
    if let Some(model) = cases.ok("valid gguf from a file", || {
        loader::native::load(&path, &Device::Cpu)
    }) {
        let ids = Tensor::new(&[[5u32, 6, 7]], &Device::Cpu).unwrap();
        let mut cache = model.model.new_cache();
        cases.ok("forward on the valid gguf", || {
            model.model.forward(&ids, &mut cache, &[2])
        });
    }
    cases.finish();
}

#[test]
fn truncated_gguf() {
    let mut cases = Cases::default();
    let bytes = &fixture().gguf;
    let data_start = bytes.len() - Gguf::parse(bytes).data.len();
    let mut cuts: Vec<usize> = (0..16).map(|k| bytes.len() * k / 16).collect();
    // Every 1/8 of the header (metadata and tensor infos), inside the magic, the version and the
    // counts, just before and just after the start of the tensor data.
    cuts.extend((1..8).map(|k| data_start * k / 8));
    cuts.extend([
        2,
        6,
        12,
        20,
        data_start - 1,
        data_start,
        data_start + 1,
        bytes.len() - 1,
    ]);
    for cut in cuts {
        let part = &bytes[..cut];
        cases.err(
            &format!("gguf truncated to {cut} of {} bytes", bytes.len()),
            &["x.gguf", "truncated"],
            || load_gguf(part),
        );
    }
    // Through a file too.
    let dir = TempDir::new("truncated-gguf");
    for cut in [0, 3, bytes.len() / 3] {
        let path = dir.path().join(format!("cut{cut}.gguf"));
        std::fs::write(&path, &bytes[..cut]).unwrap();
        cases.err(
            &format!("gguf file truncated to {cut} bytes"),
            &[&format!("cut{cut}.gguf"), "truncated"],
            || loader::native::load(&path, &Device::Cpu),
        );
    }
    cases.finish();
}

#[test]
fn wrong_magic_and_version() {
    let mut cases = Cases::default();
    let mut bytes = fixture().gguf.clone();
    bytes[0] = b'X';
    cases.err("wrong magic", &["x.gguf", "magic"], || load_gguf(&bytes));
    let dir = TempDir::new("magic");
    let path = dir.path().join("notgguf.bin");
    std::fs::write(&path, &bytes).unwrap();
    cases.err(
        "wrong magic, from a file",
        &["notgguf.bin", "magic"],
        || loader::native::load(&path, &Device::Cpu),
    );
    let mut bytes = fixture().gguf.clone();
    bytes[4..8].copy_from_slice(&9u32.to_le_bytes());
    cases.err("unknown version", &["x.gguf", "version"], || {
        load_gguf(&bytes)
    });
    cases.finish();
}

#[test]
fn hand_made_gguf_headers() {
    let mut cases = Cases::default();
    let huge = 1u64 << 40;
    let mut pad = Bytes::default();
    pad.raw(&[0; 64]);
    let pad = pad.0;

    let b = Bytes::header(huge, 0).raw(&pad).0.clone();
    cases.err("2^40 tensors", &["x.gguf", "tensor"], || load_gguf(&b));
    let b = Bytes::header(0, huge).raw(&pad).0.clone();
    cases.err("2^40 metadata entries", &["x.gguf", "metadata"], || {
        load_gguf(&b)
    });
    let b = Bytes::header(1 << 20, 1 << 20).raw(&pad).0.clone();
    cases.err(
        "2^20 tensors and entries in a tiny file",
        &["x.gguf", "tensors"],
        || load_gguf(&b),
    );

    let b = Bytes::header(0, 1)
        .u64(1000)
        .raw(b"general.")
        .raw(&pad)
        .0
        .clone();
    cases.err("key length past the end", &["x.gguf", "string"], || {
        load_gguf(&b)
    });
    let b = Bytes::header(0, 1)
        .str("general.name")
        .u32(8)
        .u64(huge)
        .raw(&pad)
        .0
        .clone();
    cases.err("string value of 2^40 bytes", &["x.gguf", "string"], || {
        load_gguf(&b)
    });
    let b = Bytes::header(0, 1)
        .str("general.name")
        .u32(8)
        .u64(u64::MAX)
        .raw(&pad)
        .0
        .clone();
    cases.err(
        "string value of 2^64-1 bytes",
        &["x.gguf", "string"],
        || load_gguf(&b),
    );
    let b = Bytes::header(0, 1)
        .str("tokenizer.ggml.tokens")
        .u32(9)
        .u32(8)
        .u64(huge)
        .raw(&pad)
        .0
        .clone();
    cases.err("array of 2^40 strings", &["x.gguf", "array"], || {
        load_gguf(&b)
    });
    let b = Bytes::header(0, 1)
        .str("general.name")
        .u32(99)
        .raw(&pad)
        .0
        .clone();
    cases.err("unknown value type", &["x.gguf", "type"], || load_gguf(&b));
    let b = Bytes::header(0, 1)
        .str("general.flag")
        .u32(7)
        .raw(&[7])
        .raw(&pad)
        .0
        .clone();
    cases.err("bool that is neither 0 nor 1", &["x.gguf", "bool"], || {
        load_gguf(&b)
    });
    let mut nested = Bytes::header(0, 1);
    nested.str("general.deep").u32(9);
    for _ in 0..100 {
        nested.u32(9).u64(1);
    }
    nested.u32(4).u64(0).raw(&pad);
    cases.err("arrays nested 100 deep", &["x.gguf", "depth"], || {
        load_gguf(&nested.0)
    });

    // Tensor infos.
    let b = Bytes::header(1, 0)
        .str("token_embd.weight")
        .u32(5)
        .raw(&[0; 40])
        .u32(0)
        .u64(0)
        .raw(&pad)
        .0
        .clone();
    cases.err(
        "tensor with 5 dimensions",
        &["x.gguf", "token_embd.weight", "dimensions"],
        || load_gguf(&b),
    );
    let b = Bytes::header(1, 0)
        .str("token_embd.weight")
        .u32(2)
        .u64(64)
        .u64(384)
        .u32(99)
        .u64(0)
        .raw(&pad)
        .0
        .clone();
    cases.err("tensor of unknown type", &["x.gguf", "dtype"], || {
        load_gguf(&b)
    });
    let b = Bytes::header(1, 0)
        .str("token_embd.weight")
        .u32(2)
        .u64(huge)
        .u64(huge)
        .u32(8)
        .u64(0)
        .raw(&pad)
        .0
        .clone();
    cases.err(
        "2^40 × 2^40 tensor, alone",
        &["x.gguf", "token_embd.weight"],
        || load_gguf(&b),
    );

    // A zero alignment: candle's reader divides by it.
    let b = Bytes::header(0, 1)
        .kv("general.alignment", &Value::U32(0))
        .raw(&pad)
        .0
        .clone();
    cases.err(
        "alignment 0, no tensors",
        &["x.gguf", "general.alignment"],
        || load_gguf(&b),
    );
    cases.finish();
}
