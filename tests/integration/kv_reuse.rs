//! The caches kept between rounds: a long prompt run in block-sized pieces, candidates sharing
//! the prompt's cache, rounds that run only what the kept caches do not hold, the window that
//! moves once per overflow, and records that replay to the same tokens from scratch.

use std::ops::ControlFlow;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use storywriter::generate::{generate, CachePool, CandidateSpec, Generation};
use storywriter::kv_cache::BLOCK;
use storywriter::loader::{native, LoadedModel};
use storywriter::model::KvDtype;
use storywriter::sampling::SamplingParams;
use storywriter::session::{candidate_specs, round_input_ids, write_round};
use storywriter::story::{PlannedCandidate, Story};

fn tiny() -> LoadedModel {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-pow2");
    native::load(&path, &Device::Cpu).unwrap()
}

/// The tiny model with caches of each type: what holds for the f32 cache holds for the f16 one.
fn tiny_with_each_cache() -> [LoadedModel; 2] {
    [KvDtype::F32, KvDtype::F16].map(|dtype| {
        let mut model = tiny();
        model.model.set_kv_dtype(dtype);
        model
    })
}

/// `n` token ids of a repetitive but varied text.
fn long_ids(model: &LoadedModel, n: usize) -> Vec<u32> {
    let text: String = (0..n)
        .map(|i| format!("word{} ", i * 7 % 13))
        .collect::<String>();
    let ids = model.tokenizer.encode(&text).unwrap();
    assert!(ids.len() >= n, "{} ids for {n} words", ids.len());
    ids[..n].to_vec()
}

fn last_logits(model: &LoadedModel, parts: &[&[u32]]) -> Vec<f32> {
    let mut cache = model.model.new_cache();
    let mut logits = vec![];
    for part in parts {
        let input = Tensor::new(*part, &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        logits = model
            .model
            .forward(&input, &mut cache, &[part.len() - 1])
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
    }
    logits
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn specs(seed: u64, max_new_tokens: usize) -> Vec<CandidateSpec> {
    (0..3)
        .map(|i| CandidateSpec {
            params: SamplingParams {
                temperature: 0.8 + 0.1 * i as f32,
                top_k: 30,
                max_new_tokens: max_new_tokens + i,
                ..SamplingParams::default()
            },
            seed: seed + i as u64,
        })
        .collect()
}

fn run(
    pool: &mut CachePool,
    model: &LoadedModel,
    ids: &[u32],
    specs: &[CandidateSpec],
) -> Generation {
    pool.generate(&model.model, &model.tokenizer, ids, specs, |_| {
        ControlFlow::Continue(())
    })
    .unwrap()
}

#[test]
fn a_long_prompt_runs_in_blocks_like_token_by_token() {
    for model in tiny_with_each_cache() {
        long_prompt_in_blocks(&model);
    }
}

fn long_prompt_in_blocks(model: &LoadedModel) {
    let ids = long_ids(model, 2 * BLOCK + 37);
    let whole = last_logits(model, &[&ids]);
    let (a, rest) = ids.split_at(5);
    let (b, c) = rest.split_at(BLOCK + 3);
    let pieces = last_logits(model, &[a, b, c]);
    assert!(max_abs_diff(&whole, &pieces) < 1e-4);
    // A few tokens one at a time, then the rest in one piece that crosses two blocks.
    let mut parts: Vec<&[u32]> = ids[..6].chunks(1).collect();
    parts.push(&ids[6..]);
    assert!(max_abs_diff(&whole, &last_logits(model, &parts)) < 1e-4);
    // The last token alone: a decode step over every block, against the pieces' running
    // softmax over the same keys.
    let (last, before) = ids.split_last().unwrap();
    let decoded = last_logits(model, &[before, std::slice::from_ref(last)]);
    assert!(max_abs_diff(&whole, &decoded) < 1e-4);
    // The last seven as a short piece (a writer's typed words): one pass over every block in
    // place, each of its queries seeing the keys up to its own. Its six other positions' keys
    // and values, computed in another order, feed the last one's: in f32 that moves the logits
    // by about 1e-5; an f16 cache rounds some of them to the neighbouring f16 (2⁻¹¹ apart),
    // about 1.5e-4. (Without the causal mask, already the five-token first piece above fails.)
    let (story, typed) = ids.split_at(ids.len() - 7);
    let diff = max_abs_diff(&whole, &last_logits(model, &[story, typed]));
    let tolerance = match model.model.kv_dtype() {
        KvDtype::F32 => 1e-4,
        KvDtype::F16 => 5e-4,
    };
    assert!(
        diff < tolerance,
        "{diff} ({:?} cache)",
        model.model.kv_dtype()
    );
}

#[test]
fn forked_candidates_share_the_prompt_cache() {
    for model in tiny_with_each_cache() {
        forked_share(&model);
    }
}

fn forked_share(model: &LoadedModel) {
    let ids = long_ids(model, BLOCK + 10);
    let mut cache = model.model.new_cache();
    let input = Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    model.model.forward(&input, &mut cache, &[0]).unwrap();
    let forked = cache.fork(3).unwrap();
    assert_eq!(forked.batch_size(), 3);
    assert_eq!(
        forked.bytes(),
        cache.bytes(),
        "forking copies no keys or values"
    );
    // One decode step adds only the candidates' own positions, in a block sized by reserve.
    let mut forked = forked;
    forked.reserve(4);
    let step = Tensor::new(&[[5u32], [6], [7]], &Device::Cpu).unwrap();
    model.model.forward(&step, &mut forked, &[0]).unwrap();
    let config = model.model.config();
    let bytes = match model.model.kv_dtype() {
        KvDtype::F32 => 4,
        KvDtype::F16 => 2,
    };
    let per_position = 2 * config.n_layer * config.hidden_size * bytes;
    assert_eq!(forked.bytes(), cache.bytes() + 3 * 4 * per_position);
}

#[test]
fn kept_caches_give_the_tokens_of_a_fresh_run() {
    for model in tiny_with_each_cache() {
        kept_caches_like_fresh(&model);
    }
}

fn kept_caches_like_fresh(model: &LoadedModel) {
    let mut pool = CachePool::default();
    let opening = model.tokenizer.encode("The lighthouse keeper").unwrap();
    let first = run(&mut pool, model, &opening, &specs(1, 8));
    assert_eq!(first.stats.reused_tokens, 0);
    assert_eq!(first.stats.prompt_tokens, opening.len());
    // The writer picks candidate 2 and types a few words: only those and the candidate's last
    // token are run.
    let picked = &first.candidates[1];
    let typed = model.tokenizer.encode(" and the sea").unwrap();
    let story = [opening.as_slice(), &picked.ids, &typed].concat();
    let second = run(&mut pool, model, &story, &specs(7, 8));
    assert_eq!(
        second.stats.reused_tokens,
        opening.len() + picked.ids.len() - 1
    );
    assert_eq!(second.stats.prompt_tokens, typed.len() + 1);
    let fresh = generate(&model.model, &model.tokenizer, &story, &specs(7, 8), |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    same_tokens(&second, &fresh, model.model.kv_dtype());
    // Regenerating the same round reuses all but the last token; undoing to the opening
    // reuses the opening.
    let again = run(&mut pool, model, &story, &specs(9, 8));
    assert_eq!(again.stats.prompt_tokens, 1);
    let undone = run(&mut pool, model, &opening, &specs(3, 8));
    assert_eq!(undone.stats.prompt_tokens, 1);
    // A hand edit in the middle keeps the part before the edit.
    let edited = [&story[..4], &[11, 12, 13][..]].concat();
    let after_edit = run(&mut pool, model, &edited, &specs(5, 8));
    assert_eq!(after_edit.stats.reused_tokens, 4);
}

#[test]
fn a_moved_window_forgets_the_caches_it_cannot_start_from() {
    let model = tiny();
    let mut pool = CachePool::default();
    let ids = long_ids(&model, BLOCK + 40);
    run(&mut pool, &model, &ids[..BLOCK], &specs(1, 4));
    assert_eq!(
        pool.len(),
        4,
        "the prompt's cache and the three candidates'"
    );
    // The window moved past the story's first tokens: the caches of the old window go before
    // the new one is built, and only the new round's are held.
    let moved = run(&mut pool, &model, &ids[40..], &specs(2, 4));
    assert_eq!(moved.stats.reused_tokens, 0);
    assert_eq!(pool.len(), 4);
    // Going back to the old window starts from scratch, and tokens match a fresh run.
    let back = run(&mut pool, &model, &ids[..BLOCK], &specs(3, 4));
    assert_eq!(back.stats.reused_tokens, 0);
    let fresh = generate(
        &model.model,
        &model.tokenizer,
        &ids[..BLOCK],
        &specs(3, 4),
        |_| ControlFlow::Continue(()),
    )
    .unwrap();
    same_tokens(&back, &fresh, KvDtype::F32);
}

/// The same tokens and texts, and log-probabilities equal up to float rounding (the kept cache
/// was computed in other pieces than a fresh run's: in f32 its keys and values differ in the
/// last bits; an f16 cache rounds some of those to the neighbouring f16, 2⁻¹¹ apart).
fn same_tokens(a: &Generation, b: &Generation, dtype: KvDtype) {
    let tolerance = match dtype {
        KvDtype::F32 => 1e-4,
        KvDtype::F16 => 1e-3,
    };
    assert_eq!(a.candidates.len(), b.candidates.len());
    for (x, y) in a.candidates.iter().zip(&b.candidates) {
        assert_eq!(
            (&x.ids, &x.text),
            (&y.ids, &y.text),
            "same tokens as from scratch"
        );
        let diff = max_abs_diff(&x.logprobs, &y.logprobs);
        eprintln!("{dtype:?} cache: log-probabilities differ by {diff:e} at most");
        assert!(diff < tolerance, "{dtype:?}: {diff} ≥ {tolerance}");
    }
}

/// Three manual candidates of six tokens, seeded from `seed`.
pub fn plan(seed: u64) -> Vec<PlannedCandidate> {
    specs(seed, 6)
        .into_iter()
        .map(|spec| PlannedCandidate {
            params: spec.params,
            policy: "manual".into(),
            param_table: None,
            seed: spec.seed,
            design: None,
        })
        .collect()
}

#[test]
fn a_story_continues_its_records_ids_and_replays() {
    let mut model = tiny();
    // A small context, so that the story overflows it a few times.
    model.model.set_context_length(64);
    let mut pool = CachePool::default();
    let mut story = Story::new("Once upon a time");
    let mut starts = vec![];
    for round in 0..10u64 {
        let records = write_round(&mut story, &model, &mut pool, &plan(round * 3), |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
        let chosen = records[round as usize % 3].clone();
        story.choose(&chosen.record_id, "human").unwrap();
        // The next round continues the chosen candidate's ids exactly.
        let next = round_input_ids(
            &model,
            &story.text,
            story.token_prefix().as_ref(),
            &candidate_specs(&plan(0)),
        )
        .unwrap();
        let continued = chosen.input_ids.followed_by(&chosen.output_ids).to_vec();
        if next.len() == continued.len() {
            assert_eq!(next, continued);
        } else {
            // The window moved: by a multiple of a quarter of the context.
            assert!(next.len() < continued.len());
            assert!(continued.ends_with(&next));
            starts.push(continued.len() - next.len());
            assert_eq!((continued.len() - next.len()) % 16, 0);
        }
        assert!(next.len() + 8 <= 64, "room for the longest candidate");
    }
    assert!(!starts.is_empty(), "the story outgrew the context");
    assert!(
        starts.len() < 12,
        "the window moves once per overflow, not every round"
    );
    // Every record replays from scratch to the same tokens.
    for record in &story.records {
        let spec = CandidateSpec {
            params: record.params.clone(),
            seed: record.seed,
        };
        let replay = generate(
            &model.model,
            &model.tokenizer,
            &record.input_ids.to_vec(),
            &[spec],
            |_| ControlFlow::Continue(()),
        )
        .unwrap();
        assert_eq!(
            replay.candidates[0].ids, record.output_ids,
            "step {}",
            record.step
        );
    }
}
