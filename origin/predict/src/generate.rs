//! The synthetic trace: Zipf runtime popularity, users with habits, daily and weekly cycles, bursts, surges and new users.
//!
//! Parameters (all in [`GenParams`], defaults in brackets):
//! - **Runtimes**: the design notes' four kinds (python-ml, python-data, node-web, go) then
//!   the long tail `tail-01`…`tail-50`, ranked in that order; a user's main runtime and
//!   occasional runtime are drawn by Zipf over the ranks [exponent 1.0].
//! - **Users** [10 000]: activity weight log-normal [σ 1.0]; a habitual start hour drawn from
//!   a working-day curve (60 % around 10:00, 30 % around 15:00, 10 % around 21:00, σ 2 h);
//!   30 % of users also have a second daily session 4–8 h after the first.
//! - **Habits**: each event is the main runtime [80 %], the occasional one [15 %], or any
//!   runtime by Zipf [5 %, exploration].
//! - **Cycles**: a user is active on a day with a probability proportional to their weight,
//!   times 0.35 on Saturdays and Sundays (day 0 is a Monday); a session starts at the habit
//!   hour ± a normal jitter [σ 20 min].
//! - **Bursts**: a session is a burst of creates, geometric in number [mean 12], exponential
//!   gaps [mean 90 s].
//! - **Surges**: on a day, with probability [0.3], a random tail runtime gets a surge (a class,
//!   a hackathon): [300] creates by [40] random users within one hour.
//! - **New users**: [30 %] of users join on a uniformly random day of the period.
//! - **Length**: [14] days, exactly [1 000 000] events: activity is scaled to overshoot a
//!   little, then a uniform sample of the right size is kept.

use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp, Geometric, LogNormal, Normal, Zipf};

use crate::catalog::Catalog;
use crate::{PredictError, Secs, Trace, DAY, HOUR};

/// The generator's parameters; see the module doc.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GenParams {
    pub events: u64,
    pub users: u32,
    pub days: u32,
    pub zipf_exponent: f64,
    pub activity_sigma: f64,
    pub p_main: f64,
    pub p_occasional: f64,
    pub p_second_session: f64,
    pub weekend_factor: f64,
    pub jitter_secs: f64,
    pub burst_mean: f64,
    pub burst_gap_secs: f64,
    pub surge_per_day: f64,
    pub surge_events: u32,
    pub surge_users: u32,
    pub new_user_fraction: f64,
    pub seed: u64,
}

impl Default for GenParams {
    fn default() -> Self {
        Self {
            events: 1_000_000,
            users: 10_000,
            days: 14,
            zipf_exponent: 1.0,
            activity_sigma: 1.0,
            p_main: 0.80,
            p_occasional: 0.15,
            p_second_session: 0.3,
            weekend_factor: 0.35,
            jitter_secs: 1200.0,
            burst_mean: 12.0,
            burst_gap_secs: 90.0,
            surge_per_day: 0.3,
            surge_events: 300,
            surge_users: 40,
            new_user_fraction: 0.3,
            seed: 1,
        }
    }
}

struct User {
    weight: f64,
    main: usize,
    occasional: usize,
    hours: Vec<f64>,
    join_day: u32,
}

fn invalid(m: &str) -> PredictError {
    PredictError::Invalid(m.to_owned())
}

/// Generates the trace described by `p` over the standard runtime ranking.
pub fn generate(p: &GenParams) -> Result<Trace, PredictError> {
    if p.events == 0 || p.users == 0 || p.days == 0 {
        return Err(invalid("--events, --users and --days must be > 0"));
    }
    if !(0.0..=1.0).contains(&(p.p_main + p.p_occasional)) {
        return Err(invalid("p_main + p_occasional must be within [0, 1]"));
    }
    let names = Catalog::standard_ranking();
    let mut rng = StdRng::seed_from_u64(p.seed);
    let zipf =
        Zipf::new(names.len() as u64, p.zipf_exponent).map_err(|e| invalid(&e.to_string()))?;
    let rank = |rng: &mut StdRng| zipf.sample(rng) as usize - 1;
    let activity = LogNormal::new(0.0, p.activity_sigma).map_err(|e| invalid(&e.to_string()))?;
    let jitter = Normal::new(0.0, p.jitter_secs.max(1e-9)).map_err(|e| invalid(&e.to_string()))?;
    let hour_noise = Normal::new(0.0, 2.0 * HOUR as f64).map_err(|e| invalid(&e.to_string()))?;
    let gap = Exp::new(1.0 / p.burst_gap_secs.max(1e-9)).map_err(|e| invalid(&e.to_string()))?;
    let burst = Geometric::new(1.0 / p.burst_mean.max(1.0)).map_err(|e| invalid(&e.to_string()))?;

    let users: Vec<User> = (0..p.users)
        .map(|_| {
            let main = rank(&mut rng);
            let mut occasional = rank(&mut rng);
            if occasional == main {
                occasional = (main + 1 + rng.gen_range(0..names.len() - 1)) % names.len();
            }
            let centre = match rng.gen_range(0..10) {
                0..=5 => 10.0,
                6..=8 => 15.0,
                _ => 21.0,
            } * HOUR as f64;
            let first = (centre + hour_noise.sample(&mut rng)).rem_euclid(DAY as f64);
            let mut hours = vec![first];
            if rng.gen_bool(p.p_second_session) {
                hours.push((first + rng.gen_range(4.0..8.0) * HOUR as f64).rem_euclid(DAY as f64));
            }
            let join_day = if rng.gen_bool(p.new_user_fraction) {
                rng.gen_range(0..p.days)
            } else {
                0
            };
            User {
                weight: activity.sample(&mut rng),
                main,
                occasional,
                hours,
                join_day,
            }
        })
        .collect();

    // Scale daily activity so the expected count overshoots the target by 3 %.
    let weekend = |d: u32| d % 7 >= 5;
    let surge_total = p.surge_per_day * p.days as f64 * p.surge_events as f64;
    let expected = |scale: f64| -> f64 {
        let mut e = 0.0;
        for u in &users {
            for d in u.join_day..p.days {
                let f = if weekend(d) { p.weekend_factor } else { 1.0 };
                e += (u.weight * scale * f).min(1.0) * u.hours.len() as f64 * p.burst_mean;
            }
        }
        e + surge_total
    };
    let target = p.events as f64 * 1.03;
    let (mut lo, mut hi) = (0.0, 1.0);
    while expected(hi) < target && hi < 1e6 {
        hi *= 2.0;
    }
    for _ in 0..50 {
        let mid = (lo + hi) / 2.0;
        if expected(mid) < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let mut scale = hi;
    let mut raw = Vec::new();
    // The expectation ignores starts clipped at the period's ends and saturated users: raise
    // the scale until the draw overshoots, then sample down.
    for _ in 0..8 {
        raw = draw(
            p, &users, scale, &names, &mut rng, &rank, &jitter, &gap, &burst,
        );
        if raw.len() as u64 >= p.events {
            break;
        }
        scale *= 1.05 * p.events as f64 / raw.len().max(1) as f64;
    }
    if (raw.len() as u64) < p.events {
        return Err(invalid(
            "cannot reach --events with these users and days (every user is active every day)",
        ));
    }
    if raw.len() as u64 > p.events {
        let mut keep: Vec<usize> = sample(&mut rng, raw.len(), p.events as usize).into_vec();
        keep.sort_unstable();
        raw = keep.into_iter().map(|i| raw[i]).collect();
    }
    let mut trace = Trace::default();
    for n in &names {
        trace.runtime(n);
    }
    raw.sort_by_key(|e| (e.0, e.1));
    for (t, u, r) in raw {
        trace.push(t, &format!("u{u:05}"), &names[r]);
    }
    Ok(trace)
}

#[allow(clippy::too_many_arguments)]
fn draw(
    p: &GenParams,
    users: &[User],
    scale: f64,
    names: &[String],
    rng: &mut StdRng,
    rank: &dyn Fn(&mut StdRng) -> usize,
    jitter: &Normal<f64>,
    gap: &Exp<f64>,
    burst: &Geometric,
) -> Vec<(Secs, u32, usize)> {
    let weekend = |d: u32| d % 7 >= 5;
    let end = p.days as Secs * DAY;
    let mut raw: Vec<(Secs, u32, usize)> = Vec::new();
    let pick = |u: &User, rng: &mut StdRng| {
        let x: f64 = rng.gen();
        if x < p.p_main {
            u.main
        } else if x < p.p_main + p.p_occasional {
            u.occasional
        } else {
            rank(rng)
        }
    };
    for (i, u) in users.iter().enumerate() {
        for d in u.join_day..p.days {
            let f = if weekend(d) { p.weekend_factor } else { 1.0 };
            if !rng.gen_bool((u.weight * scale * f).min(1.0)) {
                continue;
            }
            for h in &u.hours {
                let mut t = d as f64 * DAY as f64 + h + jitter.sample(rng);
                let n = burst.sample(rng) + 1;
                for _ in 0..n {
                    if t >= 0.0 && (t as Secs) < end {
                        raw.push((t as Secs, i as u32, pick(u, rng)));
                    }
                    t += gap.sample(rng);
                }
            }
        }
    }
    for d in 0..p.days {
        if rng.gen_bool(p.surge_per_day.clamp(0.0, 1.0)) {
            let r = rng.gen_range(4..names.len());
            let start = d as Secs * DAY + rng.gen_range(8..20) * HOUR;
            let crowd: Vec<u32> = (0..p.surge_users)
                .map(|_| rng.gen_range(0..p.users))
                .collect();
            for _ in 0..p.surge_events {
                let who = crowd[rng.gen_range(0..crowd.len())];
                raw.push((start + rng.gen_range(0..HOUR), who, r));
            }
        }
    }
    raw
}
