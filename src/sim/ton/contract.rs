//! The wallet contracts the simulator runs: v4r2 and v5r1, emulated at the level of their
//! checks and actions (not TVM bytecode). The order of checks and the exit codes follow the
//! contracts' FunC sources, so a client sees what mainnet would make of its message:
//!
//! - v4r2: 36 expired, 33 seqno, 34 subwallet id, 35 signature; then `accept_message` and a
//!   committed seqno increment.
//! - v5r1: 65535 not a signed external, 135 signature, 132 signature disabled, 133 seqno,
//!   134 wallet id, 136 expired; then `accept_message` and a committed seqno increment, so a
//!   later failure (137: a send mode without IGNORE_ERRORS) still consumes the seqno.

use tonlib_core::cell::{Cell, TonCellError};
use tonlib_core::tlb_types::tlb::TLB;
use tonlib_core::wallet::versioned::v4::WalletDataV4;
use tonlib_core::wallet::versioned::v5::WalletDataV5;
use tonlib_core::TonHash;

pub use crate::ton::external::SendAction;
use crate::ton::external::{
    read_v5_actions, split_head_signature, split_tail_signature, ActionsError, V5_SIGNED_EXTERNAL,
};
use crate::ton::{PublicKey, WalletVersion};

/// Exit codes of the wallet contracts.
pub mod exit {
    pub const CELL_UNDERFLOW: i32 = 9;
    pub const V4_SEQNO: i32 = 33;
    pub const V4_SUBWALLET: i32 = 34;
    pub const V4_SIGNATURE: i32 = 35;
    pub const V4_EXPIRED: i32 = 36;
    pub const V5_SIGNATURE_DISABLED: i32 = 132;
    pub const V5_SEQNO: i32 = 133;
    pub const V5_WALLET_ID: i32 = 134;
    pub const V5_SIGNATURE: i32 = 135;
    pub const V5_EXPIRED: i32 = 136;
    pub const V5_EXTERNAL_NEEDS_IGNORE_ERRORS: i32 = 137;
    pub const V5_BAD_OPERATION: i32 = 65535;
}

/// The persistent data of a wallet contract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalletData {
    pub version: WalletVersion,
    pub seqno: u32,
    pub wallet_id: i32,
    pub public_key: PublicKey,
    /// v5r1 only (always true for v4r2).
    pub signature_allowed: bool,
    /// v4r2 plugins / v5r1 extensions dictionary present.
    pub has_extensions: bool,
}

impl WalletData {
    pub fn parse(version: WalletVersion, data: &Cell) -> Result<WalletData, TonCellError> {
        match version {
            WalletVersion::V4R2 => {
                let d = WalletDataV4::from_cell(data)?;
                Ok(WalletData {
                    version,
                    seqno: d.seqno,
                    wallet_id: d.wallet_id,
                    public_key: PublicKey(hash_bytes(&d.public_key)),
                    signature_allowed: true,
                    has_extensions: d.plugins.is_some(),
                })
            }
            WalletVersion::V5R1 => {
                let d = WalletDataV5::from_cell(data)?;
                Ok(WalletData {
                    version,
                    seqno: d.seqno,
                    wallet_id: d.wallet_id,
                    public_key: PublicKey(hash_bytes(&d.public_key)),
                    signature_allowed: d.signature_allowed,
                    has_extensions: d.extensions.is_some(),
                })
            }
        }
    }

    /// The data cell, as `getAddressInformation` returns it. Extensions are never set in
    /// the simulator (nothing here installs them).
    pub fn to_cell(&self) -> Cell {
        let key = TonHash::from(self.public_key.0);
        let cell = match self.version {
            WalletVersion::V4R2 => {
                let mut d = WalletDataV4::new(self.wallet_id, key);
                d.seqno = self.seqno;
                d.to_cell()
            }
            WalletVersion::V5R1 => {
                let mut d = WalletDataV5::new(self.wallet_id, key);
                d.seqno = self.seqno;
                d.signature_allowed = self.signature_allowed;
                d.to_cell()
            }
        };
        cell.expect("wallet data fits in a cell")
    }
}

fn hash_bytes(h: &TonHash) -> [u8; 32] {
    h.as_slice().try_into().expect("hashes are 32 bytes")
}

/// What the contract made of an external message.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// The contract did not call `accept_message`: the network never includes the message.
    Rejected { exit_code: i32 },
    /// Accepted: gas is charged from now on.
    Accepted {
        /// In the order they are to be sent.
        actions: Vec<SendAction>,
        /// Set when the contract threw after accepting; the transaction is aborted and sends
        /// nothing.
        abort_exit_code: Option<i32>,
        /// Whether the seqno increment survives (v5r1 commits it before its last checks;
        /// v4r2 only at the end, so an abort reverts it).
        seqno_committed: bool,
    },
}

/// Runs the wallet's `recv_external` on `body` (the external message's body) at `now`.
pub fn run_external(data: &WalletData, body: &Cell, now: u32) -> Verdict {
    match data.version {
        WalletVersion::V4R2 => run_v4(data, body, now),
        WalletVersion::V5R1 => run_v5(data, body, now),
    }
}

fn rejected(exit_code: i32) -> Verdict {
    Verdict::Rejected { exit_code }
}

fn run_v4(data: &WalletData, body: &Cell, now: u32) -> Verdict {
    // `slice_hash(in_msg)` after the signature was read: the rest of the body as a cell.
    let Ok((sig, signed)) = split_head_signature(body) else {
        return rejected(exit::CELL_UNDERFLOW);
    };
    let mut cs = signed.parser();
    let (Ok(subwallet), Ok(valid_until), Ok(seqno)) =
        (cs.load_u32(32), cs.load_u32(32), cs.load_u32(32))
    else {
        return rejected(exit::CELL_UNDERFLOW);
    };
    if valid_until <= now {
        return rejected(exit::V4_EXPIRED);
    }
    if seqno != data.seqno {
        return rejected(exit::V4_SEQNO);
    }
    if subwallet != data.wallet_id as u32 {
        return rejected(exit::V4_SUBWALLET);
    }
    if !data.public_key.verify(signed.cell_hash().as_slice(), &sig) {
        return rejected(exit::V4_SIGNATURE);
    }
    // Accepted; the contract stores seqno + 1 and commits before reading the op, so a
    // later exception still consumes the seqno. op 0 is the simple send: (mode, ^message)
    // per reference.
    let abort = |code| Verdict::Accepted {
        actions: vec![],
        abort_exit_code: Some(code),
        seqno_committed: true,
    };
    let Ok(op) = cs.load_u8(8) else {
        return abort(exit::CELL_UNDERFLOW);
    };
    if op != 0 {
        // Plugin operations (1..=3) are not part of any payment flow and the simulator does
        // not run them; other ops do nothing in the contract either.
        return Verdict::Accepted {
            actions: vec![],
            abort_exit_code: None,
            seqno_committed: true,
        };
    }
    let mut actions = Vec::new();
    while cs.remaining_refs() > 0 {
        match (cs.load_u8(8), cs.next_reference()) {
            (Ok(mode), Ok(message)) => actions.push(SendAction { mode, message }),
            _ => return abort(exit::CELL_UNDERFLOW),
        }
    }
    Verdict::Accepted {
        actions,
        abort_exit_code: None,
        seqno_committed: true,
    }
}

fn run_v5(data: &WalletData, body: &Cell, now: u32) -> Verdict {
    let mut p = body.parser();
    let bits = body.bit_len();
    match p.load_u32(32) {
        Ok(V5_SIGNED_EXTERNAL) => {}
        Ok(_) => return rejected(exit::V5_BAD_OPERATION),
        Err(_) => return rejected(exit::CELL_UNDERFLOW),
    }
    if bits < 32 + 32 * 3 + 512 {
        return rejected(exit::CELL_UNDERFLOW);
    }
    // The signature is the last 512 bits; the signed part is everything before it, with all
    // the references.
    let Ok((signed, signature)) = split_tail_signature(body) else {
        return rejected(exit::CELL_UNDERFLOW);
    };
    let mut cs = signed.parser();
    let _ = cs.load_u32(32);
    let (Ok(wallet_id), Ok(valid_until), Ok(seqno)) =
        (cs.load_u32(32), cs.load_u32(32), cs.load_u32(32))
    else {
        return rejected(exit::CELL_UNDERFLOW);
    };
    if !data
        .public_key
        .verify(signed.cell_hash().as_slice(), &signature)
    {
        return rejected(exit::V5_SIGNATURE);
    }
    if !data.signature_allowed && data.has_extensions {
        return rejected(exit::V5_SIGNATURE_DISABLED);
    }
    if seqno != data.seqno {
        return rejected(exit::V5_SEQNO);
    }
    if wallet_id != data.wallet_id as u32 {
        return rejected(exit::V5_WALLET_ID);
    }
    if valid_until <= now {
        return rejected(exit::V5_EXPIRED);
    }
    // Accepted, seqno committed. Now the action list.
    let abort = |code| Verdict::Accepted {
        actions: vec![],
        abort_exit_code: Some(code),
        seqno_committed: true,
    };
    let actions = match read_v5_actions(&mut cs) {
        Ok(a) => a,
        // Extended actions (extension management) are not part of any payment flow.
        Err(ActionsError::NotASend) => return abort(exit::V5_BAD_OPERATION),
        Err(ActionsError::Underflow) => return abort(exit::CELL_UNDERFLOW),
    };
    if actions.iter().any(|a| a.mode & 2 == 0) {
        return abort(exit::V5_EXTERNAL_NEEDS_IGNORE_ERRORS);
    }
    Verdict::Accepted {
        actions,
        abort_exit_code: None,
        seqno_committed: true,
    }
}

#[cfg(test)]
mod tests {
    use tonlib_core::wallet::version_helper::VersionHelper;
    use tonlib_core::wallet::versioned::v4::WalletExtMsgBodyV4;
    use tonlib_core::wallet::versioned::v5::WalletExtMsgBodyV5;
    use zeroize::Zeroizing;

    use super::*;
    use crate::ton::{KeyPair, Network, WalletContract};
    use tonlib_core::cell::{ArcCell, CellBuilder};

    fn setup(version: WalletVersion) -> (KeyPair, WalletData) {
        let key = KeyPair::from_secret_seed(&Zeroizing::new([3u8; 32]));
        let wallet = WalletContract::new(version, Network::Mainnet, key.public_key());
        let data = WalletData {
            version,
            seqno: 4,
            wallet_id: wallet.wallet_id(),
            public_key: key.public_key(),
            signature_allowed: true,
            has_extensions: false,
        };
        (key, data)
    }

    fn empty_message() -> ArcCell {
        Cell::default().to_arc()
    }

    fn signed(version: WalletVersion, key: &KeyPair, body: Cell) -> Cell {
        let sig = key.sign(body.cell_hash().as_slice());
        VersionHelper::sign_msg(version.tonlib(), &body, &sig).unwrap()
    }

    fn v4_body(data: &WalletData, seqno: u32, valid_until: u32, op: u32) -> Cell {
        WalletExtMsgBodyV4 {
            subwallet_id: data.wallet_id,
            valid_until,
            msg_seqno: seqno,
            opcode: 0,
            msgs_modes: vec![3],
            msgs: vec![empty_message()],
        }
        .to_cell()
        .map(|c| {
            if op == 0 {
                return c;
            }
            // Same fields, another op byte and no messages.
            let mut b = CellBuilder::new();
            b.store_i32(32, data.wallet_id).unwrap();
            b.store_u32(32, valid_until).unwrap();
            b.store_u32(32, seqno).unwrap();
            b.store_u32(8, op).unwrap();
            b.build().unwrap()
        })
        .unwrap()
    }

    #[test]
    fn v4r2_checks_expiry_before_seqno_as_its_source_does() {
        let (key, data) = setup(WalletVersion::V4R2);
        // Both expired and with a wrong seqno: expiry (36) is thrown first.
        let body = signed(WalletVersion::V4R2, &key, v4_body(&data, 9, 100, 0));
        assert_eq!(
            run_external(&data, &body, 200),
            Verdict::Rejected { exit_code: 36 }
        );
        // valid_until == now is already expired (`valid_until <= now()`).
        let body = signed(WalletVersion::V4R2, &key, v4_body(&data, 4, 200, 0));
        assert_eq!(
            run_external(&data, &body, 200),
            Verdict::Rejected { exit_code: 36 }
        );
        assert!(matches!(
            run_external(&data, &body, 199),
            Verdict::Accepted {
                abort_exit_code: None,
                ..
            }
        ));
    }

    #[test]
    fn v4r2_other_ops_use_the_seqno_and_send_nothing() {
        let (key, data) = setup(WalletVersion::V4R2);
        let body = signed(WalletVersion::V4R2, &key, v4_body(&data, 4, 300, 7));
        assert_eq!(
            run_external(&data, &body, 200),
            Verdict::Accepted {
                actions: vec![],
                abort_exit_code: None,
                seqno_committed: true
            }
        );
    }

    #[test]
    fn v5r1_without_ignore_errors_aborts_after_using_the_seqno() {
        let (key, data) = setup(WalletVersion::V5R1);
        let body = WalletExtMsgBodyV5 {
            wallet_id: data.wallet_id,
            valid_until: 300,
            msg_seqno: 4,
            msgs_modes: vec![1],
            msgs: vec![empty_message()],
        }
        .to_cell()
        .unwrap();
        let body = signed(WalletVersion::V5R1, &key, body);
        assert_eq!(
            run_external(&data, &body, 200),
            Verdict::Accepted {
                actions: vec![],
                abort_exit_code: Some(exit::V5_EXTERNAL_NEEDS_IGNORE_ERRORS),
                seqno_committed: true
            }
        );
        // Signature first: a bad one is 135 even if everything else is wrong too.
        let other = KeyPair::from_secret_seed(&Zeroizing::new([4u8; 32]));
        let forged = WalletExtMsgBodyV5 {
            wallet_id: 1,
            valid_until: 1,
            msg_seqno: 99,
            msgs_modes: vec![3],
            msgs: vec![empty_message()],
        }
        .to_cell()
        .unwrap();
        let forged = signed(WalletVersion::V5R1, &other, forged);
        assert_eq!(
            run_external(&data, &forged, 200),
            Verdict::Rejected {
                exit_code: exit::V5_SIGNATURE
            }
        );
    }
}
