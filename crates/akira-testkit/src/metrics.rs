//! Reading a worker's Prometheus metrics endpoint in tests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Time the endpoint gets to send its whole response.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Fetches `/metrics` from `address` (`host:port`) with a plain HTTP/1.0
/// request and returns the body whatever the status, or `None` when the
/// endpoint cannot be reached or the response has no body separator.
pub fn fetch_metrics(address: &str) -> Option<String> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(READ_TIMEOUT)).ok()?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {address}\r\n\r\n").ok()?;

    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}

/// Returns the value of the first sample whose name and labels are exactly
/// `series`, such as `akira_worker_in_flight{worker="cdr-bridge"}`.
///
/// Labels are compared as text, so `series` must list them in the order the
/// endpoint prints them.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::sample;

    const TEXT: &str = "# TYPE akira_worker_in_flight gauge\n\
                        akira_worker_in_flight{worker=\"a\"} 4\n\
                        akira_worker_in_flight_max{worker=\"a\"} 9\n\
                        akira_up 1\n";

    #[test]
    fn sample_matches_whole_series() {
        assert_eq!(
            sample(TEXT, "akira_worker_in_flight{worker=\"a\"}"),
            Some(4.0)
        );
        assert_eq!(sample(TEXT, "akira_up"), Some(1.0));
    }

    #[test]
    fn sample_rejects_series_prefix() {
        assert_eq!(sample(TEXT, "akira_worker_in_flight"), None);
        assert_eq!(sample(TEXT, "akira_worker_in_flight{worker="), None);
        assert_eq!(sample(TEXT, "akira_missing"), None);
    }
}
