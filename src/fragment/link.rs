//! Fragment's payment link (the TON Connect transaction its `get…Link` methods return) and
//! the checks it must pass before anything is signed.
//!
//! What is signed is exactly what Fragment asked for, payload cell included (Fragment
//! recognises a payment by that cell's hash; re-encoding it has lost buyers their money), but
//! only after checking it against what the invoice said and what the order allows.

use serde_json::{Map, Value};
use tonlib_core::cell::ArcCell;
use tonlib_core::TonAddress;

use super::client::Purchase;
use super::error::FragmentError;
use crate::ton::address::{self, ParsedAddress};
use crate::ton::jetton::{JettonAmount, JettonTransfer};
use crate::ton::transfer::read_comment;
use crate::ton::{MessageBody, Nanoton, OutgoingMessage};

/// Why a payment link was not signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link carries no message")]
    NoMessages,
    #[error("the link carries {0} messages; a TON invoice carries exactly one")]
    TooManyMessages(usize),
    #[error("the link pays {0}, which is not a known Fragment address")]
    UnknownDestination(String),
    #[error("the link asks for {link} but the invoice said {invoice}")]
    AmountMismatch { link: Nanoton, invoice: Nanoton },
    #[error("the link asks for {amount}, more than the {max} this order allows")]
    AboveLimit { amount: Nanoton, max: Nanoton },
    #[error("the link expires at {valid_until}, too soon to pay (now {now})")]
    Expired { valid_until: u32, now: u32 },
    #[error("the link's payload is missing or not a BOC: {0}")]
    BadPayload(String),
    #[error("the link asks to deploy a contract at the destination")]
    UnexpectedStateInit,
    #[error("the link is for wallet {0}, not the paying wallet")]
    WrongPayer(String),
    #[error("the link confirms request {link}, not this order's request {ours}")]
    WrongRequest { link: String, ours: String },
    #[error("the link does not name the request it pays (no confirm_params.id)")]
    NoRequest,
    #[error("the link's payment comment names {named}, not this order's recipient @{ours}")]
    WrongRecipient { named: String, ours: String },
    #[error("the link's payment comment {0:?} does not name what this order buys")]
    PayloadMismatch(String),
    #[error("the link's USDT transfer goes to {0}, not to the paying wallet's own USDT wallet")]
    NotOwnJettonWallet(String),
    #[error("the link sends {} USDT units but the invoice said {}", link.units(), invoice.units())]
    UsdtAmountMismatch {
        link: JettonAmount,
        invoice: JettonAmount,
    },
    #[error("the link asks for {} USDT units, more than the {} this order allows", amount.units(), max.units())]
    UsdtAboveLimit {
        amount: JettonAmount,
        max: JettonAmount,
    },
}

/// Most TON a USDT invoice's message may carry for the gas (what fragment_api_lib allows).
pub const USDT_MAX_ATTACHED: Nanoton = Nanoton::new(300_000_000);
/// Most TON a USDT transfer may forward to Fragment.
pub const USDT_MAX_FORWARD: Nanoton = Nanoton::new(100_000_000);

/// What a USDT link is checked against.
#[derive(Clone, Debug)]
pub struct UsdtExpectations<'a> {
    pub req_id: &'a str,
    pub purchase: Purchase,
    pub recipient: &'a str,
    /// What the init call quoted, and the most the order allows.
    pub invoice_amount: JettonAmount,
    pub max_amount: JettonAmount,
    /// Where Fragment takes payments (the USDT goes to one of them).
    pub fragment_addresses: &'a [TonAddress],
    pub payer: &'a TonAddress,
    /// The payer's own USDT jetton wallet (as the master says): the message goes there.
    pub jetton_wallet: &'a TonAddress,
    pub now: u32,
    pub min_validity: u32,
}

/// A USDT link that passed the checks: the jetton transfer to sign, the USDT it sends and
/// the TON it carries for the gas.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckedUsdtPayment {
    pub message: OutgoingMessage,
    pub amount: JettonAmount,
    pub valid_until: u32,
}

/// One message of the link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkMessage {
    pub address: String,
    pub amount: Nanoton,
    pub payload: Option<String>,
    pub state_init: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PaymentLink {
    pub valid_until: u32,
    pub from: Option<String>,
    pub messages: Vec<LinkMessage>,
    /// The method and parameters to confirm the payment with (`confirmReq`, `{id}`).
    pub confirm_method: String,
    pub confirm_params: Map<String, Value>,
}

/// What the link is checked against.
#[derive(Clone, Debug)]
pub struct LinkExpectations<'a> {
    /// The request the link must be for.
    pub req_id: &'a str,
    /// What the order buys; the payment comment must name it.
    pub purchase: Purchase,
    /// Who receives it (without `@`): a comment that names a recipient must name this one.
    pub recipient: &'a str,
    /// What the init call quoted for this request.
    pub invoice_amount: Nanoton,
    /// The most the order allows paying Fragment.
    pub max_amount: Nanoton,
    /// Where Fragment takes payments.
    pub fragment_addresses: &'a [TonAddress],
    pub payer: &'a TonAddress,
    pub now: u32,
    /// Seconds needed to sign and broadcast before `validUntil`.
    pub min_validity: u32,
}

/// A link that passed the checks: the message to sign and until when.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckedPayment {
    pub message: OutgoingMessage,
    pub valid_until: u32,
}

impl CheckedPayment {
    /// The `valid_until` to sign the wallet message with: never later than the invoice
    /// (a transfer landing after it pays for nothing), and never more than `max_ttl`
    /// seconds away (so that a lost message is known lost soon).
    pub fn sign_until(&self, now: u32, max_ttl: u32) -> u32 {
        self.valid_until.min(now.saturating_add(max_ttl))
    }
}

/// A message's payload: the body to sign, exactly as received, and its cell.
fn payload_cell(m: &LinkMessage) -> Result<(MessageBody, ArcCell), LinkError> {
    let payload = m
        .payload
        .as_deref()
        .ok_or_else(|| LinkError::BadPayload("missing".into()))?;
    let body =
        MessageBody::from_boc_base64(payload).map_err(|e| LinkError::BadPayload(e.to_string()))?;
    let MessageBody::Cell(cell) = &body else {
        unreachable!("a BOC body is a cell")
    };
    let cell = cell.clone();
    Ok((body, cell))
}

/// The payment comment names this purchase, and no other recipient than ours.
fn check_comment(comment: String, purchase: Purchase, recipient: &str) -> Result<(), LinkError> {
    if !names_purchase(&comment, purchase) {
        return Err(LinkError::PayloadMismatch(comment));
    }
    if let Some(named) = named_recipient(&comment) {
        if !named.eq_ignore_ascii_case(recipient) {
            return Err(LinkError::WrongRecipient {
                named: format!("@{named}"),
                ours: recipient.to_string(),
            });
        }
    }
    Ok(())
}

/// Whether Fragment's comment names this purchase: `"<N> Telegram Stars …"` (seen in real
/// payloads), or Telegram Premium for `<M>` months (spacing unverified, so matched loosely).
fn names_purchase(comment: &str, purchase: Purchase) -> bool {
    match purchase {
        Purchase::Stars(n) => comment.starts_with(&format!("{} Telegram Stars", n.get())),
        Purchase::Premium(m) => {
            comment.contains("Telegram Premium")
                && comment
                    .split(|c: char| !c.is_ascii_digit())
                    .any(|d| d == m.get().to_string())
        }
    }
}

/// The `@username` a comment names, if any. Today's payloads name only the quantity and a
/// reference (FRAGMENT_PROTOCOL.md §3); should Fragment ever name the recipient, a link for
/// someone else is refused instead of paid.
fn named_recipient(comment: &str) -> Option<&str> {
    let at = comment.find('@')?;
    let name = &comment[at + 1..];
    let end = name
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(name.len());
    Some(&name[..end]).filter(|n| !n.is_empty())
}

fn bad(what: &str) -> FragmentError {
    FragmentError::BadResponse(format!("payment link: {what}"))
}

/// A JSON number or a numeric string.
fn json_u64(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

impl PaymentLink {
    /// Reads a `getBuyStarsLink` / `getGiftPremiumLink` answer.
    pub fn from_response(v: &Value) -> Result<PaymentLink, FragmentError> {
        let tx = v
            .get("transaction")
            .filter(|t| t.is_object())
            .ok_or_else(|| bad("no transaction"))?;
        let valid_until = tx
            .get("validUntil")
            .and_then(json_u64)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad("no validUntil"))?;
        let messages = tx
            .get("messages")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no messages"))?
            .iter()
            .map(|m| {
                let text = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
                Ok(LinkMessage {
                    address: text("address").ok_or_else(|| bad("message without address"))?,
                    amount: m
                        .get("amount")
                        .and_then(json_u64)
                        .map(Nanoton::new)
                        .ok_or_else(|| bad("message without a nanoton amount"))?,
                    payload: text("payload").filter(|p| !p.is_empty()),
                    state_init: text("stateInit").filter(|p| !p.is_empty()),
                })
            })
            .collect::<Result<Vec<_>, FragmentError>>()?;
        Ok(PaymentLink {
            valid_until,
            from: tx.get("from").and_then(Value::as_str).map(str::to_string),
            messages,
            confirm_method: v
                .get("confirm_method")
                .and_then(Value::as_str)
                .unwrap_or("confirmReq")
                .to_string(),
            confirm_params: v
                .get("confirm_params")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        })
    }

    /// Enough time left before `validUntil` to sign and broadcast.
    fn check_validity(&self, now: u32, min_validity: u32) -> Result<(), LinkError> {
        if u64::from(self.valid_until) < u64::from(now) + u64::from(min_validity) {
            return Err(LinkError::Expired {
                valid_until: self.valid_until,
                now,
            });
        }
        Ok(())
    }

    /// The link's one message, once the link is shown to be for request `req_id`, paid by
    /// `payer`.
    fn the_message(&self, req_id: &str, payer: &TonAddress) -> Result<&LinkMessage, LinkError> {
        let m = match self.messages.as_slice() {
            [] => return Err(LinkError::NoMessages),
            [m] => m,
            more => return Err(LinkError::TooManyMessages(more.len())),
        };
        // The link must say which request it pays, and it must be ours: a site that answered
        // with the session's latest request instead (two flows on one session, or a change
        // at Fragment) would otherwise have us pay another order's invoice of the same size.
        let id = self.confirm_params.get("id").ok_or(LinkError::NoRequest)?;
        let id = id
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| id.to_string());
        if id != req_id {
            return Err(LinkError::WrongRequest {
                link: id,
                ours: req_id.to_string(),
            });
        }
        if let Some(from) = &self.from {
            match address::parse_address(from) {
                Ok(a) if &a == payer => {}
                _ => return Err(LinkError::WrongPayer(from.clone())),
            }
        }
        Ok(m)
    }

    /// Checks a USDT link (`payment_method=usdt_ton`) and returns the one message to sign: a
    /// jetton transfer to the payer's own USDT wallet sending exactly the invoiced USDT to a
    /// Fragment address, the gas left back to the payer, with a reference that names the
    /// purchase; and not much TON with it.
    pub fn check_usdt(&self, e: &UsdtExpectations<'_>) -> Result<CheckedUsdtPayment, LinkError> {
        let m = self.the_message(e.req_id, e.payer)?;
        let destination = ParsedAddress::parse(&m.address)
            .map_err(|_| LinkError::UnknownDestination(m.address.clone()))?;
        if &destination.address != e.jetton_wallet {
            return Err(LinkError::NotOwnJettonWallet(m.address.clone()));
        }
        if m.state_init.is_some() {
            return Err(LinkError::UnexpectedStateInit);
        }
        if m.amount > USDT_MAX_ATTACHED {
            return Err(LinkError::AboveLimit {
                amount: m.amount,
                max: USDT_MAX_ATTACHED,
            });
        }
        self.check_validity(e.now, e.min_validity)?;
        let (body, cell) = payload_cell(m)?;
        let transfer = JettonTransfer::parse(&cell)
            .map_err(|e| LinkError::BadPayload(format!("not a jetton transfer: {e}")))?;
        if !e.fragment_addresses.contains(&transfer.destination) {
            return Err(LinkError::UnknownDestination(address::raw(
                &transfer.destination,
            )));
        }
        if transfer.amount != e.invoice_amount {
            return Err(LinkError::UsdtAmountMismatch {
                link: transfer.amount,
                invoice: e.invoice_amount,
            });
        }
        if transfer.amount > e.max_amount {
            return Err(LinkError::UsdtAboveLimit {
                amount: transfer.amount,
                max: e.max_amount,
            });
        }
        if transfer
            .response_destination
            .as_ref()
            .is_some_and(|r| r != e.payer)
        {
            return Err(LinkError::BadPayload(
                "the transfer returns its gas to another wallet".into(),
            ));
        }
        if transfer.custom_payload.is_some() || transfer.forward_ton_amount > USDT_MAX_FORWARD {
            return Err(LinkError::BadPayload(
                "the transfer carries a custom payload or forwards too much TON".into(),
            ));
        }
        let comment = read_comment(&transfer.forward_payload.cell()).ok_or_else(|| {
            LinkError::BadPayload("the forward payload is not a text comment".into())
        })?;
        check_comment(comment, e.purchase, e.recipient)?;
        Ok(CheckedUsdtPayment {
            message: OutgoingMessage::to(destination, m.amount, body),
            amount: transfer.amount,
            valid_until: self.valid_until,
        })
    }

    /// Checks the link and returns the one message to sign.
    pub fn check(&self, e: &LinkExpectations<'_>) -> Result<CheckedPayment, LinkError> {
        let m = self.the_message(e.req_id, e.payer)?;
        let destination = ParsedAddress::parse(&m.address)
            .map_err(|_| LinkError::UnknownDestination(m.address.clone()))?;
        if !e.fragment_addresses.contains(&destination.address) {
            return Err(LinkError::UnknownDestination(m.address.clone()));
        }
        if m.state_init.is_some() {
            return Err(LinkError::UnexpectedStateInit);
        }
        if m.amount != e.invoice_amount {
            return Err(LinkError::AmountMismatch {
                link: m.amount,
                invoice: e.invoice_amount,
            });
        }
        if m.amount > e.max_amount {
            return Err(LinkError::AboveLimit {
                amount: m.amount,
                max: e.max_amount,
            });
        }
        self.check_validity(e.now, e.min_validity)?;
        let (body, cell) = payload_cell(m)?;
        let comment = read_comment(&cell)
            .ok_or_else(|| LinkError::BadPayload("not a text comment".into()))?;
        check_comment(comment, e.purchase, e.recipient)?;
        let message = OutgoingMessage::to(destination, m.amount, body);
        Ok(CheckedPayment {
            message,
            valid_until: self.valid_until,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const FRAGMENT: &str = "UQBAjaOyi2wGWlk-EDkSabqqnF-MrrwMadnwqrurKpkla4QB";
    const PAYER: &str = "0:eb9d4873b9f40fda8d7429ca7c89f96da0dc5aad0be4c762881e91d7375f03d3";
    const PAYLOAD: &str = "te6ccgEBAQEAJwAASgAAAAA1MCBUZWxlZ3JhbSBTdGFycyAKClJlZiNRRTlBRjdsT20";

    fn fifty() -> Purchase {
        Purchase::Stars(crate::domain::StarsAmount::new(50).unwrap())
    }

    fn link(messages: Value) -> PaymentLink {
        PaymentLink::from_response(&json!({
            "ok": true,
            "transaction": {"validUntil": 2_000, "from": PAYER, "messages": messages},
            "confirm_method": "confirmReq",
            "confirm_params": {"id": "Ab12"}
        }))
        .unwrap()
    }

    fn one(amount: &str) -> Value {
        json!([{"address": FRAGMENT, "amount": amount, "payload": PAYLOAD}])
    }

    fn check(l: &PaymentLink) -> Result<CheckedPayment, LinkError> {
        let fragment = [address::parse_address(FRAGMENT).unwrap()];
        let payer = address::parse_address(PAYER).unwrap();
        l.check(&LinkExpectations {
            req_id: "Ab12",
            purchase: fifty(),
            recipient: "alice",
            invoice_amount: Nanoton::new(673_400_000),
            max_amount: Nanoton::new(700_000_000),
            fragment_addresses: &fragment,
            payer: &payer,
            now: 1_000,
            min_validity: 30,
        })
    }

    #[test]
    fn a_good_link_gives_the_payload_unchanged_and_no_bounce() {
        let paid = check(&link(one("673400000"))).unwrap();
        assert_eq!(paid.valid_until, 2_000);
        assert_eq!(paid.message.amount, Nanoton::new(673_400_000));
        assert!(!paid.message.bounce, "UQ: non-bounceable");
        let MessageBody::Cell(cell) = &paid.message.body else {
            panic!("payload is a cell")
        };
        let original = crate::ton::transfer::decode_boc(PAYLOAD).unwrap();
        assert_eq!(cell.cell_hash(), original.cell_hash());
        assert_eq!(link(one("673400000")).confirm_params["id"], "Ab12");
    }

    #[test]
    fn every_check_bites() {
        assert_eq!(check(&link(json!([]))), Err(LinkError::NoMessages));
        let two = json!([
            {"address": FRAGMENT, "amount": "673400000", "payload": PAYLOAD},
            {"address": FRAGMENT, "amount": "1", "payload": PAYLOAD}
        ]);
        assert_eq!(check(&link(two)), Err(LinkError::TooManyMessages(2)));
        let elsewhere = json!([{"address": PAYER, "amount": "673400000", "payload": PAYLOAD}]);
        assert!(matches!(
            check(&link(elsewhere)),
            Err(LinkError::UnknownDestination(_))
        ));
        assert!(matches!(
            check(&link(one("673400001"))),
            Err(LinkError::AmountMismatch { .. })
        ));
        let no_payload = json!([{"address": FRAGMENT, "amount": "673400000"}]);
        assert!(matches!(
            check(&link(no_payload)),
            Err(LinkError::BadPayload(_))
        ));
        let junk = json!([{"address": FRAGMENT, "amount": "673400000", "payload": "junk!"}]);
        assert!(matches!(check(&link(junk)), Err(LinkError::BadPayload(_))));
        let init = json!([{"address": FRAGMENT, "amount": "673400000", "payload": PAYLOAD, "stateInit": "te6cc"}]);
        assert_eq!(check(&link(init)), Err(LinkError::UnexpectedStateInit));

        let fragment = [address::parse_address(FRAGMENT).unwrap()];
        let payer = address::parse_address(PAYER).unwrap();
        let base = LinkExpectations {
            req_id: "Ab12",
            purchase: fifty(),
            recipient: "alice",
            invoice_amount: Nanoton::new(673_400_000),
            max_amount: Nanoton::new(600_000_000),
            fragment_addresses: &fragment,
            payer: &payer,
            now: 1_000,
            min_validity: 30,
        };
        assert!(matches!(
            link(one("673400000")).check(&base),
            Err(LinkError::AboveLimit { .. })
        ));
        let late = LinkExpectations {
            max_amount: Nanoton::new(700_000_000),
            now: 1_980,
            ..base.clone()
        };
        assert!(matches!(
            link(one("673400000")).check(&late),
            Err(LinkError::Expired { .. })
        ));
        let other_payer = address::parse_address(FRAGMENT).unwrap();
        let wrong = LinkExpectations {
            max_amount: Nanoton::new(700_000_000),
            payer: &other_payer,
            ..base
        };
        assert!(matches!(
            link(one("673400000")).check(&wrong),
            Err(LinkError::WrongPayer(_))
        ));
        let other_request = LinkExpectations {
            req_id: "Zz99",
            ..wrong.clone()
        };
        let other_request = LinkExpectations {
            payer: &payer,
            ..other_request
        };
        assert!(matches!(
            link(one("673400000")).check(&other_request),
            Err(LinkError::WrongRequest { .. })
        ));
        // The payload says 50 Stars; this order is for 100, or for Premium.
        for purchase in [
            Purchase::Stars(crate::domain::StarsAmount::new(100).unwrap()),
            Purchase::Premium(crate::domain::PremiumMonths::new(3).unwrap()),
        ] {
            let e = LinkExpectations {
                purchase,
                payer: &payer,
                ..wrong.clone()
            };
            assert!(matches!(
                link(one("673400000")).check(&e),
                Err(LinkError::PayloadMismatch(_))
            ));
        }
    }

    #[test]
    fn a_link_that_does_not_name_our_request_or_our_recipient_is_refused() {
        let mut unnamed = link(one("673400000"));
        unnamed.confirm_params.remove("id");
        assert_eq!(check(&unnamed), Err(LinkError::NoRequest));
        let mut other = link(one("673400000"));
        other
            .confirm_params
            .insert("id".into(), Value::String("Zz99".into()));
        assert!(matches!(check(&other), Err(LinkError::WrongRequest { .. })));
        // A comment naming someone else's @username (should Fragment ever name one).
        let cell =
            crate::sim::fragment::payload::cell("50 Telegram Stars to @bob \n\nRef#x").unwrap();
        let to_bob = crate::sim::fragment::payload::encode(&cell).unwrap();
        let named = json!([{"address": FRAGMENT, "amount": "673400000", "payload": to_bob}]);
        assert_eq!(
            check(&link(named)),
            Err(LinkError::WrongRecipient {
                named: "@bob".into(),
                ours: "alice".into()
            })
        );
        let cell = crate::sim::fragment::payload::cell("50 Telegram Stars to @Alice").unwrap();
        let to_alice = crate::sim::fragment::payload::encode(&cell).unwrap();
        let named = json!([{"address": FRAGMENT, "amount": "673400000", "payload": to_alice}]);
        assert!(check(&link(named)).is_ok());
        assert_eq!(named_recipient("100 Telegram Stars \n\nRef#Ab1"), None);
        assert_eq!(named_recipient("x @ y"), None);
    }

    #[test]
    fn signing_never_outlives_the_invoice() {
        let paid = check(&link(one("673400000"))).unwrap();
        assert_eq!(paid.sign_until(1_000, 120), 1_120);
        assert_eq!(paid.sign_until(1_950, 120), 2_000);
    }

    #[test]
    fn malformed_answers_are_bad_responses() {
        for v in [
            json!({"ok": true}),
            json!({"transaction": {"messages": []}}),
            json!({"transaction": {"validUntil": 5, "messages": [{"amount": "1"}]}}),
            json!({"transaction": {"validUntil": 5, "messages": [{"address": "x", "amount": "1.5"}]}}),
        ] {
            assert!(matches!(
                PaymentLink::from_response(&v),
                Err(FragmentError::BadResponse(_))
            ));
        }
    }
}
