//! The two key-derivation primitives wallet seeds need, as plain functions.
//!
//! Why a crate of its own: `pbkdf2` and `hmac` are generic over the hash, so their code is
//! compiled in the crate that names `Sha512`. Naming it here, in a crate the workspace
//! optimises even in debug builds (see the root `Cargo.toml`), turns the 100 000 PBKDF2 rounds
//! of a TON mnemonic from seconds into milliseconds in tests, without optimising the whole
//! service's debug build.
//!
//! Callers own the output buffers, so they decide how they are wiped.

use hmac::{Hmac, Mac};
use sha2::Sha512;

/// HMAC-SHA512 of `data` under `key`, written to `out`.
pub fn hmac_sha512(key: &[u8], data: &[u8], out: &mut [u8; 64]) {
    let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    out.copy_from_slice(&mac.finalize().into_bytes());
}

/// PBKDF2-HMAC-SHA512 of `password` and `salt` over `rounds`, filling `out`.
pub fn pbkdf2_hmac_sha512(password: &[u8], salt: &[u8], rounds: u32, out: &mut [u8]) {
    pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, rounds, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// RFC 4231, test case 2.
    #[test]
    fn hmac_matches_rfc_4231() {
        let mut out = [0u8; 64];
        hmac_sha512(b"Jefe", b"what do ya want for nothing?", &mut out);
        assert_eq!(
            hex(&out),
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
        );
    }

    /// PBKDF2-HMAC-SHA512 of RFC 6070's inputs ("password", "salt", 1 and 2 rounds), as
    /// Python's `hashlib.pbkdf2_hmac("sha512", ...)` computes them.
    #[test]
    fn pbkdf2_matches_hashlib() {
        let mut out = [0u8; 64];
        pbkdf2_hmac_sha512(b"password", b"salt", 1, &mut out);
        assert_eq!(
            hex(&out),
            "867f70cf1ade02cff3752599a3a53dc4af34c7a669815ae5d513554e1c8cf252c02d470a285a0501bad999bfe943c08f050235d7d68b1da55e63f73b60a57fce"
        );
        pbkdf2_hmac_sha512(b"password", b"salt", 2, &mut out);
        assert_eq!(
            hex(&out),
            "e1d9c16aa681708a45f5c7c4e215ceb66e011a2e9f0040713f18aefdb866d53cf76cab2868a39b9f7840edce4fef5a82be67335c77a6068e04112754f27ccf4e"
        );
    }
}
