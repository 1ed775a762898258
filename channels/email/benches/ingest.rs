//! Inbound email ingest throughput on one core: parse + sanitize HTML + threading decision,
//! for 5 KB and 200 KB messages. Prints messages/s and per-message p50/p99.
//!
//! Run: `cargo bench -p channel-email --bench ingest` (release build).

use std::time::{Duration, Instant};

use channel_email::parse::{parse, ParseOptions};
use channel_email::thread::{decide, KnownFacts, ThreadConfig, ThreadInput};
use chrono::Utc;

fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (i, chunk) in data.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push_str("\r\n");
        }
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for k in 0..4 {
            out.push(if k <= chunk.len() {
                T[(n >> (18 - 6 * k) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

/// A customer email: text + HTML alternative, Chinese text, thread headers, and an
/// attachment sized so the whole message is about `target` bytes.
fn message(n: usize, target: usize) -> Vec<u8> {
    let para = "您好，我在贵公司网站上订购的商品（订单号 20261201-8812）至今还没有收到，\
                物流信息显示已经三天没有更新了。请帮我查询一下，谢谢！\r\n";
    let mut text = String::new();
    let mut html = String::from("<html><head><style>p{color:#333}</style></head><body>");
    let body_budget = (target / 2).min(40_000);
    while text.len() + html.len() < body_budget {
        text.push_str(para);
        html.push_str(&format!(
            "<p style=\"font-size:14px\" onclick=\"track()\">{para}</p>\
             <img src=\"https://cdn.shop.example/banner.png\" width=\"600\">"
        ));
    }
    html.push_str("</body></html>");
    let subject = b64(&encoding_rs::GB18030.encode("关于订单的问题").0);
    let mut raw = format!(
        "Return-Path: <customer{n}@mail.example.cn>\r\nReceived: from mx.example.cn by mx.hub\r\n\
         From: =?utf-8?B?5byg5LiJ?= <Customer{n}@Mail.Example.CN>\r\n\
         To: service@example.com\r\nSubject: =?gb2312?B?{subject}?= [#{}]\r\n\
         Message-ID: <bench-{n}@mail.example.cn>\r\nIn-Reply-To: <ack-{}@example.com>\r\n\
         References: <first-{n}@mail.example.cn> <ack-{}@example.com>\r\n\
         Date: Tue, 1 Dec 2026 10:00:00 +0800\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"MIX\"\r\n\r\n\
         --MIX\r\nContent-Type: multipart/alternative; boundary=\"ALT\"\r\n\r\n\
         --ALT\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
         {text}\r\n--ALT\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n{html}\r\n--ALT--\r\n",
        1000 + n % 500,
        n % 1000,
        n % 1000
    )
    .into_bytes();
    let room = target.saturating_sub(raw.len() + 300);
    if room > 0 {
        let data: Vec<u8> = (0..room * 3 / 4).map(|i| (i * 31 + n) as u8).collect();
        raw.extend_from_slice(
            format!(
                "--MIX\r\nContent-Type: application/pdf\r\n\
                 Content-Disposition: attachment; filename=\"=?utf-8?B?5Y+R56Wo?=.pdf\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n{}\r\n",
                b64(&data)
            )
            .as_bytes(),
        );
    }
    raw.extend_from_slice(b"--MIX--\r\n");
    raw
}

fn run(label: &str, target: usize, count: usize, facts: &KnownFacts<u64>) {
    let messages: Vec<Vec<u8>> = (0..64).map(|n| message(n, target)).collect();
    let avg = messages.iter().map(Vec::len).sum::<usize>() / messages.len();
    let opts = ParseOptions::default();
    let cfg = ThreadConfig::default();
    let now = Utc::now();
    let mut per = Vec::with_capacity(count);
    let mut joined = 0usize;
    let started = Instant::now();
    for i in 0..count {
        let raw = &messages[i % messages.len()];
        let t = Instant::now();
        let parsed = parse(raw, &opts);
        let decision = decide(&ThreadInput::from(&parsed), facts, &cfg, now);
        per.push(t.elapsed());
        joined += decision.conversation.is_some() as usize;
        assert!(parsed.html_sanitized.is_some() && !parsed.subject.is_empty());
        if started.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    let total = started.elapsed();
    per.sort_unstable();
    let pct = |p: f64| per[((per.len() as f64 * p) as usize).min(per.len() - 1)];
    println!(
        "{label}: {} messages of {:.1} KB avg in {:.2} s = {:.0} messages/s ({:.1} MB/s); \
         per message p50 {:.3} ms, p99 {:.3} ms; {joined} threaded",
        per.len(),
        avg as f64 / 1024.0,
        total.as_secs_f64(),
        per.len() as f64 / total.as_secs_f64(),
        (per.len() * avg) as f64 / total.as_secs_f64() / 1e6,
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
    );
}

fn main() {
    // A hub's threading index: message ids, tickets and recent subjects.
    let mut facts = KnownFacts::default();
    for i in 0..100_000u64 {
        facts
            .by_message_id
            .insert(format!("ack-{i}@example.com"), i);
        facts.by_ticket.insert(format!("{}", 1000 + i), i);
    }
    println!("email ingest (parse + sanitize + thread decision), one core");
    run("5 KB", 5 * 1024, 20_000, &facts);
    run("200 KB", 200 * 1024, 1_000, &facts);
}
