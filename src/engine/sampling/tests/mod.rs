//! The sampler's unit tests: the logit processors, one by one and in `transformers`' order.
//! Draws, distributions, validation and the reference are in `draws`.

mod draws;

use super::*;

const NEG: f32 = f32::NEG_INFINITY;

fn params() -> SamplingParams {
    // Everything off: each test switches on what it checks.
    SamplingParams {
        top_k: 0,
        ..SamplingParams::default()
    }
}

fn ln_probs(p: &[f64]) -> Vec<f32> {
    p.iter().map(|&x| x.ln() as f32).collect()
}

fn kept(scores: &[f32]) -> Vec<usize> {
    (0..scores.len()).filter(|&i| scores[i] != NEG).collect()
}

// ---- repetition penalty ----

#[test]
fn repetition_penalty_divides_positive_multiplies_negative_once_per_id() {
    let p = SamplingParams {
        repetition_penalty: 2.0,
        ..params()
    };
    // context: id 0 twice, id 1 twice, id 4 once, id 5 (score 0.0) once.
    // id0:  2.0 / 2 = 1.0   (not 0.5: each id is penalised once)
    // id1: -1.0 * 2 = -2.0
    // id2:  0.5 untouched, id3: 3.0 untouched
    // id4: -2.0 * 2 = -4.0
    // id5:  0.0 is not < 0, so 0.0 / 2 = 0.0
    let out = process_logits(&p, &[2.0, -1.0, 0.5, 3.0, -2.0, 0.0], &[0, 1, 1, 4, 0, 5]);
    assert_eq!(out, vec![1.0, -2.0, 0.5, 3.0, -4.0, 0.0]);
}

#[test]
fn repetition_penalty_below_one_rewards() {
    let p = SamplingParams {
        repetition_penalty: 0.5,
        ..params()
    };
    // id0: 2.0 / 0.5 = 4.0; id1: -1.0 * 0.5 = -0.5.
    let out = process_logits(&p, &[2.0, -1.0, 0.5], &[1, 0, 0]);
    assert_eq!(out, vec![4.0, -0.5, 0.5]);
}

#[test]
fn repetition_penalty_applies_with_greedy_but_warpers_do_not() {
    let p = SamplingParams {
        greedy: true,
        repetition_penalty: 4.0,
        temperature: 0.5,
        top_k: 1,
        top_p: 0.1,
        ..params()
    };
    // id0 3.0 -> 0.75; id1 1.0 untouched: argmax is now id1. Nothing filtered, no /0.5.
    let out = process_logits(&p, &[3.0, 1.0, 0.5], &[0]);
    assert_eq!(out, vec![0.75, 1.0, 0.5]);
    let mut s = Sampler::new(p, 0).unwrap();
    assert_eq!(s.sample(&[3.0, 1.0, 0.5], &[0]).unwrap(), 1);
}

#[test]
fn process_logits_ignores_out_of_vocab_ids_like_hf() {
    let p = SamplingParams {
        repetition_penalty: 2.0,
        ..params()
    };
    assert_eq!(process_logits(&p, &[2.0, 4.0], &[1, 7]), vec![2.0, 2.0]);
}

// ---- temperature ----

#[test]
fn temperature_divides() {
    let p = SamplingParams {
        temperature: 0.5,
        ..params()
    };
    // [1, 2, -3] / 0.5 = [2, 4, -6]
    assert_eq!(
        process_logits(&p, &[1.0, 2.0, -3.0], &[]),
        vec![2.0, 4.0, -6.0]
    );
}

// ---- top-k ----

#[test]
fn top_k_keeps_ties_with_the_kth_value() {
    let logits = [1.0, 3.0, 2.0, 3.0, 2.0, 0.0];
    let with_k = |k| {
        process_logits(
            &SamplingParams {
                top_k: k,
                ..params()
            },
            &logits,
            &[],
        )
    };
    // Sorted descending: 3, 3, 2, 2, 1, 0.
    // k=3: 3rd value = 2 → remove < 2 → keep ids 1, 2, 3, 4 (four tokens, the tie is kept).
    assert_eq!(with_k(3), vec![NEG, 3.0, 2.0, 3.0, 2.0, NEG]);
    // k=2: 2nd value = 3 → keep ids 1, 3.
    assert_eq!(with_k(2), vec![NEG, 3.0, NEG, 3.0, NEG, NEG]);
    // k=1: 1st value = 3 → the tie keeps both.
    assert_eq!(with_k(1), vec![NEG, 3.0, NEG, 3.0, NEG, NEG]);
    // k=5: 5th value = 1 → only id 5 (0.0) goes.
    assert_eq!(with_k(5), vec![1.0, 3.0, 2.0, 3.0, 2.0, NEG]);
    // k beyond the vocabulary is clamped: nothing removed. k=0 is off.
    assert_eq!(with_k(100), logits.to_vec());
    assert_eq!(with_k(0), logits.to_vec());
}

// ---- top-p ----

#[test]
fn top_p_distinct_probabilities() {
    // p = [0.4, 0.3, 0.2, 0.1]; ascending: 0.1 (id3), 0.2 (id2), 0.3 (id1), 0.4 (id0);
    // cumulative: 0.1, 0.3, 0.6, 1.0. Remove cumulative <= 1 - top_p.
    let logits = ln_probs(&[0.4, 0.3, 0.2, 0.1]);
    let with_p = |top_p| {
        kept(&process_logits(
            &SamplingParams { top_p, ..params() },
            &logits,
            &[],
        ))
    };
    // top_p 0.65: 1 - p = 0.35 → remove 0.1, 0.3 → keep {id0, id1} (mass 0.7 >= 0.65).
    assert_eq!(with_p(0.65), vec![0, 1]);
    // top_p 0.5: threshold 0.5 → remove 0.1, 0.3; 0.6 > 0.5 stays → keep {id0, id1}.
    assert_eq!(with_p(0.5), vec![0, 1]);
    // top_p 0.35: threshold 0.65 → remove 0.1, 0.3, 0.6 → keep {id0}.
    assert_eq!(with_p(0.35), vec![0]);
    // top_p 0.85: threshold 0.15 → remove 0.1 only.
    assert_eq!(with_p(0.85), vec![0, 1, 2]);
    // top_p 0.01: threshold 0.99 → everything but the last, which is always kept.
    assert_eq!(with_p(0.01), vec![0]);
    // top_p 1.0 is off.
    assert_eq!(with_p(1.0), vec![0, 1, 2, 3]);
}

#[test]
fn top_p_exact_boundary_is_removed_and_ties_break_by_index() {
    // Four equal logits: probabilities exactly 0.25, cumulative exactly 0.25, 0.5, 0.75, 1.0.
    let logits = [0.0f32; 4];
    let with_p = |top_p| {
        kept(&process_logits(
            &SamplingParams { top_p, ..params() },
            &logits,
            &[],
        ))
    };
    // top_p 0.75: 1 - 0.75 = 0.25 exactly; cumulative 0.25 <= 0.25 → one token removed.
    // Ties sort in index order, so id0 (first in the ascending order) goes.
    assert_eq!(with_p(0.75), vec![1, 2, 3]);
    // top_p 0.5: threshold 0.5 → two removed (ids 0, 1).
    assert_eq!(with_p(0.5), vec![2, 3]);
    // top_p 0.25: threshold 0.75 → three removed; the last (id3) is kept.
    assert_eq!(with_p(0.25), vec![3]);
}

#[test]
fn top_p_uses_the_decimal_value_of_top_p() {
    assert_eq!(python_float(0.9), 0.9f64);
    assert_eq!((1.0 - python_float(0.9)) as f32, 0.1f32);
    assert_eq!(python_float(0.95), 0.95f64);
}

// ---- min-p ----

#[test]
fn min_p_scales_with_the_top_probability() {
    // p = [0.4, 0.3, 0.2, 0.1]; threshold = min_p * 0.4; remove p < threshold.
    let logits = ln_probs(&[0.4, 0.3, 0.2, 0.1]);
    let with_min = |min_p| {
        kept(&process_logits(
            &SamplingParams { min_p, ..params() },
            &logits,
            &[],
        ))
    };
    // 0.3 * 0.4 = 0.12 → remove 0.1.
    assert_eq!(with_min(0.3), vec![0, 1, 2]);
    // 0.6 * 0.4 = 0.24 → remove 0.2 and 0.1.
    assert_eq!(with_min(0.6), vec![0, 1]);
    // 1.0 * 0.4 = 0.4 → only the top token.
    assert_eq!(with_min(1.0), vec![0]);
    // 0 is off.
    assert_eq!(with_min(0.0), vec![0, 1, 2, 3]);
    // Equal probabilities 0.25: with min_p 1 the threshold is 0.25, and 0.25 < 0.25 is false.
    let flat = process_logits(
        &SamplingParams {
            min_p: 1.0,
            ..params()
        },
        &[0.0; 4],
        &[],
    );
    assert_eq!(kept(&flat), vec![0, 1, 2, 3]);
}

// ---- typical-p ----

#[test]
fn typical_p_by_hand() {
    // p = [0.4, 0.3, 0.2, 0.1]
    // H = -Σ p ln p = 0.4·0.91629 + 0.3·1.20397 + 0.2·1.60944 + 0.1·2.30259 = 1.27985
    // |-ln p - H| = [0.36356, 0.07588, 0.32959, 1.02273]
    // ascending: id1 (p .3), id2 (p .2), id0 (p .4), id3 (p .1); cumulative 0.3, 0.5, 0.9, 1.0
    let logits = ln_probs(&[0.4, 0.3, 0.2, 0.1]);
    let with_mass = |typical_p| {
        kept(&process_logits(
            &SamplingParams {
                typical_p,
                ..params()
            },
            &logits,
            &[],
        ))
    };
    // mass 0.6: 2 cumulative values < 0.6 → cut-off at position 2 (id0, 0.36356)
    // → remove distances > 0.36356 → id3 goes.
    assert_eq!(with_mass(0.6), vec![0, 1, 2]);
    // mass 0.4: 1 value < 0.4 → cut-off id2 (0.32959) → id0 and id3 go: the most likely
    // token is removed, as typical sampling intends.
    assert_eq!(with_mass(0.4), vec![1, 2]);
    // mass 0.2: none < 0.2 → cut-off id1 (0.07588) → only id1.
    assert_eq!(with_mass(0.2), vec![1]);
    // mass 0.95: 3 values < 0.95 → cut-off id3 → all kept. 1.0 is off.
    assert_eq!(with_mass(0.95), vec![0, 1, 2, 3]);
    assert_eq!(with_mass(1.0), vec![0, 1, 2, 3]);
}

// ---- order ----

#[test]
fn processors_run_in_hf_order() {
    // Penalty before temperature: id0 3.0 / 2 = 1.5, then / 0.5 = 3.0; others / 0.5.
    // Then top-k 2 on [3.0, 4.0, 2.0, -2.0] keeps ids 0, 1.
    // Then top-p 0.6 on softmax([3, 4]) = [0.2689, 0.7311]: ascending cumulative
    // 0.2689 <= 0.4 → id0 removed.
    let p = SamplingParams {
        repetition_penalty: 2.0,
        temperature: 0.5,
        top_k: 2,
        top_p: 0.6,
        ..params()
    };
    let out = process_logits(&p, &[3.0, 2.0, 1.0, -1.0], &[0]);
    assert_eq!(out, vec![NEG, 4.0, NEG, NEG]);
    // top-k then min-p then typical: min-p sees only the survivors of top-k.
    let p = SamplingParams {
        top_k: 3,
        min_p: 0.5,
        ..params()
    };
    // top-k 3 keeps [0, 1, 2] of ln[0.4, 0.3, 0.2, 0.1]; renormalised p = [4/9, 3/9, 2/9];
    // min-p threshold 0.5 · 4/9 = 2/9 → 2/9 < 2/9 is false, all three stay.
    let out = process_logits(&p, &ln_probs(&[0.4, 0.3, 0.2, 0.1]), &[]);
    assert_eq!(kept(&out), vec![0, 1, 2]);
}

// ---- sampling ----

#[test]
fn ascending_finite_is_the_order_of_a_sort_by_key_then_index() {
    // Ties, signed zeros, tiny and huge keys, and non-finite scores left out.
    let mut state = 12345u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    let keys: Vec<f32> = (0..5000)
        .map(|i| match next() % 7 {
            0 => 0.0,
            1 => -0.0,
            2 => (next() % 5) as f32 - 2.0,
            3 => f32::MIN_POSITIVE * (next() % 3) as f32,
            4 => -1e30 * (i % 3) as f32,
            _ => (next() as f32 / 1e6) - 2000.0,
        })
        .collect();
    let scores: Vec<f32> = (0..keys.len())
        .map(|i| if i % 11 == 0 { NEG } else { 1.0 })
        .collect();
    let mut expected: Vec<usize> = (0..keys.len()).filter(|&i| i % 11 != 0).collect();
    expected.sort_by(|&a, &b| keys[a].total_cmp(&keys[b]).then(a.cmp(&b)));
    assert_eq!(ascending_finite(&keys, &scores), expected);
}

#[test]
fn kth_largest_is_the_kth_of_a_descending_sort() {
    let mut state = 99u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    for len in [1usize, 7, 100, 3000] {
        // Few distinct values, so that ties cross the k-th place.
        let scores: Vec<f32> = (0..len)
            .map(|_| (next() % 50) as f32 * 0.25 - 3.0)
            .collect();
        let mut sorted = scores.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        for k in [1, 2, 3, 40, 1025, len].into_iter().filter(|&k| k <= len) {
            assert_eq!(
                kth_largest(&scores, k).to_bits(),
                sorted[k - 1].to_bits(),
                "len {len} k {k}"
            );
        }
    }
}

// ---- the most likely tokens ----

#[test]
fn top_log_probs_are_the_most_likely_ids_with_their_log_probs() {
    let logits = [0.5, 3.0, f32::NAN, 3.0, -1.0, NEG, 2.0];
    let top = top_log_probs(&logits, 3);
    // Ties keep the lower id first; NaN is never one of them.
    assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), [1, 3, 6]);
    for (id, logprob) in &top {
        assert_eq!(logprob.to_bits(), log_prob(&logits, *id).to_bits());
    }
    let all = top_log_probs(&logits, 100);
    assert_eq!(all.len(), 6);
    let sum: f64 = all.iter().map(|t| (t.1 as f64).exp()).sum();
    assert!((sum - 1.0).abs() < 1e-6, "{sum}");
    assert!(top_log_probs(&logits, 0).is_empty());
    assert!(top_log_probs(&[NEG, f32::NAN], 2).is_empty());
}
