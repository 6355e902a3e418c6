//! Reading what fragment.com's pages carry: the API hash (`ajInit`), the ton_proof challenge
//! and connected wallet (`Wallet.init`), the TON rate, and prices in its price markup
//! (`<div class="tm-value icon-before icon-ton">0<span class="mini-frac">.6734</span></div>`
//! followed by a `$` price), as FragmentAPI's parsers read them.

use std::str::FromStr;

use rust_decimal::Decimal;

use crate::ton::Nanoton;

/// The API hash from `"apiUrl":"\/api?hash=<hex>"` (the slash may be escaped, the URL
/// absolute).
pub fn api_hash(html: &str) -> Option<String> {
    let unescaped = html.replace("\\/", "/");
    let at = unescaped.find("/api?hash=")? + "/api?hash=".len();
    let hash: String = unescaped[at..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    (!hash.is_empty()).then_some(hash)
}

/// The JSON argument of `call(` (e.g. `ajInit(`, `Wallet.init(`), written `call({...});`.
fn call_json(html: &str, call: &str) -> Option<serde_json::Value> {
    let start = html.find(call)? + call.len();
    let rest = &html[start..];
    let end = rest.find(");").unwrap_or(rest.len());
    serde_json::from_str(rest[..end].trim()).ok()
}

/// The ton_proof challenge of `Wallet.init({...})`.
pub fn ton_proof(html: &str) -> Option<String> {
    call_json(html, "Wallet.init(")?
        .get("ton_proof")?
        .as_str()
        .map(str::to_string)
}

/// The wallet connected to the session, if the page says one is.
pub fn connected_wallet(html: &str) -> Option<String> {
    call_json(html, "Wallet.init(")?
        .get("address")?
        .as_str()
        .filter(|a| !a.is_empty())
        .map(str::to_string)
}

/// `state.tonRate` of `ajInit({...})`: USD per TON. Read from the text, so that the number
/// never passes through a float.
pub fn ton_rate(html: &str) -> Option<Decimal> {
    let aj = &html[html.find("ajInit(")?..];
    let at = aj.find("\"tonRate\":")? + "\"tonRate\":".len();
    let number: String = aj[at..]
        .trim_start()
        .trim_start_matches('"')
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    Decimal::from_str(&number).ok()
}

/// Text of a fragment with tags removed and the entities Fragment uses decoded.
fn text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&nbsp;", " ")
        .replace("&#036;", "$")
        .replace("&#36;", "$")
        .replace("&amp;", "&")
}

/// Digits with thousands separators (`,`, spaces) and an optional fraction.
fn number(s: &str) -> Option<String> {
    let s = s.trim_start();
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '0'..='9' | '.' => out.push(c),
            ',' | ' ' | '\u{a0}' | '\u{202f}' if !out.is_empty() => {}
            _ if out.is_empty() => return None,
            _ => break,
        }
    }
    let out = out.trim_end_matches('.').to_string();
    (!out.is_empty()).then_some(out)
}

/// A TON amount written as Fragment writes them (`"1,234.5"`, `" 0.6734"`).
pub fn parse_ton(s: &str) -> Option<Nanoton> {
    Nanoton::parse_ton(&number(s)?).ok()
}

/// A price in Fragment's markup: TON from the `icon-ton` element, USD after a `$`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Price {
    pub ton: Nanoton,
    pub usd: Option<Decimal>,
}

pub fn price(html: &str) -> Option<Price> {
    let at = html.find("icon-ton")?;
    let open = at + html[at..].find('>')? + 1;
    let close = open + html[open..].find("</div>").unwrap_or(html.len() - open);
    let ton = parse_ton(&text(&html[open..close]))?;
    let rest = text(&html[close..]);
    let usd = rest
        .find('$')
        .and_then(|i| number(&rest[i + 1..]))
        .and_then(|n| Decimal::from_str(&n).ok());
    Some(Price { ton, usd })
}

/// The priced options of a page: `<label>`s holding `input[name=<input>]` with a numeric
/// value (Stars packages: `stars`; Premium durations: `months`).
pub fn options(html: &str, input: &str) -> Vec<(u32, Price)> {
    let needle = format!("name=\"{input}\"");
    html.split("<label")
        .skip(1)
        .filter_map(|label| {
            let label = &label[..label.find("</label>").unwrap_or(label.len())];
            let at = label.find(&needle)?;
            let tag_end = at + label[at..].find('>')?;
            let tag = &label[..tag_end];
            let v = tag.find("value=\"")? + "value=\"".len();
            let value: u32 = tag[v..].split('"').next()?.parse().ok()?;
            Some((value, price(label)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"<html><script>ajInit({"version":1,"apiUrl":"\/api?hash=8bd3e41a5c9d2f0a17","state":{"tonRate":3.27,"x":1}});
Wallet.init({"ton_proof":"a1b2c3","address":""});</script></html>"#;

    #[test]
    fn page_fields() {
        assert_eq!(api_hash(PAGE).as_deref(), Some("8bd3e41a5c9d2f0a17"));
        assert_eq!(
            api_hash(r#""apiUrl":"https:\/\/fragment.com\/api?hash=abc123""#).as_deref(),
            Some("abc123")
        );
        assert_eq!(api_hash("<html></html>"), None);
        assert_eq!(ton_proof(PAGE).as_deref(), Some("a1b2c3"));
        assert_eq!(connected_wallet(PAGE), None);
        assert_eq!(ton_rate(PAGE), Some(Decimal::from_str("3.27").unwrap()));
    }

    #[test]
    fn prices_in_fragment_markup() {
        let cur = r#"<div class="tm-value icon-before icon-ton">0<span class="mini-frac">.6734</span></div> ~&nbsp;&#036;2.25"#;
        assert_eq!(
            price(cur),
            Some(Price {
                ton: Nanoton::new(673_400_000),
                usd: Some(Decimal::from_str("2.25").unwrap())
            })
        );
        let big = r#"<div class="tm-value icon-before icon-ton">1,234<span class="mini-frac">.5</span></div> ~ $4,036.81"#;
        assert_eq!(price(big).unwrap().ton, Nanoton::new(1_234_500_000_000));
        assert_eq!(
            price(big).unwrap().usd,
            Some(Decimal::from_str("4036.81").unwrap())
        );
        assert_eq!(parse_ton("1,234.5"), Some(Nanoton::new(1_234_500_000_000)));
        assert_eq!(parse_ton("abc"), None);
    }

    #[test]
    fn option_lists() {
        let page = r#"
<label class="tm-form-radio-item"><input type="radio" name="months" value="3"><div class="tm-radio-label">3 months</div><div class="tm-value icon-before icon-ton">3<span class="mini-frac">.996</span></div><div class="tm-radio-desc">~&nbsp;$11.99</div></label>
<label class="tm-form-radio-item"><input type="radio" name="months" value="12" checked><div class="tm-radio-label">12 months<span class="tm-radio-label-badge">-40%</span></div><div class="tm-value icon-before icon-ton">9<span class="mini-frac">.663</span></div><div class="tm-radio-desc">~&nbsp;$28.99</div></label>
<label><input name="other" value="1"></label>"#;
        let opts = options(page, "months");
        assert_eq!(opts.len(), 2);
        assert_eq!(opts[0].0, 3);
        assert_eq!(opts[0].1.ton, Nanoton::new(3_996_000_000));
        assert_eq!(opts[1].0, 12);
        assert_eq!(opts[1].1.usd, Some(Decimal::from_str("28.99").unwrap()));
    }
}
