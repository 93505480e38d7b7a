//! Inline SVG figures for the slice-map page (self-contained, no script or stylesheet): the
//! colour bar of a display window, drawn through the slices' own colour maps, and the plot of
//! learning curves.

use super::colormap::Window;
use super::curve::LearningCurve;
use super::slice::ColorMap;
use std::fmt::Write;

/// Text escaped for HTML and SVG (`&`, `<`, `>`, `"`).
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A number as short text: integers without decimals, others with at most 3 significant
/// decimals; never "-0".
fn number(x: f64) -> String {
    let x = x + 0.0;
    if x == x.round() { format!("{x:.0}") } else { format!("{}", (x * 1000.0).round() / 1000.0) }
}

/// Cells of a colour bar: one per entry of the 256-colour table.
const BAR_CELLS: usize = 256;

/// A horizontal colour bar of `map` over `window`, 256 px wide: each of its 256 cells is
/// the colour of the value at its centre (through [`ColorMap::rgb`], as the slices are
/// drawn), with the window's bounds and middle marked and `unit` under them.
pub fn color_bar(map: ColorMap, window: Window, unit: &str) -> String {
    let (pad, bar_h) = (18, 12);
    let low = (window.level - window.width / 2.0) as f64;
    let high = low + window.width as f64;
    let mut svg = format!(
        r#"<svg class="colorbar" width="{w}" height="42" viewBox="0 0 {w} 42" role="img" aria-label="{label}"><title>{label}</title>"#,
        w = BAR_CELLS + 2 * pad,
        label = escape(&format!("colour bar: {} … {} {unit}", number(low), number(high))),
    );
    for i in 0..BAR_CELLS {
        let value = window.level - window.width / 2.0 + (i as f32 + 0.5) / BAR_CELLS as f32 * window.width;
        let [r, g, b] = map.rgb(value, window);
        let _ = write!(svg, r#"<rect x="{}" y="0" width="1.05" height="{bar_h}" fill="rgb({r},{g},{b})"/>"#, pad + i);
    }
    for k in 0..3 {
        let x = pad + k * BAR_CELLS / 2;
        let _ = write!(
            svg,
            r#"<line x1="{x}" y1="{bar_h}" x2="{x}" y2="{}" stroke="black"/><text x="{x}" y="{}" font-size="10" text-anchor="middle">{}</text>"#,
            bar_h + 3,
            bar_h + 13,
            number(low + k as f64 * (high - low) / 2.0)
        );
    }
    let _ = write!(svg, r#"<text x="{}" y="39" font-size="10" text-anchor="middle">{}</text></svg>"#, pad + BAR_CELLS / 2, escape(unit));
    svg
}

/// Ticks at 1, 2 or 5 × 10ᵏ spanning `[lo, hi]` with about `n` steps: `(first, step, count)`.
fn ticks(lo: f64, hi: f64, n: f64) -> (f64, f64, usize) {
    let raw = (hi - lo) / n;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw * (1.0 - 1e-9)).unwrap_or(10.0 * magnitude);
    let first = (lo / step + 1e-9).floor() * step;
    let last = (hi / step - 1e-9).ceil() * step;
    (first, step, ((last - first) / step).round() as usize)
}

/// Line colours (matplotlib's tab10 without its grey, which the baseline uses).
const PALETTE: [&str; 9] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"];

/// A plot of `curves` (y against epoch; one coloured line with dots per curve) and of
/// `baseline` (a dashed grey horizontal line), with axes, `y_label`, and a legend under the
/// plot naming each line. Non-finite points are left out.
pub fn curve_plot(curves: &[LearningCurve], baseline: Option<(&str, f64)>, y_label: &str) -> String {
    let (left, right, top, plot_w, plot_h) = (64.0, 16.0, 12.0, 560.0, 260.0);
    let finite: Vec<Vec<(f64, f64)>> =
        curves.iter().map(|c| c.points.iter().map(|&(e, y)| (e as f64, y)).filter(|(_, y)| y.is_finite()).collect()).collect();
    let xs = finite.iter().flatten().map(|p| p.0);
    let ys = finite.iter().flatten().map(|p| p.1).chain(baseline.map(|b| b.1).filter(|b| b.is_finite()));
    let (mut x_lo, mut x_hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    let (mut y_lo, mut y_hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| (a.min(y), b.max(y)));
    if !x_lo.is_finite() {
        (x_lo, x_hi) = (0.0, 1.0);
    }
    if x_hi <= x_lo {
        x_hi = x_lo + 1.0;
    }
    if !y_lo.is_finite() {
        (y_lo, y_hi) = (0.0, 1.0);
    }
    if y_hi - y_lo < 1e-9 {
        let pad = (y_lo.abs() * 0.1).max(1.0);
        (y_lo, y_hi) = (y_lo - pad, y_hi + pad);
    }
    let (y_first, y_step, y_count) = ticks(y_lo, y_hi, 5.0);
    let (y_lo, y_hi) = (y_first, y_first + y_step * y_count as f64);
    // Epochs are integers: x ticks at whole multiples of a step of at least 1.
    let x_step = ticks(x_lo, x_hi, 8.0).1.max(1.0).round();
    let px = |x: f64| left + (x - x_lo) / (x_hi - x_lo) * plot_w;
    let py = |y: f64| top + (y_hi - y) / (y_hi - y_lo) * plot_h;
    let legend_rows = curves.len() + baseline.is_some() as usize;
    let (width, height) = (left + plot_w + right, top + plot_h + 44.0 + 18.0 * legend_rows as f64);
    let mut svg = format!(
        r#"<svg id="learning-curve" class="curve" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{label}" font-size="12"><title>{label}</title>"#,
        label = escape(y_label),
    );
    // Grid, ticks and tick labels.
    for k in 0..=y_count {
        let y = y_first + k as f64 * y_step;
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{py:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            left + plot_w,
            left - 4.0,
            py(y) + 4.0,
            number(y),
            py = py(y)
        );
    }
    let mut x = (x_lo / x_step).ceil() * x_step;
    while x <= x_hi {
        let _ = write!(
            svg,
            r#"<line x1="{px:.1}" x2="{px:.1}" y1="{}" y2="{}" stroke="black"/><text x="{px:.1}" y="{}" text-anchor="middle">{}</text>"#,
            top + plot_h,
            top + plot_h + 4.0,
            top + plot_h + 16.0,
            number(x),
            px = px(x)
        );
        x += x_step;
    }
    let _ = write!(
        svg,
        r#"<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/><text x="{}" y="{}" text-anchor="middle">epoch</text><text transform="translate(14 {}) rotate(-90)" text-anchor="middle">{}</text>"#,
        left + plot_w / 2.0,
        top + plot_h + 32.0,
        top + plot_h / 2.0,
        escape(y_label)
    );
    // Lines, then the legend under the x-axis label.
    let legend_y = |row: usize| top + plot_h + 52.0 + 18.0 * row as f64;
    for (i, (curve, points)) in curves.iter().zip(&finite).enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let path: Vec<String> = points.iter().map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y))).collect();
        let _ = write!(svg, r#"<polyline class="curve-line" fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#, path.join(" "));
        for &(x, y) in points {
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{colour}"><title>{}: epoch {}, {}</title></circle>"#,
                px(x),
                py(y),
                escape(&curve.label),
                number(x),
                number(y)
            );
        }
        let ly = legend_y(i);
        let _ = write!(
            svg,
            r#"<line x1="{left}" x2="{}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            left + 24.0,
            left + 30.0,
            ly + 4.0,
            escape(&curve.label)
        );
    }
    if let Some((label, value)) = baseline.filter(|b| b.1.is_finite()) {
        let (y, ly) = (py(value), legend_y(curves.len()));
        let _ = write!(
            svg,
            r##"<line class="baseline" x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#7f7f7f" stroke-width="2" stroke-dasharray="6 4"/><line x1="{left}" x2="{}" y1="{ly}" y2="{ly}" stroke="#7f7f7f" stroke-width="2" stroke-dasharray="6 4"/><text x="{}" y="{}">{} ({})</text>"##,
            left + plot_w,
            left + 24.0,
            left + 30.0,
            ly + 4.0,
            escape(label),
            number(value)
        );
    }
    svg + "</svg>"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short() {
        assert_eq!(number(150.0), "150");
        assert_eq!(number(-0.0), "0");
        assert_eq!(number(32.79512), "32.795");
        assert_eq!(number(-200.5), "-200.5");
    }

    #[test]
    fn ticks_are_round_and_span_the_range() {
        assert_eq!(ticks(28.3, 41.7, 5.0), (25.0, 5.0, 4));
        assert_eq!(ticks(28.3, 41.7, 10.0), (28.0, 2.0, 7));
        assert_eq!(ticks(1.0, 10.0, 8.0), (0.0, 2.0, 5));
        let (first, step, count) = ticks(0.013, 0.05, 5.0);
        assert!((first - 0.01).abs() < 1e-12 && (step - 0.01).abs() < 1e-12 && count == 4);
    }

    #[test]
    fn color_bar_uses_the_slice_colours_and_labels_the_window() {
        let w = Window { width: 150.0, level: 75.0 };
        let bar = color_bar(ColorMap::Jet, w, "ml/100 g/min");
        assert_eq!(bar.matches("<rect").count(), BAR_CELLS);
        let [r, g, b] = ColorMap::Jet.rgb(0.1, w);
        assert!(bar.contains(&format!("fill=\"rgb({r},{g},{b})\"")), "first cell is the colour of the window's low end");
        let [r, g, b] = ColorMap::Jet.rgb(149.9, w);
        assert!(bar.contains(&format!("fill=\"rgb({r},{g},{b})\"")));
        for text in [">0<", ">75<", ">150<", ">ml/100 g/min<", "colour bar: 0 … 150 ml/100 g/min"] {
            assert!(bar.contains(text), "{text}");
        }
        let grey = color_bar(ColorMap::Gray, Window { width: 800.0, level: 200.0 }, "HU");
        assert!(grey.contains(">-200<") && grey.contains(">600<") && grey.contains(">HU<") && grey.contains("rgb(0,0,0)"));
    }

    #[test]
    fn curve_plot_draws_each_curve_the_baseline_and_a_legend() {
        let curves = vec![
            LearningCurve { label: "run_a, train norm".into(), points: vec![(1, 40.0), (2, 35.0), (3, 30.0)] },
            LearningCurve { label: "run<b>, eval norm".into(), points: vec![(1, 41.0), (2, f64::NAN)] },
        ];
        let svg = curve_plot(&curves, Some(("predict the training mean", 32.5)), "MAE");
        assert_eq!(svg.matches("class=\"curve-line\"").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 4, "the NaN point is left out");
        assert!(svg.contains(">run_a, train norm<") && svg.contains(">run&lt;b&gt;, eval norm<"));
        assert!(svg.contains("class=\"baseline\"") && svg.contains("predict the training mean (32.5)"));
        assert!(svg.contains(">epoch<") && svg.contains(">MAE<"));
        // y axis from 30 to 45 in steps of 5 (the baseline inside), x ticks at epochs 1, 2 and 3.
        for tick in [">30<", ">45<", ">1<", ">3<"] {
            assert!(svg.contains(tick), "{tick}");
        }
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        // A single point and no baseline still make a valid plot.
        let one = curve_plot(&[LearningCurve { label: "x".into(), points: vec![(1, 5.0)] }], None, "MAE");
        assert!(!one.contains("NaN") && !one.contains("inf") && one.contains("<circle"));
    }
}
