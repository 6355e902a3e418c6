//! Rendering simulator state in toncenter's JSON shapes (docs/toncenter-api.md): v2 objects
//! with string amounts, base64 hashes and friendly addresses; v3 objects with raw upper-case
//! addresses and an address book.

use base64::Engine;
use serde_json::{json, Map, Value};
use tonlib_core::cell::Cell;
use tonlib_core::{TonAddress, TonHash};

use super::contract::WalletData;
use super::jetton::{self as sim_jetton, JettonState};
use super::ledger::{AccountStatus, Ledger, MessageKind, SimMessage, SimTransaction};
use crate::ton::transfer::read_comment;
use crate::ton::{address, boc, Network, WalletVersion};

pub fn b64(hash: &TonHash) -> String {
    base64::engine::general_purpose::STANDARD.encode(hash.as_slice())
}

/// `0:ABCD…` as toncenter writes raw addresses.
pub fn raw_upper(addr: &TonAddress) -> String {
    format!(
        "{}:{}",
        addr.workchain,
        addr.hash_part.to_hex().to_ascii_uppercase()
    )
}

fn friendly(addr: &TonAddress, network: Network) -> String {
    address::friendly(addr, true, network.is_testnet())
}

fn boc_b64(cell: &Cell) -> String {
    boc::to_base64(cell).unwrap_or_default()
}

fn tx_id(lt: u64, hash: &TonHash) -> Value {
    json!({"@type": "internal.transactionId", "lt": lt.to_string(), "hash": b64(hash)})
}

const EMPTY_TX_HASH: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

fn block_id(ledger: &Ledger) -> Value {
    json!({
        "@type": "ton.blockIdExt", "workchain": -1, "shard": "-9223372036854775808",
        "seqno": ledger.mc_seqno(), "root_hash": EMPTY_TX_HASH, "file_hash": EMPTY_TX_HASH
    })
}

fn last_tx(ledger: &Ledger, addr: &TonAddress) -> Value {
    match ledger.account(addr).and_then(|a| a.last_tx.clone()) {
        Some((lt, hash)) => tx_id(lt, &hash),
        None => json!({"@type": "internal.transactionId", "lt": "0", "hash": EMPTY_TX_HASH}),
    }
}

fn wallet(ledger: &Ledger, addr: &TonAddress) -> Option<WalletData> {
    ledger.account(addr).and_then(|a| a.wallet.clone())
}

fn jetton(ledger: &Ledger, addr: &TonAddress) -> Option<JettonState> {
    ledger.account(addr).and_then(|a| a.jetton.clone())
}

/// v2 `getAddressInformation` result.
pub fn address_information(ledger: &Ledger, addr: &TonAddress, now: u32) -> Value {
    let (code, data, state) = match (wallet(ledger, addr), jetton(ledger, addr)) {
        (Some(w), _) => (boc_b64(w.version.code()), boc_b64(&w.to_cell()), "active"),
        (
            None,
            Some(JettonState::Wallet {
                owner,
                master,
                balance,
            }),
        ) => (
            boc_b64(sim_jetton::wallet_code()),
            sim_jetton::wallet_data(balance, &owner, &master)
                .map(|c| boc_b64(&c))
                .unwrap_or_default(),
            "active",
        ),
        (None, Some(JettonState::Master { .. })) => {
            (boc_b64(&master_code()), boc_b64(&Cell::default()), "active")
        }
        (None, None) => (String::new(), String::new(), "uninitialized"),
    };
    json!({
        "@type": "raw.fullAccountState",
        "balance": ledger.balance(addr).to_string(),
        "extra_currencies": [],
        "code": code,
        "data": data,
        "last_transaction_id": last_tx(ledger, addr),
        "block_id": block_id(ledger),
        "frozen_hash": "",
        "sync_utime": now,
        "state": state,
        "suspended": false,
    })
}

fn wallet_type(version: WalletVersion) -> &'static str {
    match version {
        WalletVersion::V4R2 => "wallet v4 r2",
        WalletVersion::V5R1 => "wallet v5 r1",
    }
}

/// v2 `getWalletInformation` result.
pub fn wallet_information(ledger: &Ledger, addr: &TonAddress) -> Value {
    let balance = ledger.balance(addr).to_string();
    match wallet(ledger, addr) {
        Some(w) => {
            let mut v = json!({
                "@type": "ext.accounts.walletInformation",
                "wallet": true,
                "balance": balance,
                "account_state": "active",
                "wallet_type": wallet_type(w.version),
                "seqno": w.seqno,
                "wallet_id": w.wallet_id,
                "last_transaction_id": last_tx(ledger, addr),
            });
            if w.version == WalletVersion::V5R1 {
                v["is_signature_allowed"] = json!(w.signature_allowed);
            }
            v
        }
        None => json!({
            "@type": "ext.accounts.walletInformation",
            "wallet": false,
            "balance": balance,
            "account_state": match ledger.status(addr) {
                AccountStatus::Active => "active",
                _ => "uninitialized",
            },
            "last_transaction_id": last_tx(ledger, addr),
        }),
    }
}

/// The jetton master's code: a cell naming the simulator's contract.
fn master_code() -> Cell {
    let mut b = tonlib_core::cell::CellBuilder::new();
    b.store_slice(b"fragment-gateway sim jetton master (TEP-74)")
        .expect("fits in a cell");
    b.build().expect("fits in a cell")
}

/// A cell or slice on a get-method's stack, as toncenter writes it.
fn stack_cell(cell: &Cell) -> Value {
    json!(["cell", {"bytes": boc_b64(cell), "object": {}}])
}

fn address_cell(addr: &TonAddress) -> Cell {
    let mut b = tonlib_core::cell::CellBuilder::new();
    b.store_raw_address(addr).expect("fits in a cell");
    b.build().expect("fits in a cell")
}

/// The address in a `tvm.Slice` (or `tvm.Cell`) argument of a get-method: its BOC.
fn address_argument(stack: &[Value]) -> Option<TonAddress> {
    let entry = stack.first()?.as_array()?;
    let kind = entry.first()?.as_str()?;
    if !matches!(kind, "tvm.Slice" | "tvm.Cell" | "slice" | "cell") {
        return None;
    }
    let boc = entry.get(1)?;
    let boc = boc
        .as_str()
        .or_else(|| boc.get("bytes").and_then(Value::as_str))?;
    let cell = crate::ton::transfer::decode_boc(boc).ok()?;
    cell.parser().load_address().ok()
}

/// v2 `runGetMethod` result for the wallet get-methods (`seqno`, `get_public_key`,
/// `get_subwallet_id`) and the jetton ones (`get_wallet_address` and `get_jetton_data` of a
/// master, `get_wallet_data` of a jetton wallet). Undeployed accounts answer exit code -13 as
/// tonlib does; unknown methods exit code 11 as the TVM does; a missing or unreadable
/// argument 7 (a type check error).
pub fn run_get_method(ledger: &Ledger, addr: &TonAddress, method: &str, args: &[Value]) -> Value {
    let num = |n: u64| json!(["num", format!("0x{n:x}")]);
    let (exit_code, stack) = match (wallet(ledger, addr), jetton(ledger, addr)) {
        (None, Some(JettonState::Master { total_supply, .. })) => match method {
            "get_wallet_address" => match address_argument(args) {
                Some(owner) => (
                    0,
                    vec![stack_cell(&address_cell(&sim_jetton::wallet_address(
                        addr, &owner,
                    )))],
                ),
                None => (7, vec![]),
            },
            "get_jetton_data" => (
                0,
                vec![
                    num(total_supply),
                    json!(["num", "-0x1"]),
                    stack_cell(&address_cell(addr)),
                    stack_cell(&Cell::default()),
                    stack_cell(sim_jetton::wallet_code()),
                ],
            ),
            _ => (11, vec![]),
        },
        (
            None,
            Some(JettonState::Wallet {
                owner,
                master,
                balance,
            }),
        ) => match method {
            "get_wallet_data" => (
                0,
                vec![
                    num(balance.units()),
                    stack_cell(&address_cell(&owner)),
                    stack_cell(&address_cell(&master)),
                    stack_cell(sim_jetton::wallet_code()),
                ],
            ),
            _ => (11, vec![]),
        },
        (None, None) => (-13, vec![]),
        (Some(w), _) => match method {
            "seqno" => (0, vec![json!(["num", format!("0x{:x}", w.seqno)])]),
            "get_public_key" => (
                0,
                vec![json!(["num", format!("0x{}", w.public_key.to_hex())])],
            ),
            "get_subwallet_id" => (
                0,
                vec![json!(["num", format!("0x{:x}", w.wallet_id as u32)])],
            ),
            _ => (11, vec![]),
        },
    };
    json!({
        "@type": "smc.runResult",
        "gas_used": if exit_code == 0 { 500 } else { 0 },
        "stack": stack,
        "exit_code": exit_code,
        "block_id": block_id(ledger),
        "last_transaction_id": last_tx(ledger, addr),
    })
}

fn v2_message(m: &SimMessage, network: Network) -> Value {
    let (source, fwd_fee, created_lt) = match &m.kind {
        MessageKind::ExternalIn => (String::new(), 0, 0),
        MessageKind::Internal {
            source,
            fwd_fee,
            created_lt,
            ..
        } => (friendly(source, network), *fwd_fee, *created_lt),
    };
    let (msg_data, message) = match read_comment(&m.body) {
        Some(text) => (
            json!({"@type": "msg.dataText",
                   "text": base64::engine::general_purpose::STANDARD.encode(text.as_bytes())}),
            text,
        ),
        None => (
            json!({"@type": "msg.dataRaw", "body": boc_b64(&m.body),
                   "init_state": m.init.as_deref().map(boc_b64).unwrap_or_default()}),
            format!(
                "{}\n",
                base64::engine::general_purpose::STANDARD.encode(m.body.data())
            ),
        ),
    };
    json!({
        "@type": "ext.message",
        "hash": b64(&m.hash),
        "source": source,
        "destination": friendly(&m.destination, network),
        "value": m.value.to_string(),
        "extra_currencies": [],
        "fwd_fee": fwd_fee.to_string(),
        "ihr_fee": "0",
        "created_lt": created_lt.to_string(),
        "body_hash": b64(&m.body.cell_hash()),
        "msg_data": msg_data,
        "message": message,
    })
}

/// One element of v2 `getTransactions`.
pub fn v2_transaction(t: &SimTransaction, network: Network) -> Value {
    // The transaction's total fees, as v3 reports them: this simulator charges forwarding
    // inside `total_fees` (the message's `fwd_fee` is that part, for information), so adding
    // it again would make v2 and v3 disagree about what the same transaction cost.
    let fee = t.total_fees;
    json!({
        "@type": "ext.transaction",
        "address": {"@type": "accountAddress", "account_address": friendly(&t.account, network)},
        "account": raw_upper(&t.account),
        "utime": t.now,
        "data": "",
        "transaction_id": tx_id(t.lt, &t.hash),
        "fee": fee.to_string(),
        "storage_fee": "0",
        "other_fee": fee.to_string(),
        "in_msg": v2_message(&t.in_msg, network),
        "out_msgs": t.out_msgs.iter().map(|m| v2_message(m, network)).collect::<Vec<_>>(),
    })
}

fn v3_message(m: &SimMessage, book: &mut Map<String, Value>, ledger: &Ledger) -> Value {
    let mut note = |a: &TonAddress| {
        let raw = raw_upper(a);
        book.entry(raw.clone())
            .or_insert_with(|| address_book_entry(ledger, a));
        raw
    };
    let destination = note(&m.destination);
    let opcode = {
        let mut p = m.body.parser();
        (m.body.bit_len() >= 32)
            .then(|| p.load_u32(32).ok())
            .flatten()
            .map(|op| format!("0x{op:08x}"))
    };
    let decoded = read_comment(&m.body)
        .map(|c| json!({"type": "text_comment", "@type": "text_comment", "comment": c}));
    let mut v = json!({
        "hash": b64(&m.hash),
        "destination": destination,
        "opcode": opcode,
        "message_content": {
            "hash": b64(&m.body.cell_hash()),
            "body": boc_b64(&m.body),
            "decoded": decoded,
        },
        "init_state": m.init.as_ref().map(|i| json!({
            "hash": b64(&i.cell_hash()), "body": boc_b64(i), "decoded": null
        })),
    });
    match &m.kind {
        MessageKind::ExternalIn => {
            v["source"] = Value::Null;
            v["value"] = Value::Null;
            v["fwd_fee"] = Value::Null;
            v["ihr_fee"] = Value::Null;
            v["created_lt"] = Value::Null;
            v["created_at"] = Value::Null;
            v["ihr_disabled"] = Value::Null;
            v["bounce"] = Value::Null;
            v["bounced"] = Value::Null;
            v["import_fee"] = json!("0");
            v["hash_norm"] = json!(m.hash_norm.as_ref().map(b64));
        }
        MessageKind::Internal {
            source,
            bounce,
            bounced,
            fwd_fee,
            created_lt,
            created_at,
        } => {
            v["source"] = json!(note(source));
            v["value"] = json!(m.value.to_string());
            v["fwd_fee"] = json!(fwd_fee.to_string());
            v["ihr_fee"] = json!("0");
            v["created_lt"] = json!(created_lt.to_string());
            v["created_at"] = json!(created_at.to_string());
            v["ihr_disabled"] = json!(true);
            v["bounce"] = json!(bounce);
            v["bounced"] = json!(bounced);
            v["import_fee"] = Value::Null;
        }
    }
    v
}

fn address_book_entry(ledger: &Ledger, a: &TonAddress) -> Value {
    // Wallets and code-less accounts are shown non-bounceable, others bounceable.
    let interfaces: Vec<&str> = match wallet(ledger, a) {
        Some(w) => vec![match w.version {
            WalletVersion::V4R2 => "wallet_v4r2",
            WalletVersion::V5R1 => "wallet_v5r1",
        }],
        None => vec![],
    };
    json!({
        "user_friendly": address::friendly(a, false, ledger.network().is_testnet()),
        "domain": null,
        "interfaces": interfaces,
    })
}

fn status_str(s: AccountStatus) -> &'static str {
    s.as_str()
}

/// A v3 transaction object; addresses it mentions go into `book`.
pub fn v3_transaction(t: &SimTransaction, book: &mut Map<String, Value>, ledger: &Ledger) -> Value {
    let account = raw_upper(&t.account);
    book.entry(account.clone())
        .or_insert_with(|| address_book_entry(ledger, &t.account));
    let compute = match t.compute.skipped {
        Some(reason) => json!({"skipped": true, "reason": reason}),
        None => json!({
            "skipped": false, "success": t.compute.success, "msg_state_used": false,
            "account_activated": t.orig_status != t.end_status,
            "gas_fees": t.compute.gas_fees.to_string(), "gas_used": "3000",
            "gas_limit": "0", "gas_credit": "10000", "mode": 0,
            "exit_code": t.compute.exit_code, "vm_steps": 60,
        }),
    };
    let mut description = json!({
        "type": "ord", "aborted": t.aborted, "destroyed": false,
        "credit_first": !matches!(t.in_msg.kind, MessageKind::Internal { bounce: true, .. }),
        "storage_ph": {"storage_fees_collected": "0", "status_change": "unchanged"},
        "compute_ph": compute,
    });
    if let Some(a) = &t.action {
        description["action"] = json!({
            "success": a.success, "valid": true, "no_funds": a.result_code == 37,
            "status_change": "unchanged", "total_fwd_fees": a.total_fwd_fees.to_string(),
            "total_action_fees": "0", "result_code": a.result_code,
            "tot_actions": a.tot_actions, "spec_actions": 0,
            "skipped_actions": a.skipped_actions, "msgs_created": a.msgs_created,
        });
    }
    let (prev_hash, prev_lt) = match &t.prev {
        Some((lt, h)) => (b64(h), lt.to_string()),
        None => (EMPTY_TX_HASH.to_string(), "0".to_string()),
    };
    json!({
        "account": account,
        "hash": b64(&t.hash),
        "lt": t.lt.to_string(),
        "now": t.now,
        "mc_block_seqno": t.mc_seqno,
        "trace_id": b64(&t.hash),
        "prev_trans_hash": prev_hash,
        "prev_trans_lt": prev_lt,
        "orig_status": status_str(t.orig_status),
        "end_status": status_str(t.end_status),
        "total_fees": t.total_fees.to_string(),
        "total_fees_extra_currencies": {},
        "description": description,
        "block_ref": {"workchain": t.account.workchain, "shard": "8000000000000000", "seqno": t.mc_seqno},
        "in_msg": v3_message(&t.in_msg, book, ledger),
        "out_msgs": t.out_msgs.iter().map(|m| v3_message(m, book, ledger)).collect::<Vec<_>>(),
        "account_state_before": null,
        "account_state_after": null,
        "emulated": false,
        "finality": "finalized",
    })
}
