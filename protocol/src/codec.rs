//! MessagePack codec: structs are written as maps with named fields.

use serde::{Serialize, de::DeserializeOwned};

/// A message could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Serialising a value failed (a map key that is not a string, for example).
    #[error("cannot encode message: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// The bytes are not a MessagePack encoding of the expected type.
    #[error("cannot decode message: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
}

/// Encodes a value as MessagePack with named fields (`rmp_serde::to_vec_named`).
///
/// ```
/// let bytes = vigil_protocol::encode(&vigil_protocol::TokenUsage { input: 3, output: 4 }).unwrap();
/// assert_eq!(bytes[0] & 0xf0, 0x80, "a fixmap, not an array");
/// ```
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    Ok(rmp_serde::to_vec_named(value)?)
}

/// Decodes a MessagePack value; unknown fields are ignored.
///
/// ```
/// let bytes = vigil_protocol::encode(&vigil_protocol::TokenUsage { input: 3, output: 4 }).unwrap();
/// let usage: vigil_protocol::TokenUsage = vigil_protocol::decode(&bytes).unwrap();
/// assert_eq!(usage.output, 4);
/// ```
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    Ok(rmp_serde::from_slice(bytes)?)
}
