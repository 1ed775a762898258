//! Email channel: inbound SMTP/LMTP and IMAP, MIME parsing, threading, auto-acknowledgement
//! policy and outbound sending.
