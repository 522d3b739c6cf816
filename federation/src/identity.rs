//! The node's identity: its libp2p ed25519 key. Its peer id is derived from it, so it is kept in
//! the data directory and a restarted node is the same peer; it signs every version the node
//! writes (the store calls it as its [`Signer`]), and a member record binds the node id to it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use gridnode_store::Signer;

use crate::error::{Error, Result};
use libp2p::PeerId;
use libp2p::identity::{Keypair, PublicKey, ed25519};

/// A node's key pair (always ed25519: its peer id then carries its public key, and signing
/// cannot fail).
#[derive(Clone)]
pub struct Identity {
    keypair: Keypair,
    signing: ed25519::Keypair,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Identity").field(&self.peer_id()).finish()
    }
}

impl Identity {
    /// A new identity, kept nowhere (tests; a node keeps its own in its data directory).
    pub fn generate() -> Identity {
        Identity::from_ed25519(ed25519::Keypair::generate())
    }

    fn from_ed25519(signing: ed25519::Keypair) -> Identity {
        Identity { keypair: Keypair::from(signing.clone()), signing }
    }

    /// Reads the key at `path`, or creates one there (readable by this user only).
    pub fn load_or_create(path: &Path) -> Result<Identity> {
        match std::fs::read(path) {
            Ok(bytes) => Keypair::from_protobuf_encoding(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|keypair| keypair.try_into_ed25519().map_err(|e| e.to_string()))
                .map(Identity::from_ed25519)
                .map_err(|e| {
                    Error::Key(format!(
                        "the p2p key {} is unreadable or not ed25519 ({e}); move it away to make \
                         a new identity",
                        path.display()
                    ))
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let identity = Identity::generate();
                let bytes = identity
                    .keypair
                    .to_protobuf_encoding()
                    .map_err(|e| Error::Key(format!("cannot encode a p2p key: {e}")))?;
                let write = || -> std::io::Result<()> {
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    let mut file = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(path)?;
                    file.write_all(&bytes)?;
                    file.sync_all()
                };
                write().map_err(|e| {
                    Error::Key(format!("cannot write the p2p key {}: {e}", path.display()))
                })?;
                Ok(identity)
            }
            Err(e) => Err(Error::Key(format!("cannot read the p2p key {}: {e}", path.display()))),
        }
    }

    pub fn peer_id(&self) -> PeerId {
        self.keypair.public().to_peer_id()
    }

    pub(crate) fn keypair(&self) -> Keypair {
        self.keypair.clone()
    }
}

impl Signer for Identity {
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.signing.sign(message)
    }
}

/// The public key a peer id carries (ed25519 peer ids embed it), if it does.
pub fn public_key(peer: &PeerId) -> Option<PublicKey> {
    let hash = peer.as_ref();
    // Multihash code 0 is "identity": the digest is the protobuf-encoded public key.
    if hash.code() != 0 {
        return None;
    }
    PublicKey::try_decode_protobuf(hash.digest()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_survives_a_restart_and_a_bad_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p2p.key");
        let first = Identity::load_or_create(&path).unwrap();
        let again = Identity::load_or_create(&path).unwrap();
        assert_eq!(first.peer_id(), again.peer_id());
        std::fs::write(&path, b"not a key").unwrap();
        assert!(Identity::load_or_create(&path).unwrap_err().to_string().contains("unreadable"));
    }

    #[test]
    fn a_signature_verifies_with_the_key_its_peer_id_carries() {
        let identity = Identity::generate();
        let signature = identity.sign(b"message");
        let key = public_key(&identity.peer_id()).unwrap();
        assert!(key.verify(b"message", &signature));
        assert!(!key.verify(b"other", &signature));
        assert!(
            !public_key(&Identity::generate().peer_id()).unwrap().verify(b"message", &signature)
        );
    }
}
