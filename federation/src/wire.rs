//! What peers say to each other, and the limits every message is held to before anything else
//! looks at it.
//!
//! Two gossipsub topics per cluster carry [`Gossip`]: new versions as they are written, and
//! heartbeats. One request-response protocol per cluster carries anti-entropy ([`SyncRequest`],
//! [`SyncResponse`]), one more the admission handshake. A version travels as the store's own
//! encoded envelope with its author's signature, so what a peer merges is byte for byte what
//! the author stored and signed.
//!
//! Every message from a peer is decoded through one door, the store's bounded decoder
//! ([`gridnode_store::decode_bounded`]: a size limit on what it may allocate and a nesting
//! limit), after a byte limit on what is read at all ([`Codec`], [`Gossip::decode`]).

use std::marker::PhantomData;
use std::sync::Arc;

use gridnode_store::{Collection, Hlc};
use libp2p::StreamProtocol;
use libp2p::futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::liveness::Heartbeat;
use crate::rejections::{Reason, Rejection, Rejections};

/// Largest gossip message (gossipsub's `max_transmit_size`). Versions that do not fit are
/// announced by key instead and fetched.
pub const MAX_GOSSIP_BYTES: usize = 4 << 20;
/// Largest anti-entropy request.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
/// Largest anti-entropy response; a fetch answer stops adding versions at [`FETCH_REPLY_BYTES`].
pub const MAX_RESPONSE_BYTES: usize = 32 << 20;
/// Where a fetch answer stops adding versions (the requester asks again for the rest).
pub const FETCH_REPLY_BYTES: usize = 8 << 20;
/// Largest version that replicates: the store refuses to write a larger record, so none is
/// offered, and one a peer sends is refused.
pub const MAX_VERSION_BYTES: usize = gridnode_store::MAX_VERSION_BYTES;
/// Largest admission message.
pub const MAX_ADMISSION_BYTES: usize = 256;
/// Most keys one fetch may ask for.
pub const MAX_FETCH_KEYS: usize = 512;
/// Most buckets one summaries request may ask for.
pub const MAX_SUMMARY_BUCKETS: usize = 32;
/// Most versions or summaries one gossip message may carry.
pub const MAX_GOSSIP_ITEMS: usize = 1024;
/// How far into the future a version's clock may be (against this node's wall clock): a peer
/// with a clock far ahead would otherwise win every conflict for as long as it is ahead.
pub const MAX_CLOCK_AHEAD_MS: u64 = 60_000;

/// One record's key: its collection (`Collection as u8`) and id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Key {
    pub collection: u8,
    pub id: String,
}

impl Key {
    pub fn new(collection: Collection, id: impl Into<String>) -> Key {
        Key { collection: collection as u8, id: id.into() }
    }

    /// The collection, when the number names one.
    pub fn collection(&self) -> Option<Collection> {
        Collection::from_u8(self.collection)
    }
}

/// Which version of a record a node holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub key: Key,
    pub hlc: Hlc,
    pub tombstone: bool,
}

/// One record version: the store's encoded envelope (header and record), and its author's
/// signature over [`gridnode_store::signed_message`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub key: Key,
    #[serde(with = "bytes")]
    pub envelope: Vec<u8>,
    #[serde(with = "bytes")]
    pub signature: Vec<u8>,
}

/// A gossip message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Gossip {
    /// New versions written on the publishing node.
    Versions(Vec<Version>),
    /// New versions too large to gossip: fetch them from the publisher.
    Announce(Vec<Summary>),
    /// The publisher is alive, and this is its load.
    Heartbeat(Heartbeat),
}

/// An anti-entropy request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SyncRequest {
    /// The requester's digest buckets; the answer names the buckets that differ.
    Digest(Vec<u64>),
    /// The versions the responder holds in these buckets.
    Summaries(Vec<u16>),
    /// These records' versions.
    Fetch(Vec<Key>),
}

/// An anti-entropy response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SyncResponse {
    Differing(Vec<u16>),
    Summaries(Vec<Summary>),
    /// The versions found, in the order asked, stopping at [`FETCH_REPLY_BYTES`].
    Versions(Vec<Version>),
    /// The request was malformed or too large.
    Refused(String),
}

impl Gossip {
    /// Decodes a gossip message, refusing oversized and malformed input.
    pub fn decode(bytes: &[u8]) -> Result<Gossip, String> {
        if bytes.len() > MAX_GOSSIP_BYTES {
            return Err(format!("a gossip message of {} bytes", bytes.len()));
        }
        let (gossip, used): (Gossip, usize) = gridnode_store::decode_counted(bytes)
            .map_err(|e| format!("an undecodable gossip message: {e}"))?;
        if used != bytes.len() {
            return Err("a gossip message with trailing bytes".into());
        }
        let items = match &gossip {
            Gossip::Versions(versions) => versions.len(),
            Gossip::Announce(summaries) => summaries.len(),
            Gossip::Heartbeat(_) => 1,
        };
        if items == 0 || items > MAX_GOSSIP_ITEMS {
            return Err(format!("a gossip message with {items} items"));
        }
        Ok(gossip)
    }

    pub fn encode(&self) -> Vec<u8> {
        // Encoding plain data into a Vec cannot fail.
        gridnode_store::encode(self).unwrap_or_default()
    }
}

/// The request-response codec of every protocol between peers: a message is the store's
/// encoding of the value, read up to a byte limit and decoded with the store's limits.
/// Counts what it refuses when it has somewhere to ([`Codec::counting`]): libp2p drops a request
/// whose bytes do not decode without telling the behaviour.
#[derive(Debug)]
pub struct Codec<Req, Resp> {
    max_request: usize,
    max_response: usize,
    rejections: Option<Arc<Rejections>>,
    types: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> Clone for Codec<Req, Resp> {
    fn clone(&self) -> Self {
        Codec {
            rejections: self.rejections.clone(),
            ..Codec::new(self.max_request, self.max_response)
        }
    }
}

impl<Req, Resp> Codec<Req, Resp> {
    pub fn new(max_request: usize, max_response: usize) -> Self {
        Codec { max_request, max_response, rejections: None, types: PhantomData }
    }

    /// The same codec, counting what it cannot decode.
    pub fn counting(self, rejections: Arc<Rejections>) -> Self {
        Codec { rejections: Some(rejections), ..self }
    }

    async fn read<T, V>(&self, io: &mut T, limit: usize) -> std::io::Result<V>
    where
        T: AsyncRead + Unpin + Send,
        V: DeserializeOwned,
    {
        let mut bytes = Vec::new();
        io.take(limit as u64 + 1).read_to_end(&mut bytes).await?;
        decode_message(&bytes, limit).map_err(|e| {
            if let Some(rejections) = &self.rejections {
                let rejection =
                    Rejection::new(Reason::Undecodable, format!("a request or answer: {e}"));
                rejections.record(&"a peer's stream", &rejection);
            }
            std::io::Error::new(std::io::ErrorKind::InvalidData, e)
        })
    }
}

fn encode_message<V: Serialize>(value: &V, limit: usize) -> std::io::Result<Vec<u8>> {
    let bytes = gridnode_store::encode(value).map_err(std::io::Error::other)?;
    if bytes.len() > limit {
        return Err(std::io::Error::other(format!("a message over {limit} bytes")));
    }
    Ok(bytes)
}

impl<Req, Resp> libp2p::request_response::Codec for Codec<Req, Resp>
where
    Req: Serialize + DeserializeOwned + Send,
    Resp: Serialize + DeserializeOwned + Send,
{
    type Protocol = StreamProtocol;
    type Request = Req;
    type Response = Resp;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> std::io::Result<Req>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.read(io, self.max_request).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> std::io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.read(io, self.max_response).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Req,
    ) -> std::io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let bytes = encode_message(&request, self.max_request)?;
        io.write_all(&bytes).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Resp,
    ) -> std::io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let bytes = encode_message(&response, self.max_response)?;
        io.write_all(&bytes).await
    }
}

/// Decodes a sync message the way [`Codec`] does (for tests and fuzzing of the one door).
pub fn decode_message<V: DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<V, String> {
    if bytes.len() > limit {
        return Err(format!("a message over {limit} bytes"));
    }
    let (value, used) = gridnode_store::decode_counted(bytes).map_err(|e| e.to_string())?;
    if used != bytes.len() {
        return Err("a message with trailing bytes".into());
    }
    Ok(value)
}

impl SyncRequest {
    /// Checks the request's shape before it is served.
    pub fn check(&self) -> Result<(), String> {
        match self {
            SyncRequest::Digest(buckets) if buckets.len() != crate::digest::BUCKETS => {
                Err(format!(
                    "a digest of {} buckets, expected {}",
                    buckets.len(),
                    crate::digest::BUCKETS
                ))
            }
            SyncRequest::Summaries(buckets)
                if buckets.len() > MAX_SUMMARY_BUCKETS
                    || buckets.iter().any(|b| usize::from(*b) >= crate::digest::BUCKETS) =>
            {
                Err(format!("a summaries request of {} buckets", buckets.len()))
            }
            SyncRequest::Fetch(keys) if keys.len() > MAX_FETCH_KEYS => {
                Err(format!("a fetch of {} keys, at most {MAX_FETCH_KEYS}", keys.len()))
            }
            _ => Ok(()),
        }
    }
}

/// `Vec<u8>` as a byte string (compact in CBOR, where a plain `Vec<u8>` is an array of numbers).
mod bytes {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_byte_buf(BytesVisitor)
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
            Ok(bytes.to_vec())
        }

        fn visit_byte_buf<E: Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(bytes)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut bytes = Vec::new();
            while let Some(byte) = seq.next_element()? {
                bytes.push(byte);
            }
            Ok(bytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gossip_round_trips_and_garbage_is_refused() {
        let versions = Gossip::Versions(vec![Version {
            key: Key::new(Collection::Tools, "t"),
            envelope: vec![1, 2, 3],
            signature: vec![4; 64],
        }]);
        assert_eq!(Gossip::decode(&versions.encode()), Ok(versions.clone()));
        let mut trailing = versions.encode();
        trailing.push(0);
        assert!(Gossip::decode(&trailing).is_err());
        assert!(Gossip::decode(&Gossip::Versions(vec![]).encode()).is_err());
        for garbage in [&b""[..], &[0xff; 32], &[0, 0xfc, 0xff, 0xff, 0xff, 0xff]] {
            assert!(Gossip::decode(garbage).is_err());
        }
        assert!(Gossip::decode(&vec![0; MAX_GOSSIP_BYTES + 1]).is_err());
    }

    #[test]
    fn requests_out_of_shape_are_refused() {
        assert!(SyncRequest::Digest(vec![0; 3]).check().is_err());
        assert!(SyncRequest::Digest(vec![0; crate::digest::BUCKETS]).check().is_ok());
        assert!(SyncRequest::Summaries(vec![256]).check().is_err());
        assert!(SyncRequest::Summaries(vec![0; MAX_SUMMARY_BUCKETS + 1]).check().is_err());
        assert!(
            SyncRequest::Fetch(vec![Key::new(Collection::Tools, "t"); MAX_FETCH_KEYS + 1])
                .check()
                .is_err()
        );
    }
}
