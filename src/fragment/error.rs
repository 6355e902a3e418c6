//! Everything that can go wrong talking to fragment.com, and which API error code each
//! becomes (the codes of the HTTP API).

use super::link::LinkError;

/// Whose Fragment session a flow runs on. It decides how a rejected session is reported:
/// the client's own cookies are the client's to fix; the operator's are the operator's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionRole {
    /// KYC mode: the client's own cookies.
    Client,
    /// No-KYC mode: the operator's cookies.
    Owner,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    #[error("Fragment found no Telegram user {username}")]
    UserNotFound { username: String },
    #[error("{username} is a bot or a channel; Stars and Premium go to user accounts only")]
    NotAUser { username: String },
    #[error("{username} already has Telegram Premium")]
    PremiumAlreadyActive { username: String },
    #[error("fragment.com did not accept your cookies ({0}); log in to fragment.com again and send fresh fragment_cookies")]
    InvalidCookies(String),
    #[error("the operator's fragment.com session has expired ({0})")]
    OwnerCookiesExpired(String),
    #[error("fragment.com requires identity verification (KYC) of the Telegram account these cookies belong to before it sells to it")]
    KycRequired,
    #[error("no TON wallet is connected to this fragment.com session; connect one on fragment.com and export the cookies again")]
    WalletNotConnected,
    #[error("Fragment changed the price while the order was being placed; try again")]
    PriceChanged,
    #[error("fragment.com refused: {0}")]
    Refused(String),
    #[error("fragment.com is unavailable: {0}")]
    Unavailable(String),
    #[error("fragment.com answered something unexpected: {0}")]
    BadResponse(String),
    #[error("Fragment's payment link failed our checks: {0}")]
    InvalidLink(#[from] LinkError),
    /// The client's own settings are wrong: the operator's to fix, not Fragment's.
    #[error("the Fragment client is misconfigured: {0}")]
    Misconfigured(String),
}

impl FragmentError {
    /// The API's `error_code` and HTTP status for this failure.
    pub fn api_code(&self) -> (&'static str, u16) {
        match self {
            FragmentError::UserNotFound { .. } | FragmentError::NotAUser { .. } => {
                ("USER_NOT_FOUND", 404)
            }
            FragmentError::PremiumAlreadyActive { .. } => ("PREMIUM_ALREADY_ACTIVE", 400),
            FragmentError::InvalidCookies(_) => ("INVALID_COOKIES", 400),
            FragmentError::OwnerCookiesExpired(_) => ("OWNER_COOKIES_EXPIRED", 500),
            FragmentError::KycRequired
            | FragmentError::WalletNotConnected
            | FragmentError::PriceChanged
            | FragmentError::Refused(_)
            | FragmentError::Unavailable(_)
            | FragmentError::BadResponse(_)
            | FragmentError::InvalidLink(_) => ("FRAGMENT_ERROR", 502),
            FragmentError::Misconfigured(_) => ("INTERNAL_ERROR", 500),
        }
    }

    /// A rejected session, reported according to whose it is.
    pub fn session_rejected(role: SessionRole, why: impl Into<String>) -> FragmentError {
        match role {
            SessionRole::Client => FragmentError::InvalidCookies(why.into()),
            SessionRole::Owner => FragmentError::OwnerCookiesExpired(why.into()),
        }
    }

    /// Whether trying the same step again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            FragmentError::Unavailable(_) | FragmentError::PriceChanged
        )
    }
}
