//! Where a webhook may go. A gateway posting to a URL its clients chose is a way into the
//! operator's network (server-side request forgery): unless the operator allows private
//! targets, a URL whose host is, or resolves to, a loopback, private, link-local (cloud
//! metadata lives there), shared, unspecified, multicast or reserved address is refused, when
//! it is given and again at each delivery, redirects included. The check runs in the HTTP
//! client's resolver, so the address checked is the address connected to (a DNS answer that
//! changes between a check and the connection cannot slip past it).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use url::Url;

/// Whether a webhook may reach `ip` when private targets are not allowed. Written out because
/// std's `is_global` is unstable; the ranges are IANA's special-purpose registries.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // Shared address space (carrier-grade NAT).
        || (a == 100 && (64..128).contains(&b))
        // IETF protocol assignments.
        || (a == 192 && b == 0 && c == 0)
        // Benchmarking.
        || (a == 198 && (b == 18 || b == 19))
        // Reserved.
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || ip.is_unique_local()
        || ip.is_unicast_link_local()
        // Documentation.
        || first == 0x2001 && ip.segments()[1] == 0x0db8
        // IPv4-compatible and other embedded forms of the first /96.
        || ip.segments()[..6] == [0; 6])
}

/// A webhook URL as a client gives it, checked without a network lookup: http or https, a
/// host, no credentials, and (unless `allow_private`) not an address a webhook may not
/// reach. The resolved addresses are checked at each delivery.
pub fn parse(raw: &str, allow_private: bool) -> Result<Url, String> {
    if raw.len() > 2048 {
        return Err("must be at most 2048 characters".into());
    }
    let url = Url::parse(raw.trim()).map_err(|e| format!("is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http or https URL".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not hold a user name or password".into());
    }
    let Some(host) = url.host() else {
        return Err("must name a host".into());
    };
    if !allow_private {
        let ip = match host {
            url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
            url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
            url::Host::Domain(d)
                if d.eq_ignore_ascii_case("localhost") || d.ends_with(".localhost") =>
            {
                Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
            }
            url::Host::Domain(_) => None,
        };
        if ip.is_some_and(|ip| !is_public(ip)) {
            return Err(PRIVATE.into());
        }
    }
    Ok(url)
}

pub const PRIVATE: &str = "points at a loopback, private, link-local or otherwise non-public \
     address, which this gateway does not send webhooks to";

/// Resolves `host` (port 0) and checks every address; `Err` names the problem.
pub async fn resolve(host: &str, allow_private: bool) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| format!("its host does not resolve: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err("its host does not resolve".into());
    }
    if !allow_private && addrs.iter().any(|a| !is_public(a.ip())) {
        return Err(PRIVATE.into());
    }
    Ok(addrs)
}

/// The HTTP client's resolver: every name a delivery connects to (the URL's, a redirect's)
/// goes through `resolve`.
struct Checked {
    allow_private: bool,
}

impl reqwest::dns::Resolve for Checked {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addrs = resolve(name.as_str(), allow_private).await?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// Whether a delivery follows a redirect to `to` after `followed` others: at most 3, each to
/// a URL a webhook may be given (its name's addresses are checked by the resolver).
fn redirect(to: &Url, followed: usize, allow_private: bool) -> Result<(), String> {
    if followed >= 3 {
        return Err("more than 3 redirects".into());
    }
    parse(to.as_str(), allow_private)
        .map(|_| ())
        .map_err(|e| format!("a redirect {e}"))
}

/// The client deliveries are sent with: the resolver above, and redirects (at most 3)
/// checked the same way when they name an address outright.
pub fn client(timeout: std::time::Duration, allow_private: bool) -> reqwest::Client {
    let policy = reqwest::redirect::Policy::custom(move |attempt| {
        match redirect(attempt.url(), attempt.previous().len(), allow_private) {
            Ok(()) => attempt.follow(),
            Err(e) => attempt.error(e),
        }
    });
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(policy)
        .dns_resolver(Arc::new(Checked { allow_private }))
        .user_agent(concat!(
            "fragment-gateway/",
            env!("CARGO_PKG_VERSION"),
            " webhooks"
        ))
        .build()
        .expect("a client with a resolver and a redirect policy builds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
            "::127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "1.1.1.1",
            "93.184.216.34",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls_are_http_with_a_host_and_no_credentials() {
        assert!(parse("https://shop.example/hooks/fragment", false).is_ok());
        assert!(parse("ftp://shop.example/", false).is_err());
        assert!(parse("https://user:pw@shop.example/", false).is_err());
        assert!(parse("not a url", false).is_err());
        for private in [
            "http://127.0.0.1:8080/hook",
            "http://[::1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://localhost/",
            "http://api.localhost/",
            "http://10.0.0.5/",
        ] {
            assert_eq!(parse(private, false).unwrap_err(), PRIVATE, "{private}");
            assert!(parse(private, true).is_ok(), "{private} when allowed");
        }
    }

    #[test]
    fn a_redirect_to_a_private_address_or_past_three_is_not_followed() {
        let url = |s: &str| Url::parse(s).unwrap();
        assert!(redirect(&url("https://shop.example/next"), 0, false).is_ok());
        let metadata = redirect(&url("http://169.254.169.254/latest/"), 1, false).unwrap_err();
        assert!(metadata.starts_with("a redirect points at"), "{metadata}");
        assert!(redirect(&url("http://169.254.169.254/latest/"), 1, true).is_ok());
        assert!(redirect(&url("file:///etc/passwd"), 0, true).is_err());
        assert!(redirect(&url("https://shop.example/4"), 3, false).is_err());
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_unless_allowed() {
        assert_eq!(resolve("localhost", false).await.unwrap_err(), PRIVATE);
        assert!(resolve("localhost", true).await.is_ok());
    }

    #[tokio::test]
    async fn a_delivery_to_a_private_address_never_connects() {
        // A listener on loopback: the client refuses before connecting (by name, and by a
        // redirect's literal address is covered by `parse`).
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = client(std::time::Duration::from_secs(2), false);
        let err = client
            .post(format!("http://localhost:{port}/hook"))
            .send()
            .await
            .unwrap_err();
        assert!(format!("{err:?}").contains("non-public"), "{err:?}");
        let accepted =
            tokio::time::timeout(std::time::Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "nothing connected");
    }
}
