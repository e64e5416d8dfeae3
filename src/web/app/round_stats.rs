//! The round-stats line under the cards: how long the last round's prompt and decoding took, on
//! how many threads, and the round's speed, which the finished cards show too.

use std::cell::Cell;

use web_sys::HtmlElement;

use crate::engine::generate::GenerationStats;
use crate::web::dom::{by_testid, set_text};

/// The round-stats line and the speed of the last finished round.
pub(super) struct RoundStats {
    node: HtmlElement,
    /// Tokens per second of the last finished round (prompt and decoding), `None` before one.
    last_speed: Cell<Option<f64>>,
}

impl RoundStats {
    /// Finds the line (`round-stats`).
    pub(super) fn new() -> Self {
        Self {
            node: by_testid("round-stats"),
            last_speed: Cell::default(),
        }
    }

    /// Tokens per second of the last finished round of this story, if any.
    pub(super) fn last_speed(&self) -> Option<f64> {
        self.last_speed.get()
    }

    /// Forgets the speed of the last round (another story is opened).
    pub(super) fn forget_speed(&self) {
        self.last_speed.set(None);
    }

    /// Keeps the speed of a finished round of the open story, for its cards.
    pub(super) fn round_finished(&self, stats: &GenerationStats) {
        let seconds = stats.prefill_s + stats.decode_s;
        let tokens = stats.generated_tokens as f64;
        self.last_speed
            .set((seconds > 0.0).then(|| tokens / seconds));
    }

    /// Shows how long a round's prompt and decoding took; the figures are also in `data-*`
    /// attributes (round, candidates, prompt-tokens, reused-tokens, prefill-s, generated-tokens,
    /// decode-steps, decode-s, threads, simd, and spans with `?profile`) for benchmarks; the
    /// worker's threads end the line.
    pub(super) fn show(&self, round: u64, candidates: usize, stats: &GenerationStats) {
        let rate = |tokens: usize, seconds: f64| {
            if seconds > 0.0 {
                tokens as f64 / seconds
            } else {
                0.0
            }
        };
        let (threads, threads_text) = crate::web::threads::describe();
        let simd = if crate::web::threads::current().relaxed {
            "relaxed"
        } else {
            "simd128"
        };
        let line = format!(
            "Last round: prompt {} tokens in {:.2} s ({:.1} tok/s) · {} {}, {} tokens in {:.2} s ({:.1} tok/s, {:.1} per candidate) · {}",
            stats.prompt_tokens,
            stats.prefill_s,
            rate(stats.prompt_tokens, stats.prefill_s),
            candidates,
            if candidates == 1 { "candidate" } else { "candidates" },
            stats.generated_tokens,
            stats.decode_s,
            rate(stats.generated_tokens, stats.decode_s),
            rate(stats.generated_tokens, stats.decode_s) / candidates.max(1) as f64,
            threads_text,
        );
        set_text(&self.node, &line);
        for (name, value) in [
            ("round", round.to_string()),
            ("candidates", candidates.to_string()),
            ("prompt-tokens", stats.prompt_tokens.to_string()),
            ("reused-tokens", stats.reused_tokens.to_string()),
            ("prefill-s", stats.prefill_s.to_string()),
            ("generated-tokens", stats.generated_tokens.to_string()),
            ("decode-steps", stats.decode_steps.to_string()),
            ("decode-s", stats.decode_s.to_string()),
            ("threads", threads.to_string()),
            ("simd", simd.to_string()),
        ] {
            let _ = self.node.set_attribute(&format!("data-{name}"), &value);
        }
        // With `?profile`: the time per engine span, as JSON, for the benchmarks.
        if !stats.spans.is_empty() {
            let spans = serde_json::to_string(&stats.spans).unwrap_or_default();
            let _ = self.node.set_attribute("data-spans", &spans);
        }
    }
}
