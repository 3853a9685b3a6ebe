//! The predictor's series: hot-start rate per runtime, predicted warms used and not used, wasted warm seconds.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StartLabels {
    runtime: String,
    /// `true` when the runtime was warm at the create.
    hot: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuntimeLabel {
    runtime: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabel {
    rule: String,
}

/// Cheap to clone (every family is shared). Runtime labels come from the node's bounded
/// label set (`NodeMetrics::runtime_label`).
#[derive(Clone, Default)]
pub struct PredictMetrics {
    starts: Family<StartLabels, Counter>,
    hot_rate: Family<RuntimeLabel, Gauge<f64, AtomicU64>>,
    warms: Family<RuleLabel, Counter>,
    used: Family<RuleLabel, Counter>,
    unused: Family<RuleLabel, Counter>,
    wasted_secs: Counter<f64, AtomicU64>,
    /// (hot, all) starts per runtime label, for the ratio.
    counts: Arc<Mutex<HashMap<String, (u64, u64)>>>,
}

impl PredictMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "predict_starts",
            "Sandbox creates seen by the predictor, by runtime and whether the runtime was warm (hot)",
            self.starts.clone(),
        );
        r.register(
            "predict_hot_start_ratio",
            "Share of creates since start that found their runtime warm, by runtime",
            self.hot_rate.clone(),
        );
        r.register(
            "predict_warms",
            "Background warms queued by the predictor, by the rule that fired",
            self.warms.clone(),
        );
        r.register(
            "predict_warms_used",
            "Predicted warms a sandbox create then used, by rule",
            self.used.clone(),
        );
        r.register(
            "predict_warms_unused",
            "Predicted warms evicted or released before any create used them, by rule",
            self.unused.clone(),
        );
        r.register(
            "predict_wasted_warm_seconds",
            "Warm time spent on predicted warms that were never used",
            self.wasted_secs.clone(),
        );
    }

    pub fn start(&self, runtime: String, hot: bool) {
        let hot_label = if hot { "true" } else { "false" };
        self.starts
            .get_or_create(&StartLabels {
                runtime: runtime.clone(),
                hot: hot_label,
            })
            .inc();
        let ratio = {
            let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            let e = c.entry(runtime.clone()).or_default();
            e.0 += u64::from(hot);
            e.1 += 1;
            e.0 as f64 / e.1 as f64
        };
        self.hot_rate
            .get_or_create(&RuntimeLabel { runtime })
            .set(ratio);
    }

    pub fn warmed(&self, rule: &str) {
        self.warms.get_or_create(&rule_label(rule)).inc();
    }

    pub fn used(&self, rule: &str) {
        self.used.get_or_create(&rule_label(rule)).inc();
    }

    pub fn unused(&self, rule: &str, warm_secs: f64) {
        self.unused.get_or_create(&rule_label(rule)).inc();
        self.wasted_secs.inc_by(warm_secs.max(0.0));
    }
}

fn rule_label(rule: &str) -> RuleLabel {
    RuleLabel { rule: rule.into() }
}
