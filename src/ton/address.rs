//! Account addresses in their three textual forms.
//!
//! TON addresses are written raw (`0:<64 hex>`) or user-friendly (48 characters of base64
//! carrying a bounceable flag, a testnet flag and a CRC). The form a user gives matters: a
//! transfer to a non-bounceable (`UQ…`) address must not set the bounce flag, because an
//! undeployed wallet would then send the coins back.

use std::fmt;

use tonlib_core::TonAddress;

use super::encoding::decode_base64;

/// How an address was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressForm {
    /// `0:<hex>`. Carries no flags; treated as non-bounceable, as tonutils, pytoniq and
    /// tonsdk all do (tests/vectors).
    Raw,
    /// User-friendly, bounceable (`EQ…`, testnet `kQ…`).
    Bounceable,
    /// User-friendly, non-bounceable (`UQ…`, testnet `0Q…`).
    NonBounceable,
}

/// A parsed address with the flags its textual form carried.
#[derive(Clone, PartialEq, Eq)]
pub struct ParsedAddress {
    pub address: TonAddress,
    pub form: AddressForm,
    /// The testnet-only flag of a user-friendly address (false for raw addresses).
    pub testnet: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("address is empty")]
    Empty,
    #[error("raw address must be <workchain>:<64 hex digits>")]
    MalformedRaw,
    #[error("user-friendly address must be 48 base64 characters")]
    WrongLength,
    #[error("address is not valid base64")]
    NotBase64,
    #[error("address has an unknown tag byte")]
    BadTag,
    #[error("address checksum does not match (mistyped address?)")]
    BadChecksum,
    #[error("only basechain (0) and masterchain (-1) addresses are supported")]
    UnsupportedWorkchain,
}

impl ParsedAddress {
    /// Parses any of the forms: raw, bounceable or non-bounceable, in standard or URL-safe
    /// base64.
    pub fn parse(s: &str) -> Result<ParsedAddress, AddressError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        if s.contains(':') {
            return parse_raw(s).map(|address| ParsedAddress {
                address,
                form: AddressForm::Raw,
                testnet: false,
            });
        }
        if s.len() != 48 {
            return Err(AddressError::WrongLength);
        }
        let bytes = decode_base64(s).ok_or(AddressError::NotBase64)?.to_vec();
        let bytes: [u8; 36] = bytes.try_into().map_err(|_| AddressError::WrongLength)?;
        let (testnet, bounceable) = match bytes[0] {
            0x11 => (false, true),
            0x51 => (false, false),
            0x91 => (true, true),
            0xD1 => (true, false),
            _ => return Err(AddressError::BadTag),
        };
        let crc = crc16_xmodem(&bytes[..34]);
        if crc.to_be_bytes() != bytes[34..36] {
            return Err(AddressError::BadChecksum);
        }
        let workchain = bytes[1] as i8 as i32;
        check_workchain(workchain)?;
        let hash: [u8; 32] = bytes[2..34].try_into().expect("32 bytes");
        Ok(ParsedAddress {
            address: TonAddress::new(workchain, hash.into()),
            form: if bounceable {
                AddressForm::Bounceable
            } else {
                AddressForm::NonBounceable
            },
            testnet,
        })
    }

    /// The bounce flag a transfer to this address should carry: only an address written in
    /// bounceable form asks for bounce.
    pub fn bounce(&self) -> bool {
        self.form == AddressForm::Bounceable
    }
}

impl fmt::Debug for ParsedAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:?})", raw(&self.address), self.form)
    }
}

/// Parses any address form, dropping the flags.
pub fn parse_address(s: &str) -> Result<TonAddress, AddressError> {
    ParsedAddress::parse(s).map(|p| p.address)
}

/// `0:<lowercase hex>`.
pub fn raw(address: &TonAddress) -> String {
    format!("{}:{}", address.workchain, address.hash_part.to_hex())
}

/// URL-safe user-friendly form, as wallets and explorers show it.
pub fn friendly(address: &TonAddress, bounceable: bool, testnet: bool) -> String {
    address.to_base64_url_flags(!bounceable, testnet)
}

fn parse_raw(s: &str) -> Result<TonAddress, AddressError> {
    let (wc, hex_part) = s.split_once(':').ok_or(AddressError::MalformedRaw)?;
    let workchain: i32 = wc.parse().map_err(|_| AddressError::MalformedRaw)?;
    check_workchain(workchain)?;
    if hex_part.len() != 64 {
        return Err(AddressError::MalformedRaw);
    }
    let bytes = hex::decode(hex_part).map_err(|_| AddressError::MalformedRaw)?;
    let hash: [u8; 32] = bytes.try_into().map_err(|_| AddressError::MalformedRaw)?;
    Ok(TonAddress::new(workchain, hash.into()))
}

fn check_workchain(workchain: i32) -> Result<(), AddressError> {
    match workchain {
        0 | -1 => Ok(()),
        _ => Err(AddressError::UnsupportedWorkchain),
    }
}

/// CRC-16/XMODEM, the checksum of user-friendly addresses.
fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= (byte as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    // From the v4r2 wallet of the shared test mnemonic (CRATES.md).
    const RAW: &str = "0:eb9d4873b9f40fda8d7429ca7c89f96da0dc5aad0be4c762881e91d7375f03d3";
    const BOUNCEABLE: &str = "EQDrnUhzufQP2o10Kcp8ifltoNxarQvkx2KIHpHXN18D07_R";
    const NON_BOUNCEABLE: &str = "UQDrnUhzufQP2o10Kcp8ifltoNxarQvkx2KIHpHXN18D0-IU";

    #[test]
    fn all_forms_parse_to_the_same_address_with_their_flags() {
        let raw_p = ParsedAddress::parse(RAW).unwrap();
        let b = ParsedAddress::parse(BOUNCEABLE).unwrap();
        let nb = ParsedAddress::parse(NON_BOUNCEABLE).unwrap();
        assert_eq!(raw_p.address, b.address);
        assert_eq!(b.address, nb.address);
        assert_eq!(raw_p.form, AddressForm::Raw);
        assert!(!raw_p.bounce());
        assert_eq!(b.form, AddressForm::Bounceable);
        assert!(b.bounce());
        assert_eq!(nb.form, AddressForm::NonBounceable);
        assert!(!nb.bounce());
        // The standard base64 alphabet spells the same address with '+' and '/'.
        let std_form = BOUNCEABLE.replace('-', "+").replace('_', "/");
        assert_eq!(ParsedAddress::parse(&std_form).unwrap().address, b.address);
    }

    #[test]
    fn formatting_matches_reference_strings() {
        let a = parse_address(RAW).unwrap();
        assert_eq!(raw(&a), RAW);
        assert_eq!(friendly(&a, true, false), BOUNCEABLE);
        assert_eq!(friendly(&a, false, false), NON_BOUNCEABLE);
        let t = ParsedAddress::parse(&friendly(&a, false, true)).unwrap();
        assert!(t.testnet);
        assert_eq!(t.form, AddressForm::NonBounceable);
    }

    #[test]
    fn broken_addresses_get_specific_errors() {
        assert_eq!(ParsedAddress::parse(""), Err(AddressError::Empty));
        assert_eq!(
            ParsedAddress::parse("0:abc"),
            Err(AddressError::MalformedRaw)
        );
        assert_eq!(
            ParsedAddress::parse(&RAW.replace("0:", "5:")),
            Err(AddressError::UnsupportedWorkchain)
        );
        assert_eq!(
            ParsedAddress::parse("EQDrnUhz"),
            Err(AddressError::WrongLength)
        );
        // One character changed: the CRC catches it.
        let typo = BOUNCEABLE.replacen('z', "y", 1);
        assert_eq!(ParsedAddress::parse(&typo), Err(AddressError::BadChecksum));
        let bad_tag = "AQDrnUhzufQP2o10Kcp8ifltoNxarQvkx2KIHpHXN18D07_R";
        assert_eq!(ParsedAddress::parse(bad_tag), Err(AddressError::BadTag));
        assert_eq!(
            ParsedAddress::parse("EQDrnUhzufQP2o10Kcp8ifltoNxarQvkx2KIHpHXN18D07!R"),
            Err(AddressError::NotBase64)
        );
    }
}
