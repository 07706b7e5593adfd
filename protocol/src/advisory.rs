//! The JetStream advisory a server sends when a message reached its
//! consumer's MaxDeliver (`$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>`).
//!
//! It is JSON written by nats-server, not MessagePack; the coordinator reads
//! it to fail the items of a job that will never be delivered again. It comes
//! from the network, so decoding never panics (see the fuzz targets).

use serde::Deserialize;

/// The fields of a max-deliveries advisory vigil uses; others are ignored.
///
/// ```
/// use vigil_protocol::advisory::MaxDeliveriesAdvisory;
/// let json = br#"{"type":"io.nats.jetstream.advisory.v1.max_deliver","stream":"VIGIL_JOBS",
///   "consumer":"vigil-workers-default","stream_seq":42,"deliveries":5}"#;
/// let a = MaxDeliveriesAdvisory::decode(json).unwrap();
/// assert_eq!((a.stream_seq, a.deliveries), (42, 5));
/// assert!(MaxDeliveriesAdvisory::decode(b"\xff garbage").is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
pub struct MaxDeliveriesAdvisory {
    /// The stream (`VIGIL_JOBS`).
    #[serde(default)]
    pub stream: String,
    /// The consumer that gave up.
    #[serde(default)]
    pub consumer: String,
    /// The stream sequence of the message given up.
    pub stream_seq: u64,
    /// How many times it was delivered.
    #[serde(default)]
    pub deliveries: u64,
}

impl MaxDeliveriesAdvisory {
    /// Decodes an advisory payload; `None` if it is not one.
    pub fn decode(payload: &[u8]) -> Option<Self> {
        serde_json::from_slice(payload).ok()
    }
}
