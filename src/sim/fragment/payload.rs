//! Invoice payloads built like fragment.com's: op 0, then the comment text with the first
//! 35 bytes in the root cell and the rest in chained cells (FRAGMENT_PROTOCOL.md §10: a
//! 10 000-Stars payload carries its last character in a second cell).

use base64::Engine;
use tonlib_core::cell::{ArcCell, Cell, CellBuilder, TonCellError};

use crate::ton::boc;

/// Text bytes Fragment puts in the root cell.
const ROOT_TEXT_BYTES: usize = 35;
/// Text bytes per further cell.
const CELL_TEXT_BYTES: usize = 127;

pub fn stars_text(quantity: u32, reference: &str) -> String {
    format!("{quantity} Telegram Stars \n\nRef#{reference}")
}

pub fn premium_text(months: u8, reference: &str) -> String {
    format!("Telegram Premium for {months} months \n\nRef#{reference}")
}

/// The payload cell of a comment.
pub fn cell(text: &str) -> Result<ArcCell, TonCellError> {
    let bytes = text.as_bytes();
    let (head, mut rest) = bytes.split_at(bytes.len().min(ROOT_TEXT_BYTES));
    let mut chunks = Vec::new();
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(CELL_TEXT_BYTES));
        chunks.push(chunk);
        rest = tail;
    }
    let mut next: Option<Cell> = None;
    for chunk in chunks.into_iter().rev() {
        let mut b = CellBuilder::new();
        b.store_slice(chunk)?;
        if let Some(child) = next.take() {
            b.store_child(child)?;
        }
        next = Some(b.build()?);
    }
    let mut root = CellBuilder::new();
    root.store_u32(32, 0)?.store_slice(head)?;
    if let Some(child) = next {
        root.store_child(child)?;
    }
    Ok(root.build()?.to_arc())
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
