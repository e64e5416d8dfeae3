//! Reading a table: every field checked and named in errors, out-of-range values clamped with a warning.

use std::fmt;

use serde_json::{Map, Value};

use super::{
    default_row, Param, ParamSummary, StepParams, StepTable, TableSource, TableWarning,
    SOURCE_KINDS, STEP_PARAMS_SCHEMA,
};
use crate::error::{Error, Result};

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// Walks a parsed table, collecting warnings and naming the field in every error.
pub(super) struct Reader<'a> {
    pub(super) origin: &'a str,
    pub(super) vocab_size: f64,
    pub(super) warnings: Vec<TableWarning>,
}

impl Reader<'_> {
    fn error(&self, path: &str, message: impl fmt::Display) -> Error {
        Error::Format(format!("{}: {path}: {message}", self.origin))
    }

    fn warn(&mut self, path: String, message: String) {
        self.warnings.push(TableWarning { path, message });
    }

    fn object<'v>(
        &mut self,
        value: &'v Value,
        path: &str,
        known: &[&str],
    ) -> Result<&'v Map<String, Value>> {
        let Value::Object(map) = value else {
            let what = if path.is_empty() { "(table)" } else { path };
            return Err(self.error(what, format!("expected an object, got {}", describe(value))));
        };
        for key in map.keys().filter(|k| !known.contains(&k.as_str())) {
            self.warn(join(path, key), "unknown field, ignored".into());
        }
        Ok(map)
    }

    fn field<'v>(&self, map: &'v Map<String, Value>, path: &str, key: &str) -> Result<&'v Value> {
        map.get(key)
            .ok_or_else(|| self.error(&join(path, key), "missing field"))
    }

    fn string(&self, map: &Map<String, Value>, path: &str, key: &str) -> Result<String> {
        match self.field(map, path, key)? {
            Value::String(s) => Ok(s.clone()),
            other => Err(self.error(
                &join(path, key),
                format!("expected a string, got {}", describe(other)),
            )),
        }
    }

    /// A non-negative integer below 2^53.
    fn integer(&self, map: &Map<String, Value>, path: &str, key: &str) -> Result<u64> {
        let value = self.field(map, path, key)?;
        match value.as_u64() {
            Some(n) if n < 1 << 53 => Ok(n),
            _ => Err(self.error(
                &join(path, key),
                format!(
                    "expected a non-negative integer below 2^53, got {}",
                    describe(value)
                ),
            )),
        }
    }

    /// A number; `null` (serde_json's NaN) reads as NaN.
    fn number(&self, map: &Map<String, Value>, path: &str, key: &str) -> Result<f64> {
        match self.field(map, path, key)? {
            Value::Null => Ok(f64::NAN),
            Value::Number(n) => n
                .as_f64()
                .ok_or_else(|| self.error(&join(path, key), format!("{n} is not representable"))),
            other => Err(self.error(
                &join(path, key),
                format!("expected a number, got {}", describe(other)),
            )),
        }
    }

    pub(super) fn table(&mut self, value: &Value) -> Result<StepTable> {
        let map = self.object(value, "", &["schema", "source", "global", "steps"])?;
        let schema = self.string(map, "", "schema")?;
        if schema != STEP_PARAMS_SCHEMA {
            return Err(self.error(
                "schema",
                format!("expected {STEP_PARAMS_SCHEMA:?}, got {schema:?}"),
            ));
        }
        let source = self.source(self.field(map, "", "source")?)?;
        let global = self.row(self.field(map, "", "global")?, "global", &default_row())?;
        if global.step != 0 {
            return Err(self.error(
                "global.step",
                format!("expected 0 for the global row, got {}", global.step),
            ));
        }
        let Value::Array(items) = self.field(map, "", "steps")? else {
            let got = describe(&map["steps"]);
            return Err(self.error("steps", format!("expected an array, got {got}")));
        };
        let mut steps: Vec<StepParams> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let path = format!("steps[{i}]");
            let row = self.row(item, &path, &global)?;
            let previous = steps.last().map_or(0, |r| r.step);
            if row.step <= previous {
                return Err(self.error(
                    &join(&path, "step"),
                    format!(
                        "expected a step greater than {previous} (steps start at 1 and increase), got {}",
                        row.step
                    ),
                ));
            }
            steps.push(row);
        }
        Ok(StepTable {
            schema,
            source,
            global,
            steps,
        })
    }

    fn source(&mut self, value: &Value) -> Result<TableSource> {
        let path = "source";
        let map = self.object(
            value,
            path,
            &[
                "kind",
                "description",
                "stories",
                "records",
                "chosen",
                "created",
                "generator",
                "shrinkage",
            ],
        )?;
        let kind = self.string(map, path, "kind")?;
        if !SOURCE_KINDS.contains(&kind.as_str()) {
            return Err(self.error(
                "source.kind",
                format!("expected \"prior\" or \"selection-logs\", got {kind:?}"),
            ));
        }
        Ok(TableSource {
            kind,
            description: self.string(map, path, "description")?,
            stories: self.integer(map, path, "stories")?,
            records: self.integer(map, path, "records")?,
            chosen: self.integer(map, path, "chosen")?,
            created: self.string(map, path, "created")?,
            generator: self.string(map, path, "generator")?,
            shrinkage: self.string(map, path, "shrinkage")?,
        })
    }

    /// One row; NaN means and stds fall back to `fallback`'s.
    fn row(&mut self, value: &Value, path: &str, fallback: &StepParams) -> Result<StepParams> {
        let mut known = vec!["step", "count"];
        known.extend(Param::ALL.map(Param::name));
        let map = self.object(value, path, &known)?;
        let step = self.integer(map, path, "step")?;
        let step = u32::try_from(step).map_err(|_| {
            self.error(
                &join(path, "step"),
                format!("expected a step below 2^32, got {step}"),
            )
        })?;
        let count = self.integer(map, path, "count")?;
        let fallback_name = if path == "global" {
            "the default"
        } else {
            "the global row's"
        };
        let mut row = default_row();
        row.step = step;
        row.count = count;
        for param in Param::ALL {
            let summary = self.summary(
                self.field(map, path, param.name())?,
                &join(path, param.name()),
                param,
                (param.of(fallback), fallback_name),
            )?;
            *param.of_mut(&mut row) = summary;
        }
        Ok(row)
    }

    fn summary(
        &mut self,
        value: &Value,
        path: &str,
        param: Param,
        (fallback, fallback_name): (&ParamSummary, &str),
    ) -> Result<ParamSummary> {
        let map = self.object(value, path, &["mean", "std", "p10", "p50", "p90"])?;
        let (lo, hi) = match param {
            Param::TopK => (0.0, self.vocab_size),
            _ => param.bounds(),
        };
        let clamp = |reader: &mut Self, key: &str, v: f64| -> f64 {
            let c = v.clamp(lo, hi);
            if c != v {
                reader.warn(
                    join(path, key),
                    format!(
                        "{v} is outside the sane range {lo}..={hi} of {}; clamped to {c}",
                        param.name()
                    ),
                );
            }
            c
        };
        let mut mean = self.number(map, path, "mean")?;
        if mean.is_nan() {
            self.warn(
                join(path, "mean"),
                format!(
                    "not a number; replaced by {fallback_name} mean {}",
                    fallback.mean
                ),
            );
            mean = fallback.mean;
        }
        let mean = clamp(self, "mean", mean);
        let mut std = self.number(map, path, "std")?;
        if std.is_nan() {
            self.warn(
                join(path, "std"),
                format!(
                    "not a number; replaced by {fallback_name} std {}",
                    fallback.std
                ),
            );
            std = fallback.std;
        }
        let mut std_max = hi - lo;
        if param == Param::TopK {
            std_max = std_max.min((hi - mean) / 3.0);
        }
        let std_clamped = std.clamp(0.0, std_max);
        if std_clamped != std {
            let why = if param == Param::TopK && std > 0.0 {
                "a std must be >= 0 and keep mean + 3 std within the vocabulary"
            } else {
                "a std must be >= 0 and at most the width of the sane range"
            };
            self.warn(
                join(path, "std"),
                format!("{std}: {why}; clamped to {std_clamped}"),
            );
        }
        let mut percentiles = [0.0; 3];
        for (slot, key) in percentiles.iter_mut().zip(["p10", "p50", "p90"]) {
            let mut v = self.number(map, path, key)?;
            if v.is_nan() {
                self.warn(
                    join(path, key),
                    format!("not a number; replaced by the mean {mean}"),
                );
                v = mean;
            }
            *slot = clamp(self, key, v);
        }
        if !(percentiles[0] <= percentiles[1] && percentiles[1] <= percentiles[2]) {
            self.warn(
                path.to_string(),
                format!(
                    "percentiles out of order (p10 {}, p50 {}, p90 {}); sorted",
                    percentiles[0], percentiles[1], percentiles[2]
                ),
            );
            percentiles.sort_by(f64::total_cmp);
        }
        let [p10, p50, p90] = percentiles;
        Ok(ParamSummary {
            mean,
            std: std_clamped,
            p10,
            p50,
            p90,
        })
    }
}
