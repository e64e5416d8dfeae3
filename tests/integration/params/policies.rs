//! The parameter policies' distributions and seeds.

use super::*;

#[test]
fn step_mean_gives_the_rounded_means() {
    let table = StepTable::bundled();
    for step in [1, 5, 10, 13] {
        let r = table.row(step);
        for (params, policy) in candidate_params(&table, &"step-mean".parse().unwrap(), step, 9) {
            assert_eq!(policy, Policy::StepMean);
            assert_eq!(params.temperature, r.temperature.mean as f32);
            assert_eq!(params.top_p, r.top_p.mean as f32);
            assert_eq!(params.typical_p, r.typical_p.mean as f32);
            assert_eq!(params.repetition_penalty, r.repetition_penalty.mean as f32);
            assert_eq!(params.top_k, r.top_k.mean.round() as usize);
            assert_eq!(
                params.max_new_tokens,
                r.max_new_tokens.mean.round() as usize
            );
            assert_eq!(params.min_p, 0.0);
        }
    }
}

#[test]
fn step_sample_matches_the_recorded_mean_and_spread() {
    let table = StepTable::bundled();
    for step in [1, 10] {
        let samples = draws(&table, Policy::StepSample, step, 5000);
        let r = table.row(step);
        for name in NAMES {
            let xs: Vec<f64> = samples.iter().map(|p| value(p, name)).collect();
            let (mean, std) = mean_std(&xs);
            let s = summary_of(&r, name);
            // Standard error of the mean is std / 70; the truncation at ±3 std keeps the mean.
            assert!(
                (mean - s.mean).abs() < 0.08 * s.std,
                "step {step} {name}: mean {mean} vs {}",
                s.mean
            );
            // Truncation at ±3 std shrinks the std by 1.3 %.
            assert!(
                (std / s.std - 1.0).abs() < 0.06,
                "step {step} {name}: std {std} vs {}",
                s.std
            );
            assert!(xs.iter().all(|x| (x - s.mean).abs() <= 3.0 * s.std + 0.5));
        }
    }
}

#[test]
fn coupled_random_stays_in_range_and_holds_the_linear_coupling() {
    let table = StepTable::bundled();
    for step in [1, 7, 14] {
        let r = table.row(step);
        let samples = draws(&table, Policy::CoupledRandom, step, 5000);
        let position = |p: &SamplingParams, name: &str| {
            let s = summary_of(&r, name);
            (value(p, name) - s.p10) / (s.p90 - s.p10)
        };
        for p in &samples {
            let sum = position(p, "temperature") + position(p, "top_k") + position(p, "top_p");
            assert!(
                (sum - COUPLED_SUM).abs() < 1e-5,
                "step {step}: sum {sum} for {p:?}"
            );
            for name in ["temperature", "top_p", "typical_p", "repetition_penalty"] {
                let u = position(p, name);
                assert!((-1e-6..=1.0 + 1e-6).contains(&u), "{name} at {u}");
            }
            let k = r.top_k.p10.round()..=r.top_k.p90.round();
            assert!(k.contains(&(p.top_k as f64)), "top_k {}", p.top_k);
        }
        // Means: the centre of each range (the table's mean for this symmetric prior).
        for name in NAMES {
            let s = summary_of(&r, name);
            let xs: Vec<f64> = samples.iter().map(|p| value(p, name)).collect();
            let (mean, _) = mean_std(&xs);
            let tolerance = 0.03 * (s.p90 - s.p10)
                + if name.ends_with('k') || name.starts_with("max") {
                    0.5
                } else {
                    0.0
                };
            assert!(
                (mean - s.mean).abs() < tolerance,
                "step {step} {name}: mean {mean} vs {}",
                s.mean
            );
        }
        // A spike in top_k is compensated: top_k and temperature move against each other.
        let k: Vec<f64> = samples.iter().map(|p| p.top_k as f64).collect();
        let t: Vec<f64> = samples.iter().map(|p| p.temperature.into()).collect();
        let corr = correlation(&k, &t);
        assert!(corr < -0.3, "step {step}: correlation {corr}");
        // Highest top_k quintile → temperature below the centre on average.
        let high: Vec<f64> = samples
            .iter()
            .filter(|p| (p.top_k as f64) > r.top_k.p10 + 0.8 * (r.top_k.p90 - r.top_k.p10))
            .map(|p| p.temperature.into())
            .collect();
        assert!(mean_std(&high).0 < r.temperature.mean);
    }
}

#[test]
fn coupled_random_carries_the_sum_without_an_empty_range() {
    // The bundled typical_p spread is real; give temperature no spread: top_k and top_p
    // carry the coupling (u(top_k) + u(top_p) = 1).
    let mut table = StepTable::bundled();
    let t = &mut table.steps[0].temperature;
    (t.std, t.p10, t.p90) = (0.0, t.mean, t.mean);
    let r = table.row(1).into_owned();
    for p in draws(&table, Policy::CoupledRandom, 1, 500) {
        assert_eq!(
            f64::from(p.temperature),
            f64::from(r.temperature.mean as f32)
        );
        let u_k = (p.top_k as f64 - r.top_k.p10) / (r.top_k.p90 - r.top_k.p10);
        let u_p = (f64::from(p.top_p) - r.top_p.p10) / (r.top_p.p90 - r.top_p.p10);
        assert!((u_k + u_p - 1.0).abs() < 1e-5, "{u_k} + {u_p}");
    }
}

#[test]
fn fixed_uses_the_fixed_parameters_and_every_policy_takes_the_untabulated_fields() {
    let fixed = SamplingParams {
        temperature: 0.7,
        top_k: 12,
        min_p: 0.05,
        stop_at_sentence_end: true,
        max_new_tokens: 20,
        ..SamplingParams::default()
    };
    let mix = PolicyMix {
        policies: Policy::ALL.to_vec(),
        fixed: fixed.clone(),
    };
    let out = candidate_params(&StepTable::bundled(), &mix, 2, 4);
    assert_eq!(out[3], (fixed, Policy::Fixed));
    for (params, _) in &out {
        assert_eq!(params.min_p, 0.05);
        assert!(params.stop_at_sentence_end);
        assert!(!params.greedy);
    }
}

#[test]
fn seeds_reproduce_and_vary() {
    let table = StepTable::bundled();
    let mix: PolicyMix = "step-sample,coupled-random,step-sample".parse().unwrap();
    let a = candidate_params(&table, &mix, 3, 42);
    assert_eq!(a, candidate_params(&table, &mix, 3, 42));
    assert_ne!(a, candidate_params(&table, &mix, 3, 43));
    // Candidates of one call differ from each other, and from the same seed at another step.
    assert_ne!(a[0].0, a[2].0);
    assert_ne!(a[0].0, candidate_params(&table, &mix, 4, 42)[0].0);
    // A candidate's parameters do not depend on the other candidates' policies.
    let other: PolicyMix = "fixed,coupled-random,step-sample".parse().unwrap();
    assert_eq!(candidate_params(&table, &other, 3, 42)[1..], a[1..]);
}

#[test]
fn recorded_draws_are_reproduced() {
    crate::common::check_pinned_param_draws();
}

#[test]
fn policy_names_parse_and_print() {
    for policy in Policy::ALL {
        assert_eq!(policy.name().parse::<Policy>().unwrap(), policy);
        assert_eq!(serde_json::to_value(policy).unwrap(), json!(policy.name()));
    }
    let mix: PolicyMix = " step-mean, coupled-random ,fixed".parse().unwrap();
    assert_eq!(
        mix.policies,
        [Policy::StepMean, Policy::CoupledRandom, Policy::Fixed]
    );
    let e = "step-mean,,fixed"
        .parse::<PolicyMix>()
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("candidate 2 of policy mix"), "{e}");
    let e = "random".parse::<Policy>().unwrap_err().to_string();
    assert!(
        e.contains("expected step-mean, step-sample, coupled-random or fixed"),
        "{e}"
    );
    assert_eq!(
        PolicyMix::default().policies,
        [Policy::StepMean, Policy::StepSample, Policy::StepSample]
    );
}
