//! Invoice payloads built like fragment.com's: op 0, then the comment text with the first
//! 35 bytes in the root cell and the rest in chained cells (FRAGMENT_PROTOCOL.md §10: a
//! 10 000-Stars payload carries its last character in a second cell).

use base64::Engine;
use tonlib_core::cell::{ArcCell, Cell, TonCellError};

use crate::ton::boc;
use crate::ton::transfer::snake_comment;

/// Text bytes Fragment puts in the root cell.
const ROOT_TEXT_BYTES: usize = 35;

pub fn stars_text(quantity: u32, reference: &str) -> String {
    format!("{quantity} Telegram Stars \n\nRef#{reference}")
}

pub fn premium_text(months: u8, reference: &str) -> String {
    format!("Telegram Premium for {months} months \n\nRef#{reference}")
}

/// The payload cell of a comment.
pub fn cell(text: &str) -> Result<ArcCell, TonCellError> {
    Ok(snake_comment(text, ROOT_TEXT_BYTES)?.to_arc())
}

/// Base64 as Fragment sends payloads: a BOC without CRC, standard alphabet, no padding.
pub fn encode(cell: &Cell) -> Result<String, TonCellError> {
    Ok(base64::engine::general_purpose::STANDARD_NO_PAD.encode(boc::serialize(cell, false)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Payloads fragment.com returned (FRAGMENT_PROTOCOL.md §10).
    #[test]
    fn payloads_match_the_real_ones_byte_for_byte() {
        let small = cell(&stars_text(50, "QE9AF7lOm")).unwrap();
        assert_eq!(
            encode(&small).unwrap(),
            "te6ccgEBAQEAJwAASgAAAAA1MCBUZWxlZ3JhbSBTdGFycyAKClJlZiNRRTlBRjdsT20"
        );
        let large = cell(&stars_text(10_000, "zIh0OE1vd")).unwrap();
        assert_eq!(large.references().len(), 1);
        assert_eq!(
            encode(&large).unwrap(),
            "te6ccgEBAgEALQABTgAAAAAxMDAwMCBUZWxlZ3JhbSBTdGFycyAKClJlZiN6SWgwT0UxdgEAAmQ"
        );
    }
}
