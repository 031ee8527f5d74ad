//! Readiness notifications for a systemd `Type=notify` service.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (such as `READY=1`) to the socket in `NOTIFY_SOCKET`, and does nothing when
/// the variable is unset. A failure is logged, not returned, because the service works
/// without the notification.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(err) = send(&path, state) {
        tracing::warn!(socket = ?path, state, error = %err, "cannot notify systemd");
    }
}

fn send(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        // An abstract socket: the name starts with a NUL byte instead of '@'.
        use std::os::linux::net::SocketAddrExt;
        let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        socket.send_to_addr(state.as_bytes(), &address)?;
    } else {
        socket.send_to(state.as_bytes(), path)?;
    }
    Ok(())
}
