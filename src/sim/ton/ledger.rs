//! The simulated chain state: accounts, wallet contracts, the mempool of accepted external
//! messages and the transactions blocks produce. Pure state machine: the caller passes the
//! time in, so tests and the HTTP layer drive it the same way.
//!
//! Model (what matters to a wallet client, with mainnet's rules):
//! - An external message is checked against the account's current state when it is sent
//!   (what toncenter's `sendBoc` reports) and again when its block applies it: two messages
//!   with one seqno can both be accepted, but only the first applies.
//! - Gas is a flat `compute` fee per accepted external (+ `deploy` when it deploys the
//!   wallet), forwarding a flat `forward` fee per outgoing message; the recipient gets the
//!   message value in full. Send modes 0/1/2/3/+128 behave as on mainnet.
//! - Messages to an undeployed account bounce back (minus a forwarding fee) when their
//!   bounce flag is set, and stay there otherwise.
//! - Transaction hashes are synthetic (SHA-256 over the transaction's facts): unique and
//!   stable, but not the hash of a serialised `Transaction` cell.
//! - Each transaction also records the monotonic instant its block was produced, which the
//!   chain itself does not carry: the HTTP layer uses it to model an indexer that trails
//!   the chain.

#[cfg(test)]
use std::collections::HashSet;
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use num_bigint::BigUint;
use num_traits::ToPrimitive;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tonlib_core::cell::{ArcCell, Cell, CellBuilder};
use tonlib_core::tlb_types::block::coins::{CurrencyCollection, Grams};
use tonlib_core::tlb_types::block::message::{CommonMsgInfo, IntMsgInfo, Message};
use tonlib_core::tlb_types::block::msg_address::MsgAddress;
use tonlib_core::tlb_types::primitives::either::{EitherRef, EitherRefLayout};
use tonlib_core::tlb_types::tlb::TLB;
use tonlib_core::{TonAddress, TonHash};

use super::contract::{run_external, SendAction, Verdict, WalletData};
use super::jetton::{self as sim_jetton, JettonState};
use crate::ton::external::std_address;
pub use crate::ton::external::ExternalMessage;
use crate::ton::jetton::{
    excesses, ForwardPayload, InternalTransfer, JettonAmount, JettonTransfer, TransferNotification,
    OP_INTERNAL_TRANSFER, OP_TRANSFER,
};
use crate::ton::{Network, WalletContract, WalletVersion};

/// Fees in nanoton. Defaults approximate a basechain wallet transfer on mainnet in 2026.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeeSchedule {
    /// Import + gas of an accepted external message.
    pub compute: u64,
    /// Forwarding fee per outgoing internal message.
    pub forward: u64,
    /// Extra for a message that deploys the wallet.
    pub deploy: u64,
    /// Gas of one jetton wallet transaction (a transfer out, or one in).
    pub jetton: u64,
}

impl Default for FeeSchedule {
    fn default() -> Self {
        FeeSchedule {
            compute: 1_200_000,
            forward: 400_000,
            deploy: 600_000,
            jetton: 10_000_000,
        }
    }
}

/// When a block is produced: chain time (unix seconds, what transactions carry) and the
/// monotonic instant (what indexer lag is measured against).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Moment {
    pub unix: u32,
    pub at: Instant,
}

impl Moment {
    pub fn now() -> Moment {
        Moment {
            unix: super::unix_now(),
            at: Instant::now(),
        }
    }
}

/// The most actions one transaction may emit (action phase result code 33 past it).
const MAX_ACTIONS: usize = 255;
use super::jetton::exit as exit_code;

mod result_code {
    pub const TOO_MANY_ACTIONS: i32 = 33;
    pub const INVALID_ACTION: i32 = 34;
    pub const NOT_ENOUGH_FUNDS: i32 = 37;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountStatus {
    Nonexist,
    Uninit,
    Active,
}

impl AccountStatus {
    /// v3 spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Nonexist => "nonexist",
            AccountStatus::Uninit => "uninit",
            AccountStatus::Active => "active",
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Account {
    pub balance: u64,
    /// None while undeployed.
    pub wallet: Option<WalletData>,
    /// A jetton master or jetton wallet deployed here.
    pub jetton: Option<JettonState>,
    pub last_tx: Option<(u64, TonHash)>,
    /// Indices into the ledger's transactions, oldest first.
    pub txs: Vec<usize>,
}

impl Account {
    pub fn status(&self) -> AccountStatus {
        if self.wallet.is_some() || self.jetton.is_some() {
            AccountStatus::Active
        } else {
            AccountStatus::Uninit
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum MessageKind {
    ExternalIn,
    Internal {
        source: TonAddress,
        bounce: bool,
        bounced: bool,
        fwd_fee: u64,
        created_lt: u64,
        created_at: u32,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct SimMessage {
    pub kind: MessageKind,
    pub hash: TonHash,
    /// External-in messages only.
    pub hash_norm: Option<TonHash>,
    pub destination: TonAddress,
    pub value: u64,
    pub body: ArcCell,
    pub init: Option<ArcCell>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ComputePhase {
    /// Why the compute phase was skipped (`no_state` for an undeployed recipient).
    pub skipped: Option<&'static str>,
    pub success: bool,
    pub exit_code: i32,
    pub gas_fees: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ActionPhase {
    pub success: bool,
    pub result_code: i32,
    pub tot_actions: usize,
    pub skipped_actions: usize,
    pub msgs_created: usize,
    pub total_fwd_fees: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SimTransaction {
    pub hash: TonHash,
    pub lt: u64,
    pub now: u32,
    /// When its block was produced, on the simulator's monotonic clock.
    pub applied_at: Instant,
    pub mc_seqno: u32,
    pub account: TonAddress,
    pub prev: Option<(u64, TonHash)>,
    pub orig_status: AccountStatus,
    pub end_status: AccountStatus,
    pub in_msg: SimMessage,
    pub out_msgs: Vec<SimMessage>,
    pub total_fees: u64,
    pub aborted: bool,
    pub compute: ComputePhase,
    pub action: Option<ActionPhase>,
}

/// A message as a harness accounts for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageSummary {
    pub hash: TonHash,
    /// External-in messages only: the normalized hash clients track a transfer by.
    pub hash_norm: Option<TonHash>,
    /// `None` for an external-in message.
    pub source: Option<TonAddress>,
    pub destination: TonAddress,
    /// Nanoton (0 for an external-in message).
    pub value: u64,
    /// Hash of the body cell (what Fragment matches an invoice's payload by).
    pub body_hash: TonHash,
    pub bounced: bool,
}

impl MessageSummary {
    fn of(m: &SimMessage) -> MessageSummary {
        let (source, bounced) = match &m.kind {
            MessageKind::ExternalIn => (None, false),
            MessageKind::Internal {
                source, bounced, ..
            } => (Some(source.clone()), *bounced),
        };
        MessageSummary {
            hash: m.hash.clone(),
            hash_norm: m.hash_norm.clone(),
            source,
            destination: m.destination.clone(),
            value: m.value,
            body_hash: m.body.as_ref().cell_hash(),
            bounced,
        }
    }
}

/// A transaction as a harness accounts for it: what came in, what went out, what it cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxSummary {
    pub hash: TonHash,
    pub lt: u64,
    pub utime: u32,
    pub account: TonAddress,
    pub in_msg: MessageSummary,
    pub out_msgs: Vec<MessageSummary>,
    /// Everything the account paid besides the values it sent (gas, forwarding, and the
    /// forwarding fee kept from a bounced message).
    pub total_fees: u64,
    pub aborted: bool,
    /// The account's balance after minus before, in nanoton: the incoming value (unless it
    /// bounced back) minus the fees minus the values sent.
    pub balance_change: i128,
}

impl SimTransaction {
    pub fn summary(&self) -> TxSummary {
        let sent: i128 = self.out_msgs.iter().map(|m| i128::from(m.value)).sum();
        TxSummary {
            hash: self.hash.clone(),
            lt: self.lt,
            utime: self.now,
            account: self.account.clone(),
            in_msg: MessageSummary::of(&self.in_msg),
            out_msgs: self.out_msgs.iter().map(MessageSummary::of).collect(),
            total_fees: self.total_fees,
            aborted: self.aborted,
            // A bounce returns the value minus a fee as an outgoing message, so this holds
            // for bounced messages too (their net change is zero).
            balance_change: i128::from(self.in_msg.value) - i128::from(self.total_fees) - sent,
        }
    }
}

/// Why an external message was not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Not a BOC holding an external-in message to a standard address.
    Malformed(String),
    /// No such account at all, and no StateInit to create it.
    AccountMissing,
    /// Undeployed account and no (or a wrong) StateInit: the compute phase cannot run.
    NoState,
    /// The StateInit's code is not a contract the simulator runs.
    UnsupportedContract,
    /// The balance cannot pay for executing the message.
    CannotPayGas,
    /// The wallet contract threw before accepting.
    Contract(i32),
    /// Accepted by the contract, but the balance does not cover the amounts plus fees. On
    /// mainnet the wallet would accept, charge gas and skip the sends (action phase result
    /// 37); the simulator refuses it outright so that nothing changes.
    InsufficientFunds { balance: u64, required: u64 },
}

impl Rejection {
    /// The exit code toncenter's error text carries, if any.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            Rejection::Contract(c) => Some(*c),
            Rejection::NoState => Some(0),
            Rejection::InsufficientFunds { .. } => Some(result_code::NOT_ENOUGH_FUNDS),
            _ => None,
        }
    }
}

/// The outcome of checking an external message against the current state.
#[derive(Clone, Debug)]
struct Evaluation {
    ext: ExternalMessage,
    /// Wallet data before the message (from the StateInit when it deploys).
    data: WalletData,
    deploys: bool,
    gas_fee: u64,
    actions: Vec<SendAction>,
    abort_exit_code: Option<i32>,
    seqno_committed: bool,
}

/// An outgoing message decided by the action phase, before delivery.
struct Outgoing {
    destination: TonAddress,
    value: u64,
    bounce: bool,
    body: EitherRef<ArcCell>,
    init: Option<ArcCell>,
}

impl Outgoing {
    /// A message a contract builds itself, its body in a reference.
    fn with_body(
        destination: TonAddress,
        value: u64,
        bounce: bool,
        body: ArcCell,
        init: Option<ArcCell>,
    ) -> Outgoing {
        Outgoing {
            destination,
            value,
            bounce,
            body: EitherRef {
                value: body,
                layout: EitherRefLayout::ToRef,
            },
            init,
        }
    }
}

#[derive(Debug)]
pub struct Ledger {
    network: Network,
    fees: FeeSchedule,
    accounts: HashMap<TonAddress, Account>,
    txs: Vec<SimTransaction>,
    by_hash: HashMap<TonHash, usize>,
    /// Inbound message hash (and normalized hash) → transaction.
    by_in_msg: HashMap<TonHash, usize>,
    /// Outbound message hash → sending transaction.
    by_out_msg: HashMap<TonHash, Vec<usize>>,
    mempool: VecDeque<ExternalMessage>,
    next_lt: u64,
    mc_seqno: u32,
    faucet: TonAddress,
    /// How many burst senders were made up so far (each burst transfer gets a new one).
    senders: u64,
}

impl Ledger {
    pub fn new(network: Network, fees: FeeSchedule) -> Ledger {
        Ledger {
            network,
            fees,
            accounts: HashMap::new(),
            txs: Vec::new(),
            by_hash: HashMap::new(),
            by_in_msg: HashMap::new(),
            by_out_msg: HashMap::new(),
            mempool: VecDeque::new(),
            next_lt: 47_000_000_000_000,
            mc_seqno: 1,
            // A fixed address for the faucet: the hash of its name.
            faucet: TonAddress::new(
                0,
                TonHash::from(<[u8; 32]>::from(Sha256::digest(
                    b"fragment-gateway sim faucet",
                ))),
            ),
            senders: 0,
        }
    }

    pub fn network(&self) -> Network {
        self.network
    }

    pub fn fees(&self) -> FeeSchedule {
        self.fees
    }

    pub fn faucet_address(&self) -> &TonAddress {
        &self.faucet
    }

    pub fn mc_seqno(&self) -> u32 {
        self.mc_seqno
    }

    pub fn account(&self, address: &TonAddress) -> Option<&Account> {
        self.accounts.get(address)
    }

    pub fn status(&self, address: &TonAddress) -> AccountStatus {
        self.accounts
            .get(address)
            .map_or(AccountStatus::Nonexist, Account::status)
    }

    pub fn balance(&self, address: &TonAddress) -> u64 {
        self.accounts.get(address).map_or(0, |a| a.balance)
    }

    pub fn pending(&self) -> usize {
        self.mempool.len()
    }

    pub fn transaction(&self, hash: &TonHash) -> Option<&SimTransaction> {
        self.by_hash.get(hash).map(|&i| &self.txs[i])
    }

    /// Transactions that received (`inbound`) or sent a message with this hash (plain or
    /// normalized).
    pub fn transactions_by_message(
        &self,
        hash: &TonHash,
        inbound: bool,
        outbound: bool,
    ) -> Vec<&SimTransaction> {
        let mut found = Vec::new();
        if inbound {
            if let Some(&i) = self.by_in_msg.get(hash) {
                found.push(&self.txs[i]);
            }
        }
        if outbound {
            if let Some(list) = self.by_out_msg.get(hash) {
                found.extend(list.iter().map(|&i| &self.txs[i]));
            }
        }
        found
    }

    /// An account's transactions, newest first, starting at `from_lt` (inclusive) and
    /// stopping above `to_lt` (exclusive, 0 = no bound).
    pub fn account_transactions(
        &self,
        address: &TonAddress,
        from_lt: Option<u64>,
        to_lt: u64,
        limit: usize,
    ) -> Vec<&SimTransaction> {
        let Some(account) = self.accounts.get(address) else {
            return vec![];
        };
        account
            .txs
            .iter()
            .rev()
            .map(|&i| &self.txs[i])
            .filter(|t| from_lt.is_none_or(|lt| t.lt <= lt))
            .take_while(|t| t.lt > to_lt)
            .take(limit)
            .collect()
    }

    /// An account's transactions, oldest first, summarised. Their `balance_change`s add up
    /// to the balance, except for what `install_wallet` put there (no transaction).
    pub fn history(&self, address: &TonAddress) -> Vec<TxSummary> {
        self.accounts.get(address).map_or_else(Vec::new, |a| {
            a.txs.iter().map(|&i| self.txs[i].summary()).collect()
        })
    }

    /// The transaction whose external message set off the chain of messages that ended in
    /// transaction `hash` (itself, if its message is external): for a payment received,
    /// the payer's transfer. `None` for an unknown hash, or when the chain starts outside
    /// the simulation (the faucet, a burst sender).
    pub fn origin(&self, hash: &TonHash) -> Option<&SimTransaction> {
        let mut tx = self.transaction(hash)?;
        // Each step goes to a strictly earlier transaction, so this ends.
        loop {
            match tx.in_msg.kind {
                MessageKind::ExternalIn => return Some(tx),
                MessageKind::Internal { .. } => {
                    let &sender = self.by_out_msg.get(&tx.in_msg.hash)?.first()?;
                    tx = &self.txs[sender];
                }
            }
        }
    }

    /// Puts a deployed wallet with a balance directly into the state, as a genesis account
    /// (no transaction).
    pub fn install_wallet(&mut self, wallet: &WalletContract, balance: u64) {
        let data = WalletData {
            version: wallet.version(),
            seqno: 0,
            wallet_id: wallet.wallet_id(),
            public_key: wallet.public_key(),
            signature_allowed: true,
            has_extensions: false,
        };
        let account = self.accounts.entry(wallet.address().clone()).or_default();
        account.wallet = Some(data);
        account.balance = balance;
    }

    /// Puts a jetton master at `address` as a genesis account (no transaction).
    pub fn install_jetton_master(&mut self, address: &TonAddress, decimals: u32, symbol: &str) {
        let account = self.accounts.entry(address.clone()).or_default();
        account.jetton = Some(JettonState::Master {
            total_supply: 0,
            decimals,
            symbol: symbol.to_string(),
        });
    }

    /// The jetton balance of `owner`'s wallet of `master` (zero while it has none).
    pub fn jetton_balance(&self, master: &TonAddress, owner: &TonAddress) -> JettonAmount {
        match self
            .accounts
            .get(&sim_jetton::wallet_address(master, owner))
            .and_then(|a| a.jetton.as_ref())
        {
            Some(JettonState::Wallet { balance, .. }) => *balance,
            _ => JettonAmount::ZERO,
        }
    }

    /// Fault injection: empties `owner`'s jetton wallet of `master`, as if it had spent the
    /// jettons in a transfer the test does not model. Returns what it held.
    pub fn take_jettons(&mut self, master: &TonAddress, owner: &TonAddress) -> JettonAmount {
        match self
            .accounts
            .get_mut(&sim_jetton::wallet_address(master, owner))
            .and_then(|a| a.jetton.as_mut())
        {
            Some(JettonState::Wallet { balance, .. }) => std::mem::take(balance),
            _ => JettonAmount::ZERO,
        }
    }

    /// Mints `amount` of `master`'s jetton to `owner` at once (its own block): the master
    /// sends an `internal_transfer` to the owner's jetton wallet, deploying it when new, as a
    /// minter does. Returns the jetton wallet's transaction. Panics when no master is there.
    pub fn mint_jetton(
        &mut self,
        master: &TonAddress,
        owner: &TonAddress,
        amount: JettonAmount,
        now: Moment,
    ) -> TonHash {
        match self
            .accounts
            .get_mut(master)
            .and_then(|a| a.jetton.as_mut())
        {
            Some(JettonState::Master { total_supply, .. }) => {
                *total_supply = total_supply.saturating_add(amount.units());
            }
            _ => panic!("no jetton master at {master}"),
        }
        self.mc_seqno += 1;
        let body = InternalTransfer {
            query_id: 0,
            amount,
            from: None,
            response_destination: None,
            forward_ton_amount: crate::ton::Nanoton::ZERO,
            forward_payload: ForwardPayload::None,
        }
        .to_cell()
        .expect("an internal transfer fits");
        let init = sim_jetton::wallet_state_init(master, owner)
            .to_cell()
            .expect("fits")
            .to_arc();
        let out = Outgoing::with_body(
            sim_jetton::wallet_address(master, owner),
            self.fees.jetton + self.fees.forward,
            false,
            body.to_arc(),
            Some(init),
        );
        let lt = self.take_lt(1);
        let msg = self.build_internal(master, out, lt, now.unix, self.fees.forward, false);
        self.deliver(msg, now)
    }

    /// Sends `amount` from the faucet to `address` at once (its own block). Returns the
    /// recipient's transaction.
    pub fn fund(&mut self, address: &TonAddress, amount: u64, now: Moment) -> TonHash {
        self.mc_seqno += 1;
        let source = self.faucet.clone();
        self.credit(&source, address, amount, 0, now)
    }

    /// `count` incoming transfers of `amount` each to `address`, in one block, each from a
    /// sender of its own, as customers paying a shop's wallet produce: every one is a
    /// separate transaction with an internal, non-bounceable message carrying the sender's
    /// address and the forwarding fee the sender paid. The senders are made-up addresses
    /// (like the faucet, they have no transactions of their own). Returns the recipient's
    /// transactions, oldest first.
    pub fn burst(
        &mut self,
        address: &TonAddress,
        count: u32,
        amount: u64,
        now: Moment,
    ) -> Vec<TonHash> {
        if count == 0 {
            return vec![];
        }
        self.mc_seqno += 1;
        (0..count)
            .map(|_| {
                self.senders += 1;
                let mut h = Sha256::new();
                h.update(b"fragment-gateway sim burst sender");
                h.update(self.senders.to_be_bytes());
                let source = TonAddress::new(0, TonHash::from(<[u8; 32]>::from(h.finalize())));
                self.credit(&source, address, amount, self.fees.forward, now)
            })
            .collect()
    }

    /// Delivers an internal message from an account outside the simulation.
    fn credit(
        &mut self,
        source: &TonAddress,
        address: &TonAddress,
        amount: u64,
        fwd_fee: u64,
        now: Moment,
    ) -> TonHash {
        let out = Outgoing {
            destination: address.clone(),
            value: amount,
            bounce: false,
            body: EitherRef {
                value: Cell::default().to_arc(),
                layout: EitherRefLayout::ToCell,
            },
            init: None,
        };
        let lt = self.take_lt(1);
        let msg = self.build_internal(source, out, lt, now.unix, fwd_fee, false);
        self.deliver(msg, now)
    }

    /// Checks an external message as `sendBoc` does and queues it for the next block, unless
    /// `drop` (asked only once the message is accepted) says to lose it (fault injection).
    /// With `refuse_underfunded`, a message whose amounts plus fees exceed the balance is
    /// refused (mainnet would accept it and skip the sends).
    pub fn submit(
        &mut self,
        ext: ExternalMessage,
        now: u32,
        refuse_underfunded: bool,
        drop: impl FnOnce() -> bool,
    ) -> Result<ExternalMessage, Rejection> {
        let eval = self.evaluate(ext, now)?;
        if refuse_underfunded && eval.abort_exit_code.is_none() {
            let balance = self.balance(&eval.ext.destination);
            // An amount beyond u64 or a sum that overflows is more than any balance.
            let required = eval.actions.iter().try_fold(eval.gas_fee, |sum, a| {
                message_value(&a.message)?
                    .checked_add(self.fees.forward)?
                    .checked_add(sum)
            });
            match required {
                Some(required) if required <= balance => {}
                required => {
                    return Err(Rejection::InsufficientFunds {
                        balance,
                        required: required.unwrap_or(u64::MAX),
                    })
                }
            }
        }
        if !drop() {
            self.mempool.push_back(eval.ext.clone());
        }
        Ok(eval.ext)
    }

    /// Applies every queued message as one block. Messages that no longer pass (their seqno
    /// was taken by an earlier one, they expired meanwhile) are dropped, as the network
    /// drops them. Returns how many were applied.
    pub fn produce_block(&mut self, now: Moment) -> usize {
        self.mc_seqno += 1;
        let mut applied = 0;
        while let Some(ext) = self.mempool.pop_front() {
            match self.evaluate(ext, now.unix) {
                Ok(eval) => {
                    self.execute(eval, now);
                    applied += 1;
                }
                Err(rejection) => {
                    tracing::debug!(?rejection, "simulated block dropped a message");
                }
            }
        }
        applied
    }

    fn evaluate(&self, ext: ExternalMessage, now: u32) -> Result<Evaluation, Rejection> {
        let account = self.accounts.get(&ext.destination);
        let (data, deploys) = match account.and_then(|a| a.wallet.clone()) {
            Some(data) => (data, false),
            None => {
                let Some(init) = &ext.state_init else {
                    return Err(if account.is_some() {
                        Rejection::NoState
                    } else {
                        Rejection::AccountMissing
                    });
                };
                let init_cell = init
                    .to_cell()
                    .map_err(|e| Rejection::Malformed(e.to_string()))?;
                if init_cell.cell_hash() != ext.destination.hash_part
                    || ext.destination.workchain != 0
                {
                    return Err(Rejection::NoState);
                }
                let (Some(code), Some(data)) = (&init.code, &init.data) else {
                    return Err(Rejection::NoState);
                };
                let version = WalletVersion::from_code_hash(&code.0.as_ref().cell_hash())
                    .ok_or(Rejection::UnsupportedContract)?;
                let data = WalletData::parse(version, &data.0)
                    .map_err(|e| Rejection::Malformed(format!("wallet data: {e}")))?;
                (data, true)
            }
        };
        let gas_fee = self.fees.compute + if deploys { self.fees.deploy } else { 0 };
        if account.map_or(0, |a| a.balance) < gas_fee {
            return Err(Rejection::CannotPayGas);
        }
        match run_external(&data, &ext.body, now) {
            Verdict::Rejected { exit_code } => Err(Rejection::Contract(exit_code)),
            Verdict::Accepted {
                actions,
                abort_exit_code,
                seqno_committed,
            } => Ok(Evaluation {
                ext,
                data,
                deploys,
                gas_fee,
                actions,
                abort_exit_code,
                seqno_committed,
            }),
        }
    }

    fn execute(&mut self, eval: Evaluation, moment: Moment) {
        let now = moment.unix;
        let address = eval.ext.destination.clone();
        let orig_status = self.status(&address);
        let starting_balance = self.balance(&address) - eval.gas_fee;

        let mut data = eval.data.clone();

        // Action phase.
        let mut balance = starting_balance;
        let mut outgoing = Vec::new();
        let mut action = None;
        if eval.abort_exit_code.is_none() {
            let mut phase = ActionPhase {
                success: true,
                result_code: 0,
                tot_actions: eval.actions.len(),
                skipped_actions: 0,
                msgs_created: 0,
                total_fwd_fees: 0,
            };
            let fail = |phase: &mut ActionPhase, code| {
                phase.success = false;
                phase.result_code = code;
            };
            if eval.actions.len() > MAX_ACTIONS {
                fail(&mut phase, result_code::TOO_MANY_ACTIONS);
            } else {
                for a in &eval.actions {
                    let Ok(msg) = Message::from_cell(&a.message) else {
                        fail(&mut phase, result_code::INVALID_ACTION);
                        break;
                    };
                    let CommonMsgInfo::Int(info) = &msg.info else {
                        fail(&mut phase, result_code::INVALID_ACTION);
                        break;
                    };
                    let Some(destination) = std_address(&info.dest) else {
                        fail(&mut phase, result_code::INVALID_ACTION);
                        break;
                    };
                    let fwd = self.fees.forward;
                    let requested = info.value.grams.amount.to_u64().unwrap_or(u64::MAX);
                    // +128: carry the whole remaining balance; +1: pay forwarding apart.
                    let (cost, value) = if a.mode & 128 != 0 {
                        (balance, balance.saturating_sub(fwd))
                    } else if a.mode & 1 != 0 {
                        (requested.saturating_add(fwd), requested)
                    } else {
                        (requested, requested.saturating_sub(fwd))
                    };
                    if cost > balance || (a.mode & 1 == 0 && requested < fwd) {
                        if a.mode & 2 != 0 {
                            phase.skipped_actions += 1;
                            continue;
                        }
                        fail(&mut phase, result_code::NOT_ENOUGH_FUNDS);
                        break;
                    }
                    balance -= cost;
                    phase.total_fwd_fees += fwd;
                    outgoing.push(Outgoing {
                        destination,
                        value,
                        bounce: info.bounce,
                        body: msg.body.clone(),
                        init: msg
                            .init
                            .as_ref()
                            .and_then(|i| i.value.to_cell().ok())
                            .map(Cell::to_arc),
                    });
                }
            }
            if !phase.success {
                // A failed action phase sends nothing and spends nothing but gas.
                outgoing.clear();
                balance = starting_balance;
                phase.total_fwd_fees = 0;
            }
            phase.msgs_created = outgoing.len();
            action = Some(phase);
        }
        // The new data (seqno + 1) is saved by a successful action phase, or by the
        // contract's `commit()` when it threw after committing.
        let saved = match (&eval.abort_exit_code, &action) {
            (Some(_), _) => eval.seqno_committed,
            (None, Some(phase)) => phase.success,
            (None, None) => true,
        };
        if saved {
            data.seqno = data.seqno.wrapping_add(1);
        }

        let account = self.accounts.entry(address.clone()).or_default();
        account.balance = balance;
        account.wallet = Some(data);
        let end_status = AccountStatus::Active;

        let lt = self.take_lt(1 + outgoing.len() as u64);
        let fwd_total = action.as_ref().map_or(0, |a| a.total_fwd_fees);
        let out_msgs: Vec<SimMessage> = outgoing
            .into_iter()
            .enumerate()
            .map(|(i, o)| {
                self.build_internal(
                    &address,
                    o,
                    lt + 1 + i as u64,
                    now,
                    self.fees.forward,
                    false,
                )
            })
            .collect();
        let in_msg = SimMessage {
            kind: MessageKind::ExternalIn,
            hash: eval.ext.hash.clone(),
            hash_norm: Some(eval.ext.hash_norm.clone()),
            destination: address.clone(),
            value: 0,
            body: eval.ext.body.clone(),
            init: eval
                .ext
                .state_init
                .as_ref()
                .and_then(|i| i.to_cell().ok())
                .map(Cell::to_arc),
        };
        let tx = SimTransaction {
            hash: TonHash::from([0u8; 32]),
            lt,
            now,
            applied_at: moment.at,
            mc_seqno: self.mc_seqno,
            account: address.clone(),
            prev: None,
            orig_status: if eval.deploys {
                AccountStatus::Uninit
            } else {
                orig_status
            },
            end_status,
            in_msg,
            out_msgs: out_msgs.clone(),
            total_fees: eval.gas_fee + fwd_total,
            // A failed action phase aborts the transaction too (its sends are undone).
            aborted: eval.abort_exit_code.is_some() || !saved,
            compute: ComputePhase {
                skipped: None,
                success: eval.abort_exit_code.is_none(),
                exit_code: eval.abort_exit_code.unwrap_or(0),
                gas_fees: eval.gas_fee,
            },
            action,
        };
        self.record(tx);
        for msg in out_msgs {
            self.deliver(msg, moment);
        }
    }

    /// Delivers an internal message: credits the recipient, or bounces it back from an
    /// undeployed recipient when its bounce flag asks for it. Returns the recipient's
    /// transaction hash.
    fn deliver(&mut self, msg: SimMessage, moment: Moment) -> TonHash {
        if let Some((owner, master)) = self.jetton_wallet_at(&msg) {
            return self.deliver_to_jetton_wallet(msg, owner, master, moment);
        }
        let now = moment.unix;
        let MessageKind::Internal {
            source,
            bounce,
            bounced,
            ..
        } = msg.kind.clone()
        else {
            unreachable!("only internal messages are delivered");
        };
        let address = msg.destination.clone();
        let orig_status = self.status(&address);
        let lt = self.take_lt(2);
        let bounces = bounce && !bounced && orig_status != AccountStatus::Active;
        let fwd = self.fees.forward;
        let msg_value = msg.value;
        let returned = msg_value.saturating_sub(fwd);

        let mut out_msgs = Vec::new();
        if bounces && returned > 0 {
            let bounce_body = bounce_body(&msg.body);
            let back = Outgoing::with_body(source.clone(), returned, false, bounce_body, None);
            out_msgs.push(self.build_internal(&address, back, lt + 1, now, fwd, true));
        }
        let account = self.accounts.entry(address.clone()).or_default();
        if !bounces {
            account.balance = account.balance.saturating_add(msg.value);
        }
        let end_status = account.status();
        let tx = SimTransaction {
            hash: TonHash::from([0u8; 32]),
            lt,
            now,
            applied_at: moment.at,
            mc_seqno: self.mc_seqno,
            account: address,
            prev: None,
            orig_status,
            end_status,
            in_msg: msg,
            out_msgs: out_msgs.clone(),
            total_fees: if bounces { msg_value.min(fwd) } else { 0 },
            aborted: bounces,
            compute: ComputePhase {
                skipped: (orig_status != AccountStatus::Active).then_some("no_state"),
                success: !bounces,
                exit_code: 0,
                gas_fees: 0,
            },
            action: None,
        };
        let hash = self.record(tx);
        for m in out_msgs {
            self.deliver(m, moment);
        }
        hash
    }

    /// The jetton wallet (owner, master) a message goes to: deployed there already, or
    /// deployed by the message's own StateInit when that is a jetton wallet's for exactly
    /// this address.
    fn jetton_wallet_at(&self, msg: &SimMessage) -> Option<(TonAddress, TonAddress)> {
        if let Some(JettonState::Wallet { owner, master, .. }) = self
            .accounts
            .get(&msg.destination)
            .and_then(|a| a.jetton.as_ref())
        {
            return Some((owner.clone(), master.clone()));
        }
        if self.status(&msg.destination) == AccountStatus::Active {
            return None;
        }
        let init = msg.init.as_ref()?;
        let state_init =
            tonlib_core::tlb_types::block::state_init::StateInit::from_cell(init).ok()?;
        let (owner, master) = sim_jetton::parse_wallet_state_init(&state_init)?;
        (sim_jetton::wallet_address(&master, &owner) == msg.destination).then_some((owner, master))
    }

    /// An internal message to a jetton wallet, run as TEP-74's reference wallet runs it (see
    /// `sim::ton::jetton`). Returns the jetton wallet's transaction hash.
    fn deliver_to_jetton_wallet(
        &mut self,
        msg: SimMessage,
        owner: TonAddress,
        master: TonAddress,
        moment: Moment,
    ) -> TonHash {
        let now = moment.unix;
        let MessageKind::Internal {
            source,
            bounce,
            bounced,
            ..
        } = msg.kind.clone()
        else {
            unreachable!("only internal messages are delivered");
        };
        let address = msg.destination.clone();
        let orig_status = self.status(&address);
        let balance = match self.accounts.get(&address).and_then(|a| a.jetton.as_ref()) {
            Some(JettonState::Wallet { balance, .. }) => *balance,
            _ => JettonAmount::ZERO,
        };
        let (gas, fwd) = (self.fees.jetton, self.fees.forward);
        // What the wallet's code decides: the new balance and the messages to send, or the
        // exit code it throws.
        let decided: Result<(JettonAmount, Vec<Outgoing>), i32> = (|| {
            let body = msg.body.as_ref();
            let available = msg
                .value
                .checked_sub(gas)
                .ok_or(exit_code::NOT_ENOUGH_TON)?;
            if bounced {
                // A transfer that bounced off the recipient's wallet: the jettons come back.
                let back = sim_jetton::bounced_internal_transfer_amount(body).unwrap_or_default();
                let balance = balance.checked_add(back).ok_or(exit_code::BALANCE_ERROR)?;
                return Ok((balance, vec![]));
            }
            let op = body
                .parser()
                .load_u32(32)
                .map_err(|_| exit_code::WRONG_OP)?;
            match op {
                OP_TRANSFER => {
                    if source != owner {
                        return Err(exit_code::NOT_OWNER);
                    }
                    let t = JettonTransfer::parse(body).map_err(|_| exit_code::CELL_UNDERFLOW)?;
                    let left = balance.units().checked_sub(t.amount.units());
                    let Some(left) = left else {
                        return Err(exit_code::BALANCE_ERROR);
                    };
                    // The forward amount, the recipient wallet's gas and both messages'
                    // forwarding.
                    let forward = t.forward_ton_amount.as_u64();
                    let needed = forward
                        .checked_add(gas)
                        .and_then(|n| n.checked_add(2 * fwd))
                        .ok_or(exit_code::NOT_ENOUGH_TON)?;
                    if available < needed {
                        return Err(exit_code::NOT_ENOUGH_TON);
                    }
                    let internal = InternalTransfer {
                        query_id: t.query_id,
                        amount: t.amount,
                        from: Some(owner.clone()),
                        response_destination: t.response_destination.clone(),
                        forward_ton_amount: t.forward_ton_amount,
                        forward_payload: t.forward_payload.clone(),
                    }
                    .to_cell()
                    .map_err(|_| exit_code::CELL_UNDERFLOW)?;
                    let init = sim_jetton::wallet_state_init(&master, &t.destination)
                        .to_cell()
                        .map_err(|_| exit_code::CELL_UNDERFLOW)?;
                    let out = Outgoing::with_body(
                        sim_jetton::wallet_address(&master, &t.destination),
                        available - fwd,
                        true,
                        internal.to_arc(),
                        Some(init.to_arc()),
                    );
                    Ok((JettonAmount(left), vec![out]))
                }
                OP_INTERNAL_TRANSFER => {
                    let t = InternalTransfer::parse(body).map_err(|_| exit_code::CELL_UNDERFLOW)?;
                    let from_wallet = t
                        .from
                        .as_ref()
                        .map(|from| sim_jetton::wallet_address(&master, from));
                    if source != master && from_wallet.as_ref() != Some(&source) {
                        return Err(exit_code::NOT_VALID_WALLET);
                    }
                    let balance = balance
                        .checked_add(t.amount)
                        .ok_or(exit_code::BALANCE_ERROR)?;
                    let mut left = available;
                    let mut outs = vec![];
                    let forward = t.forward_ton_amount.as_u64();
                    if forward > 0 {
                        left = left
                            .checked_sub(forward + fwd)
                            .ok_or(exit_code::NOT_ENOUGH_TON)?;
                        let notification = TransferNotification {
                            query_id: t.query_id,
                            amount: t.amount,
                            sender: t.from.clone(),
                            forward_payload: t.forward_payload.clone(),
                        }
                        .to_cell()
                        .map_err(|_| exit_code::CELL_UNDERFLOW)?;
                        outs.push(Outgoing::with_body(
                            owner.clone(),
                            forward,
                            false,
                            notification.to_arc(),
                            None,
                        ));
                    }
                    if let Some(response) = &t.response_destination {
                        if left > fwd {
                            let body =
                                excesses(t.query_id).map_err(|_| exit_code::CELL_UNDERFLOW)?;
                            outs.push(Outgoing::with_body(
                                response.clone(),
                                left - fwd,
                                false,
                                body.to_arc(),
                                None,
                            ));
                        }
                    }
                    Ok((balance, outs))
                }
                _ => Err(exit_code::WRONG_OP),
            }
        })();

        let lt = self.take_lt(3);
        let (new_balance, outgoing, exit, gas_paid) = match decided {
            Ok((b, outs)) => (b, outs, 0, gas.min(msg.value)),
            Err(code) => {
                // Thrown: nothing changes but the gas; the rest goes back when it may.
                let gas_paid = gas.min(msg.value);
                let mut outs = vec![];
                let returned = msg.value.saturating_sub(gas_paid + fwd);
                if bounce && !bounced && returned > 0 {
                    outs.push(Outgoing::with_body(
                        source.clone(),
                        returned,
                        false,
                        bounce_body(&msg.body),
                        None,
                    ));
                }
                (balance, outs, code, gas_paid)
            }
        };
        let thrown = exit != 0;
        let out_msgs: Vec<SimMessage> = outgoing
            .into_iter()
            .enumerate()
            .map(|(i, o)| self.build_internal(&address, o, lt + 1 + i as u64, now, fwd, thrown))
            .collect();
        let sent: u64 = out_msgs.iter().map(|m| m.value).sum();
        let fwd_total = fwd * out_msgs.len() as u64;
        let account = self.accounts.entry(address.clone()).or_default();
        let deploys = account.jetton.is_none();
        if !thrown || deploys {
            account.jetton = Some(JettonState::Wallet {
                owner,
                master,
                balance: if thrown {
                    JettonAmount::ZERO
                } else {
                    new_balance
                },
            });
        }
        account.balance = account
            .balance
            .saturating_add(msg.value)
            .saturating_sub(gas_paid + sent + fwd_total);
        let end_status = account.status();
        let tx = SimTransaction {
            hash: TonHash::from([0u8; 32]),
            lt,
            now,
            applied_at: moment.at,
            mc_seqno: self.mc_seqno,
            account: address,
            prev: None,
            orig_status,
            end_status,
            in_msg: msg,
            out_msgs: out_msgs.clone(),
            total_fees: gas_paid + fwd_total,
            aborted: thrown,
            compute: ComputePhase {
                skipped: None,
                success: !thrown,
                exit_code: exit,
                gas_fees: gas_paid,
            },
            action: Some(ActionPhase {
                success: true,
                result_code: 0,
                tot_actions: out_msgs.len(),
                skipped_actions: 0,
                msgs_created: out_msgs.len(),
                total_fwd_fees: fwd_total,
            }),
        };
        let hash = self.record(tx);
        for m in out_msgs {
            self.deliver(m, moment);
        }
        hash
    }

    /// Appends a transaction: links it to the account's previous one, hashes it, indexes it.
    fn record(&mut self, mut tx: SimTransaction) -> TonHash {
        let account = self.accounts.entry(tx.account.clone()).or_default();
        tx.prev = account.last_tx.clone();
        let mut h = Sha256::new();
        h.update(b"fragment-gateway sim transaction");
        h.update(tx.account.hash_part.as_slice());
        h.update(tx.lt.to_be_bytes());
        if let Some((lt, hash)) = &tx.prev {
            h.update(lt.to_be_bytes());
            h.update(hash.as_slice());
        }
        h.update(tx.in_msg.hash.as_slice());
        for m in &tx.out_msgs {
            h.update(m.hash.as_slice());
        }
        h.update(tx.total_fees.to_be_bytes());
        tx.hash = TonHash::from(<[u8; 32]>::from(h.finalize()));

        let index = self.txs.len();
        account.last_tx = Some((tx.lt, tx.hash.clone()));
        account.txs.push(index);
        self.by_hash.insert(tx.hash.clone(), index);
        self.by_in_msg.insert(tx.in_msg.hash.clone(), index);
        if let Some(norm) = &tx.in_msg.hash_norm {
            self.by_in_msg.insert(norm.clone(), index);
        }
        for m in &tx.out_msgs {
            self.by_out_msg
                .entry(m.hash.clone())
                .or_default()
                .push(index);
        }
        let hash = tx.hash.clone();
        self.txs.push(tx);
        hash
    }

    fn take_lt(&mut self, n: u64) -> u64 {
        let lt = self.next_lt;
        self.next_lt += n + 1;
        lt
    }

    /// The message as the validator writes it: source, value, fees, lt and time filled in,
    /// the body kept where the sender put it unless it no longer fits.
    fn build_internal(
        &self,
        source: &TonAddress,
        out: Outgoing,
        created_lt: u64,
        now: u32,
        fwd_fee: u64,
        bounced: bool,
    ) -> SimMessage {
        let info = IntMsgInfo {
            ihr_disabled: true,
            bounce: out.bounce,
            bounced,
            src: MsgAddress::Int(source.to_msg_address_int()),
            dest: MsgAddress::Int(out.destination.to_msg_address_int()),
            value: CurrencyCollection::new(BigUint::from(out.value)),
            ihr_fee: Grams::new(BigUint::ZERO),
            fwd_fee: Grams::new(BigUint::from(fwd_fee)),
            created_lt,
            created_at: now,
        };
        let mut message = Message {
            info: CommonMsgInfo::Int(info),
            init: None,
            body: out.body.clone(),
        };
        let cell = message.to_cell().or_else(|_| {
            message.body.layout = EitherRefLayout::ToRef;
            message.to_cell()
        });
        let hash = cell
            .map(|c| c.cell_hash())
            .expect("a message with its body in a reference always fits");
        SimMessage {
            kind: MessageKind::Internal {
                source: source.clone(),
                bounce: out.bounce,
                bounced,
                fwd_fee,
                created_lt,
                created_at: now,
            },
            hash,
            hash_norm: None,
            destination: out.destination,
            value: out.value,
            body: out.body.value,
            init: out.init,
        }
    }
}

/// The value an internal message asks to send (0 if unreadable).
fn message_value(cell: &ArcCell) -> Option<u64> {
    match Message::from_cell(cell).ok()?.info {
        CommonMsgInfo::Int(info) => info.value.grams.amount.to_u64(),
        _ => None,
    }
}

/// A bounced message's body: 0xFFFFFFFF then the first 256 bits of the original body.
fn bounce_body(original: &ArcCell) -> ArcCell {
    let mut b = CellBuilder::new();
    b.store_u32(32, 0xFFFF_FFFF).expect("fits");
    let bits = original.bit_len().min(256);
    if bits > 0 {
        let mut p = original.parser();
        if let Ok(head) = p.load_bits(bits) {
            let _ = b.store_bits(bits, &head);
        }
    }
    b.build().expect("fits").to_arc()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn someone() -> TonAddress {
        TonAddress::new(0, TonHash::from([7u8; 32]))
    }

    #[test]
    fn a_long_history_pages_back_inclusively_to_its_first_transaction() {
        let mut ledger = Ledger::new(Network::Mainnet, FeeSchedule::default());
        let addr = someone();
        let first = ledger.fund(&addr, 5, Moment::now());
        let burst = ledger.burst(&addr, 1100, 1, Moment::now());
        assert_eq!(burst.len(), 1100);
        assert_eq!(ledger.balance(&addr), 1105);

        // toncenter's largest page, then on from the last one seen (inclusive).
        let mut seen: Vec<TonHash> = Vec::new();
        let mut from = None;
        loop {
            let page = ledger.account_transactions(&addr, from, 0, 1000);
            let skip = usize::from(from.is_some());
            assert!(page.windows(2).all(|w| w[0].lt > w[1].lt), "newest first");
            seen.extend(page.iter().skip(skip).map(|t| t.hash.clone()));
            if page.len() <= skip {
                break;
            }
            from = page.last().map(|t| t.lt);
        }
        assert_eq!(seen.len(), 1101);
        assert_eq!(seen.last(), Some(&first));
        assert_eq!(seen[0], burst[1099]);
        // `to_lt` stops above a transaction (exclusive).
        let first_lt = ledger.transaction(&first).unwrap().lt;
        assert_eq!(
            ledger
                .account_transactions(&addr, None, first_lt, usize::MAX)
                .len(),
            1100
        );
    }

    #[test]
    fn a_burst_is_one_block_of_separate_transfers_from_distinct_senders() {
        let mut ledger = Ledger::new(Network::Mainnet, FeeSchedule::default());
        let addr = someone();
        let seqno = ledger.mc_seqno();
        let hashes = ledger.burst(&addr, 3, 10, Moment::now());
        assert_eq!(ledger.mc_seqno(), seqno + 1);
        let more = ledger.burst(&addr, 2, 10, Moment::now());
        let mut sources = HashSet::new();
        for h in hashes.iter().chain(&more) {
            let t = ledger.transaction(h).unwrap();
            let MessageKind::Internal {
                source,
                bounce,
                bounced,
                fwd_fee,
                ..
            } = &t.in_msg.kind
            else {
                panic!("not internal");
            };
            assert_ne!(source, ledger.faucet_address());
            assert!(!bounce && !bounced);
            assert_eq!(
                *fwd_fee,
                ledger.fees().forward,
                "the sender paid forwarding"
            );
            assert_eq!(t.summary().balance_change, 10);
            sources.insert(source.clone());
        }
        assert_eq!(sources.len(), 5, "every transfer has its own sender");
        assert!(ledger.burst(&addr, 0, 10, Moment::now()).is_empty());
        assert_eq!(ledger.history(&addr).len(), 5);
    }
}
