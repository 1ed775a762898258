#!/usr/bin/env python3
"""Sends one message with Python's smtplib and prints the outcome as one JSON line.

Used by the Rust tests as a real SMTP/LMTP client. Exit code 0 whether or not the server
accepted: the JSON says what happened ({"ok": true} or {"ok": false, "code": 451, ...}).
"""
import argparse
import json
import smtplib
import ssl
import sys
from email.message import EmailMessage
from email.headerregistry import Address
from email.policy import SMTP


def build(args):
    if args.raw_file:
        with open(args.raw_file, "rb") as f:
            return f.read()
    msg = EmailMessage(policy=SMTP)
    msg["From"] = args.from_header or args.mail_from
    msg["To"] = ", ".join(args.to)
    msg["Subject"] = args.subject
    msg["Message-ID"] = args.message_id or "<py-%d@client.test>" % abs(hash(args.subject))
    for h in args.header:
        name, value = h.split(":", 1)
        msg[name.strip()] = value.strip()
    msg.set_content(args.body, charset=args.charset)
    if args.attach_size:
        # Deterministic content so the test can check the decoded bytes.
        data = bytes((i * 7 + 3) % 256 for i in range(args.attach_size))
        msg.add_attachment(data, maintype="application", subtype="octet-stream",
                           filename=args.attach_name)
    return msg.as_bytes()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mail-from", default="customer@client.test")
    p.add_argument("--from-header")
    p.add_argument("--to", action="append", required=True)
    p.add_argument("--subject", default="test")
    p.add_argument("--body", default="hello")
    p.add_argument("--charset", default="utf-8")
    p.add_argument("--message-id")
    p.add_argument("--header", action="append", default=[])
    p.add_argument("--attach-size", type=int, default=0)
    p.add_argument("--attach-name", default="data.bin")
    p.add_argument("--raw-file")
    p.add_argument("--starttls", action="store_true")
    p.add_argument("--ssl", action="store_true", help="implicit TLS (port 465 style)")
    p.add_argument("--lmtp", action="store_true")
    p.add_argument("--attempts", type=int, default=1,
                   help="retry on 4xx like an MTA, this many attempts in all")
    args = p.parse_args()
    raw = build(args)

    result = {"ok": False, "attempts": []}
    for _ in range(args.attempts):
        try:
            insecure = ssl.create_default_context()
            insecure.check_hostname = False
            insecure.verify_mode = ssl.CERT_NONE
            if args.lmtp:
                client = smtplib.LMTP(args.host, args.port, timeout=60)
            elif args.ssl:
                client = smtplib.SMTP_SSL(args.host, args.port, timeout=60, context=insecure)
            else:
                client = smtplib.SMTP(args.host, args.port, timeout=60)
            with client:
                client.ehlo_or_helo_if_needed() if not args.lmtp else client.ehlo()
                if args.starttls:
                    client.starttls(context=insecure)
                    client.ehlo()
                if args.starttls or args.ssl:
                    result["tls"] = client.sock.version()
                refused = client.sendmail(args.mail_from, args.to, raw)
                result["attempts"].append({"code": 250})
                result["ok"] = True
                result["refused"] = {k: list(v) for k, v in refused.items()} if refused else {}
                break
        except smtplib.SMTPNotSupportedError as e:
            result["attempts"].append({"code": 0, "error": str(e)})
            break
        except smtplib.SMTPRecipientsRefused as e:
            result["attempts"].append(
                {"code": min(c for c, _ in e.recipients.values()),
                 "error": str(e.recipients)})
            break
        except smtplib.SMTPResponseException as e:
            msg = e.smtp_error.decode(errors="replace") if isinstance(e.smtp_error, bytes) else str(e.smtp_error)
            result["attempts"].append({"code": e.smtp_code, "error": msg})
            if not 400 <= e.smtp_code < 500:
                break
        except smtplib.SMTPDataError as e:  # pragma: no cover - subclass of the above
            result["attempts"].append({"code": e.smtp_code, "error": str(e)})
            break
    last = result["attempts"][-1] if result["attempts"] else {}
    result["code"] = last.get("code")
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
