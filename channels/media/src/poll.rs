//! The media thread's event loop primitives: a level-triggered epoll set of UDP sockets and an
//! eventfd that wakes the loop when the hub queues a job.
//!
//! Level-triggered on purpose: the loop reads one datagram per ready socket and epoll reports
//! the socket again while more is queued, so a relayed packet costs one `recvfrom` and no
//! `EAGAIN` probe (an edge-triggered reactor such as tokio's must read until `WouldBlock`,
//! which is a second syscall per packet when every socket carries one packet per 20 ms).
//! Only `EPOLLIN` is registered, so the kernel's write-space wake-ups after each send do not
//! produce events.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// A level-triggered epoll instance.
pub(crate) struct Poller {
    epoll: OwnedFd,
    events: Vec<libc::epoll_event>,
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

impl Poller {
    pub(crate) fn new(capacity: usize) -> io::Result<Self> {
        // SAFETY: plain syscall; the returned descriptor is owned by the OwnedFd.
        let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Poller {
            epoll,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; capacity.max(1)],
        })
    }

    /// Watches `fd` for readability (level-triggered); events carry `token`.
    pub(crate) fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: both descriptors are valid; `ev` outlives the call.
        check(unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })
            .map(|_| ())
    }

    /// Stops watching `fd` (before it is closed).
    pub(crate) fn remove(&self, fd: RawFd) {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: as in `add`; an error (fd not registered) is harmless.
        unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut ev) };
    }

    /// Waits up to `timeout` (None: forever) and returns the ready tokens. The timeout is
    /// rounded up to whole milliseconds, like tokio's timer, so a deadline is never early.
    pub(crate) fn wait(&mut self, timeout: Option<Duration>) -> io::Result<&[libc::epoll_event]> {
        let ms = match timeout {
            None => -1,
            Some(d) => {
                let ms = d.as_nanos().div_ceil(1_000_000);
                ms.min(i32::MAX as u128) as libc::c_int
            }
        };
        // SAFETY: the buffer holds `len` initialised events and lives across the call.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                ms,
            )
        };
        match check(n) {
            Ok(n) => Ok(&self.events[..n as usize]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(&self.events[..0]),
            Err(e) => Err(e),
        }
    }
}

/// Wakes the loop from other threads (an eventfd in the poller).
pub(crate) struct Waker {
    fd: OwnedFd,
}

impl Waker {
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the descriptor is owned by the OwnedFd.
        let fd = check(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(Waker {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Makes the eventfd readable (the counter saturates harmlessly).
    pub(crate) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd. EAGAIN (counter full) means
        // it is readable already.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Resets the eventfd (level-triggered: it would keep reporting otherwise).
    pub(crate) fn reset(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; EAGAIN when already reset.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_triggered_reports_a_socket_until_it_is_drained() {
        let mut p = Poller::new(8).unwrap();
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        a.set_nonblocking(true).unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        p.add(a.as_raw_fd(), 7).unwrap();
        let w = Waker::new().unwrap();
        p.add(w.fd(), 9).unwrap();
        assert!(p.wait(Some(Duration::ZERO)).unwrap().is_empty());
        b.send_to(b"x", a.local_addr().unwrap()).unwrap();
        b.send_to(b"y", a.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 8];
        for expect in [b"x", b"y"] {
            let tokens: Vec<u64> = p
                .wait(Some(Duration::from_secs(5)))
                .unwrap()
                .iter()
                .map(|e| e.u64)
                .collect();
            assert_eq!(tokens, vec![7]);
            let (n, _) = a.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], expect);
        }
        assert!(p.wait(Some(Duration::ZERO)).unwrap().is_empty());
        w.wake();
        w.wake();
        let tokens: Vec<u64> = p
            .wait(Some(Duration::ZERO))
            .unwrap()
            .iter()
            .map(|e| e.u64)
            .collect();
        assert_eq!(tokens, vec![9]);
        w.reset();
        assert!(p.wait(Some(Duration::ZERO)).unwrap().is_empty());
        p.remove(a.as_raw_fd());
        b.send_to(b"z", a.local_addr().unwrap()).unwrap();
        assert!(p.wait(Some(Duration::from_millis(20))).unwrap().is_empty());
    }
}
