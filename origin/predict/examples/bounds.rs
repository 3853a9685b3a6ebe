//! Upper bounds for any policy on a trace: a clairvoyant oracle that knows every future start (docs/PREDICTION.md).
//!
//! `cargo run -p prewarm-predict --example bounds -- TRACE.csv NODES FRACTION` prints, per
//! oracle, the cold starts summed over NODES nodes (users split as the simulator does) at a
//! budget of FRACTION of all runtimes' bytes:
//! - `oracle-evict`: evicts the idle runtime whose next start is furthest away (Belady);
//! - `oracle-prefetch`: the same, and warms every runtime 2 minutes before its next start.
//!
//! No online policy can know the future; these only say how far from the best each is.

use std::collections::HashMap;
use std::io::Write;

use prewarm_predict::policy::{Plan, Predictor, Rule, Usage, Want};
use prewarm_predict::{sim, Catalog, RuntimeId, Secs, SimOptions, Trace};

struct Oracle {
    starts: HashMap<RuntimeId, Vec<Secs>>,
    prefetch: Secs,
}

impl Oracle {
    fn next(&self, r: RuntimeId, now: Secs) -> Option<Secs> {
        let v = self.starts.get(&r)?;
        v.get(v.partition_point(|&t| t <= now)).copied()
    }
}

impl Predictor for Oracle {
    fn name(&self) -> &'static str {
        "oracle"
    }
    fn observe(&mut self, _u: &Usage) {}
    fn tick(&mut self, now: Secs) -> Plan {
        let mut plan = Plan::default();
        for r in self.starts.keys() {
            match self.next(*r, now) {
                Some(n) if self.prefetch > 0 && n <= now + self.prefetch => plan.warm.push(Want {
                    runtime: *r,
                    score: 1.0 / ((n - now) as f64 + 1.0),
                    rule: Rule::UserSchedule,
                    until: n + 1,
                }),
                _ => {}
            }
        }
        plan.warm.sort_by_key(|w| w.runtime);
        plan
    }
    fn retain_priority(&self, now: Secs, r: RuntimeId, _bytes: u64) -> Option<f64> {
        Some(-self.next(r, now).map_or(1e12, |n| (n - now) as f64))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        let _ = writeln!(std::io::stderr(), "usage: bounds TRACE.csv NODES FRACTION");
        std::process::exit(2);
    }
    let trace = Trace::read(&[&args[1]]).expect("a trace");
    let nodes: u32 = args[2].parse().expect("NODES: a number");
    let frac: f64 = args[3].parse().expect("FRACTION: e.g. 0.25");
    let total = Catalog::standard().total_bytes(&trace.runtimes);
    let o = SimOptions::new((total as f64 * frac) as u64);
    for (name, prefetch) in [("oracle-evict", 0), ("oracle-prefetch", 120)] {
        let (mut cold, mut pinned, mut warm, mut wasted) = (0, 0, 0.0, 0.0);
        for i in 0..nodes {
            let mut part = Trace::default();
            for n in &trace.runtimes {
                part.runtime(n);
            }
            for e in trace.events.iter().filter(|e| e.user.0 % nodes == i) {
                part.push(
                    e.t,
                    &trace.users[e.user.0 as usize],
                    trace.runtime_name(e.runtime),
                );
            }
            let mut starts: HashMap<RuntimeId, Vec<Secs>> = HashMap::new();
            for e in &part.events {
                starts.entry(e.runtime).or_default().push(e.t);
            }
            let r = sim::run(&part, &mut Oracle { starts, prefetch }, &o);
            cold += r.cold_starts;
            pinned += r.cold_starts_pinned_out;
            warm += r.warm_work.seconds;
            wasted += r.wasted_warm_work.seconds;
        }
        let _ = writeln!(
            std::io::stdout(),
            "{name}: {cold} cold starts ({pinned} pinned out), warm work {warm:.0} s, wasted {wasted:.0} s"
        );
    }
}
