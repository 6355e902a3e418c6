//! Signed wallet transfers: one external message carrying 1..N internal messages.
//!
//! Bodies come either as a BOC (what Fragment returns: signed exactly as received, never
//! re-encoded, since Fragment recognises a payment by the payload cell's hash) or as a text
//! comment. Every internal message uses send mode 3 (pay fees separately, ignore errors),
//! as TON wallets do. The result carries the BOC to broadcast and the TEP-467 normalized
//! hash of the external message, which toncenter v3 and explorers index transactions by.

use num_bigint::BigUint;
use tonlib_core::cell::{ArcCell, Cell, CellBuilder, TonCellError};
use tonlib_core::tlb_types::block::coins::{CurrencyCollection, Grams};
use tonlib_core::tlb_types::block::message::{CommonMsgInfo, ExtInMsgInfo, IntMsgInfo, Message};
use tonlib_core::tlb_types::block::msg_address::{MsgAddrNone, MsgAddress, MsgAddressExt};
use tonlib_core::tlb_types::block::state_init::StateInit;
use tonlib_core::tlb_types::tlb::TLB;
use tonlib_core::wallet::version_helper::VersionHelper;
use tonlib_core::wallet::versioned::v4::WalletExtMsgBodyV4;
use tonlib_core::wallet::versioned::v5::WalletExtMsgBodyV5;
use tonlib_core::{TonAddress, TonHash};

use super::address::{AddressError, ParsedAddress};
use super::amount::Nanoton;
use super::boc;
use super::encoding::decode_base64;
use super::keys::KeyPair;
use super::wallet::{Network, WalletContract, WalletVersion};

/// Send mode of every message: 1 (sender pays forwarding fees) + 2 (ignore action errors).
/// W5 refuses external requests whose modes lack the +2 bit.
pub const SEND_MODE: u8 = 3;

/// Longest text comment we put in a message; far above anything Fragment or a user needs,
/// and well inside the cell-depth limits of a message.
pub const MAX_COMMENT_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("a transfer needs at least one message")]
    NoMessages,
    #[error("{version} wallets send at most {max} messages at once, got {got}")]
    TooManyMessages {
        version: WalletVersion,
        max: usize,
        got: usize,
    },
    #[error("invalid destination address: {0}")]
    Destination(#[from] AddressError),
    #[error("message body is not a valid base64 BOC with one root cell: {0}")]
    BadBody(String),
    #[error("comment is {0} bytes; at most {MAX_COMMENT_BYTES} are allowed")]
    CommentTooLong(usize),
    #[error("the key does not belong to this wallet")]
    KeyMismatch,
    #[error(
        "a destination address is marked testnet-only and cannot be paid from a mainnet wallet"
    )]
    TestnetDestination,
    #[error("building the message failed: {0}")]
    Cell(String),
}

impl From<TonCellError> for TransferError {
    fn from(e: TonCellError) -> Self {
        TransferError::Cell(e.to_string())
    }
}

/// What an internal message carries.
#[derive(Clone, Debug, PartialEq)]
pub enum MessageBody {
    Empty,
    /// A text comment: op 0 followed by UTF-8, chained over cells when long.
    Comment(String),
    /// A ready-made body cell, e.g. Fragment's payload.
    Cell(ArcCell),
}

/// Decodes a BOC given in standard or URL-safe base64, padded or not.
pub fn decode_boc(encoded: &str) -> Result<ArcCell, String> {
    let bytes = decode_base64(encoded).ok_or_else(|| "not base64".to_string())?;
    boc::parse_single_root(&bytes).map_err(|e| e.to_string())
}

impl MessageBody {
    /// A body from a base64 BOC, kept exactly as received.
    pub fn from_boc_base64(encoded: &str) -> Result<MessageBody, TransferError> {
        decode_boc(encoded)
            .map(MessageBody::Cell)
            .map_err(TransferError::BadBody)
    }

    pub fn comment(text: impl Into<String>) -> MessageBody {
        MessageBody::Comment(text.into())
    }

    pub fn to_cell(&self) -> Result<ArcCell, TransferError> {
        match self {
            MessageBody::Empty => Ok(Cell::default().to_arc()),
            MessageBody::Cell(cell) => Ok(cell.clone()),
            MessageBody::Comment(text) => comment_cell(text).map(Cell::to_arc),
        }
    }
}

/// op 0 + text as a snake: the root holds up to 123 bytes after the op, each further cell
/// up to 127, chained through the first reference (what TON wallets write).
fn comment_cell(text: &str) -> Result<Cell, TransferError> {
    if text.len() > MAX_COMMENT_BYTES {
        return Err(TransferError::CommentTooLong(text.len()));
    }
    Ok(snake_comment(text, 123)?)
}

/// A text comment (op 0, then the UTF-8 bytes) with `root_bytes` of text in the root cell and
/// up to 127 in each further cell, chained through the first reference. Wallets fill the root
/// (123 bytes); fragment.com puts only 35 there.
pub fn snake_comment(text: &str, root_bytes: usize) -> Result<Cell, TonCellError> {
    const CELL_BYTES: usize = 127;
    let bytes = text.as_bytes();
    let (head, mut rest) = bytes.split_at(bytes.len().min(root_bytes.min(123)));
    let mut chunks = Vec::new();
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(CELL_BYTES));
        chunks.push(chunk);
        rest = tail;
    }
    // Built from the tail so each cell can reference the next.
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
    root.build()
}

/// The text of a comment body (op 0, UTF-8 chained over cells), if the cell is one.
pub fn read_comment(body: &Cell) -> Option<String> {
    let mut p = body.parser();
    if body.bit_len() < 32 || p.load_u32(32).ok()? != 0 {
        return None;
    }
    let mut bytes = Vec::new();
    let mut cell = body;
    let mut skip = 4;
    loop {
        if !cell.bit_len().is_multiple_of(8) {
            return None;
        }
        bytes.extend_from_slice(&cell.data()[skip..cell.bit_len() / 8]);
        skip = 0;
        match cell.references().first() {
            Some(next) => cell = next,
            None => break,
        }
    }
    String::from_utf8(bytes).ok()
}

/// One internal message of a transfer.
#[derive(Clone, Debug, PartialEq)]
pub struct OutgoingMessage {
    pub destination: TonAddress,
    /// Set from the destination's written form: non-bounceable addresses get `false`.
    pub bounce: bool,
    pub amount: Nanoton,
    pub body: MessageBody,
    /// The address was written with the testnet-only flag (`kQ…`/`0Q…`).
    pub testnet_only: bool,
}

impl OutgoingMessage {
    /// A message to an address in any textual form; the bounce flag follows the form.
    pub fn new(
        destination: &str,
        amount: Nanoton,
        body: MessageBody,
    ) -> Result<OutgoingMessage, TransferError> {
        Ok(Self::to(ParsedAddress::parse(destination)?, amount, body))
    }

    /// A message to an already parsed address; the bounce flag follows its form.
    pub fn to(destination: ParsedAddress, amount: Nanoton, body: MessageBody) -> OutgoingMessage {
        OutgoingMessage {
            bounce: destination.bounce(),
            testnet_only: destination.testnet,
            destination: destination.address,
            amount,
            body,
        }
    }

    /// The internal message cell with this (already built) body. Source, fees, lt and time
    /// are left zero: the validator fills them in when the wallet sends the message.
    fn cell_with_body(&self, body: ArcCell) -> Result<Cell, TransferError> {
        let info = CommonMsgInfo::Int(IntMsgInfo {
            ihr_disabled: true,
            bounce: self.bounce,
            bounced: false,
            src: MsgAddress::Ext(MsgAddressExt::None(MsgAddrNone {})),
            dest: MsgAddress::Int(self.destination.to_msg_address_int()),
            value: CurrencyCollection::new(BigUint::from(self.amount.as_u64())),
            ihr_fee: Grams::new(BigUint::ZERO),
            fwd_fee: Grams::new(BigUint::ZERO),
            created_lt: 0,
            created_at: 0,
        });
        Ok(Message::new(info, body).to_cell()?)
    }
}

/// Where the wallet stands when the transfer is signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferParams {
    /// The wallet's current seqno (0 for a wallet not yet deployed).
    pub seqno: u32,
    /// Unix time after which the wallet contract refuses the message.
    pub valid_until: u32,
    /// Attach the StateInit so that the first transfer deploys the wallet.
    pub include_state_init: bool,
}

/// A signed external message, ready to broadcast.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedTransfer {
    pub wallet: TonAddress,
    pub seqno: u32,
    pub valid_until: u32,
    /// Standard base64 BOC of the external message.
    pub boc: String,
    /// Hash of the external message cell as sent.
    pub message_hash: TonHash,
    /// TEP-467 normalized hash: the key to find the resulting transaction.
    pub normalized_hash: TonHash,
    /// Hash of the signed wallet body (the external message's body): identifies the message
    /// however it was packaged.
    pub body_hash: TonHash,
    /// What the wallet is to send, to check the resulting transaction against.
    pub messages: Vec<ExpectedMessage>,
}

/// One message a signed transfer asks the wallet to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedMessage {
    pub destination: TonAddress,
    pub amount: Nanoton,
    pub body_hash: TonHash,
}

/// Builds and signs an external message for `wallet` with `key`.
pub fn sign_transfer(
    wallet: &WalletContract,
    key: &KeyPair,
    params: &TransferParams,
    messages: &[OutgoingMessage],
) -> Result<SignedTransfer, TransferError> {
    if messages.is_empty() {
        return Err(TransferError::NoMessages);
    }
    let max = wallet.version().max_messages();
    if messages.len() > max {
        return Err(TransferError::TooManyMessages {
            version: wallet.version(),
            max,
            got: messages.len(),
        });
    }
    if key.public_key() != wallet.public_key() {
        return Err(TransferError::KeyMismatch);
    }
    if wallet.network() == Network::Mainnet && messages.iter().any(|m| m.testnet_only) {
        return Err(TransferError::TestnetDestination);
    }
    let mut msgs = Vec::with_capacity(messages.len());
    let mut expected = Vec::with_capacity(messages.len());
    for m in messages {
        let body = m.body.to_cell()?;
        expected.push(ExpectedMessage {
            destination: m.destination.clone(),
            amount: m.amount,
            body_hash: body.as_ref().cell_hash(),
        });
        msgs.push(m.cell_with_body(body)?.to_arc());
    }
    let modes = vec![SEND_MODE; msgs.len()];
    let body = match wallet.version() {
        WalletVersion::V4R2 => WalletExtMsgBodyV4 {
            subwallet_id: wallet.wallet_id(),
            valid_until: params.valid_until,
            msg_seqno: params.seqno,
            opcode: 0,
            msgs_modes: modes,
            msgs,
        }
        .to_cell()?,
        // The W5 action list is a linked list whose head runs last; tonlib-core puts its
        // first message at the head, so hand it the messages reversed to have them sent in
        // the order given (as the contract's own SENDRAWMSG sequence and other SDKs do).
        WalletVersion::V5R1 => WalletExtMsgBodyV5 {
            wallet_id: wallet.wallet_id(),
            valid_until: params.valid_until,
            msg_seqno: params.seqno,
            msgs_modes: modes,
            msgs: msgs.into_iter().rev().collect(),
        }
        .to_cell()?,
    };
    let signature = key.sign(body.cell_hash().as_slice());
    let signed_body =
        VersionHelper::sign_msg(wallet.version().tonlib(), &body, &signature)?.to_arc();

    let info = ext_in_info(wallet.address());
    let state_init = params.include_state_init.then(|| wallet.state_init());
    let cell = message_cell(&info, state_init.as_ref(), &signed_body)?;
    Ok(SignedTransfer {
        wallet: wallet.address().clone(),
        seqno: params.seqno,
        valid_until: params.valid_until,
        boc: boc::to_base64(&cell)?,
        message_hash: cell.cell_hash(),
        normalized_hash: normalized_hash(wallet.address(), &signed_body)?,
        body_hash: signed_body.as_ref().cell_hash(),
        messages: expected,
    })
}

pub(crate) fn ext_in_info(destination: &TonAddress) -> CommonMsgInfo {
    CommonMsgInfo::ExtIn(ExtInMsgInfo {
        src: MsgAddressExt::None(MsgAddrNone {}),
        dest: destination.to_msg_address_int(),
        import_fee: Grams::new(BigUint::ZERO),
    })
}

/// Serialises a message, putting the StateInit and then the body inline when their bits and
/// references still fit in the root cell and in a reference otherwise. The layout changes
/// the message hash, so it follows what TON SDKs do (pytoniq-core's `MessageAny`): the
/// StateInit must leave one bit for the body's `Either` tag.
fn message_cell(
    info: &CommonMsgInfo,
    state_init: Option<&StateInit>,
    body: &ArcCell,
) -> Result<Cell, TransferError> {
    let mut b = CellBuilder::new();
    info.write(&mut b)?;
    let mut free_refs = 4usize;
    match state_init {
        None => {
            b.store_bit(false)?;
        }
        Some(init) => {
            b.store_bit(true)?;
            let init = init.to_cell()?;
            let refs = init.references().len();
            if init.bit_len() + 2 <= b.remaining_bits() && refs <= free_refs {
                b.store_bit(false)?.store_cell(&init)?;
                free_refs -= refs;
            } else {
                b.store_bit(true)?.store_child(init)?;
                free_refs -= 1;
            }
        }
    }
    if body.bit_len() < b.remaining_bits() && body.references().len() <= free_refs {
        b.store_bit(false)?.store_cell(body)?;
    } else {
        b.store_bit(true)?.store_reference(body)?;
    }
    Ok(b.build()?)
}

/// TEP-467 normalized hash of an external-in message to `destination` with this body: the
/// message rebuilt with source addr_none, import fee 0, no StateInit and the body as a
/// reference. Two broadcasts of one signed body (with or without StateInit, say) share it,
/// which is why explorers and toncenter v3 index by it.
pub fn normalized_hash(destination: &TonAddress, body: &ArcCell) -> Result<TonHash, TransferError> {
    let mut b = CellBuilder::new();
    ext_in_info(destination).write(&mut b)?;
    b.store_bit(false)? // no StateInit
        .store_bit(true)? // body in a reference
        .store_reference(body)?;
    Ok(b.build()?.cell_hash())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ton::seed::Seed;

    const WORDS: &str = "art hockey victory skill bubble stool heart gas debris april column knife gadget envelope donkey base nature dynamic artefact leg edge aisle retreat fatigue";

    fn reference_transfer(version: WalletVersion) -> SignedTransfer {
        let key = Seed::from_words(WORDS).unwrap().derive_key(None).unwrap();
        let wallet = WalletContract::new(version, Network::Mainnet, key.public_key());
        let msg = OutgoingMessage::new(
            "EQBvW8Z5huBkMJYdnfAEM5JqTNkuWX3diqYENkWsIL0XggGG",
            Nanoton::new(1_500_000_000),
            MessageBody::comment("Telegram Stars Ref#abc"),
        )
        .unwrap();
        let params = TransferParams {
            seqno: 5,
            valid_until: 1_767_225_600,
            include_state_init: false,
        };
        sign_transfer(&wallet, &key, &params, &[msg]).unwrap()
    }

    // Hashes from CRATES.md, verified there with pytoniq and tonsdk.
    #[test]
    fn reference_hashes_match() {
        let v4 = reference_transfer(WalletVersion::V4R2);
        assert_eq!(
            v4.message_hash.to_hex(),
            "34b591c455db79573dcb6197ce4cd3b45f191b422766e378c2024de329e31f57"
        );
        assert_eq!(
            v4.normalized_hash.to_hex(),
            "a39a7fa7dae06199804315ceec52868776ff0cb2474d4c6863f78cd5b5cbe11d"
        );
        let v5 = reference_transfer(WalletVersion::V5R1);
        assert_eq!(
            v5.message_hash.to_hex(),
            "d045d87800d2c122366eae2910f89693966a7fc4c92667f2916740e6d670021f"
        );
        assert_eq!(
            v5.normalized_hash.to_hex(),
            "8cfdfd0f780ca97830e9a55e3e5c570f8914620e0950452a52d7a6e07885e7c6"
        );
    }

    #[test]
    fn message_count_limits_are_enforced() {
        let key = Seed::from_words(WORDS).unwrap().derive_key(None).unwrap();
        let wallet = WalletContract::new(WalletVersion::V4R2, Network::Mainnet, key.public_key());
        let params = TransferParams {
            seqno: 0,
            valid_until: 1,
            include_state_init: true,
        };
        assert_eq!(
            sign_transfer(&wallet, &key, &params, &[]).unwrap_err(),
            TransferError::NoMessages
        );
        let msg = OutgoingMessage::new(&wallet.raw_address(), Nanoton::new(1), MessageBody::Empty)
            .unwrap();
        let five = vec![msg.clone(); 5];
        assert!(matches!(
            sign_transfer(&wallet, &key, &params, &five),
            Err(TransferError::TooManyMessages { max: 4, got: 5, .. })
        ));
        assert!(sign_transfer(&wallet, &key, &params, &five[..4]).is_ok());
        let testnet_dest = OutgoingMessage::new(
            &crate::ton::address::friendly(wallet.address(), false, true),
            Nanoton::new(1),
            MessageBody::Empty,
        )
        .unwrap();
        assert_eq!(
            sign_transfer(&wallet, &key, &params, &[testnet_dest]).unwrap_err(),
            TransferError::TestnetDestination
        );
        let other = WalletContract::new(
            WalletVersion::V4R2,
            Network::Mainnet,
            crate::ton::PublicKey([9; 32]),
        );
        assert_eq!(
            sign_transfer(&other, &key, &params, &[msg]).unwrap_err(),
            TransferError::KeyMismatch
        );
    }

    #[test]
    fn fragment_payloads_are_kept_bit_for_bit() {
        // The two-cell payload of a 10 000 Stars purchase (FRAGMENT_PROTOCOL.md §10),
        // unpadded as Fragment sends it.
        let body = MessageBody::from_boc_base64(
            "te6ccgEBAgEALQABTgAAAAAxMDAwMCBUZWxlZ3JhbSBTdGFycyAKClJlZiN6SWgwT0UxdgEAAmQ",
        )
        .unwrap();
        let MessageBody::Cell(cell) = &body else {
            panic!("not a cell")
        };
        assert_eq!(cell.references().len(), 1);
        assert_eq!(cell.references()[0].data(), b"d");
        assert!(MessageBody::from_boc_base64("te6cc").is_err());
        assert!(MessageBody::from_boc_base64("%%%").is_err());
    }

    #[test]
    fn long_comments_are_chained() {
        let text = "я".repeat(100); // 200 bytes
        let cell = MessageBody::comment(text.clone()).to_cell().unwrap();
        assert_eq!(cell.bit_len(), (4 + 123) * 8);
        let next = &cell.references()[0];
        assert_eq!(next.bit_len(), (200 - 123) * 8);
        let mut bytes = cell.data()[4..].to_vec();
        bytes.extend_from_slice(next.data());
        assert_eq!(String::from_utf8(bytes).unwrap(), text);
        assert!(matches!(
            MessageBody::comment("x".repeat(MAX_COMMENT_BYTES + 1)).to_cell(),
            Err(TransferError::CommentTooLong(_))
        ));
    }
}
