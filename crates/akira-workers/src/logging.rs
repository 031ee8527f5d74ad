//! Log output through `tracing`: journald, JSON lines or text, picked automatically.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, LogSettings};

/// Resolves `auto`: journald when stderr is the journal stream systemd set up
/// (`JOURNAL_STREAM` names its device and inode), text on a terminal, else JSON lines.
pub fn resolve_format(format: LogFormat) -> LogFormat {
    if format != LogFormat::Auto {
        return format;
    }
    if stderr_is_journal() {
        return LogFormat::Journald;
    }
    if std::io::stderr().is_terminal() {
        return LogFormat::Text;
    }
    LogFormat::Json
}

fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;

    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((device, inode)) = stream.split_once(':') else {
        return false;
    };
    let Ok(metadata) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    device.parse() == Ok(metadata.dev()) && inode.parse() == Ok(metadata.ino())
}

/// Installs the global subscriber; a second call (in tests) leaves the first one in place.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let format = resolve_format(settings.format);
    let layer: Box<dyn Layer<_> + Send + Sync> = match format {
        LogFormat::Journald => match tracing_journald::layer() {
            Ok(layer) => layer.boxed(),
            Err(_) => json_layer(),
        },
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json | LogFormat::Auto => json_layer(),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .try_init();
}

fn json_layer<S>() -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(std::io::stderr)
        .boxed()
}

/// Lets one log line through per key and interval, counting the ones held back.
pub struct RateLimiter {
    interval: Duration,
    seen: Mutex<HashMap<String, (Instant, u64)>>,
}

impl RateLimiter {
    pub fn new(interval: Duration) -> RateLimiter {
        RateLimiter {
            interval,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Returns `Some(suppressed)` when a line for `key` may be logged now, where `suppressed`
    /// counts the lines held back since the last one. Returns `None` when this line is held back.
    pub fn check(&self, key: &str) -> Option<u64> {
        let mut seen = self.seen.lock().expect("rate limiter lock");
        let now = Instant::now();
        match seen.get_mut(key) {
            Some((last, suppressed)) if now.duration_since(*last) < self.interval => {
                *suppressed += 1;
                None
            }
            Some((last, suppressed)) => {
                let held = *suppressed;
                *last = now;
                *suppressed = 0;
                Some(held)
            }
            None => {
                if seen.len() > 1024 {
                    seen.clear();
                }
                seen.insert(key.to_string(), (now, 0));
                Some(0)
            }
        }
    }
}

/// Logs an error that the worker carries on from, at most once per `what` within the
/// runtime limiter's interval (10 s), and counts every occurrence in `akira_worker_errors_total`.
#[macro_export]
macro_rules! swallowed_error {
    ($runtime:expr, $what:expr, $error:expr $(, $key:ident = $value:expr)*) => {{
        let runtime = &$runtime;
        runtime.metrics.record_swallowed_error();
        if let Some(suppressed) = runtime.limiter.check($what) {
            tracing::error!(error = %$error, repeated = suppressed $(, $key = $value)*, "{}", $what);
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_holds_back_repeats() {
        let limiter = RateLimiter::new(Duration::from_secs(60));
        assert_eq!(limiter.check("fetch failed"), Some(0));
        assert_eq!(limiter.check("fetch failed"), None);
        assert_eq!(limiter.check("fetch failed"), None);
        assert_eq!(limiter.check("ack failed"), Some(0));
    }
}
