//! The cache's blocks and the bounds attention keeps on their keys.

use candle_core::{Device, Tensor};

use super::*;

/// Runs `k`/`v` (`(1, 1, s, d)`) as the next piece of a one-layer, one-head cache with the
/// query `q` of its last position: that position's attention context.
fn step(cache: &mut KvCache, q: &Tensor, k: &Tensor, v: &Tensor) -> Vec<u32> {
    let s = k.dim(2).unwrap();
    cache.begin_piece(1, s).unwrap();
    let q = q
        .broadcast_as((1, 1, s, q.dim(3).unwrap()))
        .unwrap()
        .contiguous()
        .unwrap();
    let out = cache.attend(0, &q, k, v, &[1.0]).unwrap();
    cache.end_piece(s);
    let last: Vec<f32> = out
        .narrow(2, s - 1, 1)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    last.iter().map(|x| x.to_bits()).collect()
}

/// A block cut in place and written again holds new keys where its bounds were computed for
/// the old ones: the bounds of the chunks cut go with them. Here the new keys of positions
/// 100–127 outweigh every other, where the old ones were so small and far back that their
/// chunk was skipped; the context must be that of a cache written once with the new keys.
#[test]
fn a_block_cut_in_place_forgets_the_bounds_of_its_cut_chunks() {
    let device = Device::Cpu;
    let d = 64;
    let q = Tensor::ones((1, 1, 1, d), DType::F32, &device).unwrap();
    let small = |s: usize, seed: f32| {
        let data: Vec<f32> = (0..s * d)
            .map(|i| ((i as f32 * 0.618_034 + seed).fract() - 0.5) * 0.1)
            .collect();
        Tensor::from_vec(data, (1, 1, s, d), &device).unwrap()
    };
    let one = |t: &Tensor, at: usize| t.narrow(2, at, 1).unwrap();
    // Positions 100..200 written again: the first 28 keys along q.
    let new_keys = Tensor::cat(
        &[
            &Tensor::full(3f32, (1, 1, 28, d), &device).unwrap(),
            &small(72, 0.3),
        ],
        2,
    )
    .unwrap();
    let new_values = small(100, 0.4);

    let mut cut = KvCache::new(1, KvDtype::F32);
    let (old_keys, old_values) = (small(200, 0.1), small(200, 0.2));
    step(&mut cut, &q, &old_keys, &old_values);
    // A decode step computes the bounds of the whole chunks 0..192.
    step(&mut cut, &q, &one(&old_keys, 7), &one(&old_values, 7));
    cut.truncate(100);
    assert_eq!((cut.len(), cut.block_count()), (100, 1));
    step(&mut cut, &q, &new_keys, &new_values);
    let got = step(&mut cut, &q, &one(&old_keys, 7), &one(&old_values, 7));

    let mut fresh = KvCache::new(1, KvDtype::F32);
    let keys = Tensor::cat(&[&old_keys.narrow(2, 0, 100).unwrap(), &new_keys], 2).unwrap();
    let values = Tensor::cat(&[&old_values.narrow(2, 0, 100).unwrap(), &new_values], 2).unwrap();
    step(&mut fresh, &q, &keys, &values);
    let want = step(&mut fresh, &q, &one(&old_keys, 7), &one(&old_values, 7));
    assert_eq!(got, want);
}
