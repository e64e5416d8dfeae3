//! Where a run's time goes: a `tracing` layer that adds up, per span name, how often a span
//! was entered and how long it stayed open (the engine's spans: `prefill`, `decode_step`,
//! `attention`, `attend`, `mlp`, `matmul`, `lm_head`, `sample`). The same layer works natively
//! (`storywriter bench --profile`) and in the web worker (`?profile` on the page's address).
//!
//! Written here rather than taken from a crate: the crates that time spans either write trace
//! files (`tracing-chrome`, native only) or keep histograms (`tracing-timing`, which does not
//! build for wasm32); a sum per name is all a profile from inside one run needs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tracing::span::{Attributes, Id};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use web_time::Instant;

/// The time spent in spans of one name, nested spans of other names included.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpanTotal {
    /// The span's name.
    pub name: String,
    /// How many times a span of that name was entered.
    pub calls: u64,
    /// Seconds spent inside them in all.
    pub seconds: f64,
}

/// Totals per span name, shared between the layer and whoever reads them.
#[derive(Clone, Debug, Default)]
pub struct SpanTimes {
    totals: Arc<Mutex<BTreeMap<&'static str, (u64, f64)>>>,
}

/// When the span was last entered (kept in the span's extensions).
struct Entered(Instant);

impl SpanTimes {
    /// Installs the layer as the global `tracing` subscriber (with every level enabled) and
    /// returns its totals; `None` when a subscriber is installed already.
    pub fn install() -> Option<Self> {
        let times = Self::default();
        let subscriber = tracing_subscriber::registry().with(times.clone());
        tracing::subscriber::set_global_default(subscriber).ok()?;
        Some(times)
    }

    /// The totals so far, the longest first.
    pub fn totals(&self) -> Vec<SpanTotal> {
        let mut totals: Vec<SpanTotal> = self
            .lock()
            .iter()
            .map(|(name, &(calls, seconds))| SpanTotal {
                name: name.to_string(),
                calls,
                seconds,
            })
            .collect();
        totals.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        totals
    }

    /// Forgets the totals so far.
    pub fn reset(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, (u64, f64)>> {
        // A panic while the lock was held leaves totals that are still worth reading.
        self.totals.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for SpanTimes {
    fn on_new_span(&self, _attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {}

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().replace(Entered(Instant::now()));
        }
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let Some(Entered(start)) = span.extensions_mut().remove::<Entered>() else {
            return;
        };
        let seconds = start.elapsed().as_secs_f64();
        let mut totals = self.lock();
        let total = totals.entry(span.name()).or_default();
        total.0 += 1;
        total.1 += seconds;
    }
}

/// The totals as a table (name, calls, seconds, milliseconds per call), for a terminal.
pub fn table(totals: &[SpanTotal]) -> String {
    let mut out = format!(
        "{:<15} {:>8} {:>10} {:>12}\n",
        "span", "calls", "seconds", "ms per call"
    );
    for t in totals {
        out += &format!(
            "{:<15} {:>8} {:>10.3} {:>12.3}\n",
            t.name,
            t.calls,
            t.seconds,
            1e3 * t.seconds / t.calls.max(1) as f64
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_spans_add_up_per_name() {
        let times = SpanTimes::default();
        let subscriber = tracing_subscriber::registry().with(times.clone());
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..3 {
                let _outer = tracing::info_span!("outer").entered();
                for _ in 0..2 {
                    let _inner = tracing::trace_span!("inner").entered();
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            }
        });
        let totals = times.totals();
        let get = |name: &str| totals.iter().find(|t| t.name == name).cloned().unwrap();
        let (outer, inner) = (get("outer"), get("inner"));
        assert_eq!((outer.calls, inner.calls), (3, 6));
        assert!(inner.seconds >= 0.012, "{inner:?}");
        assert!(outer.seconds >= inner.seconds, "{outer:?} {inner:?}");
        assert_eq!(totals[0].name, "outer");
        assert!(table(&totals).contains("inner"));
        times.reset();
        assert!(times.totals().is_empty());
    }
}
