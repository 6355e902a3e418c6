//! Jettons on the simulated chain, as TEP-74's reference contracts behave: a master (USDT's,
//! by default at mainnet's USDT master address) and one jetton wallet per owner, at the
//! address the master computes from the owner (`wallet_address`). Emulated at the level of
//! their checks and messages, like the wallet contracts (not TVM bytecode):
//!
//! - `transfer` (from the owner only, 705 otherwise): 706 when the balance is short, 709 when
//!   the TON attached cannot pay the forward amount and both wallets' gas; otherwise the
//!   balance goes down and an `internal_transfer` carries the jettons, and the TON left, to
//!   the recipient's jetton wallet (deployed by it when new).
//! - `internal_transfer` (from the master or a jetton wallet of the same master, 707
//!   otherwise): credits the balance; `transfer_notification` with the forward TON amount and
//!   payload to the owner when the forward amount is not zero; `excesses` with what TON is
//!   left to the response address.
//! - A bounced `internal_transfer` gives the jettons back to the sender's balance.
//! - Anything else throws (0xffff) and the message bounces, if it asked to.
//!
//! Gas is a flat `FeeSchedule::jetton` per jetton wallet transaction. The wallet's code is a
//! cell of the simulator's own (the real USDT wallet is a library cell the simulator has no
//! use for), so addresses here are the simulator's, not mainnet's: clients must ask the
//! master (`get_wallet_address`), as they should anyway.

use std::sync::OnceLock;

use num_bigint::BigUint;
use tonlib_core::cell::{ArcCell, Cell, CellBuilder, TonCellError};
use tonlib_core::tlb_types::block::state_init::StateInit;
use tonlib_core::tlb_types::tlb::TLB;
use tonlib_core::TonAddress;

use crate::ton::jetton::{JettonAmount, OP_INTERNAL_TRANSFER};

/// Exit codes of the reference jetton wallet.
pub mod exit {
    pub const NOT_OWNER: i32 = 705;
    pub const BALANCE_ERROR: i32 = 706;
    pub const NOT_VALID_WALLET: i32 = 707;
    pub const NOT_ENOUGH_TON: i32 = 709;
    pub const WRONG_OP: i32 = 0xffff;
    pub const CELL_UNDERFLOW: i32 = 9;
}

/// Mainnet's USDT master, where the simulator puts its USDT by default.
pub const USDT_MASTER: &str = "EQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_sDs";
pub const USDT_DECIMALS: u32 = 6;

/// A jetton contract's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JettonState {
    Master {
        total_supply: u64,
        decimals: u32,
        symbol: String,
    },
    Wallet {
        owner: TonAddress,
        master: TonAddress,
        balance: JettonAmount,
    },
}

/// The jetton wallets' code: a cell naming the simulator's contract.
pub fn wallet_code() -> &'static ArcCell {
    static CODE: OnceLock<ArcCell> = OnceLock::new();
    CODE.get_or_init(|| {
        let mut b = CellBuilder::new();
        b.store_slice(b"fragment-gateway sim jetton wallet (TEP-74)")
            .expect("fits in a cell");
        b.build().expect("fits in a cell").to_arc()
    })
}

/// `balance:Coins owner:MsgAddress master:MsgAddress wallet_code:^Cell`, the reference
/// layout.
pub fn wallet_data(
    balance: JettonAmount,
    owner: &TonAddress,
    master: &TonAddress,
) -> Result<Cell, TonCellError> {
    let mut b = CellBuilder::new();
    b.store_coins(&BigUint::from(balance.units()))?
        .store_raw_address(owner)?
        .store_raw_address(master)?
        .store_reference(wallet_code())?;
    b.build()
}

/// The StateInit a jetton wallet is deployed with (balance zero).
pub fn wallet_state_init(master: &TonAddress, owner: &TonAddress) -> StateInit {
    let data = wallet_data(JettonAmount::ZERO, owner, master).expect("fits in a cell");
    StateInit::new(wallet_code().clone(), data.to_arc())
}

/// The jetton wallet of `owner` for the jetton `master` (`get_wallet_address`).
pub fn wallet_address(master: &TonAddress, owner: &TonAddress) -> TonAddress {
    let init = wallet_state_init(master, owner)
        .to_cell()
        .expect("a StateInit of two references fits");
    TonAddress::new(0, init.cell_hash())
}

/// Reads a jetton wallet's StateInit: `(owner, master)` if it is one of ours.
pub fn parse_wallet_state_init(init: &StateInit) -> Option<(TonAddress, TonAddress)> {
    let code = init.code.as_ref()?;
    if code.0.as_ref().cell_hash() != wallet_code().as_ref().cell_hash() {
        return None;
    }
    let data = init.data.as_ref()?;
    let mut p = data.0.parser();
    let _balance = p.load_coins().ok()?;
    let owner = p.load_address().ok()?;
    let master = p.load_address().ok()?;
    Some((owner, master))
}

/// The jetton amount a bounced `internal_transfer` carried: its body is 0xFFFFFFFF and the
/// first 256 bits of the original (op, query id, amount).
pub fn bounced_internal_transfer_amount(body: &Cell) -> Option<JettonAmount> {
    let mut p = body.parser();
    if p.load_u32(32).ok()? != 0xFFFF_FFFF || p.load_u32(32).ok()? != OP_INTERNAL_TRANSFER {
        return None;
    }
    let _query_id = p.load_u64(64).ok()?;
    let amount = p.load_coins().ok()?;
    u64::try_from(amount).ok().map(JettonAmount)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ton::address::parse_address;

    #[test]
    fn each_owner_has_its_own_wallet_and_its_state_init_says_whose() {
        let master = parse_address(USDT_MASTER).unwrap();
        let a = parse_address("EQDrnUhzufQP2o10Kcp8ifltoNxarQvkx2KIHpHXN18D07_R").unwrap();
        let b = parse_address("UQCFJEP4WZ_mpdo0_kMEmsTgvrMHG7K_tWY16pQhKHwoOtFz").unwrap();
        assert_ne!(wallet_address(&master, &a), wallet_address(&master, &b));
        assert_eq!(wallet_address(&master, &a), wallet_address(&master, &a));
        let init = wallet_state_init(&master, &a);
        assert_eq!(parse_wallet_state_init(&init), Some((a, master)));
    }
}
