use super::*;
use encoding_rs::{BIG5, GB18030, ISO_2022_JP};

pub(crate) fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn q(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("={b:02X}")).collect()
}

fn opts() -> ParseOptions {
    ParseOptions::default()
}

#[test]
fn gb2312_encoded_word_subject_and_big5_body() {
    let (subj, _, _) = GB18030.encode("关于订单的问题");
    let (body, _, _) = BIG5.encode("您好，請問我的訂單什麼時候發貨？");
    let mut raw = format!(
        "From: =?gb2312?B?{}?= <Zhang.San@Example.CN>\r\nTo: service@example.com\r\n\
         Subject: =?gb2312?B?{}?=\r\nMessage-ID: <abc@example.cn>\r\n\
         Date: Tue, 1 Dec 2026 10:00:00 +0800\r\n\
         Content-Type: text/plain; charset=big5\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        b64(&GB18030.encode("张三").0),
        b64(&subj)
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    let p = parse(&raw, &opts());
    assert_eq!(p.subject, "关于订单的问题");
    assert_eq!(
        p.from,
        Some(Mailbox {
            name: Some("张三".into()),
            address: "zhang.san@example.cn".into()
        })
    );
    assert_eq!(
        p.text_body.as_deref(),
        Some("您好，請問我的訂單什麼時候發貨？")
    );
    assert_eq!(p.message_id, "abc@example.cn");
    assert!(!p.message_id_synthesized);
    assert_eq!(
        p.date.unwrap().to_rfc3339(),
        "2026-12-01T02:00:00+00:00",
        "date in UTC"
    );
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn raw_8bit_gbk_and_big5_headers_are_decoded() {
    for (text, enc) in [
        ("退货申请：订单 1234", GB18030),
        ("退貨申請：訂單 1234", BIG5),
    ] {
        let mut raw = b"From: ".to_vec();
        raw.extend_from_slice(&enc.encode("李四").0);
        raw.extend_from_slice(b" <li@example.com>\r\nSubject: ");
        raw.extend_from_slice(&enc.encode(text).0);
        raw.extend_from_slice(b"\r\nContent-Type: text/plain\r\n\r\n");
        raw.extend_from_slice(&enc.encode("正文内容").0);
        let p = parse(&raw, &opts());
        assert_eq!(p.subject, text);
        assert_eq!(p.from.as_ref().unwrap().name.as_deref(), Some("李四"));
        let body = p.text_body.unwrap();
        assert!(!body.contains('\u{fffd}'), "{body}");
        assert!(p.warnings.iter().any(|w| w.contains("raw 8-bit")));
    }
}

#[test]
fn charsets_are_covered() {
    let cases: &[(&str, &'static encoding_rs::Encoding, &str)] = &[
        ("utf-8", encoding_rs::UTF_8, "你好，世界"),
        ("gb2312", GB18030, "简体中文邮件"),
        ("gbk", GB18030, "镕铖𬌗"),
        ("gb18030", GB18030, "䶮𠀀测试"),
        ("big5", BIG5, "繁體中文郵件"),
        ("iso-2022-jp", ISO_2022_JP, "日本語のメール"),
        ("iso-8859-1", encoding_rs::WINDOWS_1252, "Grüße aus Köln"),
        ("iso-8859-2", encoding_rs::ISO_8859_2, "Zażółć gęślą jaźń"),
        ("iso-8859-5", encoding_rs::ISO_8859_5, "Привет"),
    ];
    for (label, enc, text) in cases {
        let (bytes, _, unmappable) = enc.encode(text);
        assert!(!unmappable, "{label}");
        let raw = format!(
            "From: a@b.c\r\nSubject: =?{label}?Q?{}?=\r\nContent-Type: text/plain; charset={label}\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{}\r\n",
            q(&bytes),
            b64(&bytes)
        );
        let p = parse(raw.as_bytes(), &opts());
        assert_eq!(p.subject, *text, "subject in {label}");
        assert_eq!(
            p.text_body.as_deref().map(str::trim),
            Some(*text),
            "body in {label}"
        );
    }
}

fn multipart_with_html_and_inline_image() -> String {
    let (name, _, _) = GB18030.encode("发票.pdf");
    format!(
        "From: \"Wang\" <wang@example.com>\r\nSubject: html\r\nMessage-ID: <h@x>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"OUT\"\r\n\r\n\
         --OUT\r\nContent-Type: multipart/related; boundary=\"REL\"\r\n\r\n\
         --REL\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
         <html><body><p onclick=\"x()\">您好 <b>客户</b></p><img src=\"cid:logo@x\">\
         <img src=\"http://track.example/pixel.gif\"><script>alert(1)</script></body></html>\r\n\
         --REL\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\n\
         Content-Disposition: inline\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n\
         --REL--\r\n\
         --OUT\r\nContent-Type: application/pdf\r\n\
         Content-Disposition: attachment; filename=\"=?gbk?B?{}?=\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n\
         --OUT\r\nContent-Type: text/plain; name*=UTF-8''%E8%AF%B4%E6%98%8E.txt\r\n\
         Content-Disposition: attachment; filename*=UTF-8''%E8%AF%B4%E6%98%8E.txt\r\n\r\n\
         readme\r\n--OUT--\r\n",
        b64(&[0x89, b'P', b'N', b'G', 1, 2, 3]),
        b64(&name),
        b64(&[7u8; 3000])
    )
}

#[test]
fn html_only_gets_text_fallback_sanitized_html_and_attachments() {
    let p = parse(multipart_with_html_and_inline_image().as_bytes(), &opts());
    let text = p.text_body.as_deref().unwrap();
    assert!(text.contains("您好") && text.contains("客户"), "{text}");
    assert!(p.text_from_html);
    let html = p.html_sanitized.as_deref().unwrap();
    assert!(
        !html.contains("script") && !html.contains("onclick"),
        "{html}"
    );
    assert!(html.contains("data-remote-src=\"http://track.example/pixel.gif\""));
    assert_eq!(p.attachments.len(), 3, "{:?}", p.attachments);
    let logo = &p.attachments[0];
    assert_eq!(logo.content_id.as_deref(), Some("logo@x"));
    assert!(logo.inline);
    assert_eq!(logo.content_type, "image/png");
    assert!(html.contains(&format!("data-attachment-index=\"{}\"", logo.index)));
    let pdf = &p.attachments[1];
    assert_eq!(pdf.filename.as_deref(), Some("发票.pdf"));
    assert_eq!(pdf.size, 3000);
    assert_eq!(pdf.data, vec![7u8; 3000]);
    assert!(!pdf.inline);
    assert_eq!(p.attachments[2].filename.as_deref(), Some("说明.txt"));
}

#[test]
fn attachment_limits_omit_without_failing() {
    let raw = multipart_with_html_and_inline_image();
    let p = parse(
        raw.as_bytes(),
        &ParseOptions {
            max_attachment_size: 1000,
            ..opts()
        },
    );
    let pdf = &p.attachments[1];
    assert!(pdf.omitted && pdf.data.is_empty());
    assert_eq!(pdf.size, 3000);
    assert!(!p.attachments[0].omitted);
    assert!(p.warnings.iter().any(|w| w.contains("per-attachment")));

    let p = parse(
        raw.as_bytes(),
        &ParseOptions {
            max_total_attachment_size: 100,
            ..opts()
        },
    );
    assert!(!p.attachments[0].omitted, "small inline image fits");
    assert!(p.attachments[1].omitted);
    assert!(p.warnings.iter().any(|w| w.contains("total")));
}

#[test]
fn raw_8bit_attachment_name_is_decoded() {
    let mut raw = b"From: a@b.c\r\nSubject: f\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n\
        --B\r\nContent-Type: text/plain; charset=gbk\r\n\r\nhi\r\n--B\r\n\
        Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\""
        .to_vec();
    raw.extend_from_slice(&GB18030.encode("合同.docx").0);
    raw.extend_from_slice(b"\"\r\n\r\nDATA\r\n--B--\r\n");
    let p = parse(&raw, &opts());
    assert_eq!(p.attachments[0].filename.as_deref(), Some("合同.docx"));
}

#[test]
fn flags_auto_submitted_bounce_list() {
    let base = "From: x@example.com\r\nSubject: s\r\n";
    let flag = |extra: &str| parse(format!("{base}{extra}\r\nbody\r\n").as_bytes(), &opts());
    assert!(!flag("").auto_submitted);
    assert!(!flag("Auto-Submitted: no\r\n").auto_submitted);
    assert!(flag("Auto-Submitted: auto-replied\r\n").auto_submitted);
    assert!(flag("X-Autoreply: yes\r\n").auto_submitted);
    assert!(flag("X-Autorespond: yes\r\n").auto_submitted);
    assert!(flag("Precedence: bulk\r\n").auto_submitted);
    assert!(flag("Precedence: auto_reply\r\n").auto_submitted);
    assert!(!flag("Precedence: first-class\r\n").auto_submitted);
    assert!(flag("X-Auto-Response-Suppress: All\r\n").auto_submitted);
    assert!(flag("List-Id: <news.example.com>\r\n").is_list);
    assert!(flag("List-Unsubscribe: <mailto:u@example.com>\r\n").is_list);
    assert!(!flag("").is_list);

    let daemon = parse(
        b"From: MAILER-DAEMON@mx.example.com\r\nSubject: failure\r\n\r\nx",
        &opts(),
    );
    assert!(daemon.is_bounce);
    let dsn = parse(
        b"From: postmaster@example.net\r\nSubject: Undelivered\r\n\
          Content-Type: multipart/report; report-type=delivery-status; boundary=R\r\n\r\n\
          --R\r\nContent-Type: text/plain\r\n\r\nfailed\r\n\
          --R\r\nContent-Type: message/delivery-status\r\n\r\nStatus: 5.1.1\r\n--R--\r\n",
        &opts(),
    );
    assert!(dsn.is_bounce);
    let mut plain = flag("");
    assert!(!plain.is_bounce);
    plain.apply_envelope_sender("<>");
    assert!(plain.is_bounce);
}

#[test]
fn missing_message_id_is_synthesized_stably() {
    let raw = b"From: a@b.c\r\nSubject: no id\r\n\r\nbody\r\n";
    let a = parse(raw, &opts());
    let b = parse(raw, &opts());
    assert!(a.message_id_synthesized);
    assert_eq!(a.message_id, b.message_id);
    assert!(a.message_id.ends_with("@synthesized.contact-hub.invalid"));
    let c = parse(b"From: a@b.c\r\nSubject: no id\r\n\r\nother\r\n", &opts());
    assert_ne!(a.message_id, c.message_id);
}

#[test]
fn references_and_in_reply_to() {
    let p = parse(
        b"From: a@b.c\r\nIn-Reply-To: <one@x>\r\nReferences: <zero@x>\r\n <one@x>\r\n\r\nhi",
        &opts(),
    );
    assert_eq!(p.in_reply_to, vec!["one@x"]);
    assert_eq!(p.references, vec!["zero@x", "one@x"]);
}

#[test]
fn malformed_mime_keeps_what_it_can() {
    let p = parse(
        b"From: a@b.c\r\nSubject: broken\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n\
          --XX\r\nContent-Type: text/plain\r\n\r\nfirst part survives\r\n\
          --XX\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n\
          !!!not base64@@@\r\n",
        &opts(),
    );
    assert!(p.text_body.unwrap().contains("first part survives"));
    assert!(
        p.warnings.iter().any(|w| w.contains("not terminated")),
        "{:?}",
        p.warnings
    );
    let p = parse(
        b"From: a@b.c\r\nContent-Type: multipart/mixed\r\n\r\nno boundary at all\r\n",
        &opts(),
    );
    assert!(p.warnings.iter().any(|w| w.contains("without a boundary")));
    let p = parse(b"", &opts());
    assert!(!p.warnings.is_empty());
    assert!(!p.message_id.is_empty());
}

#[test]
fn nesting_depth_is_limited() {
    let depth = 40;
    let mut raw = String::from("From: a@b.c\r\nSubject: deep\r\n");
    for i in 0..depth {
        raw.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
        ));
    }
    raw.push_str("Content-Type: text/plain\r\n\r\ndeep text\r\n");
    for i in (0..depth).rev() {
        raw.push_str(&format!("--b{i}--\r\n"));
    }
    let p = parse(raw.as_bytes(), &opts());
    assert!(
        p.warnings.iter().any(|w| w.contains("nesting")),
        "{:?}",
        p.warnings
    );
    assert!(p.text_body.is_none());
    let p = parse(
        raw.as_bytes(),
        &ParseOptions {
            max_depth: 64,
            ..opts()
        },
    );
    assert_eq!(p.text_body.as_deref().map(str::trim), Some("deep text"));
}

/// Mutations of real messages: no input makes the parser panic.
#[test]
fn fuzzed_messages_never_panic() {
    let mut seeds: Vec<Vec<u8>> = vec![
        multipart_with_html_and_inline_image().into_bytes(),
        b"From: =?gb2312?B?1cXI/Q==?= <a@b.c>\r\nSubject: =?big5?Q?=A4=A4?=\r\n\
          Content-Type: multipart/alternative; boundary=A\r\n\r\n--A\r\n\
          Content-Type: text/plain; charset=iso-2022-jp\r\n\r\n\x1b$B$3$s\x1b(B\r\n--A\r\n\
          Content-Type: text/html\r\n\r\n<p style=\"a:b\">x</p>\r\n--A--\r\n"
            .to_vec(),
        b"From: MAILER-DAEMON@x\r\nContent-Type: multipart/report; report-type=delivery-status; \
          boundary=R\r\n\r\n--R\r\nContent-Type: message/rfc822\r\n\r\nFrom: x@y\r\n\
          Subject: inner\r\n\r\ninner body\r\n--R--\r\n"
            .to_vec(),
    ];
    seeds.push(GB18030.encode("Subject: 中文\r\n\r\n正文").0.to_vec());
    let tokens: &[&[u8]] = &[
        b"\r\n",
        b"--",
        b"=?",
        b"?=",
        b"=?gbk?B?",
        b"boundary=",
        b"Content-Type: multipart/mixed; boundary=Z\r\n",
        b"--Z\r\n",
        b"<",
        b">",
        b"\"",
        b"\xff\xfe",
        b"=\r\n",
        b"Content-Transfer-Encoding: quoted-printable\r\n",
    ];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let small = ParseOptions {
        max_attachment_size: 500,
        max_total_attachment_size: 800,
        max_depth: 4,
        max_parts: 20,
        sanitize: true,
    };
    for round in 0..4000 {
        let mut m = seeds[round % seeds.len()].clone();
        for _ in 0..1 + next() % 6 {
            let pos = (next() as usize) % (m.len() + 1);
            match next() % 5 {
                0 if pos < m.len() => m[pos] = next() as u8,
                1 => m.truncate(pos),
                2 => {
                    let t = tokens[(next() as usize) % tokens.len()];
                    m.splice(pos..pos, t.iter().copied());
                }
                3 if pos < m.len() => {
                    let end = (pos + (next() as usize) % 64).min(m.len());
                    let dup = m[pos..end].to_vec();
                    m.splice(pos..pos, dup);
                }
                _ => {
                    let end = (pos + (next() as usize) % 32).min(m.len());
                    m.drain(pos..end);
                }
            }
        }
        let o = if round % 3 == 0 {
            &small
        } else {
            &ParseOptions::default()
        };
        let p = parse(&m, o);
        assert!(!p.message_id.is_empty());
        let total: usize = p
            .attachments
            .iter()
            .filter(|a| !a.omitted)
            .map(|a| a.size)
            .sum();
        assert!(total <= o.max_total_attachment_size);
    }
}
