//! What a training run records per step and per epoch: a task's loss terms as a typed set
//! ([`LossTerm`], [`Losses`]: a misspelt term is a compile error), the epoch's line of
//! `metrics.jsonl` that the engine writes around the task's own metrics ([`Epoch`]: `epoch`,
//! `lr`, the mean of every loss term, the task's metrics, `seconds`), and that file (appended
//! once per finished epoch, trimmed back when a run resumes).

use crate::error::{Error, Result};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use std::io::Write;
use std::marker::PhantomData;
use std::path::Path;

/// File name of the per-epoch metrics log inside a run folder (defined beside its reader).
pub use crate::analysis::curve::METRICS;

/// The loss terms of a task: an enum whose variants are its terms.
pub trait LossTerm: Copy + PartialEq + std::fmt::Debug + Send + 'static {
    /// Every term in display order, with its name (TensorBoard's `loss/<name>`, the progress
    /// message) and its key in `metrics.jsonl` (the epoch's mean).
    const TERMS: &'static [(Self, &'static str, &'static str)];
}

/// One value per term of `K`; a term this run does not compute is absent (not logged, 0 in
/// `metrics.jsonl`).
#[derive(Debug, Clone, PartialEq)]
pub struct Losses<K> {
    values: Vec<Option<f64>>,
    _terms: PhantomData<K>,
}

impl<K: LossTerm> Default for Losses<K> {
    fn default() -> Self {
        Losses { values: vec![None; K::TERMS.len()], _terms: PhantomData }
    }
}

impl<K: LossTerm> Losses<K> {
    fn index(term: K) -> usize {
        K::TERMS.iter().position(|(t, _, _)| *t == term).expect("every term is listed in TERMS")
    }

    /// Set `term` to `value`.
    pub fn set(&mut self, term: K, value: f64) {
        self.values[Self::index(term)] = Some(value);
    }

    /// The value of `term`, when computed.
    pub fn get(&self, term: K) -> Option<f64> {
        self.values[Self::index(term)]
    }

    /// The value of `term`, 0 when not computed.
    pub fn or_zero(&self, term: K) -> f64 {
        self.get(term).unwrap_or(0.0)
    }

    /// The computed terms with their names, in display order.
    pub fn named(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        K::TERMS.iter().zip(&self.values).filter_map(|((_, name, _), v)| v.map(|v| (*name, v)))
    }

    /// Add `weight · other` term by term (a term absent here starts at 0).
    pub fn add_weighted(&mut self, weight: f64, other: &Losses<K>) {
        for (sum, v) in self.values.iter_mut().zip(&other.values) {
            if let Some(v) = v {
                *sum = Some(sum.unwrap_or(0.0) + weight * v);
            }
        }
    }

    /// Add `other` term by term (a term absent here takes `other`'s value).
    pub fn accumulate(&mut self, other: &Losses<K>) {
        for (sum, v) in self.values.iter_mut().zip(&other.values) {
            if let Some(v) = v {
                *sum = Some(sum.map_or(*v, |s| s + v));
            }
        }
    }

    /// Every term divided by `n`.
    pub fn divided(mut self, n: f64) -> Self {
        for v in self.values.iter_mut().flatten() {
            *v /= n;
        }
        self
    }

    /// Every computed term replaced by its mean over the ranks of `group` (every rank computes
    /// the same terms; unchanged for a single process).
    pub fn averaged(mut self, group: &crate::distributed::Group) -> Self {
        if group.is_distributed() {
            let mut values: Vec<f64> = self.values.iter().map(|v| v.unwrap_or(0.0)).collect();
            group.mean_f64(&mut values);
            for (v, mean) in self.values.iter_mut().zip(values) {
                if v.is_some() {
                    *v = Some(mean);
                }
            }
        }
        self
    }

    /// `name value` for each computed term (the progress message of a step).
    pub fn message(&self) -> String {
        self.named().map(|(name, v)| format!("{name} {v:.4}")).collect::<Vec<_>>().join(" ")
    }
}

/// The mean losses under their `metrics.jsonl` keys, every term (0 when not computed).
impl<K: LossTerm> Serialize for Losses<K> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.values.len()))?;
        for ((_, _, key), v) in K::TERMS.iter().zip(&self.values) {
            map.serialize_entry(key, &v.unwrap_or(0.0))?;
        }
        map.end()
    }
}

/// One finished epoch, as the engine writes it to `metrics.jsonl`:
/// `{"epoch", "lr", <mean losses>, <the task's metrics>, "seconds"}`.
#[derive(Debug, Clone, Serialize)]
#[serde(bound(serialize = "M: Serialize"))]
pub struct Epoch<K: LossTerm, M: Serialize> {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Learning rate used.
    pub lr: f64,
    /// Mean of each loss term over the epoch's steps.
    #[serde(flatten)]
    pub losses: Losses<K>,
    /// What the task measured after the epoch (its validation).
    #[serde(flatten)]
    pub metrics: M,
    /// Wall-clock seconds of the epoch.
    pub seconds: f64,
}

/// Append one epoch's line to `run_dir/metrics.jsonl`.
pub fn append_metrics(run_dir: &Path, line: &impl Serialize) -> Result<()> {
    let path = run_dir.join(METRICS);
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| Error::io(&path, e))?;
    writeln!(f, "{}", serde_json::to_string(line).expect("metrics serialize")).map_err(|e| Error::io(&path, e))
}

/// Keep only the `metrics.jsonl` lines of epochs up to `epoch` (the checkpoint resumed from).
pub fn trim_metrics(run_dir: &Path, epoch: usize) -> Result<()> {
    let path = run_dir.join(METRICS);
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(()) };
    let kept: String = text
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).ok().and_then(|v| v["epoch"].as_u64()).is_some_and(|e| e as usize <= epoch))
        .map(|l| format!("{l}\n"))
        .collect();
    if kept != text {
        crate::io::atomic::write_bytes_atomically(&path, kept.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Term {
        A,
        B,
    }

    impl LossTerm for Term {
        const TERMS: &'static [(Self, &'static str, &'static str)] = &[(Term::A, "A", "loss_a"), (Term::B, "B", "loss_b")];
    }

    #[derive(Debug, Clone, Serialize)]
    struct Val {
        val: Option<f64>,
    }

    #[test]
    fn an_epoch_line_puts_the_envelope_around_losses_and_metrics() {
        let mut l = Losses::<Term>::default();
        l.set(Term::B, 0.25);
        let line = Epoch { epoch: 3, lr: 1e-3, losses: l, metrics: Val { val: None }, seconds: 1.5 };
        assert_eq!(serde_json::to_string(&line).unwrap(), r#"{"epoch":3,"lr":0.001,"loss_a":0.0,"loss_b":0.25,"val":null,"seconds":1.5}"#);
    }

    #[test]
    fn sums_weigh_shares_and_average_steps() {
        let step = |a: f64| {
            let mut l = Losses::<Term>::default();
            l.set(Term::A, a);
            l
        };
        let mut shares = Losses::default();
        shares.add_weighted(0.25, &step(4.0));
        shares.add_weighted(0.75, &step(8.0));
        assert_eq!(shares.get(Term::A), Some(7.0));
        assert_eq!(shares.get(Term::B), None);
        let mut sums = Losses::default();
        for a in [1.0, 2.0, 6.0] {
            sums.accumulate(&step(a));
        }
        let mean = sums.divided(3.0);
        assert_eq!(mean.get(Term::A), Some(3.0));
        assert_eq!(mean.or_zero(Term::B), 0.0);
        assert_eq!(mean.message(), "A 3.0000");
        assert_eq!(mean.named().collect::<Vec<_>>(), [("A", 3.0)]);
    }
}
