//! Seeded fuzzing of every entry point that takes peer bytes: the datagram boundary
//! (`wire::inspect`), the digest parser, and a live endpoint fed mutated datagrams over UDP
//! and TCP (it must keep answering OPTIONS afterwards).

mod common;
use channel_sip::wire::{self, Verdict};
use channel_sip::*;
use common::*;
use std::time::Duration;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const SEEDS: &[&str] = &[
    "INVITE sip:+8610@hub.example SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1;rport\r\nMax-Forwards: 70\r\nFrom: \"Alice\" <sip:+8613800138000@carrier.example>;tag=abc\r\nTo: <sip:+8610@hub.example>\r\nCall-ID: call-1@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:5070>\r\nContent-Type: application/sdp\r\nContent-Length: 52\r\n\r\nv=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n",
    "REGISTER sip:hub.example SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK77\r\nFrom: <sip:1001@hub.example>;tag=9\r\nTo: <sip:1001@hub.example>\r\nCall-ID: reg@10.0.0.5\r\nCSeq: 2 REGISTER\r\nContact: <sip:1001@10.0.0.5:5060>;expires=3600\r\nAuthorization: Digest username=\"1001\", realm=\"contact-hub\", nonce=\"1.abc\", uri=\"sip:hub.example\", response=\"00\", qop=auth, nc=00000001, cnonce=\"x\"\r\nContent-Length: 0\r\n\r\n",
    "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-2\r\nFrom: <sip:hub@127.0.0.1>;tag=1\r\nTo: <sip:1001@127.0.0.1>;tag=2\r\nCall-ID: x@y\r\nCSeq: 1 INVITE\r\nRequire: 100rel\r\nRSeq: 1\r\nContent-Length: 0\r\n\r\n",
    "INFO sip:hub@127.0.0.1 SIP/2.0\r\nv: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bK3\r\nf: <sip:a@b>;tag=1\r\nt: <sip:c@d>;tag=2\r\ni: info@x\r\nCSeq: 3 INFO\r\nc: application/dtmf-relay\r\nl: 24\r\n\r\nSignal=5\r\nDuration=160\r\n",
];

const TOKENS: &[&str] = &[
    "\r\n",
    "\r\n\r\n",
    ":",
    ";",
    "<",
    ">",
    "\"",
    "sip:",
    "SIP/2.0",
    "Content-Length: ",
    "l: 99999999999999999999",
    "CSeq: ",
    "Via: ",
    "tag=",
    "branch=",
    "%00",
    "\0",
    " ",
    "\t",
    "é",
    "中文",
    "999999999999",
    "-1",
    "[::1]",
    "@",
    "*",
    "Contact: *",
    "Expires: 0",
    "\u{FEFF}",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut m = seed.to_vec();
    for _ in 0..1 + rng.below(6) {
        let pos = rng.below(m.len() + 1);
        match rng.below(7) {
            0 if !m.is_empty() => {
                let end = (pos + rng.below(16)).min(m.len());
                m.drain(pos.min(m.len())..end);
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                m.splice(pos..pos, t.iter().copied());
            }
            2 if !m.is_empty() => {
                let i = rng.below(m.len());
                m[i] = rng.next() as u8;
            }
            3 => m.truncate(pos),
            4 => {
                // Huge header.
                let n = 1 + rng.below(70_000);
                let h = format!("X-Big: {}\r\n", "A".repeat(n));
                let at = m
                    .windows(2)
                    .position(|w| w == b"\r\n")
                    .map(|p| p + 2)
                    .unwrap_or(0);
                m.splice(at..at, h.bytes());
            }
            5 => {
                // Many headers.
                let h = "X-H: 1\r\n".repeat(1 + rng.below(300));
                let at = m
                    .windows(2)
                    .position(|w| w == b"\r\n")
                    .map(|p| p + 2)
                    .unwrap_or(0);
                m.splice(at..at, h.bytes());
            }
            _ => {
                let dup = m.clone();
                m.extend_from_slice(&dup[..rng.below(dup.len() + 1)]);
            }
        }
    }
    m
}

#[test]
fn boundary_never_panics_and_answers_requests_with_a_status() {
    let mut rng = Rng(0xC0FFEE);
    let mut counts = [0usize; 4];
    for i in 0..15_000 {
        let bytes = if i % 10 == 0 {
            {
                let n = rng.below(2000);
                (0..n).map(|_| rng.next() as u8).collect()
            }
        } else {
            {
                let k = rng.below(SEEDS.len());
                mutate(&mut rng, SEEDS[k].as_bytes())
            }
        };
        match wire::inspect(&bytes, 8192) {
            Verdict::Accept { len } => {
                assert!(len <= bytes.len());
                // What we pass on must parse: the stack never sees a message it would drop.
                assert!(
                    wire::parse(&bytes[..len]).is_ok()
                        || bytes[..len].iter().all(u8::is_ascii_whitespace)
                );
                counts[0] += 1;
            }
            Verdict::Rewritten(b) => {
                assert!(wire::parse(&b).is_ok());
                counts[1] += 1;
            }
            Verdict::Respond { response, .. } => {
                let text = String::from_utf8(response).expect("responses are text");
                let code: u16 = text[8..11].parse().unwrap();
                assert!([400, 501, 513].contains(&code), "{text}");
                assert!(text.contains("\r\nCall-ID: ") && text.ends_with("\r\n\r\n"));
                // The response itself is well-formed SIP.
                assert!(wire::parse(text.as_bytes()).is_ok(), "{text}");
                counts[2] += 1;
            }
            Verdict::Drop(_) => counts[3] += 1,
        }
    }
    // The mutations reach every verdict (the fuzzer is not stuck in one corner).
    assert!(counts.iter().all(|c| *c > 20), "{counts:?}");
}

#[test]
fn digest_parser_never_panics() {
    let mut rng = Rng(42);
    let seed = br#"Digest username="1001", realm="contact-hub", nonce="66.abc", uri="sip:hub", response="0123456789abcdef0123456789abcdef", algorithm=MD5, qop=auth, nc=00000001, cnonce="c""#;
    for _ in 0..20_000 {
        let m = mutate(&mut rng, seed);
        let s = String::from_utf8_lossy(&m);
        if let Ok(c) = digest::parse_credentials(&s) {
            let _ = digest::verify(&c, "REGISTER", &Secret::Password("x".into()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_endpoint_survives_fuzzed_datagrams_and_streams() {
    let (handle, rx) = start(base_config()).await;
    let _log = hub(handle.clone(), rx, Script::Answer);
    let target = handle.local_addr();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut rng = Rng(7);
    for i in 0..3000 {
        let bytes = if i % 7 == 0 {
            {
                let n = rng.below(1500);
                (0..n).map(|_| rng.next() as u8).collect()
            }
        } else {
            {
                let k = rng.below(SEEDS.len());
                mutate(&mut rng, SEEDS[k].as_bytes())
            }
        };
        let _ = sock
            .send_to(&bytes[..bytes.len().min(65_000)], target)
            .await;
        if i % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // TCP: garbage and mutated messages on fresh connections.
    use tokio::io::AsyncWriteExt;
    for _ in 0..50 {
        if let Ok(mut s) = tokio::net::TcpStream::connect(handle.tcp_addr().unwrap()).await {
            let bytes = {
                let k = rng.below(SEEDS.len());
                mutate(&mut rng, SEEDS[k].as_bytes())
            };
            let _ = s.write_all(&bytes).await;
            let _ = s.shutdown().await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Still alive: a real OPTIONS is answered.
    let out = run_sipp("options.xml", &target.to_string(), 1, &[]).await;
    assert!(
        out.status.success(),
        "endpoint stopped answering after fuzzing"
    );
    let (answered, dropped) = handle.refused_messages();
    assert!(
        answered > 0 && dropped > 0,
        "answered={answered} dropped={dropped}"
    );
    handle.shutdown().await;
}
