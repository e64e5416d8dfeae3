//! The model's most likely tokens at a position of a generated candidate, computed again after
//! the round (`alternatives::top_alternatives`): they are the distribution the records'
//! log-probabilities come from, whether the held caches of the round are reused or not.

use std::ops::ControlFlow;
use std::path::PathBuf;

use candle_core::Device;
use storywriter::alternatives::{top_alternatives, Alternative};
use storywriter::generate::{CachePool, CandidateSpec};
use storywriter::loader::{native, LoadedModel};
use storywriter::sampling::SamplingParams;

fn tiny() -> LoadedModel {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-pow2");
    native::load(&path, &Device::Cpu).unwrap()
}

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() <= 1e-4 * a.abs().max(b.abs()).max(1e-6)
}

fn check_shape(top: &[Alternative], k: usize) {
    assert_eq!(top.len(), k);
    assert!(top.windows(2).all(|w| w[0].prob >= w[1].prob), "{top:?}");
    assert!(top.iter().all(|a| a.prob > 0.0));
    let sum: f32 = top.iter().map(|a| a.prob).sum();
    assert!(sum <= 1.0 + 1e-5, "{sum}");
}

#[test]
fn the_top_alternative_of_a_greedy_token_is_that_token_with_its_recorded_probability() {
    let model = tiny();
    let prompt = model.tokenizer.encode("The lighthouse keeper").unwrap();
    let greedy = SamplingParams {
        greedy: true,
        max_new_tokens: 10,
        ..SamplingParams::default()
    };
    let sampled = SamplingParams {
        temperature: 1.5,
        top_k: 0,
        max_new_tokens: 10,
        ..SamplingParams::default()
    };
    let specs = [greedy, sampled].map(|params| CandidateSpec { params, seed: 3 });
    let mut pool = CachePool::default();
    let generation = pool
        .generate(&model.model, &model.tokenizer, &prompt, &specs, |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
    let held = pool.len();
    let fresh = CachePool::new(0);
    let k = 5;
    for (at, candidate) in generation.candidates.iter().enumerate() {
        assert!(
            candidate.ids.len() >= 2,
            "candidate {at}: {:?}",
            candidate.ids
        );
        for (i, (&id, &logprob)) in candidate.ids.iter().zip(&candidate.logprobs).enumerate() {
            let before = [prompt.as_slice(), &candidate.ids[..i]].concat();
            let top = top_alternatives(&model.model, &model.tokenizer, &pool, &before, k).unwrap();
            check_shape(&top, k);
            // From the held caches or from nothing: the same distribution.
            let again =
                top_alternatives(&model.model, &model.tokenizer, &fresh, &before, k).unwrap();
            for (a, b) in top.iter().zip(&again) {
                assert_eq!(a.id, b.id);
                assert!(close(a.prob, b.prob), "{a:?} {b:?}");
            }
            let recorded = logprob.exp();
            if at == 0 {
                assert_eq!(top[0].id, id, "greedy token {i}");
                assert!(
                    close(top[0].prob, recorded),
                    "{} vs {recorded}",
                    top[0].prob
                );
                assert_eq!(top[0].text, model.tokenizer.decode(&[id]).unwrap());
            } else {
                // A drawn token is no likelier than the most likely one, and shows its recorded
                // probability when it is among the top ones.
                assert!(recorded <= top[0].prob * (1.0 + 1e-4));
                if let Some(same) = top.iter().find(|a| a.id == id) {
                    assert!(close(same.prob, recorded), "{} vs {recorded}", same.prob);
                }
            }
        }
    }
    assert_eq!(pool.len(), held, "the held caches are left as they were");
    let error = top_alternatives(&model.model, &model.tokenizer, &pool, &[], k).unwrap_err();
    assert!(error.to_string().contains("no tokens"), "{error}");
}
