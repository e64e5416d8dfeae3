//! BLOOM's final hidden state of a candidate (the mean over its tokens, taken while generating)
//! in the compact form records and worker messages carry: f16 values, little-endian, in one
//! base64 string (a 1024-wide state takes 2,732 characters).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use half::f16;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A hidden-state vector rounded to f16, serialized as one base64 string.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HiddenState(pub Vec<f16>);

impl HiddenState {
    /// The vector rounded to f16.
    pub fn from_f32(values: &[f32]) -> Self {
        Self(values.iter().map(|&v| f16::from_f32(v)).collect())
    }

    /// The values as f32.
    pub fn to_f32(&self) -> Vec<f32> {
        self.0.iter().map(|v| v.to_f32()).collect()
    }

    /// Number of values.
    pub fn width(&self) -> usize {
        self.0.len()
    }

    /// The base64 text of the little-endian f16 bytes.
    pub fn to_base64(&self) -> String {
        let bytes: Vec<u8> = self.0.iter().flat_map(|v| v.to_le_bytes()).collect();
        STANDARD.encode(bytes)
    }

    /// The vector from [`Self::to_base64`]'s text.
    pub fn from_base64(text: &str) -> Result<Self, String> {
        let bytes = STANDARD
            .decode(text)
            .map_err(|e| format!("hidden state is not base64: {e}"))?;
        if bytes.len() % 2 != 0 {
            return Err(format!(
                "hidden state of {} bytes is not a whole number of f16 values",
                bytes.len()
            ));
        }
        Ok(Self(
            bytes
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]))
                .collect(),
        ))
    }
}

impl Serialize for HiddenState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for HiddenState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::from_base64(&text).map_err(serde::de::Error::custom)
    }
}

/// Serde's `with` form for an f32 vector sent as a [`HiddenState`] (rounded to f16).
pub mod as_f16 {
    use super::*;

    /// Writes the values as a [`HiddenState`].
    pub fn serialize<S: Serializer>(values: &[f32], serializer: S) -> Result<S::Ok, S::Error> {
        HiddenState::from_f32(values).serialize(serializer)
    }

    /// Reads a [`HiddenState`] as f32 values.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<f32>, D::Error> {
        Ok(HiddenState::deserialize(deserializer)?.to_f32())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_as_compact_base64() {
        let state =
            HiddenState::from_f32(&(0..1024).map(|i| i as f32 * 0.01 - 5.0).collect::<Vec<_>>());
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(json.len(), 2732 + 2, "1024 f16 values in one base64 string");
        assert_eq!(serde_json::from_str::<HiddenState>(&json).unwrap(), state);
        assert!(HiddenState::from_base64("AAAA")
            .unwrap_err()
            .contains("f16"));
        assert!(HiddenState::from_base64("not base64!").is_err());
    }
}
