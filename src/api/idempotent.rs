//! `Idempotency-Key` on the POSTs that create, pay or buy, and on admin settle: the HTTP side
//! of `crate::idempotency`. A keyed request runs on a task of its own, so a client that hangs
//! up (the timeout that makes it retry) does not cut the request short: its answer is still
//! recorded, and the retry gets it.

use std::future::Future;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};

use super::error::ApiError;
use super::routes::Reply;
use super::AppState;
use crate::actors::CoreError;
use crate::fragment::FragmentCookies;
use crate::idempotency::{Answer, Begin, Fingerprint, IdempotencyError, IdempotencyKey};

pub const HEADER: &str = "Idempotency-Key";
/// Set on an answer that a retry got from the first request under its key.
pub const REPLAYED: &str = "Idempotent-Replayed";
/// The body field for clients that cannot set headers.
pub const FIELD: &str = "idempotency_key";

/// The request's key: the header, or the body's field (`body_field`); both, and different:
/// an error naming both.
pub fn key(
    req: &HttpRequest,
    body_field: Option<String>,
) -> Result<Option<IdempotencyKey>, super::error::FieldError> {
    use super::error::FieldError;
    let header = match req.headers().get(HEADER) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| FieldError::new(HEADER, "must be visible ASCII characters"))?
                .trim()
                .to_string(),
        ),
    };
    let raw = match (header, body_field) {
        (Some(h), Some(b)) if h != b.trim() => {
            return Err(FieldError::new(
                FIELD,
                format!("differs from the {HEADER} header; send the key once"),
            ))
        }
        (Some(h), _) => h,
        (None, Some(b)) => b.trim().to_string(),
        (None, None) => return Ok(None),
    };
    let name = if req.headers().contains_key(HEADER) {
        HEADER
    } else {
        FIELD
    };
    IdempotencyKey::parse(&raw)
        .map(Some)
        .map_err(|e| FieldError::new(name, e))
}

/// Feeds a client's Fragment cookies to a fingerprint (the ones that name the account).
pub fn feed_cookies(f: &mut Fingerprint, cookies: Option<&FragmentCookies>) {
    match cookies {
        None => {
            f.field("cookies", "none");
        }
        Some(c) => {
            for name in crate::fragment::cookies::REQUIRED_FOR_KYC {
                f.field(name, c.get(name).unwrap_or_default());
            }
        }
    }
}

/// Runs `work` once per key: without a key, as it is; with one, claimed first, and its answer
/// recorded for the retries (or the first answer replayed). `work` gets the order id the key
/// chose for a request that creates one.
pub async fn run<F, Fut>(
    state: actix_web::web::Data<AppState>,
    keyed: Option<crate::idempotency::Keyed>,
    work: F,
) -> Reply
where
    F: FnOnce(Option<uuid::Uuid>) -> Fut + 'static,
    Fut: Future<Output = Reply> + 'static,
{
    let Some(keyed) = keyed else {
        return work(None).await;
    };
    let claim = match state.idempotency.begin(keyed).await {
        Ok(Begin::Run(claim)) => claim,
        Ok(Begin::Replay(answer)) => return Ok(replayed(&answer)),
        Err(e) => return Err(refused(e)),
    };
    // On a task of its own: the request goes on (and its answer is recorded) if the client
    // hangs up. Handlers run on actix's single-threaded runtimes, so the work need not be Send.
    let task = actix_web::rt::spawn(async move {
        let order_id = claim.order_id;
        let (answer, headers, code) = into_answer(work(order_id).await).await;
        match state.idempotency.finish(claim, &answer, code).await {
            Ok(None) => respond(&answer, headers, false),
            // Another run (a retry that took over) answered first: every retry gets that.
            Ok(Some(first)) => replayed(&first),
            Err(e) => {
                // The answer stands; a retry runs again after the lease and finds what this
                // run made (the same order, the same payment).
                tracing::warn!(error = %e, "the answer of a request under an Idempotency-Key was not recorded");
                respond(&answer, headers, false)
            }
        }
    });
    task.await
        .map_err(|e| ApiError::internal(&format!("a keyed request's task failed: {e}")))
}

fn refused(e: IdempotencyError) -> ApiError {
    match e {
        IdempotencyError::Reused { .. } => {
            ApiError::new(409, "IDEMPOTENCY_KEY_REUSED", e.to_string())
        }
        IdempotencyError::InProgress { retry_after, .. } => {
            ApiError::new(409, "IDEMPOTENCY_KEY_IN_PROGRESS", e.to_string())
                .with_retry_after(retry_after)
        }
        IdempotencyError::Store(e) => CoreError::Store(e).into(),
    }
}

type Headers = Vec<(HeaderName, HeaderValue)>;

/// A reply as it will be sent: status, body, the headers to keep, and the error code.
async fn into_answer(reply: Reply) -> (Answer, Headers, Option<&'static str>) {
    let (response, code) = match reply {
        Ok(r) => (r, None),
        Err(e) => (e.error_response(), Some(e.code)),
    };
    let status = response.status().as_u16();
    let headers: Headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    let body = actix_web::body::to_bytes(response.into_body())
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    (Answer { status, body }, headers, code)
}

fn respond(answer: &Answer, headers: Headers, replay: bool) -> HttpResponse {
    let mut response = HttpResponse::build(
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    );
    for h in headers {
        response.insert_header(h);
    }
    if replay {
        response.content_type(actix_web::http::header::ContentType::json());
        response.insert_header((REPLAYED, "true"));
    }
    response.body(answer.body.clone())
}

fn replayed(answer: &Answer) -> HttpResponse {
    respond(answer, vec![], true)
}
