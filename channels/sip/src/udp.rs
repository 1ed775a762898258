//! The UDP socket rsipstack reads from, with our boundary check in front: each datagram goes
//! through `wire::inspect` before the stack's own (silent-dropping) parser sees it.

use crate::wire::{self, Verdict};
use rsipstack::platform::net::UdpSocket as StackUdpSocket;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::Mutex;
use tracing::debug;

/// Counters of what the boundary refused.
#[derive(Default, Debug)]
pub struct WireStats {
    pub answered: AtomicU64,
    pub dropped: AtomicU64,
}

pub struct GuardedUdpSocket {
    socket: tokio::net::UdpSocket,
    max_message: usize,
    buf: Mutex<Vec<u8>>,
    stats: Arc<WireStats>,
}

impl GuardedUdpSocket {
    pub fn new(socket: tokio::net::UdpSocket, max_message: usize, stats: Arc<WireStats>) -> Self {
        GuardedUdpSocket {
            socket,
            max_message,
            // Read whole datagrams so an oversize one is recognised, not silently cut.
            buf: Mutex::new(vec![0u8; 65_536]),
            stats,
        }
    }
}

#[async_trait::async_trait]
impl StackUdpSocket for GuardedUdpSocket {
    async fn recv_from(&self, out: &mut [u8]) -> rsipstack::Result<(usize, SocketAddr)> {
        let mut buf = self.buf.lock().await;
        loop {
            let (n, from) = self.socket.recv_from(&mut buf).await?;
            let max = self.max_message.min(out.len());
            match wire::inspect(&buf[..n], max) {
                Verdict::Accept { len } if len <= out.len() => {
                    out[..len].copy_from_slice(&buf[..len]);
                    return Ok((len, from));
                }
                Verdict::Rewritten(bytes) if bytes.len() <= out.len() => {
                    out[..bytes.len()].copy_from_slice(&bytes);
                    return Ok((bytes.len(), from));
                }
                Verdict::Accept { .. } | Verdict::Rewritten(_) => {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    debug!(src = %from, len = n, "oversize datagram dropped");
                }
                Verdict::Respond { response, reason } => {
                    self.stats.answered.fetch_add(1, Ordering::Relaxed);
                    debug!(src = %from, len = n, %reason, "refused malformed request");
                    let _ = self.socket.send_to(&response, from).await;
                }
                Verdict::Drop(reason) => {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    let first = buf[..n].split(|b| *b == b'\n').next().unwrap_or_default();
                    debug!(src = %from, len = n, reason, start = %String::from_utf8_lossy(first), "dropped datagram");
                }
            }
        }
    }

    async fn send_to(&self, buf: &[u8], addr: SocketAddr) -> rsipstack::Result<usize> {
        Ok(self.socket.send_to(buf, addr).await?)
    }

    fn local_addr(&self) -> rsipstack::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }
}
