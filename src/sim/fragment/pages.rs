//! The simulator's HTML pages: what fragment.com's pages carry for a client (the `ajInit`
//! API URL and TON rate, the `Wallet.init` ton_proof challenge and connected wallet, and the
//! price lists in Fragment's markup), without the rest of the site.

use rust_decimal::Decimal;
use serde_json::json;

use super::state::Prices;
use crate::ton::Nanoton;

/// TON in Fragment's markup: integer part, then the fraction in a `mini-frac` span.
fn ton_html(nanoton: u64) -> String {
    let s = Nanoton::new(nanoton).to_ton_string();
    match s.split_once('.') {
        Some((whole, frac)) => format!(
            r#"<div class="tm-value icon-before icon-ton">{}<span class="mini-frac">.{frac}</span></div>"#,
            group_thousands(whole)
        ),
        None => format!(
            r#"<div class="tm-value icon-before icon-ton">{}</div>"#,
            group_thousands(&s)
        ),
    }
}

fn group_thousands(digits: &str) -> String {
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn usd(nanoton: u64, prices: &Prices) -> String {
    let usd = Decimal::from(nanoton) / Decimal::from(1_000_000_000u64) * prices.ton_usd;
    format!("{:.2}", usd.round_dp(2))
}

/// `cur_price` of `updateStarsPrices`.
pub fn price_html(nanoton: u64, prices: &Prices) -> String {
    format!(
        "{} ~&nbsp;&#036;{}",
        ton_html(nanoton),
        usd(nanoton, prices)
    )
}

fn option(input: &str, value: u32, label: &str, nanoton: u64, prices: &Prices) -> String {
    format!(
        r#"<label class="tm-form-radio-item"><input type="radio" name="{input}" value="{value}"><div class="tm-radio-label">{label}</div>{}<div class="tm-radio-desc">~&nbsp;${}</div></label>"#,
        ton_html(nanoton),
        usd(nanoton, prices)
    )
}

/// A page with the session's API hash, challenge and wallet; priced options on the Stars and
/// Premium pages.
pub fn render(
    path: &str,
    hash: &str,
    challenge: &str,
    wallet: Option<&str>,
    prices: &Prices,
) -> String {
    let body = if path.starts_with("/stars") {
        [50u32, 100, 250, 500, 1000, 2500]
            .iter()
            .map(|&n| option("stars", n, &format!("{n} Stars"), prices.stars(n), prices))
            .collect::<Vec<_>>()
            .join("\n")
    } else if path.starts_with("/premium") {
        [3u8, 6, 12]
            .iter()
            .filter_map(|&m| {
                prices
                    .premium(m)
                    .map(|p| option("months", u32::from(m), &format!("{m} months"), p, prices))
            })
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        String::new()
    };
    // Written out rather than through serde_json so the rate stays a decimal, never a float;
    // the hash is hex, so nothing needs escaping.
    let aj = format!(
        r#"{{"version":1,"apiUrl":"\/api?hash={hash}","state":{{"tonRate":{}}}}}"#,
        prices.ton_usd.normalize()
    );
    let wallet = json!({
        "ton_proof": challenge,
        "address": wallet.unwrap_or(""),
    });
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Fragment</title></head>\n\
         <body><main class=\"tm-main\">\n{body}\n</main>\n\
         <script>ajInit({aj});\nWallet.init({wallet});</script>\n</body></html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fragment::html;

    #[test]
    fn the_client_reads_what_the_pages_write() {
        let prices = Prices::default();
        let page = render("/premium/gift", "abc123", "c0ffee", None, &prices);
        assert_eq!(html::api_hash(&page).as_deref(), Some("abc123"));
        assert_eq!(html::ton_proof(&page).as_deref(), Some("c0ffee"));
        assert_eq!(html::ton_rate(&page), Some(prices.ton_usd));
        let opts = html::options(&page, "months");
        assert_eq!(opts.len(), 3);
        assert_eq!(opts[2].1.ton, Nanoton::new(prices.premium_12));
        let cur = price_html(1_234_500_000_000, &prices);
        assert_eq!(
            html::price(&cur).unwrap().ton,
            Nanoton::new(1_234_500_000_000)
        );
        let stars = render("/stars/buy", "h", "c", Some("0:ab"), &prices);
        assert_eq!(
            html::options(&stars, "stars")[0],
            (
                50,
                html::price(&price_html(prices.stars(50), &prices)).unwrap()
            )
        );
        assert_eq!(html::connected_wallet(&stars).as_deref(), Some("0:ab"));
    }
}
