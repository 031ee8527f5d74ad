//! Handler results and errors.

use std::fmt;
use std::time::Duration;

/// A boxed error from a handler.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result of handling one message: `Ok(())` acks it.
pub type HandlerResult = Result<(), HandlerError>;

/// Failure of a handler, which decides what happens to its message.
#[derive(Debug)]
pub enum HandlerError {
    /// Try again later: nak with the given delay, or the policy's delay when `None`.
    /// On the last allowed delivery the message is dead-lettered with reason `max_deliver`.
    Retry {
        error: BoxError,
        delay: Option<Duration>,
    },
    /// Retrying cannot help: dead-letter at once with reason `permanent`.
    Permanent { error: BoxError },
}

impl HandlerError {
    /// Creates a retryable error with the policy's delay.
    pub fn retry(error: impl Into<BoxError>) -> HandlerError {
        HandlerError::Retry {
            error: error.into(),
            delay: None,
        }
    }

    /// Creates a retryable error with its own delay (for example from a `Retry-After` header).
    pub fn retry_after(error: impl Into<BoxError>, delay: Duration) -> HandlerError {
        HandlerError::Retry {
            error: error.into(),
            delay: Some(delay),
        }
    }

    /// Creates a permanent error.
    pub fn permanent(error: impl Into<BoxError>) -> HandlerError {
        HandlerError::Permanent {
            error: error.into(),
        }
    }

    /// Returns whether retrying may help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, HandlerError::Retry { .. })
    }

    /// Returns the error text, with its chain of sources joined by `: `.
    pub fn message(&self) -> String {
        let error: &(dyn std::error::Error + 'static) = match self {
            HandlerError::Retry { error, .. } | HandlerError::Permanent { error } => error.as_ref(),
        };
        error_chain(error)
    }
}

/// Returns an error and its sources as one line: `outer: inner: root`.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.is_retryable() {
            "retryable"
        } else {
            "permanent"
        };
        write!(f, "{kind} error: {}", self.message())
    }
}

/// `?` on any standard error in a handler gives a retryable error with the policy's delay.
impl<E> From<E> for HandlerError
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(error: E) -> HandlerError {
        HandlerError::retry(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_mark_gives_retryable() {
        fn parse() -> HandlerResult {
            "x".parse::<u32>()?;
            Ok(())
        }
        let err = parse().unwrap_err();
        assert!(err.is_retryable());
        assert!(err.message().contains("invalid digit"));
    }

    #[test]
    fn permanent_is_not_retryable() {
        assert!(!HandlerError::permanent("missing field callid").is_retryable());
    }
}
