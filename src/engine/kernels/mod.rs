//! The crate's own matrix kernels for the shapes that dominate a forward pass, where candle's
//! generic ones are slow: q4_0 weights times q8_0 activations on x86-64, and a decode step's
//! attention read in place from the KV cache's blocks.

pub mod attention;
#[cfg(target_arch = "x86_64")]
pub mod q4_0_x86;
