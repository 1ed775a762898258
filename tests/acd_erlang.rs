//! The ACD checked against theory: an M/M/N simulation (Poisson arrivals, exponential handle
//! times, N identical agents, one queue, FIFO) driven through the real engine on a simulated
//! clock, compared with Erlang C for the probability of waiting, ASA and service level.
//! `cargo test --test acd_erlang -- --nocapture` prints the table kept in BENCHMARKS.md.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use contact_hub::acd::engine::{Acd, AgentSpec, Input, Output};
use contact_hub::acd::erlang;
use contact_hub::acd::types::{Capacity, ContactSpec, QueueConfig, SkillSet};
use contact_hub::domain::Channel;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

struct Measured {
    p_wait: f64,
    asa_secs: f64,
    service_level: f64,
    calls: usize,
}

fn exp(rng: &mut StdRng, mean_ms: f64) -> i64 {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    (-mean_ms * u.ln()).round().max(1.0) as i64
}

/// Runs `calls` calls (after `warmup` discarded ones) through the engine.
fn simulate(
    agents: u32,
    erlangs: f64,
    aht_secs: f64,
    t_secs: f64,
    calls: usize,
    warmup: usize,
    seed: u64,
) -> Measured {
    let mut q = QueueConfig::simple("q");
    q.wrap_up_secs = 0;
    q.offer_timeout_secs = 3600;
    let mut acd = Acd::new(vec![q]);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut now: i64 = 1_800_000_000_000;
    for id in 1..=agents as i64 {
        let spec = AgentSpec {
            id,
            skills: HashMap::new(),
            capacity: Capacity::default(),
        };
        acd.handle(
            now,
            Input::AgentLogin {
                agent: spec,
                available: true,
            },
        )
        .unwrap();
    }
    let aht_ms = aht_secs * 1000.0;
    let mean_gap_ms = aht_ms / erlangs;
    let mut next_arrival = now + exp(&mut rng, mean_gap_ms);
    let mut completions: BinaryHeap<Reverse<(i64, i64)>> = BinaryHeap::new();
    let mut arrived_at: HashMap<i64, i64> = HashMap::new();
    let mut next_id = 1i64;
    let (mut answered, mut waited, mut within, mut wait_sum) = (0usize, 0usize, 0usize, 0f64);
    while answered < calls + warmup {
        let next_done = completions
            .peek()
            .map(|Reverse((t, _))| *t)
            .unwrap_or(i64::MAX);
        if next_arrival <= next_done {
            now = next_arrival;
            arrived_at.insert(next_id, now);
            let c = ContactSpec {
                id: next_id,
                channel: Channel::Voice,
                queue: "q".into(),
                priority: 0,
                enqueued_at: now,
                extra_skills: SkillSet::default(),
                last_agent: None,
            };
            acd.handle(now, Input::ContactArrived(c)).unwrap();
            next_id += 1;
            next_arrival = now + exp(&mut rng, mean_gap_ms);
        } else {
            let Reverse((t, contact)) = completions.pop().unwrap();
            now = t;
            acd.handle(
                now,
                Input::ContactCompleted {
                    contact,
                    hold_ms: 0,
                },
            )
            .unwrap();
        }
        // Agents answer at once: the wait is the time to the offer.
        while let Some(out) = acd.poll_output() {
            if let Output::Offer { contact, agent, .. } = out {
                acd.handle(now, Input::OfferAccepted { contact, agent })
                    .unwrap();
                let wait = now - arrived_at.remove(&contact).unwrap();
                if contact as usize > warmup {
                    answered += 1;
                    waited += (wait > 0) as usize;
                    within += (wait as f64 <= t_secs * 1000.0) as usize;
                    wait_sum += wait as f64;
                } else {
                    answered += 1;
                }
                completions.push(Reverse((now + exp(&mut rng, aht_ms), contact)));
            }
        }
    }
    let n = (answered - warmup) as f64;
    Measured {
        p_wait: waited as f64 / n,
        asa_secs: wait_sum / n / 1000.0,
        service_level: within as f64 / n,
        calls: answered - warmup,
    }
}

#[test]
fn the_engine_matches_erlang_c_on_an_mmn_simulation() {
    let aht = 180.0;
    let t = 20.0;
    let cases = [(11u32, 10.0f64), (12, 10.0), (14, 10.0), (25, 22.0)];
    println!("| agents N | traffic A (Erl) | calls | P(wait) sim | P(wait) Erlang C | ASA sim (s) | ASA Erlang C (s) | SL(20 s) sim | SL Erlang C |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (i, (n, a)) in cases.into_iter().enumerate() {
        let m = simulate(n, a, aht, t, 200_000, 10_000, 42 + i as u64);
        let pw = erlang::erlang_c(n, a);
        let asa = erlang::asa(n, a, aht);
        let sl = erlang::service_level(n, a, aht, t);
        println!(
            "| {n} | {a} | {} | {:.4} | {:.4} | {:.1} | {:.1} | {:.4} | {:.4} |",
            m.calls, m.p_wait, pw, m.asa_secs, asa, m.service_level, sl
        );
        assert!(
            (m.p_wait - pw).abs() < 0.025,
            "N={n} A={a}: P(wait) {} vs {pw}",
            m.p_wait
        );
        assert!(
            (m.service_level - sl).abs() < 0.025,
            "N={n} A={a}: SL {} vs {sl}",
            m.service_level
        );
        assert!(
            (m.asa_secs - asa).abs() / asa < 0.12,
            "N={n} A={a}: ASA {} vs {asa}",
            m.asa_secs
        );
    }
}
