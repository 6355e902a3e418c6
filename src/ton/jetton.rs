//! Jettons (TEP-74): the message bodies a payment in a jetton such as USDT is made of, built
//! and read cell for cell as tonutils does (tests/vectors/jetton_vectors.json).
//!
//! A wallet pays jettons by sending `transfer` to its own jetton wallet (with TON for the
//! gas); that jetton wallet sends `internal_transfer` to the recipient's jetton wallet, which
//! credits it and tells the recipient (`transfer_notification`, when TON is forwarded) and
//! returns what gas is left to the response address (`excesses`). Amounts are `coins`
//! (`VarUInteger 16`); this module keeps them in `JettonAmount`, whole units of the jetton's
//! smallest denomination (USDT: 10⁻⁶).

use num_bigint::BigUint;
use num_traits::ToPrimitive;
use tonlib_core::cell::{ArcCell, Cell, CellBuilder, CellParser, TonCellError};
use tonlib_core::TonAddress;

use super::amount::Nanoton;

pub const OP_TRANSFER: u32 = 0x0f8a_7ea5;
pub const OP_INTERNAL_TRANSFER: u32 = 0x178d_4519;
pub const OP_TRANSFER_NOTIFICATION: u32 = 0x7362_d09c;
pub const OP_EXCESSES: u32 = 0xd532_76db;

pub use events::JettonAmount;

fn store_coins(b: &mut CellBuilder, amount: u64) -> Result<(), TonCellError> {
    b.store_coins(&BigUint::from(amount))?;
    Ok(())
}

fn load_coins(p: &mut CellParser, what: &str) -> Result<u64, TonCellError> {
    p.load_coins()?
        .to_u64()
        .ok_or_else(|| TonCellError::InvalidCellData(format!("{what} does not fit in 64 bits")))
}

/// `addr_none` for `None`, as wallets write an absent response address.
fn store_optional_address(b: &mut CellBuilder, a: Option<&TonAddress>) -> Result<(), TonCellError> {
    match a {
        Some(a) => b.store_raw_address(a)?,
        None => b.store_u8(2, 0)?,
    };
    Ok(())
}

fn load_optional_address(p: &mut CellParser) -> Result<Option<TonAddress>, TonCellError> {
    use tonlib_core::tlb_types::block::msg_address::{MsgAddress, MsgAddressExt};
    match p.load_msg_address()? {
        MsgAddress::Ext(MsgAddressExt::None(_)) => Ok(None),
        other => TonAddress::from_msg_address(other)
            .map(Some)
            .map_err(|e| TonCellError::InvalidCellData(e.to_string())),
    }
}

/// `forward_payload:(Either Cell ^Cell)`.
#[derive(Clone, Debug, PartialEq)]
pub enum ForwardPayload {
    /// Nothing: the left branch with no bits (what a `None` payload is written as).
    None,
    /// In a reference: the right branch (what tonutils writes for a payload).
    Ref(ArcCell),
    /// In the body itself: the left branch, the rest of the body.
    Inline(Cell),
}

impl ForwardPayload {
    fn store(&self, b: &mut CellBuilder) -> Result<(), TonCellError> {
        match self {
            ForwardPayload::None => {
                b.store_bit(false)?;
            }
            ForwardPayload::Ref(cell) => {
                b.store_bit(true)?.store_reference(cell)?;
            }
            ForwardPayload::Inline(cell) => {
                b.store_bit(false)?.store_cell(cell)?;
            }
        }
        Ok(())
    }

    fn load(p: &mut CellParser) -> Result<ForwardPayload, TonCellError> {
        if p.load_bit()? {
            let cell = p.next_reference()?;
            p.ensure_empty()?;
            return Ok(ForwardPayload::Ref(cell));
        }
        let rest = p.load_remaining()?;
        if rest.bit_len() == 0 && rest.references().is_empty() {
            Ok(ForwardPayload::None)
        } else {
            Ok(ForwardPayload::Inline(rest))
        }
    }

    /// The payload cell, however it was written (an empty cell for `None`).
    pub fn cell(&self) -> Cell {
        match self {
            ForwardPayload::None => Cell::default(),
            ForwardPayload::Ref(cell) => cell.as_ref().clone(),
            ForwardPayload::Inline(cell) => cell.clone(),
        }
    }
}

/// `transfer` (op 0x0f8a7ea5): the owner asks its jetton wallet to send `amount` to
/// `destination`'s jetton wallet.
#[derive(Clone, Debug, PartialEq)]
pub struct JettonTransfer {
    pub query_id: u64,
    pub amount: JettonAmount,
    /// The recipient's owner address (not its jetton wallet).
    pub destination: TonAddress,
    /// Where the gas left over goes (usually the sender).
    pub response_destination: Option<TonAddress>,
    pub custom_payload: Option<ArcCell>,
    /// TON the recipient is sent with the `transfer_notification`.
    pub forward_ton_amount: Nanoton,
    pub forward_payload: ForwardPayload,
}

impl JettonTransfer {
    pub fn to_cell(&self) -> Result<Cell, TonCellError> {
        let mut b = CellBuilder::new();
        b.store_u32(32, OP_TRANSFER)?.store_u64(64, self.query_id)?;
        store_coins(&mut b, self.amount.0)?;
        b.store_raw_address(&self.destination)?;
        store_optional_address(&mut b, self.response_destination.as_ref())?;
        match &self.custom_payload {
            Some(cell) => b.store_bit(true)?.store_reference(cell)?,
            None => b.store_bit(false)?,
        };
        store_coins(&mut b, self.forward_ton_amount.as_u64())?;
        self.forward_payload.store(&mut b)?;
        b.build()
    }

    /// Reads a `transfer` body; anything else (another op, a short or overlong body) is an
    /// error.
    pub fn parse(cell: &Cell) -> Result<JettonTransfer, TonCellError> {
        let mut p = cell.parser();
        let op = p.load_u32(32)?;
        if op != OP_TRANSFER {
            return Err(TonCellError::InvalidCellData(format!(
                "op {op:#010x} is not a jetton transfer"
            )));
        }
        let query_id = p.load_u64(64)?;
        let amount = JettonAmount(load_coins(&mut p, "the jetton amount")?);
        let destination = load_optional_address(&mut p)?.ok_or_else(|| {
            TonCellError::InvalidCellData("the transfer has no destination".into())
        })?;
        let response_destination = load_optional_address(&mut p)?;
        let custom_payload = p.load_maybe_cell_ref()?;
        let forward_ton_amount = Nanoton::new(load_coins(&mut p, "the forward amount")?);
        let forward_payload = ForwardPayload::load(&mut p)?;
        Ok(JettonTransfer {
            query_id,
            amount,
            destination,
            response_destination,
            custom_payload,
            forward_ton_amount,
            forward_payload,
        })
    }
}

/// `internal_transfer` (op 0x178d4519): one jetton wallet credits another.
#[derive(Clone, Debug, PartialEq)]
pub struct InternalTransfer {
    pub query_id: u64,
    pub amount: JettonAmount,
    /// The sending jetton wallet's owner.
    pub from: Option<TonAddress>,
    pub response_destination: Option<TonAddress>,
    pub forward_ton_amount: Nanoton,
    pub forward_payload: ForwardPayload,
}

impl InternalTransfer {
    pub fn to_cell(&self) -> Result<Cell, TonCellError> {
        let mut b = CellBuilder::new();
        b.store_u32(32, OP_INTERNAL_TRANSFER)?
            .store_u64(64, self.query_id)?;
        store_coins(&mut b, self.amount.0)?;
        store_optional_address(&mut b, self.from.as_ref())?;
        store_optional_address(&mut b, self.response_destination.as_ref())?;
        store_coins(&mut b, self.forward_ton_amount.as_u64())?;
        self.forward_payload.store(&mut b)?;
        b.build()
    }

    pub fn parse(cell: &Cell) -> Result<InternalTransfer, TonCellError> {
        let mut p = cell.parser();
        let op = p.load_u32(32)?;
        if op != OP_INTERNAL_TRANSFER {
            return Err(TonCellError::InvalidCellData(format!(
                "op {op:#010x} is not an internal transfer"
            )));
        }
        Ok(InternalTransfer {
            query_id: p.load_u64(64)?,
            amount: JettonAmount(load_coins(&mut p, "the jetton amount")?),
            from: load_optional_address(&mut p)?,
            response_destination: load_optional_address(&mut p)?,
            forward_ton_amount: Nanoton::new(load_coins(&mut p, "the forward amount")?),
            forward_payload: ForwardPayload::load(&mut p)?,
        })
    }
}

/// `transfer_notification` (op 0x7362d09c): a jetton wallet tells its owner it was credited.
#[derive(Clone, Debug, PartialEq)]
pub struct TransferNotification {
    pub query_id: u64,
    pub amount: JettonAmount,
    /// The owner of the jetton wallet that sent the jettons.
    pub sender: Option<TonAddress>,
    pub forward_payload: ForwardPayload,
}

impl TransferNotification {
    pub fn to_cell(&self) -> Result<Cell, TonCellError> {
        let mut b = CellBuilder::new();
        b.store_u32(32, OP_TRANSFER_NOTIFICATION)?
            .store_u64(64, self.query_id)?;
        store_coins(&mut b, self.amount.0)?;
        store_optional_address(&mut b, self.sender.as_ref())?;
        self.forward_payload.store(&mut b)?;
        b.build()
    }

    pub fn parse(cell: &Cell) -> Result<TransferNotification, TonCellError> {
        let mut p = cell.parser();
        let op = p.load_u32(32)?;
        if op != OP_TRANSFER_NOTIFICATION {
            return Err(TonCellError::InvalidCellData(format!(
                "op {op:#010x} is not a transfer notification"
            )));
        }
        Ok(TransferNotification {
            query_id: p.load_u64(64)?,
            amount: JettonAmount(load_coins(&mut p, "the jetton amount")?),
            sender: load_optional_address(&mut p)?,
            forward_payload: ForwardPayload::load(&mut p)?,
        })
    }
}

/// `excesses` (op 0xd53276db): the gas a transfer did not use, returned.
pub fn excesses(query_id: u64) -> Result<Cell, TonCellError> {
    CellBuilder::new()
        .store_u32(32, OP_EXCESSES)?
        .store_u64(64, query_id)?
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ton::address::parse_address;
    use crate::ton::transfer::read_comment;
    use crate::ton::MessageBody;

    #[test]
    fn amounts_read_and_print_as_decimal_tokens_exactly() {
        let a = JettonAmount::parse_decimal("1.5", 6).unwrap();
        assert_eq!(a, JettonAmount(1_500_000));
        assert_eq!(a.to_decimal_string(6), "1.5");
        assert_eq!(JettonAmount(3).to_decimal_string(6), "0.000003");
        assert_eq!(JettonAmount(2_000_000).to_decimal_string(6), "2");
        assert_eq!(
            JettonAmount::parse_decimal("2", 6),
            Some(JettonAmount(2_000_000))
        );
        assert_eq!(
            JettonAmount::parse_decimal("0.0000001", 6),
            None,
            "finer than a unit"
        );
        for bad in ["", "-1", "1e3", "1.2.3", ".5", "abc"] {
            assert_eq!(JettonAmount::parse_decimal(bad, 6), None, "{bad}");
        }
    }

    #[test]
    fn every_body_reads_back_as_built() {
        let fragment = parse_address("UQCFJEP4WZ_mpdo0_kMEmsTgvrMHG7K_tWY16pQhKHwoOtFz").unwrap();
        let me = parse_address("EQDrnUhzufQP2o10Kcp8ifltoNxarQvkx2KIHpHXN18D07_R").unwrap();
        let comment = MessageBody::comment("100 Telegram Stars \n\nRef#abc")
            .to_cell()
            .unwrap();
        let transfer = JettonTransfer {
            query_id: 42,
            amount: JettonAmount(1_750_000),
            destination: fragment.clone(),
            response_destination: Some(me.clone()),
            custom_payload: None,
            forward_ton_amount: Nanoton::new(1),
            forward_payload: ForwardPayload::Ref(comment.clone()),
        };
        let cell = transfer.to_cell().unwrap();
        assert_eq!(JettonTransfer::parse(&cell).unwrap(), transfer);
        let read = JettonTransfer::parse(&cell).unwrap();
        assert_eq!(
            read_comment(&read.forward_payload.cell()).as_deref(),
            Some("100 Telegram Stars \n\nRef#abc")
        );
        let internal = InternalTransfer {
            query_id: 42,
            amount: JettonAmount(1_750_000),
            from: Some(me.clone()),
            response_destination: None,
            forward_ton_amount: Nanoton::new(1),
            forward_payload: ForwardPayload::None,
        };
        assert_eq!(
            InternalTransfer::parse(&internal.to_cell().unwrap()).unwrap(),
            internal
        );
        let notification = TransferNotification {
            query_id: 42,
            amount: JettonAmount(1_750_000),
            sender: Some(me),
            forward_payload: ForwardPayload::Ref(comment),
        };
        assert_eq!(
            TransferNotification::parse(&notification.to_cell().unwrap()).unwrap(),
            notification
        );
        // Each reader refuses the others' bodies.
        assert!(JettonTransfer::parse(&internal.to_cell().unwrap()).is_err());
        assert!(TransferNotification::parse(&cell).is_err());
        assert!(JettonTransfer::parse(&excesses(1).unwrap()).is_err());
    }
}
