//! The toncenter client against the TON simulator over real HTTP on loopback: transfers
//! land and are found by hash; everything the wallet contracts refuse is refused and changes
//! nothing; the client rides out injected faults and rate limits; a lost message is reported
//! as expired, never as success.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fragment_gateway::sim::faults::HangConfig;
use fragment_gateway::sim::ton::{TonSim, TonSimConfig};
use fragment_gateway::ton::client::{
    TonApiConfig, TonApiError, TonCenterClient, TransferOutcome, WalletState,
};
use fragment_gateway::ton::transfer::{sign_transfer, TransferParams};
use fragment_gateway::ton::{
    boc, KeyPair, MessageBody, Nanoton, Network, OutgoingMessage, Seed, SignedTransfer, TonAddress,
    WalletContract, WalletVersion,
};
use tonlib_core::cell::{Cell, CellBuilder};
use tonlib_core::tlb_types::block::message::{CommonMsgInfo, Message};
use tonlib_core::tlb_types::primitives::either::EitherRef;
use tonlib_core::tlb_types::tlb::TLB;

const TON_WORDS: &str = "art hockey victory skill bubble stool heart gas debris april column knife gadget envelope donkey base nature dynamic artefact leg edge aisle retreat fatigue";
const BIP39_WORDS: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
// An address nobody controls, in non-bounceable form so that funds sent there stay.
const RECIPIENT: &str = "UQBvW8Z5huBkMJYdnfAEM5JqTNkuWX3diqYENkWsIL0XglxD";

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

struct Payer {
    key: KeyPair,
    wallet: WalletContract,
}

fn payer(words: &str, version: WalletVersion) -> Payer {
    let key = Seed::from_words(words).unwrap().derive_key(None).unwrap();
    let wallet = WalletContract::new(version, Network::Mainnet, key.public_key());
    Payer { key, wallet }
}

impl Payer {
    /// A transfer signed with explicit parameters, right or wrong.
    fn signed(
        &self,
        seqno: u32,
        valid_until: u32,
        state_init: bool,
        amount: Nanoton,
    ) -> SignedTransfer {
        let params = TransferParams {
            seqno,
            valid_until,
            include_state_init: state_init,
        };
        let msg = OutgoingMessage::new(RECIPIENT, amount, MessageBody::Empty).unwrap();
        sign_transfer(&self.wallet, &self.key, &params, &[msg]).unwrap()
    }

    fn transfer(&self, state: &WalletState, to: &str, amount: Nanoton, ttl: u32) -> SignedTransfer {
        let msg = OutgoingMessage::new(to, amount, MessageBody::comment("test payment")).unwrap();
        let params = TransferParams {
            seqno: state.seqno,
            valid_until: now() + ttl,
            include_state_init: !state.deployed,
        };
        sign_transfer(&self.wallet, &self.key, &params, &[msg]).unwrap()
    }
}

async fn sim_with(config: TonSimConfig) -> (TonSim, TonCenterClient) {
    let sim = TonSim::start(config, loopback()).await.unwrap();
    let client = TonCenterClient::new(TonApiConfig::local(sim.url())).unwrap();
    (sim, client)
}

/// Blocks every 50 ms: fast, but still asynchronous like the real chain.
async fn fast_sim() -> (TonSim, TonCenterClient) {
    sim_with(TonSimConfig {
        block_time: Duration::from_millis(50),
        ..Default::default()
    })
    .await
}

/// Blocks only when the test asks: nothing applies behind its back.
async fn manual_sim() -> (TonSim, TonCenterClient) {
    sim_with(TonSimConfig {
        block_time: Duration::ZERO,
        ..Default::default()
    })
    .await
}

fn recipient() -> TonAddress {
    fragment_gateway::ton::address::parse_address(RECIPIENT).unwrap()
}

#[tokio::test]
async fn transfers_deploy_land_and_are_found_by_hash() {
    let (sim, client) = fast_sim().await;
    let fees = sim.config().fees;
    for (words, version) in [
        (TON_WORDS, WalletVersion::V4R2),
        (BIP39_WORDS, WalletVersion::V5R1),
    ] {
        let p = payer(words, version);
        let addr = p.wallet.address().clone();
        let funded = Nanoton::from_ton(5);
        sim.fund(&addr, funded);
        let before_recipient = sim.balance(&recipient());

        let state = client.wallet_state(&p.wallet).await.unwrap();
        assert_eq!(
            state,
            WalletState {
                balance: funded,
                seqno: 0,
                deployed: false,
                last_lt: state.last_lt,
            }
        );

        // First transfer deploys the wallet (StateInit attached).
        let amount = Nanoton::new(1_250_000_001);
        let t1 = p.transfer(&state, RECIPIENT, amount, 60);
        let receipt = client.send_transfer(&t1).await.unwrap();
        assert_eq!(receipt.hash, t1.message_hash);
        assert_eq!(receipt.hash_norm.as_ref(), Some(&t1.normalized_hash));
        let TransferOutcome::Confirmed(tx) = client
            .wait_for_transfer(&t1, Duration::from_millis(50))
            .await
            .unwrap()
        else {
            panic!("transfer not confirmed");
        };
        assert_eq!(tx.account, addr);
        assert_eq!(tx.aborted, Some(false));
        assert_eq!(tx.compute_exit_code, Some(0));
        assert_eq!(tx.action_result_code, Some(0));
        assert_eq!(
            tx.in_msg.as_ref().unwrap().hash_norm,
            Some(t1.normalized_hash.clone())
        );
        assert_eq!(tx.out_msgs.len(), 1);
        assert_eq!(tx.out_msgs[0].destination, Some(recipient()));
        assert_eq!(tx.out_msgs[0].value, amount);

        let fee1 = fees.compute + fees.deploy + fees.forward;
        let expected = funded.as_u64() - amount.as_u64() - fee1;
        let state = client.wallet_state(&p.wallet).await.unwrap();
        assert_eq!(
            state,
            WalletState {
                balance: Nanoton::new(expected),
                seqno: 1,
                deployed: true,
                last_lt: state.last_lt,
            }
        );
        assert_eq!(
            sim.balance(&recipient()).as_u64(),
            before_recipient.as_u64() + amount.as_u64()
        );

        // The next one carries seqno 1 and no StateInit.
        let t2 = p.transfer(&state, RECIPIENT, Nanoton::new(7), 60);
        client.send_transfer(&t2).await.unwrap();
        let outcome = client
            .wait_for_transfer(&t2, Duration::from_millis(50))
            .await
            .unwrap();
        assert!(matches!(outcome, TransferOutcome::Confirmed(_)));
        let state = client.wallet_state(&p.wallet).await.unwrap();
        assert_eq!(state.seqno, 2);
        assert_eq!(
            state.balance.as_u64(),
            expected - 7 - fees.compute - fees.forward
        );

        // The plain (non-normalized) hash finds the same transaction, and the history
        // lists both transfers after the faucet's, newest first.
        let by_plain = client
            .transaction_by_message(&t2.message_hash)
            .await
            .unwrap()
            .unwrap();
        let history = client.transactions(&addr, 10, None).await.unwrap();
        assert_eq!(history.len(), 3);
        assert_eq!(history[0].hash, by_plain.hash);
        assert_eq!(history[1].hash, tx.hash);
        assert_eq!(history[2].in_msg.as_ref().unwrap().value, funded);
        // Paging from the second one (inclusive).
        let id = fragment_gateway::ton::client::TxId {
            lt: history[1].lt,
            hash: history[1].hash.clone(),
        };
        let page = client.transactions(&addr, 10, Some(&id)).await.unwrap();
        assert_eq!(page.len(), 2);
        assert_eq!(page[0].hash, tx.hash);
    }
}

/// Tampers with a signed external message's body (the signature lives in it).
fn rewrite_body(transfer: &SignedTransfer, f: impl FnOnce(&Cell) -> Cell) -> String {
    let root = fragment_gateway::ton::transfer::decode_boc(&transfer.boc).unwrap();
    let mut message = Message::from_cell(&root).unwrap();
    message.body = EitherRef::new(f(&message.body.value).to_arc());
    boc::to_base64(&message.to_cell().unwrap()).unwrap()
}

fn flip_bit(cell: &Cell, bit: usize) -> Cell {
    let mut data = cell.data().to_vec();
    data[bit / 8] ^= 0x80 >> (bit % 8);
    let mut b = CellBuilder::new();
    b.store_bits(cell.bit_len(), &data).unwrap();
    b.store_references(cell.references()).unwrap();
    b.build().unwrap()
}

/// Re-addresses a signed message to another account.
fn readdress(transfer: &SignedTransfer, to: &TonAddress) -> String {
    let root = fragment_gateway::ton::transfer::decode_boc(&transfer.boc).unwrap();
    let mut message = Message::from_cell(&root).unwrap();
    if let CommonMsgInfo::ExtIn(info) = &mut message.info {
        info.dest = to.to_msg_address_int();
    }
    boc::to_base64(&message.to_cell().unwrap()).unwrap()
}

async fn assert_rejected(
    sim: &TonSim,
    client: &TonCenterClient,
    p: &Payer,
    boc: &str,
    expected_exit: i32,
    case: &str,
) {
    let addr = p.wallet.address();
    let balance = sim.balance(addr);
    let seqno = sim.seqno(addr);
    let recipient_balance = sim.balance(&recipient());
    match client.send_boc(boc).await {
        Err(TonApiError::Rejected { exit_code, .. }) => {
            assert_eq!(exit_code, Some(expected_exit), "{case}")
        }
        other => panic!("{case}: expected a rejection, got {other:?}"),
    }
    assert_eq!(sim.pending(), 0, "{case}: nothing queued");
    sim.produce_block();
    assert_eq!(sim.balance(addr), balance, "{case}: balance unchanged");
    assert_eq!(sim.seqno(addr), seqno, "{case}: seqno unchanged");
    assert_eq!(sim.balance(&recipient()), recipient_balance, "{case}");
}

#[tokio::test]
async fn everything_the_contract_refuses_is_refused_and_changes_nothing() {
    let (sim, client) = manual_sim().await;
    for (words, version, codes) in [
        (TON_WORDS, WalletVersion::V4R2, [35, 33, 36, 34]),
        (BIP39_WORDS, WalletVersion::V5R1, [135, 133, 136, 134]),
    ] {
        let [bad_sig, bad_seqno, expired, bad_wallet_id] = codes;
        let p = payer(words, version);
        let addr = p.wallet.address().clone();
        sim.fund(&addr, Nanoton::from_ton(3));
        let undeployed = client.wallet_state(&p.wallet).await.unwrap();

        // Undeployed and no StateInit: the contract cannot even run (exit code 0).
        let no_init = p.signed(0, now() + 60, false, Nanoton::from_ton(1));
        assert_rejected(&sim, &client, &p, &no_init.boc, 0, "no state init").await;

        // Deploy it with a first transfer, then try the refusals on a live wallet.
        let t = p.transfer(&undeployed, RECIPIENT, Nanoton::new(1), 60);
        client.send_transfer(&t).await.unwrap();
        sim.produce_block();
        let state = client.wallet_state(&p.wallet).await.unwrap();
        assert!(state.deployed);
        assert_eq!(state.seqno, 1);

        let good = p.transfer(&state, RECIPIENT, Nanoton::from_ton(1), 60);
        // The signature is the first 512 bits (v4r2) or the last 512 (v5r1).
        let sig_bit = |c: &Cell| match version {
            WalletVersion::V4R2 => 3,
            WalletVersion::V5R1 => c.bit_len() - 3,
        };
        let forged = rewrite_body(&good, |c| flip_bit(c, sig_bit(c)));
        assert_rejected(&sim, &client, &p, &forged, bad_sig, "bad signature").await;

        let replay = p.signed(0, now() + 60, false, Nanoton::from_ton(1));
        assert_rejected(&sim, &client, &p, &replay.boc, bad_seqno, "wrong seqno").await;

        let late = p.signed(state.seqno, now() - 5, false, Nanoton::from_ton(1));
        assert_rejected(&sim, &client, &p, &late.boc, expired, "expired").await;

        // Same key, another wallet id: signed for a different contract.
        let other =
            WalletContract::with_wallet_id(version, Network::Mainnet, p.key.public_key(), 42);
        let foreign = Payer {
            key: Seed::from_words(words).unwrap().derive_key(None).unwrap(),
            wallet: other,
        }
        .signed(state.seqno, now() + 60, false, Nanoton::from_ton(1));
        let wrong_id = readdress(&foreign, &addr);
        assert_rejected(
            &sim,
            &client,
            &p,
            &wrong_id,
            bad_wallet_id,
            "wrong wallet id",
        )
        .await;

        // More than the balance: refused outright (exit code 37, "not enough funds").
        let too_much = p.transfer(&state, RECIPIENT, Nanoton::from_ton(100), 60);
        assert_rejected(&sim, &client, &p, &too_much.boc, 37, "balance too low").await;

        // And the good one still goes through afterwards.
        client.send_transfer(&good).await.unwrap();
        sim.produce_block();
        assert_eq!(sim.seqno(&addr), Some(2));
    }
}

#[tokio::test]
async fn a_message_to_an_unknown_account_is_refused() {
    let (_sim, client) = manual_sim().await;
    let p = payer(TON_WORDS, WalletVersion::V4R2);
    let state = WalletState {
        balance: Nanoton::ZERO,
        seqno: 0,
        deployed: false,
        last_lt: None,
    };
    let t = p.transfer(&state, RECIPIENT, Nanoton::from_ton(1), 60);
    // Never funded: the account does not exist, so the StateInit cannot pay for itself.
    match client.send_transfer(&t).await {
        Err(TonApiError::Rejected {
            exit_code: None,
            message,
        }) => {
            assert!(
                message.contains("before smart-contract execution")
                    || message.contains("Failed to unpack"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn retries_recover_from_transient_errors() {
    let (sim, client) = fast_sim().await;
    let p = payer(TON_WORDS, WalletVersion::V4R2);
    sim.fund(p.wallet.address(), Nanoton::from_ton(2));

    // Three failures, four attempts: the fourth succeeds.
    sim.faults().fail_next(3);
    let state = client.wallet_state(&p.wallet).await.unwrap();
    assert_eq!(state.balance, Nanoton::from_ton(2));
    assert_eq!(sim.faults().injected(), 3);

    // Four failures exhaust the attempts: the error says what happened.
    sim.faults().fail_next(4);
    match client.wallet_state(&p.wallet).await {
        Err(TonApiError::Server { status: 503, .. }) => {}
        other => panic!("{other:?}"),
    }

    // A broadcast refused before processing is simply retried.
    sim.faults().fail_next(1);
    let t = p.transfer(&state, RECIPIENT, Nanoton::from_ton(1), 60);
    client.send_transfer(&t).await.unwrap();
    let outcome = client
        .wait_for_transfer(&t, Duration::from_millis(50))
        .await
        .unwrap();
    assert!(matches!(outcome, TransferOutcome::Confirmed(_)));

    // A random 30 % error rate: with ten attempts a call fails only if ten draws in a row
    // do (p = 6e-6), so every call completes whatever the seed.
    sim.faults()
        .set_config(fragment_gateway::sim::faults::FaultConfig {
            error_rate: 0.3,
            ..Default::default()
        });
    let mut cfg = TonApiConfig::local(sim.url());
    cfg.max_attempts = 10;
    cfg.backoff_base = Duration::from_millis(5);
    let patient = TonCenterClient::new(cfg).unwrap();
    let before = sim.faults().injected();
    for _ in 0..20 {
        assert_eq!(
            patient.wallet_state(&p.wallet).await.unwrap().seqno,
            1,
            "the state read through the faults is right"
        );
    }
    assert!(sim.faults().injected() > before, "faults were injected");
}

#[tokio::test]
async fn a_dropped_message_is_reported_expired_not_successful() {
    let (sim, client) = fast_sim().await;
    let p = payer(TON_WORDS, WalletVersion::V4R2);
    sim.fund(p.wallet.address(), Nanoton::from_ton(2));
    let state = client.wallet_state(&p.wallet).await.unwrap();

    sim.drop_next(1);
    // A refused message does not use up the fault: only accepted messages are dropped.
    let refused = p.signed(7, now() + 60, true, Nanoton::from_ton(1));
    assert!(matches!(
        client.send_boc(&refused.boc).await,
        Err(TonApiError::Rejected { .. })
    ));
    let t = p.transfer(&state, RECIPIENT, Nanoton::from_ton(1), 5);
    // The network says "accepted"...
    client.send_transfer(&t).await.unwrap();
    // ...but the message never lands: after valid_until (+ finality margin) it is expired.
    let outcome = client
        .wait_for_transfer(&t, Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(outcome, TransferOutcome::Expired);
    assert!(now() > t.valid_until);
    assert_eq!(
        sim.balance(p.wallet.address()),
        Nanoton::from_ton(2),
        "no funds moved"
    );
    assert_eq!(client.wallet_state(&p.wallet).await.unwrap().seqno, 0);
}

#[tokio::test]
async fn a_lost_answer_is_unconfirmed_and_the_transfer_is_found_later() {
    let (sim, client) = manual_sim().await;
    let p = payer(TON_WORDS, WalletVersion::V4R2);
    sim.fund(p.wallet.address(), Nanoton::from_ton(2));
    let state = client.wallet_state(&p.wallet).await.unwrap();
    let t = p.transfer(&state, RECIPIENT, Nanoton::from_ton(1), 60);

    // Every attempt is processed but its answer is lost.
    sim.lose_next_answers(10);
    match client.send_transfer(&t).await {
        Err(TonApiError::Unconfirmed(_)) => {}
        other => panic!("a lost answer must not be reported as {other:?}"),
    }
    sim.lose_next_answers(0);
    sim.produce_block();
    // The transfer applied exactly once, whatever the number of attempts.
    assert_eq!(sim.seqno(p.wallet.address()), Some(1));
    let outcome = client
        .wait_for_transfer(&t, Duration::from_millis(50))
        .await
        .unwrap();
    assert!(matches!(outcome, TransferOutcome::Confirmed(_)));
    assert_eq!(
        sim.balance(p.wallet.address()).as_u64(),
        2_000_000_000
            - 1_000_000_000
            - sim.config().fees.compute
            - sim.config().fees.deploy
            - sim.config().fees.forward
    );
}

#[tokio::test]
async fn a_retry_refused_after_an_uncertain_attempt_is_unconfirmed() {
    let (sim, client) = manual_sim().await;
    let p = payer(TON_WORDS, WalletVersion::V4R2);
    sim.fund(p.wallet.address(), Nanoton::from_ton(2));
    let state = client.wallet_state(&p.wallet).await.unwrap();
    let t = p.transfer(&state, RECIPIENT, Nanoton::from_ton(1), 60);
    // The first attempt lands but its answer is lost; before the retry the block applies
    // it, so the retry is refused for its (now used) seqno. That refusal must not be taken
    // for a failed payment.
    sim.lose_next_answers(1);
    let sim_ref = &sim;
    let send = client.send_transfer(&t);
    let apply = async {
        while sim_ref.pending() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        sim_ref.produce_block();
    };
    let (result, ()) = tokio::join!(send, apply);
    match result {
        Err(TonApiError::Unconfirmed(why)) => assert!(why.contains("refused"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.seqno(p.wallet.address()), Some(1));
}

/// Runs `calls` concurrent state reads through two clients of the simulator built alike
/// (paced at `rps`) and returns how many 429s the simulator answered meanwhile.
async fn burst_of_reads(sim: &TonSim, rps: Option<f64>, calls: usize) -> u64 {
    let p = payer(TON_WORDS, WalletVersion::V4R2);
    let make = || {
        let mut cfg = TonApiConfig::local(sim.url());
        cfg.requests_per_second = rps;
        cfg.max_attempts = 10;
        TonCenterClient::new(cfg).unwrap()
    };
    let (a, b) = (make(), make());
    let limited = || {
        sim.stats()
            .rate_limited
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = limited();
    let handles: Vec<_> = (0..calls)
        .map(|i| {
            let c = if i % 2 == 0 { a.clone() } else { b.clone() };
            let w = p.wallet.clone();
            tokio::spawn(async move { c.wallet_state(&w).await })
        })
        .collect();
    for h in handles {
        h.await.unwrap().unwrap();
    }
    limited() - before
}

#[tokio::test]
async fn pacing_keeps_every_caller_within_the_budget() {
    // 10 requests/s with a burst of 5: room for a scheduling stall of half a second, none
    // for a client that ignores the budget.
    let (sim, _) = sim_with(TonSimConfig {
        keyless_rps: Some(10.0),
        burst: Some(5.0),
        ..Default::default()
    })
    .await;
    // Two independently built clients of one endpoint share one budget: 30 calls from 30
    // tasks take three seconds and never meet a 429.
    assert_eq!(burst_of_reads(&sim, Some(10.0), 30).await, 0);
    // The same calls unpaced are refused (and retried until they pass): the check above
    // can fail.
    assert!(burst_of_reads(&sim, None, 20).await > 0);
}

#[tokio::test]
async fn a_deploy_with_someone_elses_state_init_is_refused() {
    let (sim, client) = manual_sim().await;
    let v4 = payer(TON_WORDS, WalletVersion::V4R2);
    let v5 = payer(TON_WORDS, WalletVersion::V5R1);
    sim.fund(v4.wallet.address(), Nanoton::from_ton(2));
    // The v5r1 wallet's deploy message, readdressed to the (funded, undeployed) v4r2
    // address: its StateInit does not hash to that address.
    let deploy = v5.signed(0, now() + 60, true, Nanoton::from_ton(1));
    let boc = readdress(&deploy, v4.wallet.address());
    assert_rejected(&sim, &client, &v4, &boc, 0, "foreign StateInit").await;
    assert_eq!(sim.seqno(v4.wallet.address()), None, "still undeployed");
}

#[tokio::test]
async fn an_amount_beyond_any_balance_is_refused_and_the_sim_keeps_working() {
    let (sim, client) = manual_sim().await;
    let p = payer(TON_WORDS, WalletVersion::V4R2);
    sim.fund(p.wallet.address(), Nanoton::from_ton(2));
    let huge = p.signed(0, now() + 60, true, Nanoton::new(u64::MAX));
    assert_rejected(&sim, &client, &p, &huge.boc, 37, "u64::MAX").await;
    let ok = p.signed(0, now() + 60, true, Nanoton::from_ton(1));
    client.send_transfer(&ok).await.unwrap();
    sim.produce_block();
    assert_eq!(sim.seqno(p.wallet.address()), Some(1));
}

#[tokio::test]
async fn an_accepted_transfer_that_sent_nothing_is_not_confirmed() {
    // Mainnet behaviour: an underfunded mode-3 transfer is accepted, uses the seqno and
    // pays gas, but its sends are skipped.
    let (sim, client) = sim_with(TonSimConfig {
        block_time: Duration::from_millis(50),
        refuse_underfunded: false,
        ..Default::default()
    })
    .await;
    let fees = sim.config().fees;
    let p = payer(TON_WORDS, WalletVersion::V5R1);
    sim.fund(p.wallet.address(), Nanoton::from_ton(2));
    let state = client.wallet_state(&p.wallet).await.unwrap();
    let t = p.transfer(&state, RECIPIENT, Nanoton::from_ton(3), 60);
    client.send_transfer(&t).await.unwrap();
    match client
        .wait_for_transfer(&t, Duration::from_millis(50))
        .await
        .unwrap()
    {
        TransferOutcome::NotSent(tx) => {
            assert!(tx.out_msgs.is_empty());
            assert_eq!(tx.action_result_code, Some(0), "skipped, not failed");
        }
        other => panic!("{other:?}"),
    }
    let after = client.wallet_state(&p.wallet).await.unwrap();
    assert_eq!(after.seqno, 1);
    assert_eq!(
        after.balance.as_u64(),
        2_000_000_000 - fees.compute - fees.deploy,
        "only gas was paid"
    );
}

#[tokio::test]
async fn a_transfer_whose_seqno_another_took_is_superseded() {
    let (sim, client) = manual_sim().await;
    let p = payer(TON_WORDS, WalletVersion::V4R2);
    sim.fund(p.wallet.address(), Nanoton::from_ton(3));
    let first = p.signed(0, now() + 60, true, Nanoton::from_ton(1));
    let second = p.signed(0, now() + 60, true, Nanoton::new(2));
    // Both are accepted (same seqno, the chain has not moved yet); one block applies the
    // first and drops the second.
    client.send_transfer(&first).await.unwrap();
    client.send_transfer(&second).await.unwrap();
    assert_eq!(sim.produce_block(), 1);
    assert_eq!(
        client
            .wait_for_transfer(&second, Duration::from_millis(20))
            .await
            .unwrap(),
        TransferOutcome::Superseded
    );
    assert!(matches!(
        client
            .wait_for_transfer(&first, Duration::from_millis(20))
            .await
            .unwrap(),
        TransferOutcome::Confirmed(_)
    ));
}

#[tokio::test]
async fn injected_latency_delays_every_answer() {
    let (_sim, client) = sim_with(TonSimConfig {
        faults: fragment_gateway::sim::faults::FaultConfig {
            latency: Duration::from_millis(300),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let p = payer(TON_WORDS, WalletVersion::V4R2);
    let started = std::time::Instant::now();
    client.wallet_state(&p.wallet).await.unwrap();
    // A lower bound only: the delay is a sleep, so it is at least what was configured.
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn a_bounceable_transfer_to_an_undeployed_account_comes_back() {
    let (sim, client) = fast_sim().await;
    let fees = sim.config().fees;
    let p = payer(TON_WORDS, WalletVersion::V4R2);
    sim.fund(p.wallet.address(), Nanoton::from_ton(3));
    let state = client.wallet_state(&p.wallet).await.unwrap();
    // The same never-deployed address, written bounceable this time.
    let bounceable = fragment_gateway::ton::address::friendly(&recipient(), true, false);
    let before = sim.balance(&recipient());
    let t = p.transfer(&state, &bounceable, Nanoton::from_ton(1), 60);
    client.send_transfer(&t).await.unwrap();
    assert!(matches!(
        client
            .wait_for_transfer(&t, Duration::from_millis(50))
            .await
            .unwrap(),
        TransferOutcome::Confirmed(_)
    ));
    // Delivery and bounce happen in the same block; wait for the bounced credit.
    let expected = 3_000_000_000 - fees.compute - fees.deploy - fees.forward - fees.forward;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sim.balance(p.wallet.address()).as_u64() != expected {
        assert!(
            std::time::Instant::now() < deadline,
            "bounce never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sim.balance(&recipient()), before, "nothing stayed there");
}

#[tokio::test]
async fn a_wrong_api_key_is_refused_without_retrying() {
    let (sim, _) = sim_with(TonSimConfig {
        api_key: Some("right-key".into()),
        ..Default::default()
    })
    .await;
    let mut cfg = TonApiConfig::local(sim.url());
    cfg.api_key = Some("wrong-key".into());
    let client = TonCenterClient::new(cfg).unwrap();
    let p = payer(TON_WORDS, WalletVersion::V4R2);
    assert_eq!(
        client.wallet_state(&p.wallet).await,
        Err(TonApiError::Unauthorized(401))
    );
    assert_eq!(
        sim.stats()
            .unauthorized
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let mut cfg = TonApiConfig::local(sim.url());
    cfg.api_key = Some("right-key".into());
    let client = TonCenterClient::new(cfg).unwrap();
    client.wallet_state(&p.wallet).await.unwrap();
}

/// Raw toncenter calls, to see exactly what the simulator answers.
async fn raw_get(sim: &TonSim, path_and_query: &str) -> reqwest::Result<reqwest::Response> {
    reqwest::Client::new()
        .get(format!("{}{path_and_query}", sim.url()))
        .send()
        .await
}

/// How many of `addr`'s transactions the indexer (v3) shows, up to `limit`.
async fn indexed(client: &TonCenterClient, addr: &TonAddress, limit: u32) -> usize {
    client
        .indexed_transactions(addr, limit, 0)
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn the_indexer_trails_the_chain_by_the_lag_while_v2_stays_current() {
    let (sim, client) = manual_sim().await;
    let p = payer(TON_WORDS, WalletVersion::V4R2);
    let addr = p.wallet.address().clone();
    // Positive control: without lag the indexer shows a transaction at once.
    sim.fund(&addr, Nanoton::from_ton(3));
    assert_eq!(indexed(&client, &addr, 10).await, 1);

    let lag = Duration::from_millis(400);
    sim.set_indexer_lag(lag);
    let state = client.wallet_state(&p.wallet).await.unwrap();
    let t = p.transfer(&state, RECIPIENT, Nanoton::from_ton(1), 60);
    client.send_transfer(&t).await.unwrap();
    let applied = std::time::Instant::now();
    assert_eq!(sim.produce_block(), 1);
    // The chain (v2) has it...
    assert_eq!(client.wallet_state(&p.wallet).await.unwrap().seqno, 1);
    assert_eq!(client.transactions(&addr, 10, None).await.unwrap().len(), 2);
    // ...the indexer (v3) does not yet, by message or by account (not even the funding,
    // younger than the lag too): an empty answer, not an error, as toncenter's indexer
    // gives.
    assert_eq!(
        client
            .transaction_by_message(&t.normalized_hash)
            .await
            .unwrap(),
        None
    );
    assert_eq!(indexed(&client, &addr, 10).await, 0);
    // A client that falls back to the chain still learns the outcome.
    assert!(matches!(
        client
            .wait_for_transfer(&t, Duration::from_millis(20))
            .await
            .unwrap(),
        TransferOutcome::Confirmed(_)
    ));
    // Once the block is older than the lag, the indexer has it.
    let wait = lag.saturating_sub(applied.elapsed()) + Duration::from_millis(50);
    tokio::time::sleep(wait).await;
    let tx = client
        .transaction_by_message(&t.normalized_hash)
        .await
        .unwrap()
        .expect("indexed by now");
    assert_eq!(tx.account, addr);
    assert_eq!(indexed(&client, &addr, 10).await, 2);
    // A lag longer than the simulator has lived hides everything; zero hides nothing.
    sim.set_indexer_lag(Duration::MAX);
    assert_eq!(indexed(&client, &addr, 10).await, 0);
    sim.set_indexer_lag(Duration::ZERO);
    assert_eq!(indexed(&client, &addr, 10).await, 2);
}

#[tokio::test]
async fn a_paused_indexer_keeps_what_it_had_and_catches_up_when_resumed() {
    let (sim, client) = manual_sim().await;
    let addr = recipient();
    sim.fund(&addr, Nanoton::new(1));
    sim.pause_indexer(true);
    sim.fund(&addr, Nanoton::new(2));
    std::thread::sleep(Duration::from_millis(5));
    // A second pause does not move the point the indexer stopped at.
    sim.pause_indexer(true);
    sim.fund(&addr, Nanoton::new(3));
    let shown = client.indexed_transactions(&addr, 10, 0).await.unwrap();
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].in_msg.as_ref().unwrap().value, Nanoton::new(1));
    assert_eq!(client.transactions(&addr, 10, None).await.unwrap().len(), 3);
    sim.pause_indexer(false);
    assert_eq!(indexed(&client, &addr, 10).await, 3);
}

#[tokio::test]
async fn the_drop_rate_switches_at_runtime() {
    let (sim, client) = manual_sim().await;
    let p = payer(TON_WORDS, WalletVersion::V4R2);
    sim.fund(p.wallet.address(), Nanoton::from_ton(2));
    let t = p.signed(0, now() + 60, true, Nanoton::from_ton(1));
    sim.set_drop_rate(1.0);
    // Accepted, then lost: nothing to apply.
    client.send_transfer(&t).await.unwrap();
    assert_eq!(sim.produce_block(), 0);
    assert_eq!(
        sim.stats()
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // Back to none: the same message goes through.
    sim.set_drop_rate(0.0);
    client.send_transfer(&t).await.unwrap();
    assert_eq!(sim.produce_block(), 1);
    assert_eq!(sim.seqno(p.wallet.address()), Some(1));
}

#[tokio::test]
async fn rate_limits_switch_at_runtime_for_keyless_and_keyed_callers() {
    let (sim, _) = sim_with(TonSimConfig {
        api_key: Some("key".into()),
        ..Default::default()
    })
    .await;
    let path = format!("/api/v2/getAddressBalance?address={RECIPIENT}");
    let keyed = || {
        reqwest::Client::new()
            .get(format!("{}{path}", sim.url()))
            .header("X-API-Key", "key")
            .send()
    };
    // Unlimited to start with.
    for _ in 0..5 {
        assert_eq!(raw_get(&sim, &path).await.unwrap().status(), 200);
    }
    // One request a second without a key: a bucket of one, then toncenter's 429.
    sim.set_keyless_rps(Some(1.0));
    assert_eq!(raw_get(&sim, &path).await.unwrap().status(), 200);
    let limited = raw_get(&sim, &path).await.unwrap();
    assert_eq!(limited.status(), 429);
    let body: serde_json::Value = limited.json().await.unwrap();
    assert_eq!(body["ok"], false);
    assert_eq!(body["code"], 429);
    // The keyed budget is apart, until it is limited too.
    for _ in 0..5 {
        assert_eq!(keyed().await.unwrap().status(), 200);
    }
    sim.set_keyed_rps(Some(0.0));
    assert_eq!(keyed().await.unwrap().status(), 200);
    assert_eq!(keyed().await.unwrap().status(), 429);
    // Lifted: everything passes again.
    sim.set_keyless_rps(None);
    sim.set_keyed_rps(None);
    for _ in 0..5 {
        assert_eq!(raw_get(&sim, &path).await.unwrap().status(), 200);
        assert_eq!(keyed().await.unwrap().status(), 200);
    }
    assert_eq!(
        sim.stats()
            .rate_limited
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

fn hang_for(ms: u64, then: fragment_gateway::sim::faults::AfterTimeout) -> HangConfig {
    HangConfig {
        duration: Duration::from_millis(ms),
        then,
        ..HangConfig::default()
    }
}

/// A client that gives up after `timeout` and does not retry.
fn impatient(sim: &TonSim, timeout: Duration) -> TonCenterClient {
    TonCenterClient::new(TonApiConfig {
        timeout,
        max_attempts: 1,
        ..TonApiConfig::local(sim.url())
    })
    .unwrap()
}

#[tokio::test]
async fn a_hanging_request_outlasts_the_client_then_drops_or_answers() {
    use fragment_gateway::sim::faults::AfterTimeout;
    let (sim, _) = manual_sim().await;
    let p = payer(TON_WORDS, WalletVersion::V4R2);
    let path = format!("/api/v2/getAddressBalance?address={RECIPIENT}");
    sim.faults().set_hangs(hang_for(400, AfterTimeout::Close));

    // A client with a shorter timeout gives up.
    sim.faults().hang_next(1);
    let started = std::time::Instant::now();
    assert!(impatient(&sim, Duration::from_millis(100))
        .wallet_state(&p.wallet)
        .await
        .is_err());
    assert!(started.elapsed() < Duration::from_millis(400));
    // A patient one sees the connection dropped without an answer once the hang is over.
    sim.faults().hang_next(1);
    let started = std::time::Instant::now();
    let err = raw_get(&sim, &path).await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert!(err.is_request() && err.status().is_none(), "{err:?}");
    // Or, ending in an answer, a late but normal one.
    sim.faults().set_hangs(hang_for(400, AfterTimeout::Answer));
    sim.faults().hang_next(1);
    let started = std::time::Instant::now();
    assert_eq!(raw_get(&sim, &path).await.unwrap().status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(400));
    // Positive control: the next request does not hang.
    let started = std::time::Instant::now();
    assert_eq!(raw_get(&sim, &path).await.unwrap().status(), 200);
    assert!(started.elapsed() < Duration::from_millis(400));
    assert_eq!(sim.faults().hung(), 3);
}

#[tokio::test]
async fn a_broadcast_hanging_before_it_is_handled_never_lands() {
    use fragment_gateway::sim::faults::AfterTimeout;
    let (sim, client) = manual_sim().await;
    let p = payer(TON_WORDS, WalletVersion::V4R2);
    sim.fund(p.wallet.address(), Nanoton::from_ton(2));
    let t = p.signed(0, now() + 60, true, Nanoton::from_ton(1));
    sim.faults().set_hangs(hang_for(300, AfterTimeout::Close));
    sim.faults().hang_next(1);
    // The client cannot tell this from a hang after acceptance...
    match impatient(&sim, Duration::from_millis(100))
        .send_transfer(&t)
        .await
    {
        Err(TonApiError::Unconfirmed(_)) => {}
        other => panic!("{other:?}"),
    }
    drop(client);
    // ...but here the request was lost before sendBoc saw it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(sim.broadcasts().is_empty());
    assert_eq!(sim.pending(), 0);
    assert_eq!(sim.produce_block(), 0);
}

#[tokio::test]
async fn a_hung_send_boc_answer_leaves_the_message_applied_and_the_client_in_the_dark() {
    use fragment_gateway::sim::faults::AfterTimeout;
    let (sim, client) = manual_sim().await;
    let p = payer(TON_WORDS, WalletVersion::V4R2);
    sim.fund(p.wallet.address(), Nanoton::from_ton(3));
    sim.faults().set_hangs(hang_for(400, AfterTimeout::Close));
    sim.hang_next_answers(1);
    let t = p.signed(0, now() + 60, true, Nanoton::from_ton(1));
    match impatient(&sim, Duration::from_millis(100))
        .send_transfer(&t)
        .await
    {
        Err(TonApiError::Unconfirmed(_)) => {}
        other => panic!("a hung answer must not be reported as {other:?}"),
    }
    // The message was accepted before the answer hung: the next block applies it.
    assert_eq!(sim.broadcasts(), vec![t.message_hash.clone()]);
    assert_eq!(sim.produce_block(), 1);
    assert!(matches!(
        client
            .wait_for_transfer(&t, Duration::from_millis(20))
            .await
            .unwrap(),
        TransferOutcome::Confirmed(_)
    ));
    assert_eq!(
        sim.stats()
            .answers_lost
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(sim.faults().hung(), 1);

    // Ending in a late answer, a patient client gets the normal receipt.
    sim.faults().set_hangs(hang_for(300, AfterTimeout::Answer));
    sim.hang_next_answers(1);
    let state = client.wallet_state(&p.wallet).await.unwrap();
    let t2 = p.transfer(&state, RECIPIENT, Nanoton::new(5), 60);
    let started = std::time::Instant::now();
    let receipt = client.send_transfer(&t2).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(receipt.hash, t2.message_hash);
    // Positive control: no switch, no hang.
    sim.produce_block();
    let state = client.wallet_state(&p.wallet).await.unwrap();
    let t3 = p.transfer(&state, RECIPIENT, Nanoton::new(6), 60);
    let started = std::time::Instant::now();
    client.send_transfer(&t3).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn a_burst_of_incoming_transfers_pages_back_newest_first() {
    let (sim, client) = manual_sim().await;
    let shop = recipient();
    let each = Nanoton::new(1_000_000);
    let hashes = sim.burst(&shop, 120, each);
    assert_eq!(hashes.len(), 120);
    assert_eq!(sim.balance(&shop).as_u64(), 120 * each.as_u64());

    // Page back 50 at a time from the newest, each page starting (inclusive, as toncenter
    // does) with the previous page's last transaction.
    let mut seen = client.transactions(&shop, 50, None).await.unwrap();
    loop {
        let last = seen.last().unwrap();
        let from = fragment_gateway::ton::client::TxId {
            lt: last.lt,
            hash: last.hash.clone(),
        };
        let page = client.transactions(&shop, 50, Some(&from)).await.unwrap();
        assert_eq!(
            page[0].hash, from.hash,
            "a page starts where the last ended"
        );
        let more = page.len() > 1;
        seen.extend(page.into_iter().skip(1));
        if !more {
            break;
        }
    }
    assert_eq!(seen.len(), 120);
    let newest_first: Vec<_> = hashes.iter().rev().cloned().collect();
    assert_eq!(
        seen.iter().map(|t| t.hash.clone()).collect::<Vec<_>>(),
        newest_first
    );
    assert!(seen.windows(2).all(|w| w[0].lt > w[1].lt));
    // Each one an incoming internal transfer from a sender of its own, not the faucet.
    let faucet = sim.with_ledger(|l| l.faucet_address().clone());
    let mut senders = std::collections::HashSet::new();
    for t in &seen {
        let m = t.in_msg.as_ref().unwrap();
        assert_eq!(m.value, each);
        let source = m.source.clone().expect("an internal message has a source");
        assert_ne!(source, faucet);
        senders.insert(source);
    }
    assert_eq!(senders.len(), 120);
    // A position that is not a transaction of this account is refused, as toncenter does.
    let bad = raw_get(
        &sim,
        &format!(
            "/api/v2/getTransactions?address={RECIPIENT}&lt={}&hash={}",
            seen[5].lt + 1,
            seen[5].hash.to_hex()
        ),
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), 500);
    // The indexer lists them too.
    assert_eq!(indexed(&client, &shop, 1000).await, 120);
}

#[tokio::test]
async fn a_wallets_history_accounts_for_every_nanoton_and_traces_payments_to_their_message() {
    let (sim, client) = fast_sim().await;
    let p = payer(TON_WORDS, WalletVersion::V4R2);
    let addr = p.wallet.address().clone();
    let funding = sim.fund(&addr, Nanoton::from_ton(5));
    sim.burst(&addr, 3, Nanoton::new(777));
    let state = client.wallet_state(&p.wallet).await.unwrap();
    let paid = p.transfer(&state, RECIPIENT, Nanoton::new(1_234_567), 60);
    client.send_transfer(&paid).await.unwrap();
    client
        .wait_for_transfer(&paid, Duration::from_millis(20))
        .await
        .unwrap();
    // A bounceable transfer to an undeployed account comes back, minus fees.
    let state = client.wallet_state(&p.wallet).await.unwrap();
    let bounceable = fragment_gateway::ton::address::friendly(&recipient(), true, false);
    let bounced = p.transfer(&state, &bounceable, Nanoton::from_ton(1), 60);
    client.send_transfer(&bounced).await.unwrap();
    client
        .wait_for_transfer(&bounced, Duration::from_millis(20))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sim.history(&addr).len() < 7 {
        assert!(std::time::Instant::now() < deadline, "bounce never came");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Funding, three burst credits, two transfers, one bounce: the balance changes add up.
    let history = sim.history(&addr);
    assert_eq!(history.len(), 7);
    assert_eq!(
        sim.net_change(&addr),
        i128::from(sim.balance(&addr).as_u64())
    );
    let fees: u64 = history.iter().map(|t| t.total_fees).sum();
    let c = sim.config().fees;
    assert_eq!(
        fees,
        c.compute + c.deploy + c.forward + c.compute + c.forward
    );

    // The payment: its out-message as sent, and the recipient's transaction traced back to
    // the external message that caused it.
    let sent = history
        .iter()
        .find(|t| t.in_msg.hash == paid.message_hash)
        .unwrap();
    assert_eq!(sent.in_msg.hash_norm.as_ref(), Some(&paid.normalized_hash));
    assert_eq!(sent.in_msg.source, None);
    assert_eq!(sent.out_msgs.len(), 1);
    let out = &sent.out_msgs[0];
    assert_eq!(out.destination, recipient());
    assert_eq!(out.value, 1_234_567);
    assert_eq!(
        out.body_hash,
        MessageBody::comment("test payment")
            .to_cell()
            .unwrap()
            .as_ref()
            .cell_hash()
    );
    let received = sim
        .history(&recipient())
        .into_iter()
        .find(|t| t.in_msg.hash == out.hash)
        .unwrap();
    assert_eq!(received.balance_change, 1_234_567);
    assert_eq!(received.in_msg.source.as_ref(), Some(&addr));
    let origin = sim.origin(&received.hash).unwrap();
    assert_eq!(origin.hash, sent.hash);
    assert_eq!(origin.in_msg.hash, paid.message_hash);
    // The bounce, two hops from its message, traces back to it too.
    let returned = history.last().unwrap();
    assert!(returned.in_msg.bounced);
    assert_eq!(
        sim.origin(&returned.hash).unwrap().in_msg.hash,
        bounced.message_hash
    );
    // What came from outside the simulation has no origin in it.
    assert_eq!(sim.origin(&funding), None);
    assert_eq!(sim.origin(&history[1].hash), None);
}

/// A jetton `transfer` from `p`'s wallet to its own USDT jetton wallet: `units` to
/// `to` (its owner), `ton` attached for the gas, `forward` TON to the recipient with a
/// comment, the excess back to `p`.
fn usdt_transfer(
    p: &Payer,
    state: &WalletState,
    to: &TonAddress,
    units: u64,
    ton: Nanoton,
    forward: Nanoton,
) -> SignedTransfer {
    use fragment_gateway::ton::jetton::{ForwardPayload, JettonAmount, JettonTransfer};
    let master = fragment_gateway::sim::ton::usdt_master();
    let body = JettonTransfer {
        query_id: 7,
        amount: JettonAmount(units),
        destination: to.clone(),
        response_destination: Some(p.wallet.address().clone()),
        custom_payload: None,
        forward_ton_amount: forward,
        forward_payload: ForwardPayload::Ref(MessageBody::comment("Ref#usdt").to_cell().unwrap()),
    }
    .to_cell()
    .unwrap();
    let jetton_wallet =
        fragment_gateway::sim::ton::jetton::wallet_address(&master, p.wallet.address());
    let msg = OutgoingMessage::new(
        &fragment_gateway::ton::address::friendly(&jetton_wallet, true, false),
        ton,
        MessageBody::Cell(body.to_arc()),
    )
    .unwrap();
    let params = TransferParams {
        seqno: state.seqno,
        valid_until: now() + 60,
        include_state_init: !state.deployed,
    };
    sign_transfer(&p.wallet, &p.key, &params, &[msg]).unwrap()
}

/// v2 runGetMethod over HTTP, with one address argument when given: the result.
async fn get_method(
    sim: &TonSim,
    address: &TonAddress,
    method: &str,
    arg: Option<&TonAddress>,
) -> serde_json::Value {
    let stack = match arg {
        Some(a) => {
            let mut b = CellBuilder::new();
            b.store_raw_address(a).unwrap();
            vec![serde_json::json!([
                "tvm.Slice",
                boc::to_base64(&b.build().unwrap()).unwrap()
            ])]
        }
        None => vec![],
    };
    let r: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/api/v2/runGetMethod", sim.url()))
        .json(&serde_json::json!({
            "address": fragment_gateway::ton::address::raw(address),
            "method": method,
            "stack": stack,
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["result"].clone()
}

fn stack_address(entry: &serde_json::Value) -> TonAddress {
    let cell =
        fragment_gateway::ton::transfer::decode_boc(entry[1]["bytes"].as_str().unwrap()).unwrap();
    cell.parser().load_address().unwrap()
}

/// USDT as TEP-74's reference contracts move it: the master names each owner's jetton
/// wallet; a transfer moves exactly its amount, tells the recipient with the forward amount
/// and payload, and returns the excess; a short balance, a stranger's transfer and too little
/// TON are thrown and bounce, moving no jetton and returning the TON less the gas.
#[tokio::test]
async fn usdt_moves_as_tep_74_says_and_a_short_balance_bounces() {
    use fragment_gateway::ton::jetton::{JettonAmount, TransferNotification};
    let (sim, client) = fast_sim().await;
    let fees = sim.config().fees;
    let master = fragment_gateway::sim::ton::usdt_master();
    let p = payer(TON_WORDS, WalletVersion::V4R2);
    let me = p.wallet.address().clone();
    let shop = recipient();
    sim.fund(&me, Nanoton::from_ton(5));
    sim.mint_usdt(&me, JettonAmount(10_000_000));
    assert_eq!(sim.usdt_balance(&me), JettonAmount(10_000_000));

    // The master's get-methods, over HTTP as toncenter serves them.
    let r = get_method(&sim, &master, "get_wallet_address", Some(&me)).await;
    assert_eq!(r["exit_code"], 0, "{r}");
    let my_jettons = stack_address(&r["stack"][0]);
    assert_eq!(
        my_jettons,
        fragment_gateway::sim::ton::jetton::wallet_address(&master, &me)
    );
    let r = get_method(&sim, &my_jettons, "get_wallet_data", None).await;
    assert_eq!(r["stack"][0][1], "0x989680", "10 USDT: {r}");
    assert_eq!(stack_address(&r["stack"][1]), me);
    assert_eq!(stack_address(&r["stack"][2]), master);
    let r = get_method(&sim, &master, "get_wallet_address", None).await;
    assert_eq!(r["exit_code"], 7, "no argument: {r}");
    // The same through the client.
    assert_eq!(
        client.jetton_wallet_address(&master, &me).await.unwrap(),
        my_jettons
    );
    let data = client
        .jetton_wallet_data(&my_jettons)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (data.balance, &data.owner, &data.master),
        (JettonAmount(10_000_000), &me, &master)
    );
    let nobody = client.jetton_wallet_address(&master, &shop).await.unwrap();
    assert_eq!(client.jetton_wallet_data(&nobody).await.unwrap(), None);

    // 1.75 USDT to the shop, 1 nanoton forwarded with the comment.
    let state = client.wallet_state(&p.wallet).await.unwrap();
    let ton_before = sim.balance(&me);
    let t = usdt_transfer(
        &p,
        &state,
        &shop,
        1_750_000,
        Nanoton::new(50_000_000),
        Nanoton::new(1),
    );
    client.send_transfer(&t).await.unwrap();
    let outcome = client
        .wait_for_transfer(&t, Duration::from_millis(50))
        .await
        .unwrap();
    assert!(
        matches!(outcome, TransferOutcome::Confirmed(_)),
        "{outcome:?}"
    );
    // The jetton wallets' transactions follow the wallet's within its block.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sim.usdt_balance(&me), JettonAmount(8_250_000));
    assert_eq!(sim.usdt_balance(&shop), JettonAmount(1_750_000));
    let notified = sim
        .history(&shop)
        .into_iter()
        .filter(|tx| {
            tx.in_msg.source.as_ref()
                == Some(&fragment_gateway::sim::ton::jetton::wallet_address(
                    &master, &shop,
                ))
        })
        .count();
    assert_eq!(notified, 1, "the shop was told once");
    let shop_tx = sim.with_ledger(|l| {
        l.account_transactions(&shop, None, 0, 10)
            .into_iter()
            .find(|tx| tx.in_msg.value == 1)
            .map(|tx| tx.in_msg.body.clone())
            .expect("the notification")
    });
    let note = TransferNotification::parse(&shop_tx).unwrap();
    // The indexer gives the body too, as toncenter v3 does.
    let indexed = client.indexed_transactions(&shop, 10, 0).await.unwrap();
    let body = indexed
        .iter()
        .find_map(|tx| tx.in_msg.as_ref().filter(|m| m.value == Nanoton::new(1)))
        .and_then(|m| m.body.clone())
        .expect("the notification's body");
    assert_eq!(TransferNotification::parse(&body).unwrap(), note);
    assert_eq!(note.amount, JettonAmount(1_750_000));
    assert_eq!(note.sender, Some(me.clone()));
    assert_eq!(
        fragment_gateway::ton::transfer::read_comment(&note.forward_payload.cell()).as_deref(),
        Some("Ref#usdt")
    );
    // The wallet paid its own fees, both jetton wallets' gas, the forwarded nanoton and the
    // forwarding of every message; the excess came back.
    let spent = ton_before.as_u64() - sim.balance(&me).as_u64();
    let expected = fees.compute + fees.forward // the wallet's transaction
        + 2 * fees.jetton + 1 + 3 * fees.forward; // transfer, internal, notification, excess
                                                  // (Its first transfer: it deployed the wallet too.)
    assert_eq!(spent, expected + fees.deploy, "{spent} vs {expected}");

    // More than it holds: thrown (706), bounced; the USDT stays, the TON returns less gas.
    let state = client.wallet_state(&p.wallet).await.unwrap();
    let ton_before = sim.balance(&me);
    let t = usdt_transfer(
        &p,
        &state,
        &shop,
        9_000_000,
        Nanoton::new(50_000_000),
        Nanoton::new(1),
    );
    client.send_transfer(&t).await.unwrap();
    client
        .wait_for_transfer(&t, Duration::from_millis(50))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sim.usdt_balance(&me), JettonAmount(8_250_000));
    assert_eq!(sim.usdt_balance(&shop), JettonAmount(1_750_000));
    let jetton_tx = sim.history(&my_jettons).into_iter().last().unwrap();
    assert!(jetton_tx.aborted, "{jetton_tx:?}");
    assert!(
        jetton_tx.out_msgs[0].bounced,
        "the TON came back: {jetton_tx:?}"
    );
    let spent = ton_before.as_u64() - sim.balance(&me).as_u64();
    assert_eq!(
        spent,
        fees.compute + fees.forward + fees.jetton + fees.forward
    );

    // Too little TON for the gas: 709, bounced. A stranger's transfer: 705.
    let state = client.wallet_state(&p.wallet).await.unwrap();
    let t = usdt_transfer(
        &p,
        &state,
        &shop,
        1,
        Nanoton::new(fees.jetton + 1),
        Nanoton::new(1),
    );
    client.send_transfer(&t).await.unwrap();
    client
        .wait_for_transfer(&t, Duration::from_millis(50))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let jetton_tx = sim.with_ledger(|l| l.account_transactions(&my_jettons, None, 0, 1)[0].clone());
    assert_eq!(jetton_tx.compute.exit_code, 709);
    let stranger = payer(BIP39_WORDS, WalletVersion::V5R1);
    sim.fund(stranger.wallet.address(), Nanoton::from_ton(1));
    let state = client.wallet_state(&stranger.wallet).await.unwrap();
    // Signed by the stranger, to `p`'s jetton wallet.
    let mut forged = usdt_transfer(
        &p,
        &state,
        &shop,
        1,
        Nanoton::new(50_000_000),
        Nanoton::ZERO,
    );
    let msg = {
        let ext =
            fragment_gateway::ton::external::ExternalMessage::from_base64(&forged.boc).unwrap();
        let req =
            fragment_gateway::ton::external::WalletRequest::read(WalletVersion::V4R2, &ext.body)
                .unwrap();
        fragment_gateway::ton::external::InternalMessage::read(&req.actions[0].message).unwrap()
    };
    let out = OutgoingMessage::new(
        &fragment_gateway::ton::address::friendly(&msg.destination, true, false),
        msg.amount,
        MessageBody::Cell(msg.body),
    )
    .unwrap();
    let params = TransferParams {
        seqno: state.seqno,
        valid_until: now() + 60,
        include_state_init: !state.deployed,
    };
    forged = sign_transfer(&stranger.wallet, &stranger.key, &params, &[out]).unwrap();
    client.send_transfer(&forged).await.unwrap();
    client
        .wait_for_transfer(&forged, Duration::from_millis(50))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let jetton_tx = sim.with_ledger(|l| l.account_transactions(&my_jettons, None, 0, 1)[0].clone());
    assert_eq!(jetton_tx.compute.exit_code, 705);
    assert_eq!(sim.usdt_balance(&me), JettonAmount(8_250_000));
}
