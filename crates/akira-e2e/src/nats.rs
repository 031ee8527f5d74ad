//! Reading what the tests assert on from JetStream.

use std::collections::BTreeMap;

use async_nats::jetstream;

/// One message as a stream stores it.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub subject: String,
    /// The first value of each header.
    pub headers: BTreeMap<String, String>,
    pub payload: Vec<u8>,
}

/// Reads message `sequence` of `stream` with the get-message API, like `nats stream get`.
pub async fn stored_message(
    jetstream: &jetstream::Context,
    stream: &str,
    sequence: u64,
) -> StoredMessage {
    let handle = jetstream
        .get_stream(stream)
        .await
        .unwrap_or_else(|err| panic!("cannot open stream {stream}: {err}"));
    let message = handle
        .get_raw_message(sequence)
        .await
        .unwrap_or_else(|err| panic!("cannot read message {sequence} of stream {stream}: {err}"));
    let headers = message
        .headers
        .iter()
        .filter_map(|(name, values)| {
            let value = values.first()?;
            Some((name.to_string(), value.to_string()))
        })
        .collect();
    StoredMessage {
        subject: message.subject.to_string(),
        headers,
        payload: message.payload.to_vec(),
    }
}
