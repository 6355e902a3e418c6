//! Per-client rate limiting of the API: a token bucket per client that refills at
//! `requests_per_minute` and holds `burst` requests. Over the limit: 429 RATE_LIMIT_EXCEEDED
//! with `Retry-After` (whole seconds until a token is back). The admin API keeps its own
//! `Limiter` for wrong keys (`admin.rs`).
//!
//! Who the client is (`ClientIps`): the connection's peer, or, when the peer is one of
//! `server.trusted_proxies`, the address the proxies put in `X-Forwarded-For`. A client is
//! an IPv4 address or an IPv6 /64 (one end site), so rotating addresses within one's own
//! prefix buys nothing.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::Instant;

use actix_web::dev::ServiceRequest;

/// Buckets idle this long (or longer, when a bucket takes longer to refill) are dropped, so
/// the map does not grow with every address ever seen.
const FORGET_AFTER_SECS: f64 = 600.0;

/// An address or a network (`10.0.0.0/8`, `fd00::/8`, `192.0.2.7`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn parse(s: &str) -> Result<IpNet, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or network (a.b.c.d/n)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(IpNet { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what dual-stack sockets report) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client a request counts against: its IPv4 address, or its IPv6 /64.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::MAX >> 64))),
        v4 => v4,
    }
}

/// Tells a request's client address from its peer and, behind trusted proxies, from
/// `X-Forwarded-For`.
#[derive(Clone, Debug, Default)]
pub struct ClientIps {
    trusted: Vec<IpNet>,
}

impl ClientIps {
    pub fn new(trusted_proxies: Vec<IpNet>) -> ClientIps {
        ClientIps {
            trusted: trusted_proxies,
        }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(ip))
    }

    /// The peer, unless it is a trusted proxy: then the last address in `X-Forwarded-For`
    /// that is not a trusted proxy (proxies append, so anything left of the first proxy is
    /// what the client claimed, and is not believed).
    pub fn client(&self, peer: Option<IpAddr>, forwarded_for: &[&str]) -> Option<IpAddr> {
        let peer = peer?;
        if !self.trusts(peer) {
            return Some(peer);
        }
        let mut client = peer;
        for hop in forwarded_for.iter().rev().flat_map(|h| h.rsplit(',')) {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                // A hop we cannot read: stop at the last address we could.
                break;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        Some(client)
    }

    pub fn of(&self, req: &ServiceRequest) -> Option<IpAddr> {
        self.of_request(req.request())
    }

    pub fn of_request(&self, req: &actix_web::HttpRequest) -> Option<IpAddr> {
        let peer = req.peer_addr().map(|a| a.ip());
        if peer.is_none_or(|p| !self.trusts(p)) {
            // The common case, without reading the headers.
            return peer;
        }
        let forwarded: Vec<&str> = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .collect();
        self.client(peer, &forwarded)
    }
}

/// A token bucket per client, at most `max_clients` of them.
///
/// Written here rather than taken from `governor`: its keyed limiter's map grows with every
/// key until the caller sweeps it, and cannot be capped, while a flood of addresses must not
/// grow memory; and the admin lockout needs to look at a bucket without spending from it
/// (`peek`).
pub struct Limiter {
    per_second: f64,
    burst: f64,
    max_clients: usize,
    buckets: Mutex<Buckets>,
    last_sweep: Mutex<Instant>,
}

struct Buckets {
    by_client: HashMap<IpAddr, Bucket>,
    /// Shared by the clients that arrive while `by_client` is full.
    overflow: Bucket,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Limiter {
    /// `requests_per_minute` 0 disables the limit. At most `max_clients` buckets are kept;
    /// see `token` for what happens past it.
    pub fn new(requests_per_minute: u32, burst: u32, max_clients: usize) -> Limiter {
        let burst = f64::from(burst.max(1));
        Limiter {
            per_second: f64::from(requests_per_minute) / 60.0,
            burst,
            max_clients: max_clients.max(1),
            buckets: Mutex::new(Buckets {
                by_client: HashMap::new(),
                overflow: Bucket {
                    tokens: burst,
                    at: Instant::now(),
                },
            }),
            last_sweep: Mutex::new(Instant::now()),
        }
    }

    /// How many clients have a bucket of their own.
    pub fn clients(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_client
            .len()
    }

    /// Takes a token for `ip`'s client (`client_key`) at `now`; `Err(seconds)` to wait when
    /// there is none.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        self.token(client_key(ip), now, true)
    }

    /// Whether `ip` has a token at `now`, without taking it: for budgets spent only by some
    /// outcomes (the admin API's failed logins), checked before the outcome is known.
    pub fn peek(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        self.token(client_key(ip), now, false)
    }

    /// The client's bucket, refilled to `now`, then a token taken (`take`) or looked at.
    ///
    /// Past `max_clients`: buckets that have refilled completely are forgotten first (a new
    /// bucket starts full, so nothing is lost); if every bucket is still in use, the newcomer
    /// shares one overflow bucket with every other client that found no room. A flood of
    /// addresses then throttles itself (and other newcomers) instead of growing memory, and
    /// clients already tracked keep their own budget.
    fn token(&self, ip: IpAddr, now: Instant, take: bool) -> Result<(), u64> {
        if self.per_second == 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let refilled_after = self.burst / self.per_second;
        {
            let mut last = self.last_sweep.lock().unwrap_or_else(|p| p.into_inner());
            // Only a full bucket may be forgotten: a new one starts full.
            let forget_after = FORGET_AFTER_SECS.max(refilled_after);
            if now.duration_since(*last).as_secs_f64() > forget_after {
                buckets
                    .by_client
                    .retain(|_, b| now.duration_since(b.at).as_secs_f64() < forget_after);
                *last = now;
            }
        }
        if !buckets.by_client.contains_key(&ip) && buckets.by_client.len() >= self.max_clients {
            buckets.by_client.retain(|_, b| {
                b.tokens + now.duration_since(b.at).as_secs_f64() * self.per_second < self.burst
            });
        }
        let Buckets {
            by_client,
            overflow,
        } = &mut *buckets;
        let full = by_client.len() >= self.max_clients;
        let bucket = match by_client.get_mut(&ip) {
            Some(bucket) => bucket,
            None if full => overflow,
            None => by_client.entry(ip).or_insert(Bucket {
                tokens: self.burst,
                at: now,
            }),
        };
        let elapsed = now.duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            if take {
                bucket.tokens -= 1.0;
            }
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / self.per_second).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_then_the_refill_rate_per_address() {
        let l = Limiter::new(60, 3, 1000);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check(a, t), Ok(()));
        }
        assert_eq!(l.check(a, t), Err(1));
        // Another address has its own bucket.
        assert_eq!(l.check(b, t), Ok(()));
        // One request a second comes back.
        assert_eq!(l.check(a, t + Duration::from_millis(1000)), Ok(()));
        assert_eq!(l.check(a, t + Duration::from_millis(1000)), Err(1));
        let slow = Limiter::new(6, 1, 1000);
        assert_eq!(slow.check(a, t), Ok(()));
        assert_eq!(slow.check(a, t), Err(10));
        assert_eq!(Limiter::new(0, 0, 1000).check(a, t), Ok(()));
        // Peeking takes nothing.
        let peeked = Limiter::new(60, 1, 1000);
        assert_eq!(peeked.peek(a, t), Ok(()));
        assert_eq!(peeked.peek(a, t), Ok(()));
        assert_eq!(peeked.check(a, t), Ok(()));
        assert_eq!(peeked.peek(a, t), Err(1));
    }

    #[test]
    fn networks_match_their_addresses() {
        let net = IpNet::parse("10.0.0.0/8").unwrap();
        assert!(net.contains("10.200.1.2".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.0.0.1".parse().unwrap()));
        let one = IpNet::parse("192.0.2.7").unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        assert!(IpNet::parse("fd00::/8")
            .unwrap()
            .contains("fd12::1".parse().unwrap()));
        assert!(IpNet::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        for bad in ["10.0.0.0/33", "fd00::/129", "proxy", "10.0.0.0/x", ""] {
            assert!(IpNet::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_client_is_the_peer_unless_a_trusted_proxy_forwarded_it() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let direct = ClientIps::default();
        // No trusted proxy: X-Forwarded-For is whatever the client wrote, and is ignored.
        assert_eq!(
            direct.client(Some(ip("203.0.113.5")), &["1.2.3.4"]),
            Some(ip("203.0.113.5"))
        );
        let proxied = ClientIps::new(vec![
            IpNet::parse("127.0.0.1").unwrap(),
            IpNet::parse("10.0.0.0/8").unwrap(),
        ]);
        // Behind the proxy: the last untrusted hop; what the client prepended is not believed.
        assert_eq!(
            proxied.client(Some(ip("127.0.0.1")), &["6.6.6.6, 198.51.100.9, 10.1.2.3"]),
            Some(ip("198.51.100.9"))
        );
        assert_eq!(
            proxied.client(Some(ip("127.0.0.1")), &["6.6.6.6", "198.51.100.9"]),
            Some(ip("198.51.100.9"))
        );
        // A peer that is not a proxy is the client, whatever it sends.
        assert_eq!(
            proxied.client(Some(ip("198.51.100.1")), &["6.6.6.6"]),
            Some(ip("198.51.100.1"))
        );
        // Only proxies, no header, or garbage: the nearest address we could read.
        assert_eq!(
            proxied.client(Some(ip("127.0.0.1")), &[]),
            Some(ip("127.0.0.1"))
        );
        assert_eq!(
            proxied.client(Some(ip("127.0.0.1")), &["garbage, 10.0.0.9"]),
            Some(ip("10.0.0.9"))
        );
    }

    #[test]
    fn an_ipv6_client_is_its_64_and_a_mapped_ipv4_is_ipv4() {
        let l = Limiter::new(60, 1, 1000);
        let t = Instant::now();
        assert_eq!(l.check("2001:db8:1:2::1".parse().unwrap(), t), Ok(()));
        // Another address in the same /64 shares the bucket; another /64 does not.
        assert_eq!(l.check("2001:db8:1:2:ffff::9".parse().unwrap(), t), Err(1));
        assert_eq!(l.check("2001:db8:1:3::1".parse().unwrap(), t), Ok(()));
        assert_eq!(l.check("192.0.2.1".parse().unwrap(), t), Ok(()));
        assert_eq!(l.check("::ffff:192.0.2.1".parse().unwrap(), t), Err(1));
    }

    /// A flood of addresses cannot grow the table past its cap: newcomers share one bucket
    /// while every tracked client is mid-budget, and get their own once some have refilled.
    #[test]
    fn past_max_clients_newcomers_share_one_bucket_and_memory_stays_bounded() {
        let l = Limiter::new(60, 2, 3);
        let t = Instant::now();
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        for n in 1..=3 {
            assert_eq!(l.check(ip(n), t), Ok(()));
        }
        // Thousands of new addresses: one shared budget of two, and three buckets in all.
        assert_eq!(l.check(ip(100), t), Ok(()));
        assert_eq!(l.check(ip(101), t), Ok(()));
        for n in 102..=250 {
            assert!(
                l.check(ip(n), t).is_err(),
                "newcomer {n} had a budget of its own"
            );
        }
        assert_eq!(l.clients(), 3);
        // The tracked clients kept theirs.
        assert_eq!(l.check(ip(1), t), Ok(()));
        // Two seconds later the tracked buckets are full again and forgotten for the newcomer.
        let later = t + std::time::Duration::from_secs(2);
        assert_eq!(l.check(ip(200), later), Ok(()));
        assert_eq!(l.check(ip(200), later), Ok(()));
        assert!(l.check(ip(200), later).is_err());
        assert!(l.clients() <= 3);
    }
}
