//! Ed25519 key pairs of wallets.
//!
//! The secret half lives in an `ed25519_dalek::SigningKey`, which wipes itself on drop, and is
//! never printed: `Debug` shows only the public key. There is deliberately no `Clone`, so a
//! secret exists in one place for as long as the payment that needs it.

use std::fmt;

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use zeroize::Zeroizing;

/// A wallet's signing key.
pub struct KeyPair {
    signing: SigningKey,
}

impl KeyPair {
    /// Builds the key pair from a 32-byte Ed25519 private seed (what TON calls the secret key
    /// before NaCl appends the public key to it).
    pub fn from_secret_seed(seed: &Zeroizing<[u8; 32]>) -> KeyPair {
        KeyPair {
            signing: SigningKey::from_bytes(seed),
        }
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    /// Deterministic Ed25519 signature (RFC 8032), identical to NaCl's `crypto_sign`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("public_key", &self.public_key())
            .finish_non_exhaustive()
    }
}

/// An Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Checks an Ed25519 signature as the TVM's `CHKSIGNU` does.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        key.verify(message, &ed25519_dalek::Signature::from_bytes(signature))
            .is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_contains_the_secret() {
        let seed = Zeroizing::new([7u8; 32]);
        let kp = KeyPair::from_secret_seed(&seed);
        let shown = format!("{kp:?}");
        assert!(shown.contains(&kp.public_key().to_hex()));
        assert!(!shown.contains(&hex::encode([7u8; 32])));
        assert!(!shown.contains("7, 7, 7"));
    }

    #[test]
    fn signatures_verify_only_for_the_signed_message() {
        let kp = KeyPair::from_secret_seed(&Zeroizing::new([1u8; 32]));
        let sig = kp.sign(b"hello");
        assert!(kp.public_key().verify(b"hello", &sig));
        assert!(!kp.public_key().verify(b"hellp", &sig));
        let mut bad = sig;
        bad[0] ^= 1;
        assert!(!kp.public_key().verify(b"hello", &bad));
    }
}
