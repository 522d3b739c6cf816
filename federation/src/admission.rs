//! Who may join: the cluster key (contract section 13).
//!
//! A closed cluster shares 32 random bytes. Right after a connection is up, each side sends the
//! other a fresh nonce on the admission protocol, and admits the peer only once it answers with
//! `HMAC-SHA256(key, domain ‖ responder ‖ requester ‖ nonce)`: proof that it holds the key,
//! without the key crossing the wire, bound to both (transport-authenticated) peer ids so an
//! answer can be neither replayed nor reflected. Until then nothing the peer sends is taken
//! (the swarm drops its gossip and refuses its sync requests), and it is disconnected after a
//! short grace. Gossip payloads are also sealed with a key derived from the cluster key
//! (XChaCha20-Poly1305): gossipsub hands messages to every subscriber it knows, and a peer that
//! is not admitted yet must not be able to read them.
//!
//! Why not libp2p's pre-shared-key transport (`pnet`): it wraps TCP only, and every node
//! listens on QUIC too. An application-level proof works the same over both.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::{Aead, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A cluster key's length in bytes.
pub const KEY_BYTES: usize = 32;
/// A challenge nonce's length in bytes.
pub const NONCE_BYTES: usize = 32;
const PROOF_DOMAIN: &[u8] = b"gridnode/admit/1\0";
const SEAL_DOMAIN: &[u8] = b"gridnode/seal/1\0";
const SEAL_NONCE_BYTES: usize = 24;

/// The shared secret of a closed cluster.
#[derive(Clone)]
pub struct ClusterKey([u8; KEY_BYTES]);

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

impl ClusterKey {
    /// A new random key.
    pub fn generate() -> ClusterKey {
        let mut key = [0; KEY_BYTES];
        OsRng.fill_bytes(&mut key);
        ClusterKey(key)
    }

    /// A key for another use, derived so that it reveals nothing of this one:
    /// `SHA-256(domain ‖ key)`, with a `domain` naming the use (`b"gridnode/grpc-hop/1\0"`).
    pub fn derive(&self, domain: &[u8]) -> [u8; KEY_BYTES] {
        Sha256::new().chain_update(domain).chain_update(self.0).finalize().into()
    }

    /// The key's file form: base64, one line.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0)
    }

    pub fn from_base64(text: &str) -> Result<ClusterKey, String> {
        let bytes = BASE64.decode(text.trim()).map_err(|e| {
            format!("not base64 ({e}); make one with 'gridnode cluster keygen FILE'")
        })?;
        let key: [u8; KEY_BYTES] = bytes.try_into().map_err(|b: Vec<u8>| {
            format!(
                "{} bytes, expected {KEY_BYTES}; make one with 'gridnode cluster keygen FILE'",
                b.len()
            )
        })?;
        Ok(ClusterKey(key))
    }

    /// Reads a key file.
    pub fn load(path: &Path) -> Result<ClusterKey> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Key(format!("cannot read the cluster key {}: {e}", path.display()))
        })?;
        ClusterKey::from_base64(&text)
            .map_err(|e| Error::Key(format!("the cluster key {} is {e}", path.display())))
    }

    /// Writes a new key to `path` (readable by this user only); refuses to overwrite a file.
    pub fn create(path: &Path) -> Result<ClusterKey> {
        let key = ClusterKey::generate();
        let write = || -> std::io::Result<()> {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            let mut file =
                std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
            writeln!(file, "{}", key.to_base64())?;
            file.sync_all()
        };
        write().map_err(|e| {
            Error::Key(format!("cannot write the cluster key {}: {e}", path.display()))
        })?;
        Ok(key)
    }

    /// Reads the key at `path`, or creates one there: `(key, created)`.
    pub fn load_or_create(path: &Path) -> Result<(ClusterKey, bool)> {
        if path.exists() {
            Ok((ClusterKey::load(path)?, false))
        } else {
            Ok((ClusterKey::create(path)?, true))
        }
    }
}

/// How a node decides whom to admit.
#[derive(Debug, Clone)]
pub enum Admission {
    /// Anyone who reaches the p2p port and speaks the cluster's protocols (`--open-cluster`).
    Open,
    /// Only peers that prove they hold this key.
    Keyed(Keys),
}

impl Admission {
    pub fn keyed(key: &ClusterKey) -> Admission {
        Admission::Keyed(Keys::new(key))
    }

    pub fn is_open(&self) -> bool {
        matches!(self, Admission::Open)
    }

    /// The answer to `requester`'s challenge, from `responder` (this node).
    pub fn answer(&self, responder: &PeerId, requester: &PeerId, challenge: &Challenge) -> Answer {
        match self {
            Admission::Open => Answer::Open,
            Admission::Keyed(keys) => {
                Answer::Proof(keys.proof(responder, requester, &challenge.nonce).to_vec())
            }
        }
    }

    /// Whether `responder`'s answer to the challenge this node (`requester`) sent admits it.
    pub fn admits(
        &self,
        responder: &PeerId,
        requester: &PeerId,
        nonce: &[u8; NONCE_BYTES],
        answer: &Answer,
    ) -> Result<(), &'static str> {
        match (self, answer) {
            (Admission::Open, Answer::Open) => Ok(()),
            (Admission::Open, Answer::Proof(_)) => Err("the peer is in a closed cluster"),
            (Admission::Keyed(_), Answer::Open) => Err("the peer is in an open cluster"),
            (Admission::Keyed(keys), Answer::Proof(proof)) => keys
                .mac(responder, requester, nonce)
                .verify_slice(proof)
                .map_err(|_| "the peer does not hold the cluster key"),
        }
    }

    /// Seals a gossip payload (a no-op in an open cluster).
    pub fn seal(&self, payload: Vec<u8>) -> Vec<u8> {
        match self {
            Admission::Open => payload,
            Admission::Keyed(keys) => keys.seal(&payload),
        }
    }

    /// Opens a sealed gossip payload, refusing one not sealed with this cluster's key.
    pub fn open<'a>(&self, sealed: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>, &'static str> {
        match self {
            Admission::Open => Ok(std::borrow::Cow::Borrowed(sealed)),
            Admission::Keyed(keys) => keys.open(sealed).map(std::borrow::Cow::Owned),
        }
    }
}

/// What a closed cluster's key is used as.
#[derive(Clone)]
pub struct Keys {
    proof: [u8; KEY_BYTES],
    seal: XChaCha20Poly1305,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

impl Keys {
    fn new(key: &ClusterKey) -> Keys {
        let seal_key = Sha256::new().chain_update(SEAL_DOMAIN).chain_update(key.0).finalize();
        Keys { proof: key.0, seal: XChaCha20Poly1305::new(&seal_key) }
    }

    fn mac(&self, responder: &PeerId, requester: &PeerId, nonce: &[u8]) -> Hmac<Sha256> {
        // HMAC takes a key of any length: this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.proof)
            .unwrap_or_else(|_| unreachable!("hmac accepts any key length"));
        mac.update(PROOF_DOMAIN);
        for id in [responder.to_bytes(), requester.to_bytes()] {
            mac.update(&(id.len() as u32).to_be_bytes());
            mac.update(&id);
        }
        mac.update(nonce);
        mac
    }

    fn proof(&self, responder: &PeerId, requester: &PeerId, nonce: &[u8]) -> [u8; 32] {
        self.mac(responder, requester, nonce).finalize().into_bytes().into()
    }

    fn seal(&self, payload: &[u8]) -> Vec<u8> {
        let mut nonce = [0; SEAL_NONCE_BYTES];
        OsRng.fill_bytes(&mut nonce);
        let mut sealed = nonce.to_vec();
        // Encrypting into a Vec cannot fail.
        sealed.extend(self.seal.encrypt(XNonce::from_slice(&nonce), payload).unwrap_or_default());
        sealed
    }

    fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, &'static str> {
        if sealed.len() < SEAL_NONCE_BYTES {
            return Err("a gossip message too short to be sealed");
        }
        let (nonce, body) = sealed.split_at(SEAL_NONCE_BYTES);
        self.seal
            .decrypt(XNonce::from_slice(nonce), body)
            .map_err(|_| "a gossip message not sealed with the cluster key")
    }
}

/// A fresh nonce for a challenge.
pub fn nonce() -> [u8; NONCE_BYTES] {
    let mut nonce = [0; NONCE_BYTES];
    OsRng.fill_bytes(&mut nonce);
    nonce
}

/// "Prove you hold the key": sent to every peer right after connecting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub nonce: [u8; NONCE_BYTES],
}

/// The answer to a [`Challenge`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// This node is in an open cluster: it holds no key.
    Open,
    /// The HMAC over both peer ids and the challenge's nonce.
    Proof(Vec<u8>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_key_holder_answers_and_the_answer_is_bound_to_both_peers() {
        let key = ClusterKey::generate();
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let ours = Admission::keyed(&key);
        let theirs = Admission::keyed(&ClusterKey::generate());
        let challenge = Challenge { nonce: nonce() };
        // b answers a's challenge.
        let good = ours.answer(&b, &a, &challenge);
        assert!(ours.admits(&b, &a, &challenge.nonce, &good).is_ok());
        assert!(ours.admits(&c, &a, &challenge.nonce, &good).is_err(), "relayed by c");
        assert!(ours.admits(&a, &b, &challenge.nonce, &good).is_err(), "reflected");
        assert!(ours.admits(&b, &a, &nonce(), &good).is_err(), "replayed");
        let wrong = theirs.answer(&b, &a, &challenge);
        assert!(ours.admits(&b, &a, &challenge.nonce, &wrong).is_err());
        assert!(ours.admits(&b, &a, &challenge.nonce, &Answer::Open).is_err());
        assert!(ours.admits(&b, &a, &challenge.nonce, &Answer::Proof(vec![])).is_err());
        let open = Admission::Open;
        assert!(open.admits(&b, &a, &challenge.nonce, &Answer::Open).is_ok());
        assert!(open.admits(&b, &a, &challenge.nonce, &good).is_err());
    }

    #[test]
    fn sealed_gossip_opens_only_with_the_same_key() {
        let key = ClusterKey::generate();
        let ours = Admission::keyed(&key);
        let sealed = ours.seal(b"hello".to_vec());
        assert_eq!(&*ours.open(&sealed).unwrap(), b"hello");
        assert!(Admission::keyed(&ClusterKey::generate()).open(&sealed).is_err());
        assert!(ours.open(b"hello").is_err());
        assert!(ours.open(&[]).is_err());
        assert_eq!(&*Admission::Open.open(b"x").unwrap(), b"x");
    }

    #[test]
    fn a_key_file_round_trips_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.key");
        let (key, created) = ClusterKey::load_or_create(&path).unwrap();
        assert!(created);
        let (again, created) = ClusterKey::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(key.0, again.0);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(ClusterKey::create(&path).is_err(), "never overwritten");
        std::fs::write(&path, "c2hvcnQ=").unwrap();
        assert!(ClusterKey::load(&path).unwrap_err().to_string().contains("expected 32"));
    }
}
