//! Checkouts: paying an order without the gateway ever seeing a key. The gateway issues a TON
//! Connect `sendTransaction` request for the client's own wallet (`request`); the wallet
//! signs it and the client hands the signed external message back; before that message is
//! recorded and broadcast, `verify` checks that it is exactly what was issued: signed by the
//! wallet's key, for that wallet, carrying the issued messages (destinations, amounts,
//! payloads) and nothing else, expiring no later than issued. Whether its seqno is still
//! usable is the chain's to say (`actors::checkout`).
//!
//! Pure: no I/O, no clock.

use serde::Serialize;
use tonlib_core::cell::ArcCell;
use tonlib_core::tlb_types::block::state_init::StateInit;
use tonlib_core::tlb_types::tlb::TLB;
use tonlib_core::wallet::versioned::v4::WalletDataV4;
use tonlib_core::wallet::versioned::v5::WalletDataV5;
use tonlib_core::TonAddress;

use crate::ton::address;
use crate::ton::external::{ExternalMessage, InternalMessage, WalletRequest};
use crate::ton::transfer::decode_boc;
use crate::ton::{Network, PublicKey, WalletContract, WalletVersion};
use events::CheckoutIssued;

/// Send modes a checkout message may use: +1 (the wallet pays the forwarding fees apart, so
/// the amount arrives whole) with or without +2 (ignore errors). Anything else would deliver
/// less than invoiced, or carry the wallet's whole balance (+128), or destroy it (+32).
const ALLOWED_MODES: [u8; 2] = [1, 3];

/// Why a submitted message is not the checkout's transaction. The text names the check that
/// failed, for the client (CHECKOUT_REJECTED).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the BOC is not a signed external message: {0}")]
    Malformed(String),
    #[error("the message is addressed to wallet {got}, not to the checkout's wallet {expected}")]
    WrongWallet { got: String, expected: String },
    #[error("the message deploys a contract whose StateInit is not this wallet's")]
    WrongStateInit,
    #[error("the wallet request cannot be read: {0}")]
    Unreadable(String),
    #[error("wrong signer: the signature does not verify with the wallet's public key {0}")]
    WrongSigner(PublicKey),
    #[error("the message is for wallet id {got}, not the wallet's id {expected}")]
    WrongWalletId { got: u32, expected: u32 },
    #[error("validity: the message is valid until {signed}, later than the checkout's valid_until {issued}")]
    ValidityTooLong { signed: u32, issued: u32 },
    #[error("extra message: the message sends {got} messages; the checkout has {expected}")]
    MessageCount { got: usize, expected: usize },
    #[error("message {index}: tampered destination: it goes to {got}, the checkout's goes to {expected}")]
    Destination {
        index: usize,
        got: String,
        expected: String,
    },
    #[error(
        "message {index}: tampered amount: it sends {got} nanoton, the checkout's sends {expected}"
    )]
    Amount {
        index: usize,
        got: u64,
        expected: u64,
    },
    #[error("message {index}: tampered payload: its body is not the checkout's payload")]
    Payload { index: usize },
    #[error("message {index}: send mode {mode} is not allowed (use 3, as wallets do)")]
    SendMode { index: usize, mode: u8 },
    #[error(
        "message {index}: it deploys a contract at the destination, which the checkout does not"
    )]
    MessageStateInit { index: usize },
    #[error("message {index}: it carries currencies other than TON")]
    ExtraCurrencies { index: usize },
    #[error("message {index}: {reason}")]
    BadMessage { index: usize, reason: String },
}

/// A submitted message that passed `verify`.
#[derive(Clone, Debug)]
pub struct Verified {
    pub external: ExternalMessage,
    pub request: WalletRequest,
}

impl Verified {
    /// Whether the message carries the wallet's StateInit (deploys it).
    pub fn deploys(&self) -> bool {
        self.external.state_init.is_some()
    }
}

/// The wallet contract a checkout was issued for, from its record.
pub fn issued_wallet(issued: &CheckoutIssued, network: Network) -> Result<WalletContract, String> {
    let version: WalletVersion = issued.wallet_version.parse()?;
    let key = parse_public_key(&issued.wallet_public_key)?;
    let wallet = WalletContract::with_wallet_id(version, network, key, issued.wallet_id);
    if wallet.raw_address() != issued.wallet_address {
        return Err("the recorded key and wallet id do not give the recorded wallet".into());
    }
    Ok(wallet)
}

/// Checks `boc` against the issued checkout. Everything but the seqno, which only the chain
/// can judge.
pub fn verify(
    issued: &CheckoutIssued,
    wallet: &WalletContract,
    boc: &str,
) -> Result<Verified, Rejection> {
    let external = ExternalMessage::from_base64(boc).map_err(Rejection::Malformed)?;
    if &external.destination != wallet.address() {
        return Err(Rejection::WrongWallet {
            got: address::raw(&external.destination),
            expected: wallet.raw_address(),
        });
    }
    if let Some(init) = &external.state_init {
        let hash = init
            .to_cell()
            .map_err(|e| Rejection::Malformed(e.to_string()))?
            .cell_hash();
        if TonAddress::new(0, hash) != *wallet.address() {
            return Err(Rejection::WrongStateInit);
        }
    }
    let request =
        WalletRequest::read(wallet.version(), &external.body).map_err(Rejection::Unreadable)?;
    if !request.signed_by(&wallet.public_key()) {
        return Err(Rejection::WrongSigner(wallet.public_key()));
    }
    if request.wallet_id != wallet.wallet_id() as u32 {
        return Err(Rejection::WrongWalletId {
            got: request.wallet_id,
            expected: wallet.wallet_id() as u32,
        });
    }
    if request.valid_until > issued.valid_until {
        return Err(Rejection::ValidityTooLong {
            signed: request.valid_until,
            issued: issued.valid_until,
        });
    }
    if request.actions.len() != issued.messages.len() {
        return Err(Rejection::MessageCount {
            got: request.actions.len(),
            expected: issued.messages.len(),
        });
    }
    for (index, (action, expected)) in request.actions.iter().zip(&issued.messages).enumerate() {
        let sent =
            InternalMessage::read(&action.message).map_err(|reason| Rejection::BadMessage {
                index,
                reason: reason.clone(),
            })?;
        let destination = address::raw(&sent.destination);
        if destination != expected.destination {
            return Err(Rejection::Destination {
                index,
                got: destination,
                expected: expected.destination.clone(),
            });
        }
        if sent.amount != expected.amount_nanoton {
            return Err(Rejection::Amount {
                index,
                got: sent.amount.as_u64(),
                expected: expected.amount_nanoton.as_u64(),
            });
        }
        if sent.body.as_ref().cell_hash().to_hex() != expected.body_hash {
            return Err(Rejection::Payload { index });
        }
        if !ALLOWED_MODES.contains(&action.mode) {
            return Err(Rejection::SendMode {
                index,
                mode: action.mode,
            });
        }
        if sent.has_state_init {
            return Err(Rejection::MessageStateInit { index });
        }
        if sent.has_extra_currencies {
            return Err(Rejection::ExtraCurrencies { index });
        }
    }
    Ok(Verified { external, request })
}

/// The TON Connect `sendTransaction` request of a checkout, in the wallet protocol's field
/// names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TonConnectRequest {
    /// Unix time after which the wallet must not send it.
    pub valid_until: u32,
    /// The network's global id: `-239` (mainnet) or `-3` (testnet).
    pub network: String,
    /// The paying wallet, raw form.
    pub from: String,
    pub messages: Vec<TonConnectMessage>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TonConnectMessage {
    pub address: String,
    /// Nanoton, as a decimal string.
    pub amount: String,
    /// The message body: a base64 BOC.
    pub payload: String,
}

pub fn request(issued: &CheckoutIssued, network: Network) -> TonConnectRequest {
    TonConnectRequest {
        valid_until: issued.valid_until,
        network: network.global_id().to_string(),
        from: issued.wallet_address.clone(),
        messages: issued
            .messages
            .iter()
            .map(|m| TonConnectMessage {
                address: m.address.clone(),
                amount: m.amount_nanoton.as_u64().to_string(),
                payload: m.payload.clone(),
            })
            .collect(),
    }
}

/// How the client told us which wallet pays: TON Connect's `account` gives the address and
/// the public key, and the StateInit for a wallet not deployed yet.
#[derive(Clone, Debug, Default)]
pub struct WalletHint {
    pub public_key: Option<PublicKey>,
    /// Base64 BOC of the wallet's StateInit (`walletStateInit`).
    pub state_init: Option<String>,
}

/// The v4r2 or v5r1 wallet at `address`, from what the client gave (`hint`) or, failing
/// that, the contract on chain (`on_chain`: its code and data cells). The message says what
/// to send instead when the wallet cannot be told.
pub fn resolve_wallet(
    address: &TonAddress,
    network: Network,
    hint: &WalletHint,
    on_chain: Option<(&ArcCell, &ArcCell)>,
) -> Result<WalletContract, String> {
    if let Some(boc) = &hint.state_init {
        let cell =
            decode_boc(boc).map_err(|e| format!("wallet_state_init is not a base64 BOC: {e}"))?;
        let init = StateInit::from_cell(&cell)
            .map_err(|e| format!("wallet_state_init is not a StateInit: {e}"))?;
        let (Some(code), Some(data)) = (&init.code, &init.data) else {
            return Err("wallet_state_init has no code or no data".into());
        };
        let wallet = wallet_from_cells(code, data, network)?;
        if cell.as_ref().cell_hash() != address.hash_part {
            return Err("wallet_state_init does not give wallet_address".into());
        }
        if wallet.address() != address {
            return Err("wallet_state_init is not a standard wallet's initial state (seqno 0, no plugins or extensions)".into());
        }
        if hint.public_key.is_some_and(|k| k != wallet.public_key()) {
            return Err("public_key is not the key in wallet_state_init".into());
        }
        return Ok(wallet);
    }
    if let Some(key) = hint.public_key {
        return WalletVersion::ALL
            .into_iter()
            .map(|v| WalletContract::new(v, network, key))
            .find(|w| w.address() == address)
            .ok_or_else(|| {
                "public_key does not give wallet_address as a standard v4r2 or v5r1 wallet; send wallet_state_init (TON Connect's account.walletStateInit) instead".to_string()
            });
    }
    match on_chain {
        Some((code, data)) => {
            let wallet = wallet_from_cells(code, data, network)?;
            if wallet.address() != address {
                return Err("the contract at wallet_address was deployed with another StateInit than a standard wallet's; send wallet_state_init".into());
            }
            Ok(wallet)
        }
        None => Err("the wallet is not deployed yet, so its key cannot be read from the chain: send public_key or wallet_state_init (TON Connect's account.publicKey and account.walletStateInit)".into()),
    }
}

/// A wallet from its code and data cells. The data may be at any seqno (a deployed wallet):
/// the address is that of its StateInit at seqno 0, which is what `WalletContract` computes.
fn wallet_from_cells(
    code: &ArcCell,
    data: &ArcCell,
    network: Network,
) -> Result<WalletContract, String> {
    let version = WalletVersion::from_code_hash(&code.as_ref().cell_hash())
        .ok_or("the wallet is not a v4r2 or v5r1 wallet (its code is another contract's)")?;
    let unreadable =
        |e: tonlib_core::cell::TonCellError| format!("the wallet's data is unreadable: {e}");
    let (wallet_id, key) = match version {
        WalletVersion::V4R2 => {
            let d = WalletDataV4::from_cell(data).map_err(unreadable)?;
            (d.wallet_id, d.public_key)
        }
        WalletVersion::V5R1 => {
            let d = WalletDataV5::from_cell(data).map_err(unreadable)?;
            (d.wallet_id, d.public_key)
        }
    };
    let key: [u8; 32] = key
        .as_slice()
        .try_into()
        .map_err(|_| "the wallet's public key is not 32 bytes".to_string())?;
    Ok(WalletContract::with_wallet_id(
        version,
        network,
        PublicKey(key),
        wallet_id,
    ))
}

/// A hex public key as TON Connect gives it (`account.publicKey`).
pub fn parse_public_key(hex_key: &str) -> Result<PublicKey, String> {
    let bytes =
        hex::decode(hex_key.trim()).map_err(|_| "public_key must be 64 hex digits".to_string())?;
    <[u8; 32]>::try_from(bytes)
        .map(PublicKey)
        .map_err(|_| "public_key must be 64 hex digits".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ton::transfer::{sign_transfer, TransferParams};
    use crate::ton::{KeyPair, MessageBody, Nanoton, OutgoingMessage};
    use events::{CheckoutMessage, DeliveryConfirmation};
    use zeroize::Zeroizing;

    const FRAGMENT: &str = "EQBvW8Z5huBkMJYdnfAEM5JqTNkuWX3diqYENkWsIL0XggGG";
    const FEE: &str = "EQDrnUhzufQP2o10Kcp8ifltoNxarQvkx2KIHpHXN18D07_R";

    fn key(n: u8) -> KeyPair {
        KeyPair::from_secret_seed(&Zeroizing::new([n; 32]))
    }

    fn outgoing() -> Vec<OutgoingMessage> {
        vec![
            OutgoingMessage::new(
                FRAGMENT,
                Nanoton::new(1_525_000_000),
                MessageBody::comment("100 Telegram Stars \n\nRef#abc"),
            )
            .unwrap(),
            OutgoingMessage::new(
                FEE,
                Nanoton::new(1_000_000_000),
                MessageBody::comment("fragment-gateway commission"),
            )
            .unwrap(),
        ]
    }

    fn issued(wallet: &WalletContract) -> CheckoutIssued {
        let messages = outgoing()
            .iter()
            .zip(["purchase", "commission"])
            .map(|(m, purpose)| {
                let body = m.body.to_cell().unwrap();
                CheckoutMessage {
                    address: address::friendly(&m.destination, m.bounce, false),
                    destination: address::raw(&m.destination),
                    amount_nanoton: m.amount,
                    payload: crate::ton::boc::to_base64(&body).unwrap(),
                    body_hash: body.as_ref().cell_hash().to_hex(),
                    purpose: purpose.into(),
                }
            })
            .collect();
        CheckoutIssued {
            order_id: uuid::Uuid::nil(),
            wallet_address: wallet.raw_address(),
            wallet_friendly: wallet.friendly_address(false),
            wallet_version: wallet.version().as_str().into(),
            wallet_public_key: wallet.public_key().to_hex(),
            wallet_id: wallet.wallet_id(),
            valid_until: 1_900_000_000,
            messages,
            fragment_request_id: "abc".into(),
            purchase_nanoton: Nanoton::new(1_525_000_000),
            collection_nanoton: Nanoton::new(1_000_000_000),
            wallet_last_lt: None,
            confirmation: DeliveryConfirmation {
                wallet_public_key: wallet.public_key().to_hex(),
                confirm_method: "confirmReq".into(),
                confirm_params: Default::default(),
                session_role: "owner".into(),
                session_id: "00".into(),
                wallet_id: Some(wallet.wallet_id()),
            },
            issued_at: chrono::Utc::now(),
        }
    }

    fn sign(
        wallet: &WalletContract,
        signer: &KeyPair,
        valid_until: u32,
        messages: &[OutgoingMessage],
    ) -> String {
        // Sign as `wallet` with any key: `sign_transfer` refuses a key that is not the
        // wallet's, so a forgery is signed for a wallet made of the forger's key, under the
        // victim's address.
        let as_signer = WalletContract::with_wallet_id(
            wallet.version(),
            wallet.network(),
            signer.public_key(),
            wallet.wallet_id(),
        );
        let params = TransferParams {
            seqno: 3,
            valid_until,
            include_state_init: false,
        };
        let t = sign_transfer(&as_signer, signer, &params, messages).unwrap();
        if as_signer.address() == wallet.address() {
            return t.boc;
        }
        let ext = ExternalMessage::from_base64(&t.boc).unwrap();
        let mut b = tonlib_core::cell::CellBuilder::new();
        crate::ton::transfer::ext_in_info(wallet.address())
            .write(&mut b)
            .unwrap();
        b.store_bit(false)
            .unwrap()
            .store_bit(true)
            .unwrap()
            .store_reference(&ext.body)
            .unwrap();
        crate::ton::boc::to_base64(&b.build().unwrap()).unwrap()
    }

    #[test]
    fn the_issued_transaction_passes_and_every_tampering_is_named() {
        for version in WalletVersion::ALL {
            let owner = key(1);
            let wallet = WalletContract::new(version, Network::Mainnet, owner.public_key());
            let issued = issued(&wallet);
            let good = sign(&wallet, &owner, issued.valid_until, &outgoing());
            let verified = verify(&issued, &wallet, &good).unwrap();
            assert_eq!(verified.request.seqno, 3);
            assert!(!verified.deploys());
            // Signed to expire sooner than issued: fine.
            assert!(verify(
                &issued,
                &wallet,
                &sign(&wallet, &owner, 1_800_000_000, &outgoing())
            )
            .is_ok());

            let refused = |boc: String| verify(&issued, &wallet, &boc).unwrap_err();
            let mut m = outgoing();
            m[0].amount = Nanoton::new(1_524_999_999);
            assert!(matches!(
                refused(sign(&wallet, &owner, issued.valid_until, &m)),
                Rejection::Amount { index: 0, .. }
            ));
            let mut m = outgoing();
            m[0] = OutgoingMessage::new(FEE, m[0].amount, m[0].body.clone()).unwrap();
            assert!(matches!(
                refused(sign(&wallet, &owner, issued.valid_until, &m)),
                Rejection::Destination { index: 0, .. }
            ));
            let mut m = outgoing();
            m[0].body = MessageBody::comment("100 Telegram Stars \n\nRef#abd");
            assert_eq!(
                refused(sign(&wallet, &owner, issued.valid_until, &m)),
                Rejection::Payload { index: 0 }
            );
            let mut m = outgoing();
            m.push(OutgoingMessage::new(FEE, Nanoton::new(1), MessageBody::Empty).unwrap());
            let extra = refused(sign(&wallet, &owner, issued.valid_until, &m));
            assert_eq!(
                extra,
                Rejection::MessageCount {
                    got: 3,
                    expected: 2
                }
            );
            assert!(extra.to_string().contains("extra message"));
            let m = outgoing()[..1].to_vec();
            assert!(matches!(
                refused(sign(&wallet, &owner, issued.valid_until, &m)),
                Rejection::MessageCount { got: 1, .. }
            ));
            let forged = refused(sign(&wallet, &key(2), issued.valid_until, &outgoing()));
            assert!(matches!(forged, Rejection::WrongSigner(_)), "{forged:?}");
            assert!(forged.to_string().contains("wrong signer"));
            assert!(matches!(
                refused(sign(&wallet, &owner, issued.valid_until + 1, &outgoing())),
                Rejection::ValidityTooLong { .. }
            ));
            // Signed for another wallet of the same key.
            let other =
                WalletContract::with_wallet_id(version, Network::Mainnet, owner.public_key(), 7);
            assert!(matches!(
                refused(sign(&other, &owner, issued.valid_until, &outgoing())),
                Rejection::WrongWallet { .. }
            ));
            assert!(matches!(refused("te6cc".into()), Rejection::Malformed(_)));
        }
    }

    #[test]
    fn a_wallet_is_told_from_its_state_init_its_key_or_the_chain() {
        let k = key(4).public_key();
        for version in WalletVersion::ALL {
            let w = WalletContract::new(version, Network::Mainnet, k);
            let by_init = resolve_wallet(
                w.address(),
                Network::Mainnet,
                &WalletHint {
                    public_key: None,
                    state_init: Some(w.state_init_boc()),
                },
                None,
            )
            .unwrap();
            assert_eq!(by_init, w);
            let by_key = resolve_wallet(
                w.address(),
                Network::Mainnet,
                &WalletHint {
                    public_key: Some(k),
                    state_init: None,
                },
                None,
            )
            .unwrap();
            assert_eq!(by_key, w);
            let init = w.state_init();
            let by_chain = resolve_wallet(
                w.address(),
                Network::Mainnet,
                &WalletHint::default(),
                Some((&init.code.clone().unwrap(), &init.data.clone().unwrap())),
            )
            .unwrap();
            assert_eq!(by_chain, w);
        }
        let w = WalletContract::new(WalletVersion::V4R2, Network::Mainnet, k);
        let other = WalletContract::new(WalletVersion::V4R2, Network::Mainnet, key(5).public_key());
        let wrong_key = resolve_wallet(
            w.address(),
            Network::Mainnet,
            &WalletHint {
                public_key: Some(other.public_key()),
                state_init: None,
            },
            None,
        );
        assert!(wrong_key.unwrap_err().contains("wallet_state_init"));
        let wrong_init = resolve_wallet(
            w.address(),
            Network::Mainnet,
            &WalletHint {
                public_key: None,
                state_init: Some(other.state_init_boc()),
            },
            None,
        );
        assert!(wrong_init
            .unwrap_err()
            .contains("does not give wallet_address"));
        let nothing = resolve_wallet(w.address(), Network::Mainnet, &WalletHint::default(), None);
        assert!(nothing.unwrap_err().contains("not deployed"));
        assert!(parse_public_key("xyz").is_err());
        assert_eq!(parse_public_key(&k.to_hex()).unwrap(), k);
    }
}
