//! Signed external messages as wallets send them, read back: the envelope (destination,
//! StateInit, body), the wallet's signed request in the body (v4r2 and v5r1), and the internal
//! messages it asks the wallet to send. `transfer` builds such messages; this module reads one
//! that someone else's wallet signed: the gateway checks a checkout's message before it
//! broadcasts it, and the TON simulator's wallet contracts read the same layouts.

use num_traits::ToPrimitive;
use tonlib_core::cell::{ArcCell, Cell, CellBuilder, CellParser, TonCellError};
use tonlib_core::tlb_types::block::message::{CommonMsgInfo, Message};
use tonlib_core::tlb_types::block::msg_address::{MsgAddress, MsgAddressInt};
use tonlib_core::tlb_types::block::state_init::StateInit;
use tonlib_core::tlb_types::tlb::TLB;
use tonlib_core::{TonAddress, TonHash};

use super::amount::Nanoton;
use super::keys::PublicKey;
use super::transfer::{decode_boc, normalized_hash};
use super::wallet::WalletVersion;

/// The op that opens a v5r1 request signed by the wallet's key (`"sign"` in ASCII).
pub const V5_SIGNED_EXTERNAL: u32 = 0x7369_676e;
/// The tag of a send action in an out-action list.
pub const ACTION_SEND_MSG: u32 = 0x0ec3_c86d;
/// Longest out-action list a transaction may produce.
const MAX_ACTIONS: usize = 255;

/// A parsed external-in message.
#[derive(Clone, Debug)]
pub struct ExternalMessage {
    pub root: ArcCell,
    pub destination: TonAddress,
    pub state_init: Option<StateInit>,
    pub body: ArcCell,
    /// Hash of the message cell as sent.
    pub hash: TonHash,
    /// TEP-467 normalized hash (what toncenter v3 and explorers index by).
    pub hash_norm: TonHash,
}

impl ExternalMessage {
    pub fn parse(root: ArcCell) -> Result<ExternalMessage, String> {
        let message = Message::from_cell(&root).map_err(|e| e.to_string())?;
        let CommonMsgInfo::ExtIn(info) = &message.info else {
            return Err("not an external inbound message".into());
        };
        let destination = std_address(&MsgAddress::Int(info.dest.clone()))
            .ok_or_else(|| "the destination is not a standard address".to_string())?;
        let body = message.body.value.clone();
        let hash_norm = normalized_hash(&destination, &body).map_err(|e| e.to_string())?;
        Ok(ExternalMessage {
            hash: root.as_ref().cell_hash(),
            root,
            destination,
            state_init: message.init.map(|i| i.value),
            body,
            hash_norm,
        })
    }

    /// From a BOC in base64 (standard or URL-safe, padded or not), as TON Connect returns it.
    pub fn from_base64(boc: &str) -> Result<ExternalMessage, String> {
        ExternalMessage::parse(decode_boc(boc.trim())?)
    }
}

/// A standard internal address (the only kind wallets pay to), or `None`.
pub fn std_address(addr: &MsgAddress) -> Option<TonAddress> {
    match addr {
        MsgAddress::Int(MsgAddressInt::Std(_)) => TonAddress::from_msg_address(addr.clone()).ok(),
        _ => None,
    }
}

/// One send action: the mode and the internal message as the wallet signed it.
#[derive(Clone, Debug, PartialEq)]
pub struct SendAction {
    pub mode: u8,
    pub message: ArcCell,
}

/// Why an out-action list cannot be run: it ends early, or holds something other than sends
/// (extension management, which no payment uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionsError {
    Underflow,
    NotASend,
}

/// A v5r1 body's signed part (everything before the last 512 bits, with every reference)
/// and its trailing signature.
pub fn split_tail_signature(body: &Cell) -> Result<(Cell, [u8; 64]), TonCellError> {
    let bits = body.bit_len();
    if bits < 512 {
        return Err(TonCellError::CellParserError(
            "a signed body is at least 512 bits".into(),
        ));
    }
    let mut whole = body.parser();
    let head = whole.load_bits(bits - 512)?;
    let signature: [u8; 64] = whole
        .load_bytes(64)?
        .try_into()
        .expect("64 bytes were loaded");
    let mut b = CellBuilder::new();
    b.store_bits(bits - 512, &head)?;
    b.store_references(body.references())?;
    Ok((b.build()?, signature))
}

/// A v4r2 body's leading signature and the signed rest (as a cell).
pub fn split_head_signature(body: &Cell) -> Result<([u8; 64], Cell), TonCellError> {
    let mut p = body.parser();
    let signature: [u8; 64] = p.load_bytes(64)?.try_into().expect("64 bytes were loaded");
    Ok((signature, p.load_remaining()?))
}

/// v5r1's `out_actions:(Maybe ^OutList) has_other_actions:Bool`: the sends in execution order
/// (the list's head runs last).
pub fn read_v5_actions(cs: &mut CellParser) -> Result<Vec<SendAction>, ActionsError> {
    let underflow = |_| ActionsError::Underflow;
    let list = if cs.load_bit().map_err(underflow)? {
        Some(cs.next_reference().map_err(underflow)?)
    } else {
        None
    };
    if cs.load_bit().map_err(underflow)? {
        return Err(ActionsError::NotASend);
    }
    let mut actions = Vec::new();
    let mut node = list;
    while let Some(cell) = node {
        if cell.bit_len() == 0 && cell.references().is_empty() {
            break;
        }
        let mut p = cell.parser();
        if p.load_u32(32).map_err(underflow)? != ACTION_SEND_MSG {
            return Err(ActionsError::NotASend);
        }
        let mode = p.load_u8(8).map_err(underflow)?;
        let prev = p.next_reference().map_err(underflow)?;
        let message = p.next_reference().map_err(underflow)?;
        actions.push(SendAction { mode, message });
        node = Some(prev);
        if actions.len() > MAX_ACTIONS {
            return Err(ActionsError::Underflow);
        }
    }
    actions.reverse();
    Ok(actions)
}

/// A wallet's signed request, read whole: what the key signed, and what it asks to send.
#[derive(Clone, Debug, PartialEq)]
pub struct WalletRequest {
    pub signature: [u8; 64],
    /// Hash of the signed part: what the signature is over.
    pub signed_hash: TonHash,
    pub wallet_id: u32,
    pub valid_until: u32,
    pub seqno: u32,
    pub actions: Vec<SendAction>,
}

impl WalletRequest {
    /// Reads the body of an external message to a `version` wallet. Strict: anything but a
    /// plain send request (a v4r2 plugin op, v5r1 extension actions, a body of another
    /// layout) is refused, saying what it is.
    pub fn read(version: WalletVersion, body: &Cell) -> Result<WalletRequest, String> {
        let short = |e: TonCellError| format!("the wallet request is cut short ({e})");
        match version {
            WalletVersion::V4R2 => {
                let (signature, signed) = split_head_signature(body).map_err(short)?;
                let mut cs = signed.parser();
                let wallet_id = cs.load_u32(32).map_err(short)?;
                let valid_until = cs.load_u32(32).map_err(short)?;
                let seqno = cs.load_u32(32).map_err(short)?;
                let op = cs.load_u8(8).map_err(short)?;
                if op != 0 {
                    return Err(format!(
                        "the v4r2 request has op {op}, not a simple send (0)"
                    ));
                }
                let mut actions = Vec::new();
                while cs.remaining_refs() > 0 {
                    let mode = cs.load_u8(8).map_err(short)?;
                    let message = cs.next_reference().map_err(short)?;
                    actions.push(SendAction { mode, message });
                }
                Ok(WalletRequest {
                    signature,
                    signed_hash: signed.cell_hash(),
                    wallet_id,
                    valid_until,
                    seqno,
                    actions,
                })
            }
            WalletVersion::V5R1 => {
                let (signed, signature) = split_tail_signature(body).map_err(short)?;
                let mut cs = signed.parser();
                let op = cs.load_u32(32).map_err(short)?;
                if op != V5_SIGNED_EXTERNAL {
                    return Err(format!(
                        "the v5r1 request starts with op {op:#010x}, not a signed external request"
                    ));
                }
                let wallet_id = cs.load_u32(32).map_err(short)?;
                let valid_until = cs.load_u32(32).map_err(short)?;
                let seqno = cs.load_u32(32).map_err(short)?;
                let actions = read_v5_actions(&mut cs).map_err(|e| match e {
                    ActionsError::Underflow => "the v5r1 action list is cut short".to_string(),
                    ActionsError::NotASend => {
                        "the v5r1 request holds actions other than sending messages".to_string()
                    }
                })?;
                Ok(WalletRequest {
                    signature,
                    signed_hash: signed.cell_hash(),
                    wallet_id,
                    valid_until,
                    seqno,
                    actions,
                })
            }
        }
    }

    /// Whether `key` signed this request (as the contract's `CHKSIGNU` checks it).
    pub fn signed_by(&self, key: &PublicKey) -> bool {
        key.verify(self.signed_hash.as_slice(), &self.signature)
    }
}

/// An internal message a wallet is asked to send, as signed.
#[derive(Clone, Debug, PartialEq)]
pub struct InternalMessage {
    pub destination: TonAddress,
    pub amount: Nanoton,
    pub bounce: bool,
    pub body: ArcCell,
    /// It carries a StateInit (deploys a contract at the destination).
    pub has_state_init: bool,
    /// It carries currencies other than TON.
    pub has_extra_currencies: bool,
}

impl InternalMessage {
    pub fn read(cell: &ArcCell) -> Result<InternalMessage, String> {
        let message = Message::from_cell(cell).map_err(|e| e.to_string())?;
        let CommonMsgInfo::Int(info) = &message.info else {
            return Err("an action sends something other than an internal message".into());
        };
        let destination = std_address(&info.dest)
            .ok_or_else(|| "a message goes to an address that is not standard".to_string())?;
        let amount = info
            .value
            .grams
            .amount
            .to_u64()
            .map(Nanoton::new)
            .ok_or_else(|| "a message's amount does not fit 64 bits".to_string())?;
        Ok(InternalMessage {
            destination,
            amount,
            bounce: info.bounce,
            body: message.body.value.clone(),
            has_state_init: message.init.is_some(),
            has_extra_currencies: info.value.other.is_some(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ton::transfer::{sign_transfer, TransferParams};
    use crate::ton::{KeyPair, MessageBody, Network, OutgoingMessage, WalletContract};
    use zeroize::Zeroizing;

    fn signed(version: WalletVersion, seqno: u32) -> (WalletContract, String) {
        let key = KeyPair::from_secret_seed(&Zeroizing::new([5u8; 32]));
        let wallet = WalletContract::new(version, Network::Mainnet, key.public_key());
        let messages = [
            OutgoingMessage::new(
                "EQBvW8Z5huBkMJYdnfAEM5JqTNkuWX3diqYENkWsIL0XggGG",
                Nanoton::new(1_500_000_000),
                MessageBody::comment("Telegram Stars"),
            )
            .unwrap(),
            OutgoingMessage::new(&wallet.raw_address(), Nanoton::new(7), MessageBody::Empty)
                .unwrap(),
        ];
        let params = TransferParams {
            seqno,
            valid_until: 1_900_000_000,
            include_state_init: seqno == 0,
        };
        let t = sign_transfer(&wallet, &key, &params, &messages).unwrap();
        (wallet, t.boc)
    }

    #[test]
    fn our_own_transfers_read_back_field_for_field() {
        for version in WalletVersion::ALL {
            for seqno in [0, 9] {
                let (wallet, boc) = signed(version, seqno);
                let ext = ExternalMessage::from_base64(&boc).unwrap();
                assert_eq!(&ext.destination, wallet.address());
                assert_eq!(ext.state_init.is_some(), seqno == 0);
                let req = WalletRequest::read(version, &ext.body).unwrap();
                assert!(req.signed_by(&wallet.public_key()));
                assert!(!req.signed_by(&PublicKey([1; 32])));
                assert_eq!(req.wallet_id, wallet.wallet_id() as u32);
                assert_eq!((req.seqno, req.valid_until), (seqno, 1_900_000_000));
                assert_eq!(req.actions.len(), 2);
                assert!(req.actions.iter().all(|a| a.mode == 3));
                let first = InternalMessage::read(&req.actions[0].message).unwrap();
                assert_eq!(first.amount, Nanoton::new(1_500_000_000));
                assert!(first.bounce, "EQ… is bounceable");
                assert!(!first.has_state_init && !first.has_extra_currencies);
                let second = InternalMessage::read(&req.actions[1].message).unwrap();
                assert_eq!(&second.destination, wallet.address());
                assert_eq!(second.amount, Nanoton::new(7));
                // Read as the other version, the body is refused, not misread.
                let other = match version {
                    WalletVersion::V4R2 => WalletVersion::V5R1,
                    WalletVersion::V5R1 => WalletVersion::V4R2,
                };
                let misread = WalletRequest::read(other, &ext.body);
                assert!(
                    misread.is_err() || !misread.unwrap().signed_by(&wallet.public_key()),
                    "{version} read as {other}"
                );
            }
        }
    }

    #[test]
    fn what_is_not_an_external_message_is_refused() {
        assert!(ExternalMessage::from_base64("te6cc").is_err());
        let (_, boc) = signed(WalletVersion::V4R2, 1);
        let ext = ExternalMessage::from_base64(&boc).unwrap();
        // An internal message's cell is no external message.
        let req = WalletRequest::read(WalletVersion::V4R2, &ext.body).unwrap();
        let internal = crate::ton::boc::to_base64(&req.actions[0].message).unwrap();
        assert!(ExternalMessage::from_base64(&internal)
            .unwrap_err()
            .contains("not an external"));
        let empty = Cell::default();
        assert!(WalletRequest::read(WalletVersion::V5R1, &empty).is_err());
        assert!(WalletRequest::read(WalletVersion::V4R2, &empty).is_err());
    }
}
