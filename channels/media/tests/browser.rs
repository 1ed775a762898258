//! The WebRTC leg against real headless Chromium: the test page (`tests/webrtc/`) offers over
//! a WebSocket, the engine answers (ICE-lite, DTLS-SRTP on 127.0.0.1), and the browser leg is
//! bridged to an RTP leg whose far end is a test phone. Proven both ways with tones (the fake
//! microphone plays 440 Hz, the phone 1 kHz), DTMF both ways, an ICE restart mid-call, an
//! Opus-only offer refused, and stats on both sides.
//!
//! Needs Chromium: `apt-get install -y chromium` (`scripts/peers/media.sh` does it).

mod common;

use channel_media::codec::Codec;
use channel_media::{LegConfig, LegId, MediaEngine, MediaEvent, WebRtcState};
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

fn chromium() -> PathBuf {
    let candidates = [
        std::env::var("CHROMIUM").unwrap_or_default(),
        "/usr/bin/chromium".into(),
        "/usr/bin/chromium-browser".into(),
    ];
    candidates
        .iter()
        .filter(|c| !c.is_empty())
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "Chromium not found (looked at $CHROMIUM, /usr/bin/chromium, /usr/bin/chromium-browser): \
                 install it with `apt-get install -y chromium` or run scripts/peers/media.sh"
            )
        })
}

/// 10 s of 440 Hz, 48 kHz mono 16-bit: the fake microphone (Chromium loops it).
fn write_tone_wav(path: &Path) {
    let rate = 48_000u32;
    let samples: Vec<i16> = (0..rate * 10)
        .map(|i| {
            (12_000.0 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / rate as f64).sin()) as i16
        })
        .collect();
    let data_len = samples.len() as u32 * 2;
    let mut b = Vec::with_capacity(44 + data_len as usize);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes()); // PCM
    b.extend_from_slice(&1u16.to_le_bytes()); // mono
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * 2).to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        b.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}

/// Serves the test page and its script.
async fn serve_page(listener: TcpListener) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webrtc");
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            return;
        };
        let dir = dir.clone();
        tokio::spawn(async move {
            let mut req = Vec::new();
            let mut buf = [0u8; 2048];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&req);
            let path = line.split_whitespace().nth(1).unwrap_or("/");
            let path = path.split('?').next().unwrap_or("/");
            let (file, kind) = match path {
                "/" | "/index.html" => ("index.html", "text/html"),
                "/softphone.js" => ("softphone.js", "text/javascript"),
                _ => {
                    let _ = conn
                        .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .await;
                    return;
                }
            };
            let body = std::fs::read(dir.join(file)).unwrap();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {kind}; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes()).await;
            let _ = conn.write_all(&body).await;
        });
    }
}

/// Chromium, killed when the test ends.
struct Browser {
    child: std::process::Child,
    dir: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn launch(url: &str, tone: &Path, dir: &Path) -> Browser {
    let profile = dir.join("profile");
    std::fs::create_dir_all(&profile).unwrap();
    let log = std::fs::File::create(dir.join("chromium.log")).unwrap();
    let child = std::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            "--autoplay-policy=no-user-gesture-required",
            // Loopback host candidates, as the engine listens on 127.0.0.1 only here.
            "--allow-loopback-in-peer-connection",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!(
            "--use-file-for-fake-audio-capture={}",
            tone.display()
        ))
        .arg(url)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("Chromium starts");
    Browser {
        child,
        dir: dir.to_owned(),
    }
}

/// The test's side of the agent socket: offers and candidates go to the engine as the hub
/// will wire them; everything else is a report the test waits for.
struct Console {
    ws: WebSocketStream<TcpStream>,
    engine: MediaEngine,
    agent: Option<LegId>,
    refused: Vec<String>,
    candidate_errors: Vec<String>,
    candidates: u32,
}

impl Console {
    async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .expect("socket open");
    }

    /// Waits for a report of `kind`, serving offers and candidates meanwhile.
    async fn wait(&mut self, kind: &str, limit: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no '{kind}' from the page within {limit:?}"))
                .expect("page still connected")
                .expect("socket ok");
            let Message::Text(text) = msg else { continue };
            let m: Value = serde_json::from_str(&text).expect("JSON from the page");
            match m["type"].as_str().unwrap_or("") {
                "offer" => self.offer(&m).await,
                "candidate" => {
                    self.candidates += 1;
                    if let Some(leg) = self.agent {
                        let c = m["candidate"].as_str().unwrap_or("").to_string();
                        let u = m["ufrag"].as_str().map(str::to_string);
                        if let Err(e) = self.engine.webrtc_add_candidate(leg, c, u).await {
                            self.candidate_errors.push(e.to_string());
                        }
                    }
                }
                "log" => eprintln!("page: {}", m["message"]),
                t if t == kind => return m,
                _ => eprintln!("page: {m}"),
            }
        }
    }

    /// What the hub does with an offer frame: a new WebRTC leg, or a re-offer on the agent's.
    async fn offer(&mut self, m: &Value) {
        let sdp = m["sdp"].as_str().unwrap_or("").to_string();
        let leg = match (m["leg"].as_str(), self.agent) {
            (Some("agent"), Some(leg)) => leg,
            (which, _) => {
                let (leg, _) = self
                    .engine
                    .create_webrtc_leg(LegConfig::default())
                    .await
                    .unwrap();
                if which == Some("agent") {
                    self.agent = Some(leg);
                }
                leg
            }
        };
        match self.engine.webrtc_answer(leg, sdp).await {
            Ok(answer) => self.send(json!({"type": "answer", "sdp": answer})).await,
            Err(e) => {
                self.refused.push(e.to_string());
                if Some(leg) != self.agent {
                    self.engine.remove_leg(leg).await.unwrap();
                }
                self.send(json!({"type": "error", "message": e.to_string()}))
                    .await
            }
        }
    }

    async fn measure(&mut self, ms: u64) -> Value {
        self.send(json!({"cmd": "measure", "ms": ms, "freqs": [440, 1000, 697, 1209]}))
            .await;
        self.wait("heard", Duration::from_millis(ms + 5000)).await
    }
}

fn phone_hears(phone: &Phone, secs: f64) -> (f64, f64) {
    let pcm = phone.heard_pcm();
    let n = ((8000.0 * secs) as usize).min(pcm.len());
    assert!(n > 4000, "the phone heard {} samples", pcm.len());
    dominant(&pcm[pcm.len() - n..], &[440.0, 1000.0, 697.0, 1209.0])
}

async fn dtmf_events(
    events: &mut mpsc::UnboundedReceiver<MediaEvent>,
    leg: LegId,
    want: usize,
) -> Vec<char> {
    let mut got = Vec::new();
    while got.len() < want {
        match wait_event(
            events,
            Duration::from_secs(6),
            |e| matches!(e, MediaEvent::Dtmf { leg: l, .. } if *l == leg),
        )
        .await
        {
            Some(MediaEvent::Dtmf { digit, .. }) => got.push(digit),
            _ => break,
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_softphone_bridged_to_an_rtp_phone() {
    let chromium_path = chromium();
    let dir = std::env::temp_dir().join(format!(
        "media-webrtc-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let tone = dir.join("tone440.wav");
    write_tone_wav(&tone);

    let (engine, mut events) = common::engine();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ws_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://127.0.0.1:{}/?ws={}",
        http.local_addr().unwrap().port(),
        ws_listener.local_addr().unwrap().port()
    );
    tokio::spawn(serve_page(http));
    eprintln!("launching {} {url}", chromium_path.display());
    let _browser = launch(&url, &tone, &dir);

    let (tcp, _) = tokio::time::timeout(Duration::from_secs(30), ws_listener.accept())
        .await
        .expect("the page connects within 30 s")
        .unwrap();
    let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
    let mut console = Console {
        ws,
        engine: engine.clone(),
        agent: None,
        refused: Vec::new(),
        candidate_errors: Vec::new(),
        candidates: 0,
    };
    let hello = console.wait("hello", Duration::from_secs(20)).await;
    eprintln!("browser: {}", hello["userAgent"]);

    // Offer → answer → ICE + DTLS on loopback.
    let setup_started = std::time::Instant::now();
    loop {
        let s = console.wait("state", Duration::from_secs(20)).await;
        if s["state"] == "connected" {
            break;
        }
        assert_ne!(s["state"], "failed", "the browser's connection failed");
    }
    let agent = console.agent.expect("agent leg created from the offer");
    eprintln!(
        "connected {:?} after the page's first report",
        setup_started.elapsed()
    );
    assert!(
        wait_event(&mut events, Duration::from_secs(5), |e| matches!(
            e,
            MediaEvent::WebRtc { leg, state: WebRtcState::Connected } if *leg == agent
        ))
        .await
        .is_some(),
        "the engine reports the WebRTC leg connected"
    );

    // The customer: an RTP phone bridged to the browser.
    let mut phone = Phone::new(Codec::Pcmu, Some(101)).await;
    let customer = connect(&engine, &mut phone).await;
    engine.bridge(agent, customer).await.unwrap();
    let tone_task = phone.send_tone(1000.0, Duration::from_secs(5));

    let heard = console.measure(1500).await;
    eprintln!("browser heard: {heard}");
    assert_eq!(
        heard["dominant"], 1000,
        "the browser hears the phone's 1 kHz: {heard}"
    );
    assert!(heard["ratio"].as_f64().unwrap() > 10.0, "{heard}");
    let (f, ratio) = phone_hears(&phone, 1.0);
    eprintln!("phone heard {f} Hz ({ratio:.0}x the runner-up)");
    assert_eq!(f, 440.0, "the phone hears the browser's 440 Hz");
    assert!(ratio > 10.0);

    // Console keypad → RFC 4733 on the trunk, and engine events for the digits.
    console.send(json!({"cmd": "dtmf", "digits": "159"})).await;
    console.wait("dtmf-sent", Duration::from_secs(5)).await;
    let digits = dtmf_events(&mut events, agent, 3).await;
    assert_eq!(digits, vec!['1', '5', '9'], "digits from the browser");
    assert!(
        phone.packets().iter().any(|p| p.pt == 101),
        "the trunk phone got RFC 4733 events"
    );

    // A digit from the trunk goes to the browser as telephone-event (JS cannot see received
    // events, so count the packets that arrive while the phone sends nothing but the digit).
    tone_task.await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let inbound = |v: &Value| {
        v["stats"]["inbound"]["packetsReceived"]
            .as_u64()
            .unwrap_or(0)
    };
    console.send(json!({"cmd": "stats"})).await;
    let before = inbound(&console.wait("stats", Duration::from_secs(5)).await);
    let seq0 = 1000u16.wrapping_add(phone.sent.load(std::sync::atomic::Ordering::Relaxed) as u16);
    phone.send_rfc4733("7", seq0).await;
    phone
        .sent
        .fetch_add(8, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(dtmf_events(&mut events, customer, 1).await, vec!['7']);
    tokio::time::sleep(Duration::from_millis(300)).await;
    console.send(json!({"cmd": "stats"})).await;
    let after = inbound(&console.wait("stats", Duration::from_secs(5)).await);
    eprintln!(
        "browser received {} telephone-event packets for the trunk's 7",
        after - before
    );
    assert!(
        after - before >= 6,
        "telephone-event packets relayed to the browser: {before} -> {after}"
    );

    // ICE restart mid-call: new credentials, same call, audio both ways.
    let tone_task = phone.send_tone(1000.0, Duration::from_secs(8));
    let restarted = console.wait_restart().await;
    eprintln!("ICE restart: {restarted}");
    phone.clear();
    let heard = console.measure(1500).await;
    assert_eq!(heard["dominant"], 1000, "after the ICE restart: {heard}");
    let (f, _) = phone_hears(&phone, 1.0);
    assert_eq!(
        f, 440.0,
        "the phone still hears the browser after the restart"
    );
    assert_eq!(engine.stats(agent).await.unwrap().ice_restarts, 1);

    // Opus only: refused with a clear error; the call goes on.
    console.send(json!({"cmd": "opus-offer"})).await;
    let opus = console.wait("opus-result", Duration::from_secs(10)).await;
    eprintln!("opus-only offer: {opus}");
    let err = opus["result"]["error"]
        .as_str()
        .expect("an error for the Opus-only offer");
    assert!(
        err.contains("no common audio codec") && err.contains("opus"),
        "{err}"
    );

    // Stats on both sides.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    console.send(json!({"cmd": "stats"})).await;
    let page = console.wait("stats", Duration::from_secs(5)).await;
    let st = engine.stats(agent).await.unwrap();
    eprintln!("browser getStats: {}", page["stats"]);
    eprintln!("engine stats (WebRTC leg): {st:?}");
    let s = &page["stats"];
    assert!(
        s["inbound"]["packetsReceived"].as_u64().unwrap() > 100,
        "{s}"
    );
    assert!(s["outbound"]["packetsSent"].as_u64().unwrap() > 100, "{s}");
    assert!(
        s["remoteInbound"]["roundTripTime"].is_number(),
        "browser RTT from our RTCP: {s}"
    );
    assert!(
        s["codecs"].to_string().contains("PCMU"),
        "G.711 negotiated with the browser: {s}"
    );
    assert!(st.packets_received > 100 && st.packets_sent > 100, "{st:?}");
    assert!(st.rtt.is_some(), "RTT from the browser's RTCP: {st:?}");
    assert!(st.jitter < Duration::from_millis(30), "{st:?}");
    assert!(
        wait_event(&mut events, Duration::from_secs(2), |e| matches!(
            e,
            MediaEvent::Stats { leg, stats } if *leg == agent && stats.packets_received > 0
        ))
        .await
        .is_some(),
        "periodic Stats events for the WebRTC leg"
    );
    tone_task.abort();
    eprintln!(
        "candidates trickled: {} ({} refused: {:?})",
        console.candidates,
        console.candidate_errors.len(),
        console.candidate_errors
    );
    assert!(console
        .refused
        .iter()
        .any(|r| r.contains("no common audio codec")));
    engine.remove_leg(agent).await.unwrap();
    engine.remove_leg(customer).await.unwrap();
}

impl Console {
    async fn wait_restart(&mut self) -> Value {
        self.send(json!({"cmd": "restart"})).await;
        self.wait("restarted", Duration::from_secs(10)).await
    }
}
