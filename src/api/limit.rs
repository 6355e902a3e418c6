//! Per-IP rate limiting of the client routes (`/api/…`): a token bucket per address that
//! refills at `requests_per_minute` and holds `burst` requests. Over the limit: 429
//! RATE_LIMIT_EXCEEDED with `Retry-After` (whole seconds until a token is back).
//! The admin API keeps its own `Limiter` for wrong keys (`admin.rs`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::ResponseError;

use super::ApiError;

/// Buckets idle this long are full again and are dropped, so the map does not grow with
/// every address ever seen.
const FORGET_AFTER_SECS: f64 = 600.0;

pub struct Limiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
    last_sweep: Mutex<Instant>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Limiter {
    /// `requests_per_minute` 0 disables the limit.
    pub fn new(requests_per_minute: u32, burst: u32) -> Limiter {
        Limiter {
            per_second: f64::from(requests_per_minute) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
            last_sweep: Mutex::new(Instant::now()),
        }
    }

    /// Takes a token for `ip` at `now`; `Err(seconds)` to wait when there is none.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        self.token(ip, now, true)
    }

    /// Whether `ip` has a token at `now`, without taking it: for budgets spent only by some
    /// outcomes (the admin API's failed logins), checked before the outcome is known.
    pub fn peek(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        self.token(ip, now, false)
    }

    fn token(&self, ip: IpAddr, now: Instant, take: bool) -> Result<(), u64> {
        if self.per_second == 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        {
            let mut last = self.last_sweep.lock().unwrap_or_else(|p| p.into_inner());
            if now.duration_since(*last).as_secs_f64() > FORGET_AFTER_SECS {
                buckets.retain(|_, b| now.duration_since(b.at).as_secs_f64() < FORGET_AFTER_SECS);
                *last = now;
            }
        }
        let bucket = buckets.entry(ip).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
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

pub async fn middleware(
    limiter: Arc<Limiter>,
    req: ServiceRequest,
    next: actix_web::middleware::Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<impl MessageBody>>, actix_web::Error> {
    // Reading a queue request is what a client's wait loop does every couple of seconds (the
    // original SDK: every 2 s for 5 minutes); counting it would throttle a waiting buyer
    // into thinking the purchase failed. It only reads a projection.
    // Decided on the decoded path the router matches, not the raw one: `/%61pi/…` reaches the
    // same handlers as `/api/…` and must count the same.
    let path = req.match_info().as_str();
    let polling = req.method() == actix_web::http::Method::GET
        && path.starts_with("/api/v1/queue/")
        && path != "/api/v1/queue/status";
    // Everything counts except polling, health checks, this API's document, and the admin
    // API (which limits wrong keys itself).
    let exempt =
        polling || path == "/health" || path == "/openapi.json" || path.starts_with("/admin/");
    let limited = !exempt;
    if let (true, Some(peer)) = (limited, req.peer_addr()) {
        if let Err(wait) = limiter.check(peer.ip(), Instant::now()) {
            let error = ApiError::new(
                429,
                "RATE_LIMIT_EXCEEDED",
                format!(
                    "Rate limit exceeded: too many requests from this address; retry in {wait} s"
                ),
            )
            .with_retry_after(wait);
            return Ok(req
                .into_response(error.error_response())
                .map_into_right_body());
        }
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_then_the_refill_rate_per_address() {
        let l = Limiter::new(60, 3);
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
        let slow = Limiter::new(6, 1);
        assert_eq!(slow.check(a, t), Ok(()));
        assert_eq!(slow.check(a, t), Err(10));
        assert_eq!(Limiter::new(0, 0).check(a, t), Ok(()));
        // Peeking takes nothing.
        let peeked = Limiter::new(60, 1);
        assert_eq!(peeked.peek(a, t), Ok(()));
        assert_eq!(peeked.peek(a, t), Ok(()));
        assert_eq!(peeked.check(a, t), Ok(()));
        assert_eq!(peeked.peek(a, t), Err(1));
    }
}
