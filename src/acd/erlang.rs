//! Erlang C: the M/M/N queue the ACD is checked against (ARCHITECTURE §7, issue 3 item 7).
//!
//! N agents, offered traffic A in Erlangs (arrival rate × average handle time), exponential
//! handle times, callers who never abandon. All functions are pure and never panic; inputs out
//! of range give the limit value documented on each.
//!
//! Numerics: Erlang C is computed from Erlang B by the recurrence
//! `B(0) = 1, B(k) = A·B(k−1) / (k + A·B(k−1))`, then `C = N·B / (N − A·(1 − B))`. Every step
//! stays in 0..=1, so it neither overflows (as `A^N / N!` does past N ≈ 170) nor loses precision
//! for thousands of agents.

/// Erlang B: the probability that a contact finds all `agents` busy in a loss system (blocked
/// contacts leave). 1.0 with no agents; 0.0 with no traffic.
pub fn erlang_b(agents: u32, traffic_erlangs: f64) -> f64 {
    if traffic_erlangs.is_nan() {
        return f64::NAN;
    }
    if agents == 0 {
        return 1.0;
    }
    if traffic_erlangs <= 0.0 {
        return 0.0;
    }
    if traffic_erlangs.is_infinite() {
        return 1.0;
    }
    let a = traffic_erlangs;
    let mut b = 1.0;
    for k in 1..=agents {
        b = a * b / (k as f64 + a * b);
    }
    b
}

/// Erlang C from Erlang B of the same N and A.
fn c_from_b(agents: u32, traffic: f64, b: f64) -> f64 {
    let n = agents as f64;
    (n * b / (n - traffic * (1.0 - b))).clamp(0.0, 1.0)
}

/// Erlang C: the probability that a contact has to wait, with `agents` agents and
/// `traffic_erlangs` of offered traffic. 1.0 when traffic ≥ agents (the queue grows without
/// bound); 0.0 with no traffic; NaN for NaN traffic.
pub fn erlang_c(agents: u32, traffic_erlangs: f64) -> f64 {
    if traffic_erlangs.is_nan() {
        return f64::NAN;
    }
    if traffic_erlangs >= agents as f64 {
        return 1.0;
    }
    if traffic_erlangs <= 0.0 {
        return 0.0;
    }
    c_from_b(agents, traffic_erlangs, erlang_b(agents, traffic_erlangs))
}

/// Expected wait over all contacts (answered at once or not), in seconds:
/// `C · AHT / (N − A)`. Infinite when traffic ≥ agents; 0 with no traffic.
pub fn asa(agents: u32, traffic_erlangs: f64, aht_secs: f64) -> f64 {
    let n = agents as f64;
    if traffic_erlangs >= n {
        return f64::INFINITY;
    }
    if traffic_erlangs <= 0.0 || aht_secs <= 0.0 {
        return 0.0;
    }
    erlang_c(agents, traffic_erlangs) * aht_secs / (n - traffic_erlangs)
}

/// Share of contacts answered within `t_secs`: `1 − C · e^(−(N − A)·T / AHT)`, in 0..=1.
/// 0 when traffic ≥ agents; 1 with no traffic or a zero handle time. A negative T counts as 0.
pub fn service_level(agents: u32, traffic_erlangs: f64, aht_secs: f64, t_secs: f64) -> f64 {
    let n = agents as f64;
    if traffic_erlangs >= n {
        return 0.0;
    }
    if traffic_erlangs <= 0.0 || aht_secs <= 0.0 {
        return 1.0;
    }
    let c = erlang_c(agents, traffic_erlangs);
    sl_from_c(c, n, traffic_erlangs, aht_secs, t_secs)
}

fn sl_from_c(c: f64, n: f64, a: f64, aht: f64, t: f64) -> f64 {
    (1.0 - c * (-(n - a) * t.max(0.0) / aht).exp()).clamp(0.0, 1.0)
}

/// The fewest agents whose [`service_level`] reaches `target` (a fraction, e.g. 0.8 for 80/20).
/// Always more agents than the traffic (a stable queue), so at least ⌊A⌋ + 1; 0 with no traffic.
/// The search stops at ⌈A⌉ + 100,000 agents, which it returns for an unreachable target (> 1).
/// Linear in the answer: Erlang B is carried from one N to the next.
pub fn agents_for_service_level(
    traffic_erlangs: f64,
    aht_secs: f64,
    t_secs: f64,
    target: f64,
) -> u32 {
    if traffic_erlangs.is_nan() || traffic_erlangs <= 0.0 {
        return 0;
    }
    if traffic_erlangs >= u32::MAX as f64 - 100_001.0 {
        return u32::MAX;
    }
    let a = traffic_erlangs;
    let limit = a.ceil() as u32 + 100_000;
    let mut n = a.floor() as u32 + 1;
    let mut b = erlang_b(n, a);
    loop {
        let sl = if aht_secs > 0.0 {
            sl_from_c(c_from_b(n, a, b), n as f64, a, aht_secs, t_secs)
        } else {
            1.0
        };
        if sl >= target || n >= limit {
            return n;
        }
        n += 1;
        b = a * b / (n as f64 + a * b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Erlang C by the textbook sum, independent of the Erlang B recurrence:
    /// `C = X / (Σ_{k<N} A^k/k! + X)`, `X = A^N/N! · N/(N − A)`, with terms kept as logarithms
    /// (log-sum-exp) so it holds for large N too.
    fn erlang_c_direct(n: u32, a: f64) -> f64 {
        let mut ln_terms = Vec::with_capacity(n as usize);
        let mut ln_t = 0.0; // ln(A^0 / 0!)
        for k in 0..n {
            if k > 0 {
                ln_t += a.ln() - (k as f64).ln();
            }
            ln_terms.push(ln_t);
        }
        let ln_top = ln_t + a.ln() - (n as f64).ln() + (n as f64 / (n as f64 - a)).ln();
        let max = ln_terms.iter().copied().fold(ln_top, f64::max);
        let sum: f64 = ln_terms.iter().map(|t| (t - max).exp()).sum();
        let top = (ln_top - max).exp();
        top / (sum + top)
    }

    #[test]
    fn erlang_c_matches_published_values() {
        // A = 10 Erlangs (e.g. 100 calls per half hour at 180 s AHT), T = 20 s.
        // Published (and recomputed by the direct sum): P(wait), ASA over all calls, SL.
        let table = [
            (11, 0.6821, 122.8, 0.3896),
            (12, 0.4494, 40.4, 0.6402),
            (13, 0.2853, 17.1, 0.7956),
            (14, 0.1741, 7.8, 0.8884),
            (15, 0.1020, 3.7, 0.9415),
        ];
        println!("A = 10 Erl, AHT = 180 s, T = 20 s");
        println!(" N   P(wait)  direct   ASA s   SL");
        for (n, pw, asa_s, sl) in table {
            let c = erlang_c(n, 10.0);
            let d = erlang_c_direct(n, 10.0);
            let w = asa(n, 10.0, 180.0);
            let l = service_level(n, 10.0, 180.0, 20.0);
            println!("{n:2}   {c:.4}   {d:.4}  {w:6.1}  {l:.4}");
            assert!((c - d).abs() < 1e-12, "N={n}: {c} vs direct {d}");
            assert!((c - pw).abs() < 5e-5, "N={n}: P(wait) {c} vs {pw}");
            assert!((w - asa_s).abs() < 0.05, "N={n}: ASA {w} vs {asa_s}");
            assert!((l - sl).abs() < 5e-5, "N={n}: SL {l} vs {sl}");
        }
    }

    #[test]
    fn erlang_c_agrees_with_the_direct_sum() {
        for a in [0.1_f64, 0.5, 1.0, 2.5, 7.3, 10.0, 42.0, 99.5, 250.0, 1000.0] {
            let first = a.floor() as u32 + 1;
            for n in first..first + 40 {
                let c = erlang_c(n, a);
                let d = erlang_c_direct(n, a);
                assert!(
                    (c - d).abs() < 1e-9 * d.max(1e-300).max(1.0),
                    "N={n} A={a}: {c} vs {d}"
                );
                assert!(c.is_finite() && (0.0..=1.0).contains(&c));
            }
        }
        // Decreasing in N, increasing in A.
        assert!(erlang_c(20, 15.0) > erlang_c(21, 15.0));
        assert!(erlang_c(20, 15.0) < erlang_c(20, 16.0));
    }

    #[test]
    fn limits_and_bad_input() {
        assert_eq!(erlang_c(10, 10.0), 1.0);
        assert_eq!(erlang_c(10, 12.0), 1.0);
        assert_eq!(erlang_c(0, 0.0), 1.0);
        assert_eq!(erlang_c(5, 0.0), 0.0);
        assert_eq!(erlang_c(5, -1.0), 0.0);
        assert_eq!(erlang_c(5, f64::INFINITY), 1.0);
        assert!(erlang_c(5, f64::NAN).is_nan());
        assert_eq!(asa(10, 10.0, 180.0), f64::INFINITY);
        assert_eq!(asa(10, 0.0, 180.0), 0.0);
        assert_eq!(service_level(10, 10.0, 180.0, 20.0), 0.0);
        assert_eq!(service_level(10, 0.0, 180.0, 20.0), 1.0);
        assert_eq!(service_level(10, 5.0, 0.0, 20.0), 1.0);
        // T = 0: answered at once = 1 − P(wait).
        assert!((service_level(12, 10.0, 180.0, 0.0) - (1.0 - 0.4494)).abs() < 5e-5);
        assert_eq!(erlang_b(0, 3.0), 1.0);
        assert_eq!(erlang_b(3, 0.0), 0.0);
        // Erlang B, published: A = 10, N = 15 → 3.65 % blocking.
        assert!((erlang_b(15, 10.0) - 0.0365).abs() < 5e-5);
        // Large systems stay finite and in range.
        let c = erlang_c(10_100, 10_000.0);
        assert!(c > 0.0 && c < 1.0, "{c}");
    }

    #[test]
    fn agents_for_service_level_is_the_minimum() {
        // 80 % in 20 s at 10 Erlangs, 180 s: 13 agents give 79.6 %, 14 give 88.8 %.
        assert_eq!(agents_for_service_level(10.0, 180.0, 20.0, 0.8), 14);
        assert_eq!(agents_for_service_level(10.0, 180.0, 20.0, 0.6), 12);
        // Any stable staffing meets a zero target: ⌊A⌋ + 1.
        assert_eq!(agents_for_service_level(10.0, 180.0, 20.0, 0.0), 11);
        assert_eq!(agents_for_service_level(10.5, 180.0, 20.0, 0.0), 11);
        assert_eq!(agents_for_service_level(0.0, 180.0, 20.0, 0.8), 0);
        for (a, aht, t, target) in [
            (3.2, 240.0, 30.0, 0.9),
            (57.0, 300.0, 20.0, 0.8),
            (480.0, 200.0, 15.0, 0.95),
        ] {
            let n = agents_for_service_level(a, aht, t, target);
            assert!(service_level(n, a, aht, t) >= target, "A={a} N={n}");
            assert!(
                service_level(n - 1, a, aht, t) < target,
                "A={a} N-1={}",
                n - 1
            );
        }
        // Unreachable target: stops at the cap instead of looping.
        assert_eq!(
            agents_for_service_level(10.0, 180.0, 20.0, 1.5),
            10 + 100_000
        );
    }
}
