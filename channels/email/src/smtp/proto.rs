//! The SMTP/LMTP server session as a sans-IO state machine.
//!
//! The driver feeds received bytes with [`Session::handle_input`], writes what
//! [`Session::poll_output`] returns, hands [`Output::Deliver`] to the sink and reports the
//! outcome with [`Session::handle_delivery`]. Time is an input: the idle deadline is
//! [`Session::poll_timeout`], checked by [`Session::handle_timeout`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use smtp_proto::{Error as ParseError, Request};

use crate::sink::{Envelope, LocalAddresses, Recipient, SinkError, Source, Stored};

/// SMTP (RFC 5321) or LMTP (RFC 2033: LHLO, one reply per recipient after the data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Smtp,
    Lmtp,
}

/// Limits and identity of the server side of a session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Our host name in the greeting and EHLO reply.
    pub hostname: String,
    pub protocol: Protocol,
    pub local_addresses: LocalAddresses,
    /// Largest message accepted (announced as SIZE); bigger ones get 552.
    pub max_message_size: usize,
    pub max_recipients: usize,
    /// Longest command line, CRLF included (RFC 5321 says at least 512).
    pub max_command_line: usize,
    /// Messages accepted on one connection before the server asks the client to reconnect.
    pub max_messages_per_connection: usize,
    /// Client errors tolerated before the connection is closed.
    pub max_errors: u32,
    /// Closed after this long without input.
    pub idle_timeout: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            hostname: "localhost".into(),
            protocol: Protocol::Smtp,
            local_addresses: LocalAddresses::new(),
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_command_line: 2048,
            max_messages_per_connection: 100,
            max_errors: 10,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// A message the session wants stored before it answers the client.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub envelope: Envelope,
    pub raw: Vec<u8>,
}

/// What the driver must do next.
#[derive(Debug)]
pub enum Output {
    /// Bytes to write to the client.
    Reply(Vec<u8>),
    /// Store this message, then call [`Session::handle_delivery`]. No input is consumed
    /// until then.
    Deliver(Delivery),
    /// Perform the TLS handshake on the connection (after the 220 reply was written), then
    /// call [`Session::tls_established`].
    StartTls,
    /// Close the connection (after writing the replies before this).
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataLine {
    /// At the start of a line (after CRLF, or at the start of the data).
    Start,
    /// Saw a line-initial dot.
    Dot,
    /// Saw a line-initial dot and CR.
    DotCr,
    /// Inside a line; `true` when the last byte was CR.
    Mid(bool),
}

#[derive(Debug)]
enum State {
    /// Reading command lines.
    Command,
    /// Reading a command line too long to keep, until its end.
    DiscardLine,
    /// Reading DATA content until CRLF.CRLF.
    Data(DataLine),
    /// Reading a BDAT chunk of this many more bytes.
    Bdat {
        left: usize,
        last: bool,
        size: usize,
    },
    /// Waiting for the sink.
    Delivering,
    /// Waiting for the TLS handshake.
    Tls,
    Closed,
}

#[derive(Debug, Default)]
struct Transaction {
    mail_from: Option<String>,
    recipients: Vec<Recipient>,
    data: Vec<u8>,
    /// The content went over the size limit: it is read but not kept.
    oversized: bool,
    /// BDAT chunks are being read for a transaction that cannot be delivered.
    bdat_refused: Option<&'static str>,
    bdat_seen: bool,
}

/// One client connection.
pub struct Session {
    cfg: std::sync::Arc<SessionConfig>,
    peer: Option<SocketAddr>,
    tls_available: bool,
    tls_active: bool,
    state: State,
    helo: Option<String>,
    esmtp: bool,
    txn: Transaction,
    line: Vec<u8>,
    pending: Vec<u8>,
    out: VecDeque<Output>,
    errors: u32,
    messages: usize,
    deadline: Instant,
}

impl Session {
    /// A new session; queues the 220 greeting. `tls_available` says whether STARTTLS can be
    /// offered (a certificate is configured and the connection is not already TLS).
    pub fn new(
        cfg: std::sync::Arc<SessionConfig>,
        now: Instant,
        peer: Option<SocketAddr>,
        tls_available: bool,
        tls_active: bool,
    ) -> Self {
        let mut s = Self {
            deadline: now + cfg.idle_timeout,
            cfg,
            peer,
            tls_available,
            tls_active,
            state: State::Command,
            helo: None,
            esmtp: false,
            txn: Transaction::default(),
            line: Vec::new(),
            pending: Vec::new(),
            out: VecDeque::new(),
            errors: 0,
            messages: 0,
        };
        let greeting = match s.cfg.protocol {
            Protocol::Smtp => format!("{} ESMTP ready", s.cfg.hostname),
            Protocol::Lmtp => format!("{} LMTP ready", s.cfg.hostname),
        };
        s.reply_plain(220, &greeting);
        s
    }

    /// Bytes received from the client.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        if matches!(self.state, State::Closed) {
            return;
        }
        self.deadline = now + self.cfg.idle_timeout;
        if self.pending.is_empty() {
            let used = self.consume(bytes);
            if used < bytes.len() && !matches!(self.state, State::Closed | State::Tls) {
                self.pending.extend_from_slice(&bytes[used..]);
            }
        } else {
            self.pending.extend_from_slice(bytes);
            self.resume();
        }
    }

    /// Whether the session can take more input now (not waiting for the sink or TLS).
    pub fn wants_input(&self) -> bool {
        !matches!(self.state, State::Delivering | State::Tls | State::Closed)
    }

    /// The client closed its side: nothing more will come.
    pub fn handle_eof(&mut self) {
        self.state = State::Closed;
    }

    /// The sink's answer for the last [`Output::Deliver`].
    pub fn handle_delivery(&mut self, now: Instant, result: Result<Stored, SinkError>) {
        if !matches!(self.state, State::Delivering) {
            return;
        }
        self.deadline = now + self.cfg.idle_timeout;
        let recipients = std::mem::take(&mut self.txn.recipients);
        let replies = match self.cfg.protocol {
            Protocol::Smtp => 1,
            Protocol::Lmtp => recipients.len().max(1),
        };
        for _ in 0..replies {
            match &result {
                Ok(stored) => self.reply(250, [2, 0, 0], &format!("Ok: stored as {}", stored.id)),
                Err(SinkError::Temporary(why)) => self.reply(
                    451,
                    [4, 3, 0],
                    &format!("Try again later: {}", one_line(why)),
                ),
                Err(SinkError::Permanent(why)) => {
                    self.reply(554, [5, 7, 1], &format!("Refused: {}", one_line(why)))
                }
            }
        }
        if result.is_ok() {
            self.messages += 1;
        }
        self.txn = Transaction::default();
        self.state = State::Command;
        self.resume();
    }

    /// The TLS handshake after STARTTLS succeeded: the session starts over (RFC 3207).
    pub fn tls_established(&mut self, now: Instant) {
        self.tls_active = true;
        self.tls_available = false;
        self.helo = None;
        self.esmtp = false;
        self.txn = Transaction::default();
        self.pending.clear();
        self.line.clear();
        self.state = State::Command;
        self.deadline = now + self.cfg.idle_timeout;
    }

    /// When the session times out, if it is waiting for the client.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Command | State::DiscardLine | State::Data(_) | State::Bdat { .. } => {
                Some(self.deadline)
            }
            State::Delivering | State::Tls | State::Closed => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|d| now >= d) {
            self.reply(421, [4, 4, 2], "Idle timeout, closing connection");
            self.close();
        }
    }

    /// The server is shutting down.
    pub fn shutdown(&mut self) {
        if !matches!(self.state, State::Closed) {
            self.reply(421, [4, 3, 2], "Service shutting down");
            self.close();
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed) && self.out.is_empty()
    }

    fn resume(&mut self) {
        if self.pending.is_empty() || !self.wants_input() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        let used = self.consume(&pending);
        if used < pending.len() && !matches!(self.state, State::Closed | State::Tls) {
            self.pending = pending[used..].to_vec();
        }
    }

    /// Consumes input while the state allows; returns how many bytes were used.
    fn consume(&mut self, bytes: &[u8]) -> usize {
        let mut at = 0;
        while at < bytes.len() {
            let rest = &bytes[at..];
            let used = match self.state {
                State::Command => self.consume_command(rest),
                State::DiscardLine => match rest.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        self.state = State::Command;
                        i + 1
                    }
                    None => rest.len(),
                },
                State::Data(line) => self.consume_data(line, rest),
                State::Bdat { left, last, size } => self.consume_bdat(left, last, size, rest),
                State::Delivering | State::Tls | State::Closed => return at,
            };
            at += used;
        }
        at
    }

    fn consume_command(&mut self, rest: &[u8]) -> usize {
        let limit = self.cfg.max_command_line;
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) if self.line.len() + i < limit => {
                if self.line.is_empty() {
                    self.command(&rest[..=i]);
                } else {
                    let mut line = std::mem::take(&mut self.line);
                    line.extend_from_slice(&rest[..=i]);
                    self.command(&line);
                }
                i + 1
            }
            found => {
                if found.is_none() && self.line.len() + rest.len() < limit {
                    self.line.extend_from_slice(rest);
                    return rest.len();
                }
                self.line.clear();
                self.client_error(500, [5, 5, 2], "Line too long");
                match found {
                    Some(i) => i + 1,
                    None => {
                        if !matches!(self.state, State::Closed) {
                            self.state = State::DiscardLine;
                        }
                        rest.len()
                    }
                }
            }
        }
    }

    fn consume_data(&mut self, mut line: DataLine, rest: &[u8]) -> usize {
        let mut i = 0;
        while i < rest.len() {
            match line {
                DataLine::Mid(prev_cr) => {
                    // Fast path: copy up to the next LF in one go.
                    match rest[i..].iter().position(|&b| b == b'\n') {
                        Some(off) => {
                            let end = i + off;
                            let cr = if off == 0 {
                                prev_cr
                            } else {
                                rest[end - 1] == b'\r'
                            };
                            self.push_data(&rest[i..=end]);
                            i = end + 1;
                            line = if cr {
                                DataLine::Start
                            } else {
                                DataLine::Mid(false)
                            };
                        }
                        None => {
                            let cr = rest[rest.len() - 1] == b'\r';
                            self.push_data(&rest[i..]);
                            i = rest.len();
                            line = DataLine::Mid(cr);
                        }
                    }
                }
                DataLine::Start => {
                    if rest[i] == b'.' {
                        line = DataLine::Dot;
                        i += 1;
                    } else {
                        line = DataLine::Mid(false);
                    }
                }
                DataLine::Dot => {
                    if rest[i] == b'\r' {
                        line = DataLine::DotCr;
                        i += 1;
                    } else {
                        // A stuffed dot: dropped, the line goes on.
                        line = DataLine::Mid(false);
                    }
                }
                DataLine::DotCr => {
                    if rest[i] == b'\n' {
                        self.data_complete();
                        return i + 1;
                    }
                    self.push_data(b"\r");
                    line = DataLine::Mid(true);
                }
            }
        }
        self.state = State::Data(line);
        i
    }

    fn push_data(&mut self, bytes: &[u8]) {
        if self.txn.oversized {
            return;
        }
        if self.txn.data.len() + bytes.len() > self.cfg.max_message_size {
            self.txn.oversized = true;
            self.txn.data = Vec::new();
        } else {
            self.txn.data.extend_from_slice(bytes);
        }
    }

    fn consume_bdat(&mut self, left: usize, last: bool, size: usize, rest: &[u8]) -> usize {
        let take = left.min(rest.len());
        if self.txn.bdat_refused.is_none() {
            self.push_data(&rest[..take]);
        }
        let left = left - take;
        if left > 0 {
            self.state = State::Bdat { left, last, size };
            return take;
        }
        self.state = State::Command;
        if let Some(why) = self.txn.bdat_refused {
            self.client_error(503, [5, 5, 1], why);
            if last {
                self.txn = Transaction::default();
            }
        } else if self.txn.oversized {
            self.reply(552, [5, 3, 4], "Message exceeds the size limit");
            self.txn = Transaction::default();
        } else if last {
            self.data_complete();
        } else {
            self.reply(250, [2, 0, 0], &format!("{size} octets received"));
        }
        take
    }

    fn data_complete(&mut self) {
        if self.txn.oversized {
            self.reply(552, [5, 3, 4], "Message exceeds the size limit");
            self.txn = Transaction::default();
            self.state = State::Command;
            return;
        }
        let source = match self.cfg.protocol {
            Protocol::Smtp => Source::Smtp {
                peer: self.peer,
                tls: self.tls_active,
            },
            Protocol::Lmtp => Source::Lmtp { peer: self.peer },
        };
        let envelope = Envelope {
            mail_from: self.txn.mail_from.clone().unwrap_or_default(),
            recipients: self.txn.recipients.clone(),
            helo: self.helo.clone().unwrap_or_default(),
            source,
        };
        let raw = std::mem::take(&mut self.txn.data);
        self.out
            .push_back(Output::Deliver(Delivery { envelope, raw }));
        self.state = State::Delivering;
    }

    fn command(&mut self, line: &[u8]) {
        let parsed = Request::parse(&mut line.iter());
        let request = match parsed {
            Ok(r) => r,
            Err(e) => return self.parse_error(e),
        };
        match request {
            Request::Ehlo { host } => self.hello(host.as_ref(), true, Protocol::Smtp),
            Request::Helo { host } => self.hello(host.as_ref(), false, Protocol::Smtp),
            Request::Lhlo { host } => self.hello(host.as_ref(), true, Protocol::Lmtp),
            Request::Mail { from } => self.mail(from.address.as_ref(), from.size),
            Request::Rcpt { to } => self.rcpt(to.address.as_ref()),
            Request::Data => self.data(),
            Request::Bdat {
                chunk_size,
                is_last,
            } => self.bdat(chunk_size, is_last),
            Request::Rset => {
                self.txn = Transaction::default();
                self.reply(250, [2, 0, 0], "OK");
            }
            Request::Noop { .. } => self.reply(250, [2, 0, 0], "OK"),
            Request::Quit => {
                self.reply(221, [2, 0, 0], "Bye");
                self.close();
            }
            Request::StartTls => self.starttls(),
            Request::Vrfy { .. } => self.reply(252, [2, 5, 2], "Cannot VRFY user"),
            Request::Help { .. } => self.reply(214, [2, 0, 0], "See RFC 5321"),
            Request::Auth { .. } => self.client_error(502, [5, 5, 1], "AUTH not available"),
            Request::Expn { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => self.client_error(502, [5, 5, 1], "Command not implemented"),
        }
    }

    fn parse_error(&mut self, e: ParseError) {
        match e {
            ParseError::UnknownCommand => self.client_error(500, [5, 5, 1], "Unknown command"),
            ParseError::InvalidSenderAddress => {
                self.client_error(501, [5, 1, 7], "Bad sender address syntax")
            }
            ParseError::InvalidRecipientAddress => {
                self.client_error(501, [5, 1, 3], "Bad recipient address syntax")
            }
            ParseError::SyntaxError { syntax } => {
                self.client_error(501, [5, 5, 4], &format!("Syntax: {syntax}"))
            }
            ParseError::InvalidParameter { param } => {
                self.client_error(501, [5, 5, 4], &format!("Invalid parameter {param}"))
            }
            ParseError::UnsupportedParameter { .. } => {
                self.client_error(555, [5, 5, 4], "Unsupported parameter")
            }
            ParseError::ResponseTooLong => self.client_error(500, [5, 5, 2], "Line too long"),
            ParseError::NeedsMoreData { .. } | ParseError::InvalidResponse { .. } => {
                self.client_error(500, [5, 5, 2], "Syntax error")
            }
        }
    }

    fn hello(&mut self, host: &str, extended: bool, protocol: Protocol) {
        if protocol != self.cfg.protocol {
            let msg = match self.cfg.protocol {
                Protocol::Lmtp => "This is an LMTP server: use LHLO",
                Protocol::Smtp => "LHLO is for LMTP",
            };
            return self.client_error(500, [5, 5, 1], msg);
        }
        self.txn = Transaction::default();
        self.helo = Some(host.chars().take(255).collect());
        self.esmtp = extended;
        if !extended {
            return self.reply_plain(250, &self.cfg.hostname.clone());
        }
        let mut lines = vec![
            self.cfg.hostname.clone(),
            "PIPELINING".into(),
            format!("SIZE {}", self.cfg.max_message_size),
            "8BITMIME".into(),
            "ENHANCEDSTATUSCODES".into(),
            "CHUNKING".into(),
            "SMTPUTF8".into(),
        ];
        if self.tls_available && !self.tls_active {
            lines.push("STARTTLS".into());
        }
        let mut text = String::new();
        for (i, l) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            text.push_str(&format!("250{sep}{l}\r\n"));
        }
        self.out.push_back(Output::Reply(text.into_bytes()));
    }

    fn mail(&mut self, from: &str, size: usize) {
        if self.helo.is_none() {
            return self.client_error(503, [5, 5, 1], "Send EHLO first");
        }
        if self.txn.mail_from.is_some() {
            return self.client_error(503, [5, 5, 1], "Nested MAIL command");
        }
        if self.messages >= self.cfg.max_messages_per_connection {
            self.reply(
                421,
                [4, 7, 0],
                "Too many messages on this connection, reconnect",
            );
            return self.close();
        }
        if size > self.cfg.max_message_size {
            return self.client_error(552, [5, 3, 4], "Message exceeds the size limit");
        }
        self.txn.mail_from = Some(from.to_string());
        self.reply(250, [2, 1, 0], "OK");
    }

    fn rcpt(&mut self, to: &str) {
        if self.txn.mail_from.is_none() {
            return self.client_error(503, [5, 5, 1], "Need MAIL before RCPT");
        }
        if self.txn.recipients.len() >= self.cfg.max_recipients {
            return self.client_error(452, [4, 5, 3], "Too many recipients");
        }
        match self.cfg.local_addresses.lookup(to) {
            Some(key) => {
                let rcpt = Recipient {
                    address: to.to_lowercase(),
                    key: key.to_string(),
                };
                if !self.txn.recipients.contains(&rcpt) {
                    self.txn.recipients.push(rcpt);
                }
                self.reply(250, [2, 1, 5], "OK");
            }
            None => self.client_error(550, [5, 1, 1], "No such mailbox here"),
        }
    }

    fn data(&mut self) {
        if let Some(why) = self.transaction_refusal() {
            return self.client_error(503, [5, 5, 1], why);
        }
        if self.txn.bdat_seen {
            return self.client_error(503, [5, 5, 1], "DATA after BDAT");
        }
        self.reply_plain(354, "End data with <CR><LF>.<CR><LF>");
        self.state = State::Data(DataLine::Start);
    }

    fn bdat(&mut self, size: usize, last: bool) {
        self.txn.bdat_refused = self.transaction_refusal();
        self.txn.bdat_seen = true;
        self.state = State::Bdat {
            left: size,
            last,
            size,
        };
        if size == 0 {
            // An empty chunk completes at once.
            self.consume_bdat(0, last, 0, &[]);
        }
    }

    fn transaction_refusal(&self) -> Option<&'static str> {
        if self.txn.mail_from.is_none() {
            Some("Need MAIL first")
        } else if self.txn.recipients.is_empty() {
            Some("No valid recipients")
        } else {
            None
        }
    }

    fn starttls(&mut self) {
        if self.tls_active {
            return self.client_error(503, [5, 5, 1], "TLS already active");
        }
        if !self.tls_available {
            return self.client_error(502, [5, 5, 1], "STARTTLS not available");
        }
        self.reply(220, [2, 0, 0], "Ready to start TLS");
        self.out.push_back(Output::StartTls);
        // Anything pipelined after STARTTLS was sent in clear: it must not be obeyed.
        self.pending.clear();
        self.line.clear();
        self.state = State::Tls;
    }

    fn client_error(&mut self, code: u16, esc: [u8; 3], text: &str) {
        self.errors += 1;
        self.reply(code, esc, text);
        if self.errors >= self.cfg.max_errors {
            self.reply(421, [4, 7, 0], "Too many errors, closing connection");
            self.close();
        }
    }

    fn close(&mut self) {
        self.state = State::Closed;
        self.pending.clear();
        self.out.push_back(Output::Close);
    }

    fn reply(&mut self, code: u16, esc: [u8; 3], text: &str) {
        let [a, b, c] = esc;
        self.out.push_back(Output::Reply(
            format!("{code} {a}.{b}.{c} {text}\r\n").into_bytes(),
        ));
    }

    fn reply_plain(&mut self, code: u16, text: &str) {
        self.out
            .push_back(Output::Reply(format!("{code} {text}\r\n").into_bytes()));
    }
}

/// Sink text goes into one reply line.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn cfg(protocol: Protocol) -> Arc<SessionConfig> {
        Arc::new(SessionConfig {
            hostname: "mx.test".into(),
            protocol,
            local_addresses: LocalAddresses::new()
                .with("service@example.com", "service")
                .with("sales@example.com", "sales"),
            max_message_size: 1000,
            max_recipients: 3,
            max_errors: 5,
            ..SessionConfig::default()
        })
    }

    struct Run {
        s: Session,
        now: Instant,
        text: String,
        deliveries: Vec<Delivery>,
        closed: bool,
        starttls: bool,
    }

    impl Run {
        fn new(protocol: Protocol) -> Self {
            let now = Instant::now();
            let mut r = Run {
                s: Session::new(cfg(protocol), now, None, true, false),
                now,
                text: String::new(),
                deliveries: Vec::new(),
                closed: false,
                starttls: false,
            };
            r.drain();
            r
        }
        fn drain(&mut self) {
            while let Some(o) = self.s.poll_output() {
                match o {
                    Output::Reply(b) => self.text.push_str(&String::from_utf8(b).unwrap()),
                    Output::Deliver(d) => self.deliveries.push(d),
                    Output::Close => self.closed = true,
                    Output::StartTls => self.starttls = true,
                }
            }
        }
        fn send(&mut self, input: &str) -> String {
            self.send_bytes(input.as_bytes())
        }
        fn send_bytes(&mut self, input: &[u8]) -> String {
            self.text.clear();
            self.s.handle_input(self.now, input);
            self.drain();
            self.text.clone()
        }
        fn deliver(&mut self, r: Result<Stored, SinkError>) -> String {
            self.text.clear();
            self.s.handle_delivery(self.now, r);
            self.drain();
            self.text.clone()
        }
        fn codes(&self) -> Vec<u16> {
            self.text
                .lines()
                .filter(|l| l.len() >= 4 && &l[3..4] == " ")
                .map(|l| l[..3].parse().unwrap())
                .collect()
        }
    }

    fn stored() -> Result<Stored, SinkError> {
        Ok(Stored { id: "m1".into() })
    }

    #[test]
    fn greeting_and_ehlo_advertise_extensions() {
        let mut r = Run::new(Protocol::Smtp);
        let out = r.send("EHLO client.test\r\n");
        assert!(out.contains("250-SIZE 1000\r\n"), "{out}");
        assert!(out.contains("250-PIPELINING"));
        assert!(out.contains("STARTTLS"));
        assert!(out.ends_with("\r\n"));
        assert_eq!(r.codes(), vec![250]);
    }

    #[test]
    fn full_transaction_with_dot_unstuffing_waits_for_the_sink() {
        let mut r = Run::new(Protocol::Smtp);
        r.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<Service@Example.com>\r\nDATA\r\n");
        assert_eq!(r.codes(), vec![250, 250, 250, 354]);
        r.send("Subject: x\r\n\r\n..leading dot\r\n.\r\n");
        assert_eq!(r.deliveries.len(), 1);
        assert_eq!(r.text, "", "no reply before the sink answers");
        assert!(!r.s.wants_input());
        let d = &r.deliveries[0];
        assert_eq!(d.raw, b"Subject: x\r\n\r\n.leading dot\r\n");
        assert_eq!(d.envelope.mail_from, "a@b.c");
        assert_eq!(d.envelope.recipients[0].key, "service");
        assert_eq!(r.deliver(stored()), "250 2.0.0 Ok: stored as m1\r\n");
    }

    #[test]
    fn pipelined_commands_after_data_wait_for_delivery() {
        let mut r = Run::new(Protocol::Smtp);
        r.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<service@example.com>\r\nDATA\r\n");
        r.send("hi\r\n.\r\nMAIL FROM:<x@y.z>\r\nQUIT\r\n");
        assert_eq!(r.deliveries.len(), 1);
        let out = r.deliver(Err(SinkError::Temporary("db down".into())));
        assert_eq!(r.codes(), vec![451, 250, 221], "{out}");
        assert!(r.closed);
    }

    #[test]
    fn data_split_across_reads_at_every_position() {
        let msg = b"A: b\r\n\r\nline\r\n..dot\r\n.\r\n";
        for split in 0..msg.len() {
            let mut r = Run::new(Protocol::Smtp);
            r.send("HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<sales@example.com>\r\nDATA\r\n");
            r.send_bytes(&msg[..split]);
            r.send_bytes(&msg[split..]);
            assert_eq!(r.deliveries.len(), 1, "split {split}");
            assert_eq!(r.deliveries[0].raw, b"A: b\r\n\r\nline\r\n.dot\r\n");
            assert_eq!(r.deliveries[0].envelope.mail_from, "");
        }
    }

    #[test]
    fn bare_lf_dot_does_not_end_data() {
        let mut r = Run::new(Protocol::Smtp);
        r.send("HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<sales@example.com>\r\nDATA\r\n");
        r.send("x\n.\nMAIL FROM:<evil@x>\r\n\r\n.\r\n");
        assert_eq!(r.deliveries.len(), 1);
        assert_eq!(r.deliveries[0].raw, b"x\n.\nMAIL FROM:<evil@x>\r\n\r\n");
    }

    #[test]
    fn empty_message_ends_at_once() {
        let mut r = Run::new(Protocol::Smtp);
        r.send("HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<sales@example.com>\r\nDATA\r\n.\r\n");
        assert_eq!(r.deliveries.len(), 1);
        assert!(r.deliveries[0].raw.is_empty());
    }

    #[test]
    fn unknown_recipient_550_and_no_recipient_data_503() {
        let mut r = Run::new(Protocol::Smtp);
        r.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<nobody@example.com>\r\nDATA\r\n");
        assert_eq!(r.codes(), vec![250, 250, 550, 503]);
    }

    #[test]
    fn size_limits_552() {
        let mut r = Run::new(Protocol::Smtp);
        r.send("EHLO c\r\nMAIL FROM:<a@b.c> SIZE=5000\r\n");
        assert_eq!(r.codes(), vec![250, 552]);
        r.send("MAIL FROM:<a@b.c>\r\nRCPT TO:<service@example.com>\r\nDATA\r\n");
        let big = "x".repeat(2000);
        r.send(&format!("{big}\r\n.\r\nNOOP\r\n"));
        assert_eq!(r.codes(), vec![552, 250]);
        assert!(r.deliveries.is_empty());
    }

    #[test]
    fn max_recipients_452() {
        let mut r = Run::new(Protocol::Smtp);
        r.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\n");
        let out = r.send(
            "RCPT TO:<service@example.com>\r\nRCPT TO:<sales@example.com>\r\n\
             RCPT TO:<service+1@example.com>\r\nRCPT TO:<service+2@example.com>\r\n",
        );
        assert_eq!(r.codes(), vec![250, 250, 250, 452], "{out}");
    }

    #[test]
    fn lmtp_replies_once_per_recipient() {
        let mut r = Run::new(Protocol::Lmtp);
        r.send("EHLO c\r\n");
        assert_eq!(r.codes(), vec![500]);
        r.send(
            "LHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<service@example.com>\r\n\
             RCPT TO:<sales@example.com>\r\nDATA\r\nhi\r\n.\r\n",
        );
        assert_eq!(r.deliveries[0].envelope.recipients.len(), 2);
        r.deliver(stored());
        assert_eq!(r.codes(), vec![250, 250]);
    }

    #[test]
    fn bdat_chunks() {
        let mut r = Run::new(Protocol::Smtp);
        r.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<service@example.com>\r\n");
        r.send("BDAT 5\r\nHello");
        assert_eq!(r.codes(), vec![250]);
        r.send("BDAT 8 LAST\r\n, world!");
        assert_eq!(r.deliveries[0].raw, b"Hello, world!");
        r.deliver(stored());
        assert_eq!(r.codes(), vec![250]);
        // BDAT without recipients still consumes the chunk.
        r.send("MAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nBDAT 4 LAST\r\nQUITNOOP\r\n");
        assert_eq!(r.codes(), vec![250, 550, 503, 250]);
    }

    #[test]
    fn starttls_discards_pipelined_plaintext_and_resets() {
        let mut r = Run::new(Protocol::Smtp);
        r.send("EHLO c\r\nSTARTTLS\r\nMAIL FROM:<injected@x>\r\n");
        assert_eq!(r.codes(), vec![250, 220]);
        assert!(r.starttls);
        assert!(!r.s.wants_input());
        r.s.tls_established(r.now);
        r.send("MAIL FROM:<a@b.c>\r\n");
        assert_eq!(r.codes(), vec![503], "EHLO needed again after TLS");
        let out = r.send("EHLO c\r\n");
        assert!(!out.contains("STARTTLS"));
    }

    #[test]
    fn long_line_rejected_then_recovers() {
        let mut r = Run::new(Protocol::Smtp);
        let long = format!("NOOP {}\r\n", "a".repeat(5000));
        r.send(&long[..3000]);
        r.send(&long[3000..]);
        r.send("NOOP\r\n");
        assert_eq!(r.codes(), vec![250]);
        assert!(!r.closed);
    }

    #[test]
    fn too_many_errors_closes() {
        let mut r = Run::new(Protocol::Smtp);
        r.send(&"BOGUS\r\n".repeat(10));
        assert!(r.closed);
        assert_eq!(r.codes(), vec![500, 500, 500, 500, 500, 421]);
    }

    #[test]
    fn idle_timeout_closes_with_421() {
        let mut r = Run::new(Protocol::Smtp);
        let deadline = r.s.poll_timeout().unwrap();
        r.text.clear();
        r.s.handle_timeout(deadline - Duration::from_secs(1));
        r.drain();
        assert!(!r.closed);
        r.s.handle_timeout(deadline);
        r.drain();
        assert!(r.closed);
        assert!(r.text.starts_with("421 "));
    }

    #[test]
    fn fuzzed_input_never_panics() {
        let seeds: &[&[u8]] = &[
            b"EHLO c\r\nMAIL FROM:<a@b.c> SIZE=10\r\nRCPT TO:<service@example.com>\r\nDATA\r\nx\r\n.\r\n",
            b"LHLO c\r\nBDAT 3 LAST\r\nabcRSET\r\nSTARTTLS\r\n",
            b"MAIL FROM:<\xff\xfe@\x00>\r\nRCPT TO:<>\r\nVRFY x\r\nAUTH PLAIN AAAA\r\n",
        ];
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for round in 0..3000 {
            let protocol = if round % 2 == 0 {
                Protocol::Smtp
            } else {
                Protocol::Lmtp
            };
            let mut input = seeds[round % seeds.len()].to_vec();
            for _ in 0..(next() % 8) {
                let pos = (next() as usize) % (input.len() + 1);
                match next() % 4 {
                    0 if pos < input.len() => input[pos] = next() as u8,
                    1 => input.insert(pos, b"\r\n.:<> "[(next() % 7) as usize]),
                    2 if pos < input.len() => {
                        input.remove(pos);
                    }
                    _ => {
                        let extra = seeds[(next() as usize) % seeds.len()];
                        input.splice(pos..pos, extra.iter().copied());
                    }
                }
            }
            let mut r = Run::new(protocol);
            for chunk in input.chunks(1 + (next() as usize) % 17) {
                r.send_bytes(chunk);
                if !r.deliveries.is_empty() {
                    r.deliveries.clear();
                    r.deliver(stored());
                }
                if r.starttls {
                    r.starttls = false;
                    r.s.tls_established(r.now);
                }
            }
        }
    }
}
