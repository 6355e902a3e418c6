//! Wallet seeds: from the base64 the API receives to the Ed25519 key that signs transfers.
//!
//! Two mnemonic schemes share the English BIP39 word list:
//! - TON mnemonics (24 words, the TON wallet standard): valid when
//!   `PBKDF2(HMAC-SHA512(words), "TON seed version", 390)[0] == 0`; the key is the first 32
//!   bytes of `PBKDF2(entropy, "TON default seed", 100000)`.
//! - BIP39 mnemonics (12 or 24 words, as Telegram Wallet and Tonkeeper's multichain phrases
//!   use for W5 wallets): BIP39 seed with an empty passphrase, then SLIP-0010 Ed25519 at
//!   `m/44'/607'/<account>'` (TEP-3, coin type 607). Verified against tonutils/ton-core and
//!   bip-utils (tests/vectors/gen_ton_vectors.py).
//!
//! A 24-word phrase is tried as TON first, then as BIP39. Every buffer holding the phrase or
//! key material is zeroized when dropped, and no error or `Debug` output carries any of it.

use std::fmt;

use kdf::pbkdf2_hmac_sha512;
use serde::Serialize;
use zeroize::Zeroizing;

use super::encoding::decode_base64;
use super::keys::KeyPair;

const TON_DEFAULT_SEED_ROUNDS: u32 = 100_000;
/// tonweb/ton-crypto: `max(1, floor(100000 / 256))`.
const TON_SEED_VERSION_ROUNDS: u32 = 390;
/// SLIP-0010 hardened index offset; Ed25519 supports hardened derivation only.
const HARDENED: u32 = 0x8000_0000;
/// TEP-3 coin type of TON.
const TON_COIN_TYPE: u32 = 607;

/// Which scheme a mnemonic follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SeedFormat {
    Ton,
    Bip39,
}

impl fmt::Display for SeedFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SeedFormat::Ton => "ton",
            SeedFormat::Bip39 => "bip39",
        })
    }
}

/// Why a seed was refused. The API maps every variant to `INVALID_SEED`; the message is the
/// human reason. None of them contains any part of the seed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeedError {
    #[error("seed is empty: send the base64 encoding of your wallet's mnemonic words")]
    Empty,
    #[error(
        "seed is not valid base64: send the base64 encoding of the mnemonic text \
         (the words separated by spaces), not the words themselves"
    )]
    NotBase64,
    #[error("seed decodes to bytes that are not UTF-8 text: it must be the base64 of the mnemonic words separated by spaces")]
    NotUtf8,
    #[error("mnemonic has {0} words; expected 24 words (TON mnemonic) or 12 or 24 words (BIP39 mnemonic)")]
    WrongWordCount(usize),
    #[error("mnemonic word {position} is not in the mnemonic word list; check its spelling")]
    UnknownWord {
        /// 1-based position of the first unknown word.
        position: usize,
    },
    #[error(
        "the {words} words are not a valid {schemes} mnemonic (checksum mismatch): \
         a word is probably mistyped or out of order"
    )]
    BadChecksum {
        words: usize,
        /// The schemes that were tried, for the message: "TON or BIP39" or "BIP39".
        schemes: &'static str,
    },
    #[error("this TON mnemonic is protected by a password, which is not supported")]
    PasswordProtected,
    #[error("account_index applies only to BIP39 mnemonics; a TON mnemonic has a single key")]
    AccountIndexNotApplicable,
    #[error("account_index must be between 0 and 2147483647")]
    AccountIndexOutOfRange,
}

/// A validated mnemonic. Holds the normalised phrase (lower case, single spaces) until dropped.
pub struct Seed {
    phrase: Zeroizing<String>,
    word_count: usize,
    format: SeedFormat,
}

impl Seed {
    /// Parses the API form: base64 (standard or URL-safe, padding optional) of the UTF-8
    /// mnemonic text.
    pub fn from_base64(encoded: &str) -> Result<Seed, SeedError> {
        let encoded = encoded.trim();
        if encoded.is_empty() {
            return Err(SeedError::Empty);
        }
        let bytes = decode_base64(encoded).ok_or(SeedError::NotBase64)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| SeedError::NotUtf8)?;
        Seed::from_words(text)
    }

    /// Parses what a person pastes: the words themselves, or their base64.
    pub fn from_text(input: &str) -> Result<Seed, SeedError> {
        let input = input.trim();
        if input.split_whitespace().nth(1).is_some() {
            Seed::from_words(input)
        } else {
            Seed::from_base64(input)
        }
    }

    /// Parses mnemonic words separated by any whitespace, in any letter case.
    pub fn from_words(text: &str) -> Result<Seed, SeedError> {
        let word_count = text.split_whitespace().count();
        if word_count == 0 {
            return Err(SeedError::Empty);
        }
        if word_count != 12 && word_count != 24 {
            return Err(SeedError::WrongWordCount(word_count));
        }
        // Every word list entry is lower-case ASCII, so a non-ASCII word is unknown before
        // any copying, and lower-casing ASCII never grows the text: the buffer never
        // reallocates (which would leave an unwiped copy of the phrase behind).
        let mut phrase = Zeroizing::new(String::with_capacity(text.len()));
        for (i, word) in text.split_whitespace().enumerate() {
            if !word.is_ascii() {
                return Err(SeedError::UnknownWord { position: i + 1 });
            }
            if i > 0 {
                phrase.push(' ');
            }
            let start = phrase.len();
            phrase.extend(word.chars().map(|c| c.to_ascii_lowercase()));
            if bip39::Language::English
                .find_word(&phrase[start..])
                .is_none()
            {
                return Err(SeedError::UnknownWord { position: i + 1 });
            }
        }

        if word_count == 24 {
            let entropy = ton_entropy(&phrase);
            if ton_is_basic_seed(&entropy) {
                return Ok(Seed {
                    phrase,
                    word_count,
                    format: SeedFormat::Ton,
                });
            }
            if bip39_checksum_ok(&phrase) {
                return Ok(Seed {
                    phrase,
                    word_count,
                    format: SeedFormat::Bip39,
                });
            }
            if ton_is_password_seed(&entropy) {
                return Err(SeedError::PasswordProtected);
            }
            return Err(SeedError::BadChecksum {
                words: 24,
                schemes: "TON or BIP39",
            });
        }
        if bip39_checksum_ok(&phrase) {
            Ok(Seed {
                phrase,
                word_count,
                format: SeedFormat::Bip39,
            })
        } else {
            Err(SeedError::BadChecksum {
                words: word_count,
                schemes: "BIP39",
            })
        }
    }

    pub fn format(&self) -> SeedFormat {
        self.format
    }

    pub fn word_count(&self) -> usize {
        self.word_count
    }

    /// Derives the signing key. `account_index` selects a BIP39 account (default 0); a TON
    /// mnemonic has exactly one key, so only `None` or `Some(0)` is accepted for it.
    pub fn derive_key(&self, account_index: Option<u32>) -> Result<KeyPair, SeedError> {
        match self.format {
            SeedFormat::Ton => {
                if account_index.is_some_and(|i| i != 0) {
                    return Err(SeedError::AccountIndexNotApplicable);
                }
                let entropy = ton_entropy(&self.phrase);
                let mut out = Zeroizing::new([0u8; 64]);
                pbkdf2_hmac_sha512(
                    entropy.as_slice(),
                    b"TON default seed",
                    TON_DEFAULT_SEED_ROUNDS,
                    out.as_mut_slice(),
                );
                let mut secret = Zeroizing::new([0u8; 32]);
                secret.copy_from_slice(&out[..32]);
                Ok(KeyPair::from_secret_seed(&secret))
            }
            SeedFormat::Bip39 => {
                let index = account_index.unwrap_or(0);
                if index >= HARDENED {
                    return Err(SeedError::AccountIndexOutOfRange);
                }
                let mnemonic =
                    bip39::Mnemonic::parse_in_normalized(bip39::Language::English, &self.phrase)
                        .expect("checksum verified when the seed was parsed");
                let seed = Zeroizing::new(mnemonic.to_seed_normalized(""));
                let secret = slip10_ed25519(&seed[..], &[44, TON_COIN_TYPE, index]);
                Ok(KeyPair::from_secret_seed(&secret))
            }
        }
    }
}

impl fmt::Debug for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Seed")
            .field("format", &self.format)
            .field("word_count", &self.word_count)
            .finish_non_exhaustive()
    }
}

fn hmac_sha512(key: &[u8], data: &[u8]) -> Zeroizing<[u8; 64]> {
    let mut out = Zeroizing::new([0u8; 64]);
    kdf::hmac_sha512(key, data, &mut out);
    out
}

/// TON mnemonic entropy: HMAC-SHA512 keyed by the phrase, over the (empty) password.
fn ton_entropy(phrase: &str) -> Zeroizing<[u8; 64]> {
    hmac_sha512(phrase.as_bytes(), b"")
}

fn ton_is_basic_seed(entropy: &[u8; 64]) -> bool {
    let mut out = Zeroizing::new([0u8; 64]);
    pbkdf2_hmac_sha512(
        entropy,
        b"TON seed version",
        TON_SEED_VERSION_ROUNDS,
        out.as_mut_slice(),
    );
    out[0] == 0
}

fn ton_is_password_seed(entropy: &[u8; 64]) -> bool {
    let mut out = Zeroizing::new([0u8; 64]);
    pbkdf2_hmac_sha512(entropy, b"TON fast seed version", 1, out.as_mut_slice());
    out[0] == 1
}

fn bip39_checksum_ok(phrase: &str) -> bool {
    bip39::Mnemonic::parse_in_normalized(bip39::Language::English, phrase).is_ok()
}

/// SLIP-0010 private key derivation for Ed25519 along a path of (implicitly hardened)
/// indices.
fn slip10_ed25519(seed: &[u8], path: &[u32]) -> Zeroizing<[u8; 32]> {
    let mut node = hmac_sha512(b"ed25519 seed", seed);
    for &index in path {
        let mut data = Zeroizing::new([0u8; 37]);
        data[1..33].copy_from_slice(&node[..32]);
        data[33..].copy_from_slice(&(index | HARDENED).to_be_bytes());
        node = hmac_sha512(&node[32..], &data[..]);
    }
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&node[..32]);
    key
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    const TON_WORDS: &str = "art hockey victory skill bubble stool heart gas debris april column knife gadget envelope donkey base nature dynamic artefact leg edge aisle retreat fatigue";
    // BIP39 reference vector (Trezor's test set): all-zero entropy.
    const BIP39_12: &str =
        "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn ton_mnemonic_gives_the_reference_public_key() {
        let seed = Seed::from_base64(&b64(TON_WORDS)).unwrap();
        assert_eq!(seed.format(), SeedFormat::Ton);
        let key = seed.derive_key(None).unwrap();
        assert_eq!(
            key.public_key().to_hex(),
            "020be512d3a6eecc8d9e2c0ed2b712497592bbb670948bcd06e3ee22a729e25d"
        );
    }

    #[test]
    fn ton_key_matches_tonlib_core_derivation() {
        let ours = Seed::from_words(TON_WORDS)
            .unwrap()
            .derive_key(None)
            .unwrap();
        let theirs = tonlib_core::wallet::mnemonic::Mnemonic::from_str(TON_WORDS, &None)
            .unwrap()
            .to_key_pair()
            .unwrap();
        assert_eq!(ours.public_key().0.as_slice(), theirs.public_key.as_slice());
    }

    #[test]
    fn input_forms_are_normalised() {
        let messy = format!("  {}\n", TON_WORDS.to_uppercase().replace(' ', " \t "));
        let seed = Seed::from_words(&messy).unwrap();
        assert_eq!(seed.format(), SeedFormat::Ton);
        // URL-safe alphabet and missing padding are accepted.
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(TON_WORDS);
        assert_eq!(Seed::from_base64(&url).unwrap().format(), SeedFormat::Ton);
        // The CLI accepts both the words and their base64.
        assert_eq!(Seed::from_text(TON_WORDS).unwrap().word_count(), 24);
        assert_eq!(Seed::from_text(&b64(BIP39_12)).unwrap().word_count(), 12);
    }

    #[test]
    fn the_ton_and_bip39_word_lists_are_the_same() {
        let ton = &tonlib_core::wallet::mnemonic::WORDLIST_EN_SET;
        let bip = bip39::Language::English.word_list();
        assert_eq!(ton.len(), 2048);
        for (i, w) in bip.iter().enumerate() {
            assert_eq!(ton.get(w), Some(&i), "{w}");
        }
    }

    #[test]
    fn every_bad_seed_form_has_its_own_error() {
        assert_eq!(Seed::from_base64("   ").unwrap_err(), SeedError::Empty);
        assert_eq!(
            Seed::from_base64("not base64 at all!").unwrap_err(),
            SeedError::NotBase64
        );
        let not_utf8 = base64::engine::general_purpose::STANDARD.encode([0xff, 0xfe, 0x00]);
        assert_eq!(
            Seed::from_base64(&not_utf8).unwrap_err(),
            SeedError::NotUtf8
        );
        assert_eq!(
            Seed::from_base64(&b64("abandon abandon abandon")).unwrap_err(),
            SeedError::WrongWordCount(3)
        );
        let mut words: Vec<&str> = TON_WORDS.split(' ').collect();
        words[6] = "hearth";
        assert_eq!(
            Seed::from_base64(&b64(&words.join(" "))).unwrap_err(),
            SeedError::UnknownWord { position: 7 }
        );
        words[6] = "héart";
        assert_eq!(
            Seed::from_words(&words.join(" ")).unwrap_err(),
            SeedError::UnknownWord { position: 7 }
        );
        // Two valid words swapped: neither checksum holds.
        let mut words: Vec<&str> = TON_WORDS.split(' ').collect();
        words.swap(0, 1);
        assert_eq!(
            Seed::from_base64(&b64(&words.join(" "))).unwrap_err(),
            SeedError::BadChecksum {
                words: 24,
                schemes: "TON or BIP39"
            }
        );
        let bad12 = BIP39_12.replace("about", "abandon");
        assert_eq!(
            Seed::from_base64(&b64(&bad12)).unwrap_err(),
            SeedError::BadChecksum {
                words: 12,
                schemes: "BIP39"
            }
        );
    }

    #[test]
    fn password_protected_ton_mnemonics_are_named_as_such() {
        // Made with ton-crypto's `mnemonicNew(24, "secret")` algorithm: a password seed
        // (PBKDF2(entropy, "TON fast seed version", 1)[0] == 1) that is not a basic seed and
        // becomes one with the password. ton-core agrees it is neither a valid TON nor a
        // valid BIP39 phrase without the password.
        let words = "twelve evidence erase shift table sand ritual north foster seek foot struggle gravity enlist silent sketch gossip path never legend use series erase visit";
        assert_eq!(
            Seed::from_base64(&b64(words)).unwrap_err(),
            SeedError::PasswordProtected
        );
    }

    #[test]
    fn account_index_rules() {
        let ton = Seed::from_words(TON_WORDS).unwrap();
        assert!(ton.derive_key(Some(0)).is_ok());
        assert_eq!(
            ton.derive_key(Some(1)).unwrap_err(),
            SeedError::AccountIndexNotApplicable
        );
        let bip = Seed::from_words(BIP39_12).unwrap();
        assert_eq!(bip.format(), SeedFormat::Bip39);
        assert_eq!(
            bip.derive_key(Some(HARDENED)).unwrap_err(),
            SeedError::AccountIndexOutOfRange
        );
        let k0 = bip.derive_key(None).unwrap().public_key();
        assert_eq!(bip.derive_key(Some(0)).unwrap().public_key(), k0);
        assert_ne!(bip.derive_key(Some(1)).unwrap().public_key(), k0);
    }

    #[test]
    fn errors_and_debug_never_show_the_words() {
        let seed = Seed::from_words(TON_WORDS).unwrap();
        let shown = format!("{seed:?}");
        for w in TON_WORDS.split(' ') {
            assert!(!shown.contains(w), "Debug shows {w}: {shown}");
        }
        let mut words: Vec<&str> = TON_WORDS.split(' ').collect();
        words[3] = "zzzzzz";
        let err = Seed::from_words(&words.join(" ")).unwrap_err().to_string();
        assert!(!err.contains("zzzzzz"));
        for w in TON_WORDS.split(' ') {
            assert!(
                !err.split(|c: char| !c.is_alphabetic()).any(|t| t == w),
                "{err}"
            );
        }
    }

    // SLIP-0010 test vector 1 for ed25519 (seed 000102030405060708090a0b0c0d0e0f).
    #[test]
    fn slip10_matches_the_specification_vectors() {
        let seed = hex::decode("000102030405060708090a0b0c0d0e0f").unwrap();
        let m = slip10_ed25519(&seed, &[]);
        assert_eq!(
            hex::encode(*m),
            "2b4be7f19ee27bbf30c667b642d5f4aa69fd169872f8fc3059c08ebae2eb19e7"
        );
        let m0 = slip10_ed25519(&seed, &[0]);
        assert_eq!(
            hex::encode(*m0),
            "68e0fe46dfb67e368c75379acec591dad19df3cde26e63b93a8e704f1dade7a3"
        );
        let m01 = slip10_ed25519(&seed, &[0, 1]);
        assert_eq!(
            hex::encode(*m01),
            "b1d0bad404bf35da785a64ca1ac54b2617211d2777696fbffaf208f746ae84f2"
        );
    }
}
