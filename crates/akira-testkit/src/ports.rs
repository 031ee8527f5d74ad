use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Mutex;

/// Ports this process has handed out, so two servers in one test binary never
/// get the same port even if the kernel offers it twice.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is found by binding port 0 and closing the listener, so another
/// process can take it before the caller binds it. The servers in this crate
/// retry on a fresh port when that happens; other callers should do the same.
///
/// # Panics
///
/// Panics if no loopback port can be bound.
pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// Returns `N` distinct free ports on 127.0.0.1; see [`free_port`] for the race.
pub(crate) fn free_ports<const N: usize>() -> [u16; N] {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);

    // All listeners stay open until every port is chosen, so the kernel
    // cannot return the same port twice within one call.
    let mut listeners = Vec::with_capacity(N);
    let mut ports = [0; N];
    let mut found = 0;
    while found < N {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("cannot bind a free port on 127.0.0.1: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("cannot read the address of a bound listener: {e}"))
            .port();
        listeners.push(listener);
        if handed_out.insert(port) {
            ports[found] = port;
            found += 1;
        }
    }
    ports
}
