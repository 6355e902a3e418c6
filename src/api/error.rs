//! The one place where failures become the API's error envelope (API.md, "Envelope" and
//! "Error codes"). Client mistakes say what to fix; internal failures are logged with their
//! cause and shown as an opaque INTERNAL_ERROR or SERVICE_UNAVAILABLE.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::json;

use crate::actors::CoreError;
use crate::fragment::{CookieError, FragmentError};
use crate::ton::SeedError;

/// One invalid field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Vec<FieldError>,
    pub retry_after: Option<u64>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            message: message.into(),
            details: vec![],
            retry_after: match status {
                429 | 503 => Some(5),
                _ => None,
            },
        }
    }

    /// VALIDATION_ERROR naming each invalid field.
    pub fn validation(details: Vec<FieldError>) -> ApiError {
        let message = match details.as_slice() {
            [one] => format!("Validation failed: {}: {}", one.field, one.message),
            _ => "Validation failed".to_string(),
        };
        ApiError {
            details,
            ..ApiError::new(400, "VALIDATION_ERROR", message)
        }
    }

    /// VALIDATION_ERROR about the request as a whole (body, content type).
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "VALIDATION_ERROR", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(404, "NOT_FOUND", message)
    }

    /// A failure the client cannot fix: logged with its cause, shown without it.
    pub fn internal(cause: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "internal error");
        ApiError::new(
            500,
            "INTERNAL_ERROR",
            "an internal error occurred; it has been logged",
        )
    }

    pub fn unavailable(cause: &dyn std::fmt::Display) -> ApiError {
        tracing::warn!(error = %cause, "dependency unavailable");
        ApiError::new(
            503,
            "SERVICE_UNAVAILABLE",
            "the service is temporarily unavailable; try again shortly",
        )
    }

    /// A TON API failure: SERVICE_UNAVAILABLE, with the wait the budget asks for when the
    /// payment path has it (`Busy`).
    pub fn ton(e: &crate::ton::client::TonApiError) -> ApiError {
        let error = ApiError::unavailable(e);
        match e {
            crate::ton::client::TonApiError::Busy { retry_after } => {
                error.with_retry_after(retry_after.as_secs().max(1))
            }
            _ => error,
        }
    }

    pub fn with_retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(seconds) = self.retry_after {
            response.insert_header(("Retry-After", seconds.to_string()));
        }
        response.json(json!({
            "success": false,
            "error": {
                "code": self.status.as_u16(),
                "error_code": self.code,
                "message": self.message,
                "details": self.details,
            }
        }))
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> ApiError {
        let (code, status) = e.api_code();
        if let CoreError::Ton(t) = &e {
            return ApiError::ton(t);
        }
        if let CoreError::QueueFull { .. } = &e {
            // The client's to act on (wait and pay again), so it says exactly that.
            return ApiError::new(status, code, e.to_string()).with_retry_after(10);
        }
        match code {
            "INTERNAL_ERROR" => ApiError::internal(&e),
            "SERVICE_UNAVAILABLE" => ApiError::unavailable(&e),
            _ => match e {
                CoreError::Fragment(f) => ApiError::from(f),
                other => ApiError::new(status, code, other.to_string()),
            },
        }
    }
}

impl From<FragmentError> for ApiError {
    fn from(e: FragmentError) -> ApiError {
        let (code, status) = e.api_code();
        match code {
            "INTERNAL_ERROR" => ApiError::internal(&e),
            "SERVICE_UNAVAILABLE" => ApiError::unavailable(&e),
            "FRAGMENT_ERROR" => {
                tracing::warn!(error = %e, "fragment.com error");
                ApiError::new(status, code, e.to_string()).with_retry_after(5)
            }
            _ => ApiError::new(status, code, e.to_string()),
        }
    }
}

impl From<SeedError> for ApiError {
    /// SeedError's messages name what is wrong, never the seed.
    fn from(e: SeedError) -> ApiError {
        ApiError {
            details: vec![FieldError::new("seed", e.to_string())],
            ..ApiError::new(400, "INVALID_SEED", format!("Invalid seed phrase: {e}"))
        }
    }
}

impl From<CookieError> for ApiError {
    fn from(e: CookieError) -> ApiError {
        let (code, status) = e.api_code();
        ApiError {
            details: vec![FieldError::new("fragment_cookies", e.to_string())],
            ..ApiError::new(status, code, format!("Invalid cookies: {e}"))
        }
    }
}
