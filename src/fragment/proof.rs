//! TON Connect `ton_proof`: a wallet proves it holds its key by signing the site's challenge.
//! fragment.com binds the wallet to the session (`stel_ton_token`) with it
//! (`checkTonProofAuth`). The same code checks proofs in the simulator.
//!
//! Signed: `sha256(0xFFFF ‖ "ton-connect" ‖ sha256(M))`, with
//! `M = "ton-proof-item-v2/" ‖ workchain (i32 BE) ‖ address hash ‖ domain length (u32 LE) ‖
//! domain ‖ timestamp (u64 LE) ‖ payload`.

use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tonlib_core::TonAddress;

use crate::ton::{KeyPair, PublicKey};

/// The domain fragment.com proves for (also in the simulator, whatever its host).
pub const FRAGMENT_DOMAIN: &str = "fragment.com";

/// The 32-byte digest the wallet signs.
pub fn digest(address: &TonAddress, domain: &str, timestamp: u64, payload: &str) -> [u8; 32] {
    let mut m = Vec::with_capacity(18 + 4 + 32 + 4 + domain.len() + 8 + payload.len());
    m.extend_from_slice(b"ton-proof-item-v2/");
    m.extend_from_slice(&address.workchain.to_be_bytes());
    m.extend_from_slice(address.hash_part.as_slice());
    m.extend_from_slice(&(domain.len() as u32).to_le_bytes());
    m.extend_from_slice(domain.as_bytes());
    m.extend_from_slice(&timestamp.to_le_bytes());
    m.extend_from_slice(payload.as_bytes());
    let inner = Sha256::digest(&m);
    let mut outer = Sha256::new();
    outer.update([0xff, 0xff]);
    outer.update(b"ton-connect");
    outer.update(inner);
    outer.finalize().into()
}

/// The `proof` field of `checkTonProofAuth`.
pub fn sign(key: &KeyPair, address: &TonAddress, timestamp: u64, payload: &str) -> Value {
    let signature = key.sign(&digest(address, FRAGMENT_DOMAIN, timestamp, payload));
    json!({
        "timestamp": timestamp,
        "domain": {"lengthBytes": FRAGMENT_DOMAIN.len(), "value": FRAGMENT_DOMAIN},
        "payload": payload,
        "signature": base64::engine::general_purpose::STANDARD.encode(signature),
    })
}

/// Checks a `proof` field: returns the timestamp when the signature is valid for this key,
/// address, domain and payload.
pub fn verify(
    proof: &Value,
    key: &PublicKey,
    address: &TonAddress,
    expected_payload: &str,
) -> Result<u64, &'static str> {
    let timestamp = proof
        .get("timestamp")
        .and_then(Value::as_u64)
        .ok_or("proof without timestamp")?;
    let domain = proof
        .get("domain")
        .and_then(|d| d.get("value"))
        .and_then(Value::as_str)
        .ok_or("proof without domain")?;
    if domain != FRAGMENT_DOMAIN {
        return Err("proof for another domain");
    }
    if proof.get("payload").and_then(Value::as_str) != Some(expected_payload) {
        return Err("proof of another challenge");
    }
    let signature = proof
        .get("signature")
        .and_then(Value::as_str)
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .ok_or("proof without a 64-byte signature")?;
    if key.verify(
        &digest(address, domain, timestamp, expected_payload),
        &signature,
    ) {
        Ok(timestamp)
    } else {
        Err("bad proof signature")
    }
}

#[cfg(test)]
mod tests {
    use zeroize::Zeroizing;

    use super::*;

    #[test]
    fn a_signed_proof_verifies_and_a_tampered_one_does_not() {
        let key = KeyPair::from_secret_seed(&Zeroizing::new([5u8; 32]));
        let addr = TonAddress::new(0, [7u8; 32].into());
        let proof = sign(&key, &addr, 1_700_000_000, "abcdef");
        assert_eq!(
            verify(&proof, &key.public_key(), &addr, "abcdef"),
            Ok(1_700_000_000)
        );
        assert!(verify(&proof, &key.public_key(), &addr, "abcdeg").is_err());
        let other = TonAddress::new(0, [8u8; 32].into());
        assert!(verify(&proof, &key.public_key(), &other, "abcdef").is_err());
        let mut late = proof.clone();
        late["timestamp"] = json!(1_700_000_001);
        assert!(verify(&late, &key.public_key(), &addr, "abcdef").is_err());
    }
}
