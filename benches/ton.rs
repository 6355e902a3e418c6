//! TON layer throughput: deriving wallet addresses, signing and serialising transfers, and
//! the simulator's verification of a broadcast message.
//!
//! Run: `cargo bench --bench ton`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use fragment_gateway::sim::ton::ledger::{ExternalMessage, FeeSchedule, Ledger};
use fragment_gateway::ton::transfer::{decode_boc, sign_transfer, TransferParams};
use fragment_gateway::ton::{
    MessageBody, Nanoton, Network, OutgoingMessage, Seed, WalletContract, WalletVersion,
};

const TON_WORDS: &str = "art hockey victory skill bubble stool heart gas debris april column knife gadget envelope donkey base nature dynamic artefact leg edge aisle retreat fatigue";
const BIP39_WORDS: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
const FRAGMENT_PAYLOAD: &str =
    "te6ccgEBAgEALQABTgAAAAAxMDAwMCBUZWxlZ3JhbSBTdGFycyAKClJlZiN6SWgwT0UxdgEAAmQ";
const DEST: &str = "EQBvW8Z5huBkMJYdnfAEM5JqTNkuWX3diqYENkWsIL0XggGG";

fn derive(c: &mut Criterion) {
    let mut g = c.benchmark_group("derive_address");
    g.bench_function("ton_mnemonic_to_v4r2_address", |b| {
        b.iter(|| {
            let key = Seed::from_words(black_box(TON_WORDS))
                .unwrap()
                .derive_key(None)
                .unwrap();
            WalletContract::new(WalletVersion::V4R2, Network::Mainnet, key.public_key())
        })
    });
    g.bench_function("bip39_mnemonic_to_v5r1_address", |b| {
        b.iter(|| {
            let key = Seed::from_words(black_box(BIP39_WORDS))
                .unwrap()
                .derive_key(Some(0))
                .unwrap();
            WalletContract::new(WalletVersion::V5R1, Network::Mainnet, key.public_key())
        })
    });
    let pk = Seed::from_words(TON_WORDS)
        .unwrap()
        .derive_key(None)
        .unwrap()
        .public_key();
    for v in WalletVersion::ALL {
        g.bench_function(format!("public_key_to_{v}_address"), |b| {
            b.iter(|| WalletContract::new(v, Network::Mainnet, black_box(pk)))
        });
    }
    g.finish();
}

fn sign(c: &mut Criterion) {
    let key = Seed::from_words(TON_WORDS)
        .unwrap()
        .derive_key(None)
        .unwrap();
    let mut g = c.benchmark_group("sign_transfer");
    let params = TransferParams {
        seqno: 7,
        valid_until: 1_900_000_000,
        include_state_init: false,
    };
    for v in WalletVersion::ALL {
        let wallet = WalletContract::new(v, Network::Mainnet, key.public_key());
        let purchase = OutgoingMessage::new(
            DEST,
            Nanoton::new(1_500_000_000),
            MessageBody::from_boc_base64(FRAGMENT_PAYLOAD).unwrap(),
        )
        .unwrap();
        let fee = OutgoingMessage::new(DEST, Nanoton::new(15_000_000), MessageBody::comment("fee"))
            .unwrap();
        g.bench_function(format!("{v}_fragment_payload"), |b| {
            b.iter(|| {
                sign_transfer(
                    &wallet,
                    &key,
                    &params,
                    black_box(std::slice::from_ref(&purchase)),
                )
                .unwrap()
            })
        });
        g.bench_function(format!("{v}_payload_plus_fee"), |b| {
            b.iter(|| {
                sign_transfer(
                    &wallet,
                    &key,
                    &params,
                    black_box(&[purchase.clone(), fee.clone()]),
                )
                .unwrap()
            })
        });
    }
    g.finish();
}

fn verify(c: &mut Criterion) {
    let key = Seed::from_words(TON_WORDS)
        .unwrap()
        .derive_key(None)
        .unwrap();
    let mut g = c.benchmark_group("sim_verify");
    for v in WalletVersion::ALL {
        let wallet = WalletContract::new(v, Network::Mainnet, key.public_key());
        let mut ledger = Ledger::new(Network::Mainnet, FeeSchedule::default());
        ledger.install_wallet(&wallet, 10_000_000_000);
        let msg = OutgoingMessage::new(
            DEST,
            Nanoton::new(1_500_000_000),
            MessageBody::from_boc_base64(FRAGMENT_PAYLOAD).unwrap(),
        )
        .unwrap();
        let params = TransferParams {
            seqno: 0,
            valid_until: u32::MAX,
            include_state_init: false,
        };
        let signed = sign_transfer(&wallet, &key, &params, &[msg]).unwrap();
        // Parse the BOC, check signature, seqno, wallet id, expiry and balance; `drop`
        // keeps the mempool empty so every iteration does the same work.
        g.bench_function(format!("{v}_send_boc_checks"), |b| {
            b.iter(|| {
                let root = decode_boc(black_box(&signed.boc)).unwrap();
                let ext = ExternalMessage::parse(root).unwrap();
                ledger.submit(ext, 1_800_000_000, true, || true).unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, derive, sign, verify);
criterion_main!(benches);
