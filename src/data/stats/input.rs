//! Reading selection records in our fields and foreign spellings, extended JSON included.

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::shared::SamplingParams;

/// Accepted field names of the six tabulated parameters, in table order: the table's own name
/// first, then foreign spellings.
pub const PARAM_SPELLINGS: [&[&str]; 6] = [
    &["temperature", "temp"],
    &["top_k", "topK", "topk"],
    &["top_p", "topP", "topp"],
    &["typical_p", "typicalP", "typical"],
    &[
        "repetition_penalty",
        "repetitionPenalty",
        "rep_penalty",
        "repeat_penalty",
        "repeatPenalty",
    ],
    &[
        "max_new_tokens",
        "maxNewTokens",
        "max_tokens",
        "maxTokens",
        "length",
    ],
];

const RECORD_ID_SPELLINGS: &[&str] = &["record_id", "recordId", "_id", "id"];
const STORY_SPELLINGS: &[&str] = &["story_id", "storyId", "storyID", "story"];
const STEP_SPELLINGS: &[&str] = &[
    "step",
    "step_number",
    "stepNumber",
    "step_index",
    "stepIndex",
];
const CHOSEN_SPELLINGS: &[&str] = &["chosen", "selected", "picked", "is_chosen", "isChosen"];
const PARAMS_CONTAINERS: &[&str] = &["params", "parameters", "sampling"];

/// The six tabulated parameters of one record.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParamValues {
    /// Sampling temperature.
    pub temperature: f64,
    /// Top-k (0 = off).
    pub top_k: f64,
    /// Nucleus mass.
    pub top_p: f64,
    /// Typical-sampling mass.
    pub typical_p: f64,
    /// Repetition penalty.
    pub repetition_penalty: f64,
    /// Length in tokens.
    pub max_new_tokens: f64,
}

impl ParamValues {
    fn from_array(values: [f64; 6]) -> Self {
        let [temperature, top_k, top_p, typical_p, repetition_penalty, max_new_tokens] = values;
        Self {
            temperature,
            top_k,
            top_p,
            typical_p,
            repetition_penalty,
            max_new_tokens,
        }
    }

    pub(super) fn to_array(self) -> [f64; 6] {
        [
            self.temperature,
            self.top_k,
            self.top_p,
            self.typical_p,
            self.repetition_penalty,
            self.max_new_tokens,
        ]
    }
}

impl ParamValues {
    /// The tabulated values of a candidate's sampling parameters.
    pub fn from_params(p: &SamplingParams) -> Self {
        Self {
            temperature: f64::from(p.temperature),
            top_k: p.top_k as f64,
            top_p: f64::from(p.top_p),
            typical_p: f64::from(p.typical_p),
            repetition_penalty: f64::from(p.repetition_penalty),
            max_new_tokens: p.max_new_tokens as f64,
        }
    }
}

impl Default for ParamValues {
    /// The [`SamplingParams::default`] values.
    fn default() -> Self {
        Self::from_params(&SamplingParams::default())
    }
}

/// What the table needs from one candidate record.
#[derive(Clone, Debug, PartialEq)]
pub struct SelectionRecord {
    /// Its own id, when it has one (an `$oid` or a number as its text).
    pub record_id: Option<String>,
    /// The story it belongs to (an `$oid` or a number as its text).
    pub story_id: String,
    /// Story step, from 1.
    pub step: u32,
    /// Whether the writer took this candidate.
    pub chosen: bool,
    /// Its sampling parameters.
    pub params: ParamValues,
}

impl SelectionRecord {
    /// Reads a record in any accepted spelling (see the [module documentation](self)); the error
    /// names the field at fault.
    pub fn from_json(value: &Value) -> Result<Self> {
        let Value::Object(record) = value else {
            return Err(Error::Invalid(format!(
                "a record must be a JSON object, not {}",
                shown(value)
            )));
        };
        let record_id = match lookup(record, RECORD_ID_SPELLINGS) {
            Some((name, value)) => Some(identifier(value).map_err(|p| field_error(name, p))?),
            None => None,
        };
        let story_id = required(record, STORY_SPELLINGS, identifier)?;
        let step = required(record, STEP_SPELLINGS, step)?;
        let chosen = required(record, CHOSEN_SPELLINGS, flag)?;
        let nested = PARAMS_CONTAINERS
            .iter()
            .find_map(|name| record.get(*name).and_then(Value::as_object));
        let mut params = ParamValues::default().to_array();
        for (slot, spellings) in params.iter_mut().zip(PARAM_SPELLINGS) {
            let found = nested
                .and_then(|inner| lookup(inner, spellings))
                .or_else(|| lookup(record, spellings));
            if let Some((name, value)) = found {
                *slot = number(value).map_err(|problem| field_error(name, problem))?;
            }
        }
        Ok(Self {
            record_id,
            story_id,
            step,
            chosen,
            params: ParamValues::from_array(params),
        })
    }
}

/// The first of `spellings` present (and not null) in `object`, with the name it was found under.
fn lookup<'a>(
    object: &'a Map<String, Value>,
    spellings: &[&'static str],
) -> Option<(&'static str, &'a Value)> {
    spellings.iter().find_map(|name| match object.get(*name) {
        None | Some(Value::Null) => None,
        Some(value) => Some((*name, value)),
    })
}

/// Reads a field that must be there, in one of its spellings.
fn required<T>(
    record: &Map<String, Value>,
    spellings: &[&'static str],
    read: fn(&Value) -> std::result::Result<T, String>,
) -> Result<T> {
    let (name, value) = lookup(record, spellings).ok_or_else(|| {
        Error::Invalid(format!(
            "no `{}` field (nor {})",
            spellings[0],
            spellings[1..].join(", ")
        ))
    })?;
    read(value).map_err(|problem| field_error(name, problem))
}

fn field_error(name: &str, problem: String) -> Error {
    Error::Invalid(format!("`{name}`: {problem}"))
}

/// Whether [`SelectionRecord::from_json`] reads a top-level field of this name.
fn is_read(name: &str) -> bool {
    [
        RECORD_ID_SPELLINGS,
        STORY_SPELLINGS,
        STEP_SPELLINGS,
        CHOSEN_SPELLINGS,
        PARAMS_CONTAINERS,
    ]
    .into_iter()
    .chain(PARAM_SPELLINGS)
    .any(|spellings| spellings.contains(&name))
}

/// Deserializes a JSON value for [`SelectionRecord::from_json`] without building what it does
/// not read: of an object, only the fields it looks at are kept (others are skipped without
/// being built, which reads our records about twice as fast); any other value is kept whole, so
/// that the normaliser can say what it is.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadFields;

impl<'de> DeserializeSeed<'de> for ReadFields {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> std::result::Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ReadFields {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut kept = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if is_read(&key) {
                kept.insert(key, map.next_value()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Value::Object(kept))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
}

/// A JSON value as text for a message, cut at 60 characters.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

/// The wrapped value of a one-key extended-JSON object (`{"$numberInt": "5"}` → `"5"`).
fn extended<'a>(value: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    match value {
        Value::Object(map) if map.len() == 1 => keys.iter().find_map(|key| map.get(*key)),
        _ => None,
    }
}

/// A finite number: JSON number, numeric string or extended-JSON number.
fn number(value: &Value) -> std::result::Result<f64, String> {
    const NUMBER_KEYS: [&str; 4] = [
        "$numberInt",
        "$numberLong",
        "$numberDouble",
        "$numberDecimal",
    ];
    let parsed = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => {
            return extended(value, &NUMBER_KEYS)
                .map(number)
                .unwrap_or_else(|| Err(format!("{} is not a number", shown(value))))
        }
    };
    match parsed {
        Some(x) if x.is_finite() => Ok(x),
        Some(_) => Err(format!("{} is not a finite number", shown(value))),
        None => Err(format!("{} is not a number", shown(value))),
    }
}

/// A step: an integer from 1 to 2^32 − 1.
fn step(value: &Value) -> std::result::Result<u32, String> {
    let x = number(value)?;
    if x.fract() == 0.0 && (1.0..=f64::from(u32::MAX)).contains(&x) {
        Ok(x as u32)
    } else {
        Err(format!(
            "{} is not a step (an integer from 1)",
            shown(value)
        ))
    }
}

/// A flag: `true`/`false`, `1`/`0`, or those as strings.
fn flag(value: &Value) -> std::result::Result<bool, String> {
    let parsed = match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        _ => match number(value) {
            Ok(1.0) => Some(true),
            Ok(0.0) => Some(false),
            _ => None,
        },
    };
    parsed.ok_or_else(|| format!("{} is not a flag (true/false or 1/0)", shown(value)))
}

/// A record or story id: a non-empty string, a number, `{"$oid": ..}`, an extended-JSON
/// integer, or an object with `_id` or `id`.
fn identifier(value: &Value) -> std::result::Result<String, String> {
    match value {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Object(map) => ["$oid", "$numberInt", "$numberLong", "_id", "id"]
            .iter()
            .find_map(|key| map.get(*key))
            .map(identifier)
            .unwrap_or_else(|| Err(format!("{} is not an id", shown(value)))),
        _ => Err(format!("{} is not an id", shown(value))),
    }
}
