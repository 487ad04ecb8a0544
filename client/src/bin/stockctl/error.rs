//! What can go wrong in a command, and the exit code each failure maps to.
//!
//! The exit code tells a script what it may conclude: 1 means the operation definitely did not
//! happen (or a read failed), 3 means it may have happened and must be retried with the same
//! idempotency key (or checked) to learn which. 2 is a usage error, as clap reports it.

use flashstock_api::ErrorCode;
use flashstock_client::ShopError;

/// The operation failed definitely.
pub const EXIT_FAILED: u8 = 1;
/// The command line or the configuration is wrong.
pub const EXIT_USAGE: u8 = 2;
/// The operation may or may not have been applied.
pub const EXIT_UNKNOWN: u8 = 3;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CliError {
    /// A missing flag or a contradiction on the command line; nothing was sent.
    #[error("{0}")]
    Usage(String),
    /// Definitely not applied, or a read that failed: `code` is stable and machine readable.
    #[error("{code}: {message}")]
    Failed { code: ErrorCode, message: String },
    /// The outcome is unknown; `hint` says how to learn it.
    #[error("outcome_unknown: {message}; {hint}")]
    Unknown { message: String, hint: String },
}

impl CliError {
    pub fn failed(code: ErrorCode, message: impl Into<String>) -> CliError {
        CliError::Failed {
            code,
            message: message.into(),
        }
    }

    pub fn unknown(message: impl Into<String>, hint: impl Into<String>) -> CliError {
        CliError::Unknown {
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Failed { .. } => EXIT_FAILED,
            CliError::Unknown { .. } => EXIT_UNKNOWN,
        }
    }

    /// The stable code of a definite failure.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            CliError::Failed { code, .. } => Some(code),
            _ => None,
        }
    }

    /// A public API error; `hint` says how to learn an unknown outcome.
    pub fn from_shop(error: ShopError, hint: &str) -> CliError {
        match error {
            ShopError::Rejected { code, message, .. } => CliError::Failed { code, message },
            ShopError::Unavailable { message } => CliError::failed(ErrorCode::Unavailable, message),
            ShopError::OutcomeUnknown { message } => CliError::unknown(message, hint),
        }
    }
}

impl From<flashstock_client::Error> for CliError {
    /// An internal API error. Reads and admin calls fail definitely as far as the client can
    /// tell; commands that change the membership reclassify transport failures themselves.
    fn from(error: flashstock_client::Error) -> CliError {
        use flashstock_client::Error;
        match error {
            Error::Refused { code, message } | Error::Api { code, message } => {
                CliError::Failed { code, message }
            }
            Error::OutcomeUnknown { message } => {
                CliError::unknown(message, "check with `stockctl cluster status`")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_what_a_caller_may_conclude() {
        let rejected = ShopError::Rejected {
            status: 409,
            code: ErrorCode::InsufficientStock,
            message: "none left".into(),
        };
        let rejected = CliError::from_shop(rejected, "");
        assert_eq!(rejected.exit_code(), EXIT_FAILED);
        assert_eq!(rejected.code(), Some(&ErrorCode::InsufficientStock));
        assert_eq!(rejected.to_string(), "insufficient_stock: none left");

        let down = CliError::from_shop(
            ShopError::Unavailable {
                message: "no gateway".into(),
            },
            "",
        );
        assert_eq!(down.exit_code(), EXIT_FAILED);
        assert_eq!(down.code(), Some(&ErrorCode::Unavailable));

        let unknown = CliError::from_shop(
            ShopError::OutcomeUnknown {
                message: "timed out".into(),
            },
            "retry with --key k",
        );
        assert_eq!(unknown.exit_code(), EXIT_UNKNOWN);
        assert_eq!(
            unknown.to_string(),
            "outcome_unknown: timed out; retry with --key k"
        );
        assert_eq!(CliError::Usage("x".into()).exit_code(), EXIT_USAGE);
    }
}
