//! Base64 as TON tools write it: standard or URL-safe alphabet, with or without `=` padding
//! (Fragment sends payloads unpadded, wallets write addresses URL-safe).

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use zeroize::Zeroizing;

const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes base64 in either alphabet, padded or not. Both the normalised copy of the input
/// and the output are wiped when dropped, so this also serves for seeds.
pub fn decode_base64(input: &str) -> Option<Zeroizing<Vec<u8>>> {
    // Sized up front: a growing buffer would leave unwiped copies behind.
    let input = input.trim();
    let mut std_alphabet = Zeroizing::new(String::with_capacity(input.len()));
    std_alphabet.extend(input.chars().map(|c| match c {
        '-' => '+',
        '_' => '/',
        c => c,
    }));
    LENIENT
        .decode(std_alphabet.as_bytes())
        .ok()
        .map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_alphabets_with_and_without_padding() {
        let bytes = [0xfb, 0xff, 0x01, 0x02];
        for s in ["+/8BAg==", "-_8BAg", "+/8BAg", "-_8BAg=="] {
            assert_eq!(decode_base64(s).unwrap().as_slice(), &bytes, "{s}");
        }
        assert!(decode_base64("not base64!").is_none());
    }
}
