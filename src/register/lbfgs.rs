//! Limited-memory BFGS with a backtracking (Armijo) line search, for the smooth cost
//! functions of registration (a fixed set of samples per level keeps them deterministic).

/// Stopping and step rules.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Iteration limit.
    pub max_iterations: usize,
    /// Correction pairs kept.
    pub memory: usize,
    /// The largest change of any parameter in one step (parameter units).
    pub max_step: f64,
    /// Stop after [`SLOW_ITERATIONS`] iterations in a row that lower the cost by less than this fraction.
    pub relative_tolerance: f64,
}

/// Where the minimization ended.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// Cost at the start.
    pub start: f64,
    /// Cost at the end.
    pub end: f64,
    /// Iterations run.
    pub iterations: usize,
    /// Cost evaluations.
    pub evaluations: usize,
}

/// Armijo's sufficient-decrease fraction of the line search.
const ARMIJO: f64 = 1e-4;
/// Step halvings the line search tries before giving up on a direction.
const BACKTRACKS: usize = 12;
/// Iterations in a row below [`Options::relative_tolerance`] that end the minimization.
const SLOW_ITERATIONS: usize = 3;
/// A correction pair is kept only when `sᵀy` exceeds this fraction of `|s|·|y|` (curvature).
const CURVATURE: f64 = 1e-12;

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Minimize `f` (returning cost and gradient) from `x`, updating `x` in place; `progress`
/// hears each iteration's number and cost.
pub fn minimize(x: &mut [f64], f: &mut dyn FnMut(&[f64]) -> (f64, Vec<f64>), options: Options, progress: &mut dyn FnMut(usize, f64)) -> Outcome {
    let (mut fx, mut g) = f(x);
    let start = fx;
    let mut evaluations = 1;
    let mut history: std::collections::VecDeque<(Vec<f64>, Vec<f64>, f64)> = std::collections::VecDeque::new();
    let mut slow = 0;
    let mut iterations = 0;
    while iterations < options.max_iterations {
        iterations += 1;
        // Two-loop recursion: d = −H·g.
        let mut q = g.clone();
        let mut alphas = Vec::with_capacity(history.len());
        for (s, y, rho) in history.iter().rev() {
            let a = rho * dot(s, &q);
            q.iter_mut().zip(y).for_each(|(qi, yi)| *qi -= a * yi);
            alphas.push(a);
        }
        let gamma = history.back().map_or(1.0, |(s, y, _)| dot(s, y) / dot(y, y).max(1e-300));
        q.iter_mut().for_each(|v| *v *= gamma);
        for ((s, y, rho), a) in history.iter().zip(alphas.iter().rev()) {
            let b = rho * dot(y, &q);
            q.iter_mut().zip(s).for_each(|(qi, si)| *qi += (a - b) * si);
        }
        let mut d: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&g, &d);
        let norm_inf = |v: &[f64]| v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        if history.is_empty() || slope >= 0.0 {
            // Steepest descent, scaled to the largest allowed step.
            history.clear();
            let gmax = norm_inf(&g);
            if gmax == 0.0 {
                break;
            }
            d = g.iter().map(|v| -v * options.max_step / gmax).collect();
            slope = dot(&g, &d);
        }
        let dmax = norm_inf(&d);
        if dmax > options.max_step {
            let s = options.max_step / dmax;
            d.iter_mut().for_each(|v| *v *= s);
            slope *= s;
        }
        // Backtracking line search on the Armijo condition.
        let mut step = 1.0;
        let mut accepted = None;
        for _ in 0..BACKTRACKS {
            let trial: Vec<f64> = x.iter().zip(&d).map(|(xi, di)| xi + step * di).collect();
            let (ft, gt) = f(&trial);
            evaluations += 1;
            if ft.is_finite() && ft <= fx + ARMIJO * step * slope {
                accepted = Some((trial, ft, gt));
                break;
            }
            step *= 0.5;
        }
        let Some((trial, ft, gt)) = accepted else {
            if history.is_empty() {
                break;
            }
            history.clear();
            continue;
        };
        let s: Vec<f64> = trial.iter().zip(x.iter()).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = gt.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy > CURVATURE * dot(&y, &y).sqrt() * dot(&s, &s).sqrt() && sy > 0.0 {
            history.push_back((s, y, 1.0 / sy));
            if history.len() > options.memory {
                history.pop_front();
            }
        }
        let decrease = (fx - ft) / fx.abs().max(1e-12);
        x.copy_from_slice(&trial);
        fx = ft;
        g = gt;
        progress(iterations, fx);
        slow = if decrease < options.relative_tolerance { slow + 1 } else { 0 };
        if slow >= SLOW_ITERATIONS {
            break;
        }
    }
    Outcome { start, end: fx, iterations, evaluations }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimizes_the_rosenbrock_function() {
        let mut x = vec![-1.2, 1.0];
        let mut f = |x: &[f64]| {
            let (a, b) = (x[0], x[1]);
            let v = (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2);
            (v, vec![-2.0 * (1.0 - a) - 400.0 * a * (b - a * a), 200.0 * (b - a * a)])
        };
        let options = Options { max_iterations: 500, memory: 7, max_step: 0.5, relative_tolerance: 0.0 };
        let out = minimize(&mut x, &mut f, options, &mut |_, _| {});
        assert!(out.end < 1e-8, "{out:?} at {x:?}");
        assert!((x[0] - 1.0).abs() < 1e-3 && (x[1] - 1.0).abs() < 1e-3);
    }
}
