//! Slice maps of an inference folder (docs/design.md §7): every axial slice of `real_a` (grey),
//! `real_b`, `fake_b` and |error| (jet) as PNG under
//! `<out>/<pid>/{real_a,real_b,fake_b,error}/x_<i>.png`, one montage per case
//! (real_a | real_b | fake_b | |error|) and an `index.html` that browses variants, cases and
//! slices (titled panels with colour bars), with the scores of each case, an optional
//! baseline row and an optional plot of learning curves. The |error| panel covers only
//! the voxels where MBF was measured (`real_b` > 0, the myocardium): elsewhere `real_b` holds
//! the −1024 fill, so an error there would only show how far the prediction is from it.
//! With [`SlicemapStyle::fake_where_measured`], `fake_b` is drawn there only too (for a
//! generator whose loss saw only the myocardium, so that its output elsewhere is untrained).

use super::colormap::Window;
use super::curve::LearningCurve;
use super::metrics::is_measured;
use super::report::VariantScores;
use super::slice::{ColorMap, axial_slice};
use super::svg::{color_bar, curve_plot, escape};
use crate::error::{Error, Result};
use crate::cohort::inference as files;
use crate::io::atomic::write_bytes_atomically;
use crate::io::nifti::read_nifti;
use crate::io::png::RgbImage;
use ndarray::Array3;
use std::path::{Path, PathBuf};

/// File name of a case's montage.
pub const MONTAGE: &str = "montage.png";
/// File name of the browser page.
pub const INDEX: &str = "index.html";
/// Unit of MBF (`real_b`, `fake_b`, |error|).
pub const MBF_UNIT: &str = "ml/100 g/min";
/// Unit of CTA (`real_a`).
pub const CTA_UNIT: &str = "HU";
/// What the baseline of [`IndexExtras`] is called on the page.
pub const BASELINE_LABEL: &str = "predict the training mean";

/// One image panel of the slice maps, in montage and page order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Panel {
    /// The CTA (grey).
    RealA,
    /// The measured MBF (jet).
    RealB,
    /// The predicted MBF (jet).
    FakeB,
    /// |fake_b − real_b| where MBF was measured (jet).
    Error,
}

impl Panel {
    /// All panels; the first three are the volumes of a case folder.
    pub const ALL: [Panel; 4] = [Panel::RealA, Panel::RealB, Panel::FakeB, Panel::Error];

    /// File stem of its volume and folder of its slices (`error` for |error|).
    pub fn stem(self) -> &'static str {
        match self {
            Panel::RealA => "real_a",
            Panel::RealB => "real_b",
            Panel::FakeB => "fake_b",
            Panel::Error => "error",
        }
    }

    /// Its title on the page.
    pub fn title(self) -> &'static str {
        match self {
            Panel::Error => "|error|",
            other => other.stem(),
        }
    }

    /// Colour map of its slices.
    pub fn map(self) -> ColorMap {
        if self == Panel::RealA { ColorMap::Gray } else { ColorMap::Jet }
    }

    /// Unit of its values.
    pub fn unit(self) -> &'static str {
        if self == Panel::RealA { CTA_UNIT } else { MBF_UNIT }
    }

    /// What it shows, drawn as `style` says.
    pub fn caption(self, style: &SlicemapStyle) -> &'static str {
        match self {
            Panel::RealA => "CTA",
            Panel::RealB => "measured MBF",
            Panel::FakeB if style.fake_where_measured => "predicted MBF, shown where MBF was measured (the myocardium) only",
            Panel::FakeB => "predicted MBF",
            Panel::Error => "|fake_b − real_b| where MBF was measured (the myocardium)",
        }
    }
}

/// How the slice maps are drawn: display windows, and where `fake_b` is shown.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlicemapStyle {
    /// CTA window (`--src-ww/--src-wl`).
    pub src: Window,
    /// MBF window (`--dst-ww/--dst-wl`), also used for |error| (from 0 to its width).
    pub dst: Window,
    /// Draw `fake_b` only where `real_b` was measured, with `real_b`'s fill elsewhere
    /// (`--fake-where-measured`).
    pub fake_where_measured: bool,
}

impl Default for SlicemapStyle {
    fn default() -> Self {
        Self { src: Window::REFERENCE, dst: Window::REFERENCE, fake_where_measured: false }
    }
}

impl SlicemapStyle {
    /// Display window of `panel`: `src` for real_a, `dst` for real_b and fake_b, and from 0
    /// to `dst`'s width for |error|.
    pub fn window(&self, panel: Panel) -> Window {
        match panel {
            Panel::RealA => self.src,
            Panel::RealB | Panel::FakeB => self.dst,
            Panel::Error => Window { width: self.dst.width, level: self.dst.width / 2.0 },
        }
    }
}

/// The slice maps written for one case.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CaseSlices {
    /// Case id.
    pub pid: String,
    /// Number of axial slices.
    pub slices: usize,
    /// The slice shown in the montage (the one with most myocardium).
    pub montage_slice: usize,
}

/// The axial slice with the most voxels of positive `real_b` (the myocardium); the middle
/// slice when there is none.
pub fn most_myocardium_slice(real_b: &Array3<f32>) -> usize {
    let nz = real_b.dim().2;
    let counts: Vec<usize> = (0..nz).map(|z| real_b.index_axis(ndarray::Axis(2), z).iter().filter(|&&v| is_measured(v)).count()).collect();
    match counts.iter().enumerate().max_by_key(|&(z, &c)| (c, std::cmp::Reverse(z))) {
        Some((z, &c)) if c > 0 => z,
        _ => nz / 2,
    }
}

/// |fake − real| where `real` was measured ([`is_measured`]), 0 elsewhere.
pub fn measured_error(fake: &Array3<f32>, real: &Array3<f32>) -> Array3<f32> {
    ndarray::Zip::from(fake).and(real).map_collect(|&f, &r| if is_measured(r) { (f - r).abs() } else { 0.0 })
}

/// Panels side by side, each enlarged `zoom` times (nearest), separated by 2 black pixels.
pub fn montage(panels: &[RgbImage], zoom: usize) -> RgbImage {
    let gap = 2;
    let h = panels.iter().map(|p| p.height).max().unwrap_or(0) * zoom;
    let w = panels.iter().map(|p| p.width * zoom).sum::<usize>() + gap * panels.len().saturating_sub(1);
    let mut out = RgbImage::new(w, h);
    let mut x0 = 0;
    for p in panels {
        for row in 0..p.height * zoom {
            for col in 0..p.width * zoom {
                out.put(x0 + col, row, p.get(col / zoom, row / zoom));
            }
        }
        x0 += p.width * zoom + gap;
    }
    out
}

/// `fake` where `real` was measured ([`is_measured`]), `real`'s fill elsewhere.
pub fn fake_where_measured(fake: &Array3<f32>, real: &Array3<f32>) -> Array3<f32> {
    ndarray::Zip::from(fake).and(real).map_collect(|&f, &r| if is_measured(r) { f } else { r })
}

/// Write the slice maps of one case folder (holding real_a, real_b, fake_b) to `out`.
pub fn write_case(case: &Path, out: &Path, style: &SlicemapStyle) -> Result<CaseSlices> {
    let pid = case.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut volumes = Vec::new();
    for panel in &Panel::ALL[..3] {
        volumes.push(read_nifti(case.join(format!("{}.nii.gz", panel.stem())))?.data);
    }
    let shape = volumes[0].dim();
    if let Some((i, _)) = volumes.iter().enumerate().find(|(_, v)| v.dim() != shape) {
        return Err(Error::format(case.join(format!("{}.nii.gz", Panel::ALL[i].stem())), format!("size {:?} differs from real_a's {:?}", volumes[i].dim(), shape)));
    }
    let error = measured_error(&volumes[2], &volumes[1]);
    if style.fake_where_measured {
        volumes[2] = fake_where_measured(&volumes[2], &volumes[1]);
    }
    volumes.push(error);
    for (panel, volume) in Panel::ALL.iter().zip(&volumes) {
        for z in 0..shape.2 {
            axial_slice(volume, z, style.window(*panel), panel.map()).save(&out.join(panel.stem()).join(format!("x_{z}.png")))?;
        }
    }
    let z = most_myocardium_slice(&volumes[1]);
    let panels: Vec<RgbImage> = Panel::ALL.iter().zip(&volumes).map(|(p, v)| axial_slice(v, z, style.window(*p), p.map())).collect();
    let zoom = (256 / shape.0.max(shape.1).max(1)).clamp(1, 8);
    montage(&panels, zoom).save(&out.join(MONTAGE))?;
    Ok(CaseSlices { pid, slices: shape.2, montage_slice: z })
}

/// The slice maps of one inference folder.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantSlices {
    /// Display name of the variant.
    pub label: String,
    /// Its folder, relative to the index page.
    pub rel_dir: String,
    /// Cases written.
    pub cases: Vec<CaseSlices>,
    /// `(pid, reason)` for cases that failed; the others went on.
    pub failed: Vec<(String, String)>,
    /// The variant's scores, shown beside each case.
    pub scores: Option<VariantScores>,
}

/// Write the slice maps of every case folder of `input` under `out`.
pub fn write_variant(input: &Path, out: &Path, style: &SlicemapStyle) -> Result<(Vec<CaseSlices>, Vec<(String, String)>)> {
    let entries = std::fs::read_dir(input).map_err(|e| Error::io(input, e))?;
    let mut cases: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.join(files::REAL_A).is_file()).collect();
    cases.sort();
    if cases.is_empty() {
        return Err(Error::format(input, format!("no case folder with {} here", files::REAL_A)));
    }
    let (mut written, mut failed) = (Vec::new(), Vec::new());
    for case in cases {
        let pid = case.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        match write_case(&case, &out.join(&pid), style) {
            Ok(c) => written.push(c),
            Err(e) => failed.push((pid, e.to_string())),
        }
    }
    Ok((written, failed))
}

/// What the page shows beyond the slice maps and the scores.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexExtras {
    /// Myocardium MAE of predicting the training mean everywhere: a row of the table and a
    /// dashed line of the plot.
    pub baseline: Option<f64>,
    /// Held-out myocardium MAE per epoch of training runs, plotted (none: no plot).
    pub curves: Vec<LearningCurve>,
}

/// The browser page over `variants`: a table of case scores per variant (and the baseline
/// row of `extras`), a viewer with a variant and case choice and a slice slider showing the
/// four [`Panel`]s, each titled and with the colour bar of its window (drawn as `style`
/// says; the captions say so), and the plot of `extras`' learning curves.
pub fn index_html(variants: &[VariantSlices], style: &SlicemapStyle, extras: &IndexExtras) -> String {
    let data: Vec<serde_json::Value> = variants
        .iter()
        .map(|v| {
            let cases: Vec<serde_json::Value> = v
                .cases
                .iter()
                .map(|c| {
                    let s = v.scores.as_ref().and_then(|s| s.rows.iter().find(|r| r.pid == c.pid)).map(|r| r.scores);
                    serde_json::json!({
                        "pid": c.pid, "slices": c.slices, "start": c.montage_slice,
                        "mae": s.map(|s| s.mae), "mae_myocardium": s.and_then(|s| s.mae_myocardium),
                    })
                })
                .collect();
            serde_json::json!({ "label": v.label, "dir": v.rel_dir, "cases": cases })
        })
        .collect();
    let mut table = String::from("<table><tr><th>variant</th><th>case</th><th>MAE (block)</th><th>MAE (myocardium)</th><th>montage</th></tr>\n");
    for v in variants {
        for c in &v.cases {
            let s = v.scores.as_ref().and_then(|s| s.rows.iter().find(|r| r.pid == c.pid)).map(|r| r.scores);
            let fmt = |x: Option<f64>| x.map(|x| format!("{x:.2}")).unwrap_or_else(|| "–".into());
            let dir = if v.rel_dir.is_empty() { c.pid.clone() } else { format!("{}/{}", v.rel_dir, c.pid) };
            table += &format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><a href=\"{}/{MONTAGE}\">montage</a></td></tr>\n",
                escape(&v.label), escape(&c.pid), fmt(s.map(|s| s.mae)), fmt(s.and_then(|s| s.mae_myocardium)), escape(&dir)
            );
        }
    }
    if let Some(b) = extras.baseline {
        table += &format!("<tr class=\"baseline\"><td>baseline: {BASELINE_LABEL}</td><td>mean</td><td>–</td><td>{b:.2}</td><td>–</td></tr>\n");
    }
    table += "</table>";
    let panels: String = Panel::ALL
        .iter()
        .map(|p| {
            format!(
                "<figure><figcaption><b>{}</b> {}</figcaption><img data-layer=\"{}\" alt=\"{}\">{}</figure>\n",
                escape(p.title()),
                escape(p.caption(style)),
                p.stem(),
                escape(p.title()),
                color_bar(p.map(), style.window(*p), p.unit())
            )
        })
        .collect();
    let curves = if extras.curves.is_empty() {
        String::new()
    } else {
        let y_label = format!("held-out myocardium MAE ({MBF_UNIT})");
        format!(
            "<h2>Learning curves</h2>\n<p>Held-out myocardium MAE after each training epoch, per run and norm mode of validation.</p>\n{}\n",
            curve_plot(&extras.curves, extras.baseline.map(|b| (BASELINE_LABEL, b)), &y_label)
        )
    };
    INDEX_TEMPLATE
        .replace("{{TABLE}}", &table)
        .replace("{{PANELS}}", &panels)
        .replace("{{CURVES}}", &curves)
        .replace("{{DATA}}", &serde_json::Value::Array(data).to_string().replace("</", "<\\/"))
}

const INDEX_TEMPLATE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>cta2mbf slice maps</title>
<style>
body { font-family: sans-serif; margin: 1.5em; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
tr.baseline td { font-style: italic; }
figure { display: inline-block; vertical-align: top; width: 292px; margin: 0 6px 1em 0; }
figcaption { height: 3.6em; font-size: 90%; }
img { image-rendering: pixelated; width: 256px; margin-left: 18px; display: block; }
.viewer label { margin-right: 1em; }
</style></head>
<body>
<h1>cta2mbf slice maps</h1>
{{TABLE}}
<div class="viewer">
<label>variant <select id="variant"></select></label>
<label>case <select id="case"></select></label>
<label>slice <input id="slice" type="range" min="0" value="0"> <span id="z"></span></label>
<p id="score"></p>
<div class="panels">
{{PANELS}}</div>
</div>
{{CURVES}}
<script>
const variants = {{DATA}};
const $ = id => document.getElementById(id);
function fill(sel, items) { sel.innerHTML = ''; items.forEach((t, i) => sel.add(new Option(t, i))); }
function showCase() {
  const v = variants[$('variant').value], c = v.cases[$('case').value];
  if (!c) return;
  $('slice').max = c.slices - 1; $('slice').value = c.start;
  const f = x => x === null ? '–' : x.toFixed(2);
  $('score').textContent = `MAE over the block ${f(c.mae)}, inside the myocardium ${f(c.mae_myocardium)}`;
  showSlice();
}
function showSlice() {
  const v = variants[$('variant').value], c = v.cases[$('case').value], z = $('slice').value;
  const base = (v.dir ? v.dir + '/' : '') + c.pid;
  document.querySelectorAll('.panels img').forEach(img => img.src = `${base}/${img.dataset.layer}/x_${z}.png`);
  $('z').textContent = `${z} / ${c.slices - 1}`;
}
fill($('variant'), variants.map(v => v.label));
$('variant').onchange = () => { fill($('case'), variants[$('variant').value].cases.map(c => c.pid)); showCase(); };
$('case').onchange = showCase;
$('slice').oninput = showSlice;
$('variant').onchange();
</script>
</body></html>
"#;

/// Write `index.html` into `out` for `variants` (see [`index_html`]).
pub fn write_index(out: &Path, variants: &[VariantSlices], style: &SlicemapStyle, extras: &IndexExtras) -> Result<PathBuf> {
    let path = out.join(INDEX);
    write_bytes_atomically(&path, index_html(variants, style, extras).as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn montage_places_enlarged_panels_side_by_side() {
        let mut a = RgbImage::new(2, 1);
        a.put(1, 0, [255, 0, 0]);
        let b = RgbImage::new(1, 2);
        let m = montage(&[a, b], 3);
        assert_eq!((m.width, m.height), (2 * 3 + 2 + 3, 6));
        assert_eq!(m.get(3, 2), [255, 0, 0]);
        assert_eq!(m.get(2, 2), [0, 0, 0]);
    }

    #[test]
    fn montage_slice_is_the_one_with_most_myocardium() {
        let mut v = Array3::from_elem((4, 4, 5), -1024.0f32);
        assert_eq!(most_myocardium_slice(&v), 2);
        v[[0, 0, 1]] = 50.0;
        v[[1, 0, 3]] = 50.0;
        v[[2, 0, 3]] = 60.0;
        assert_eq!(most_myocardium_slice(&v), 3);
    }

    #[test]
    fn error_and_masked_fake_are_drawn_only_where_mbf_was_measured() {
        let real = Array3::from_shape_vec((3, 1, 1), vec![-1024.0f32, 120.0, 0.0]).unwrap();
        let fake = Array3::from_shape_vec((3, 1, 1), vec![90.0f32, 100.0, 30.0]).unwrap();
        assert_eq!(measured_error(&fake, &real).into_raw_vec_and_offset().0, vec![0.0, 20.0, 0.0]);
        assert_eq!(fake_where_measured(&fake, &real).into_raw_vec_and_offset().0, vec![-1024.0, 100.0, 0.0]);
    }

    #[test]
    fn index_escapes_names_and_embeds_the_cases() {
        let v = VariantSlices {
            label: "a<b".into(),
            rel_dir: "v1".into(),
            cases: vec![CaseSlices { pid: "p1".into(), slices: 4, montage_slice: 2 }],
            failed: vec![],
            scores: None,
        };
        let html = index_html(&[v], &SlicemapStyle::default(), &IndexExtras::default());
        assert!(html.contains("a&lt;b"));
        assert!(html.contains(r#""pid":"p1""#));
        assert!(html.contains("v1/p1/montage.png"));
        assert!(!html.contains("class=\"baseline\"") && !html.contains("learning-curve"), "no extras, no baseline row or plot");
    }

    #[test]
    fn index_titles_each_panel_with_its_colour_bar_and_shows_the_extras() {
        let v = VariantSlices {
            label: "v".into(),
            rel_dir: String::new(),
            cases: vec![CaseSlices { pid: "p1".into(), slices: 4, montage_slice: 2 }],
            failed: vec![],
            scores: None,
        };
        let style = SlicemapStyle { src: Window { width: 800.0, level: 200.0 }, dst: Window { width: 200.0, level: 100.0 }, fake_where_measured: true };
        let extras = IndexExtras {
            baseline: Some(32.795),
            curves: vec![LearningCurve { label: "demo_train, eval norm".into(), points: vec![(1, 40.0), (2, 31.0)] }],
        };
        let html = index_html(&[v], &style, &extras);
        let figures: Vec<&str> = html.split("<figure>").skip(1).collect();
        assert_eq!(figures.len(), 4);
        for (figure, (title, layer, bar)) in figures.iter().zip([
            ("<b>real_a</b> CTA", "real_a", "-200 … 600 HU"),
            ("<b>real_b</b> measured MBF", "real_b", "0 … 200 ml/100 g/min"),
            ("<b>fake_b</b> predicted MBF, shown where MBF was measured", "fake_b", "0 … 200 ml/100 g/min"),
            ("<b>|error|</b> |fake_b − real_b| where MBF was measured", "error", "0 … 200 ml/100 g/min"),
        ]) {
            assert!(figure.contains(title), "{title}: {figure}");
            assert!(figure.contains(&format!("data-layer=\"{layer}\"")), "{layer}");
            assert!(figure.contains(&format!("colour bar: {bar}")), "{bar}: {figure}");
        }
        assert!(html.contains("<tr class=\"baseline\"><td>baseline: predict the training mean</td><td>mean</td><td>–</td><td>32.80</td>"));
        assert!(html.contains("<svg id=\"learning-curve\"") && html.contains(">demo_train, eval norm<"));
        assert!(html.contains("predict the training mean (32.795)"));
        assert!(!html.contains("{{"), "every placeholder is filled");
    }

    #[test]
    fn case_maps_include_the_error_slices() {
        use crate::io::nifti::{NiftiDtype, write_nifti};
        let tmp = tempfile::tempdir().unwrap();
        let case = tmp.path().join("in").join("p1");
        let real = Array3::from_shape_fn((3, 2, 2), |(x, _, z)| if x == 1 { 100.0 + 10.0 * z as f32 } else { -1024.0 });
        let fake = real.mapv(|v| if v > 0.0 { v + 30.0 } else { 5.0 });
        for (stem, data) in [("real_a", real.clone()), ("real_b", real.clone()), ("fake_b", fake)] {
            write_nifti(case.join(format!("{stem}.nii.gz")), &crate::Volume::new(data, crate::Geometry::default()), NiftiDtype::F32).unwrap();
        }
        let out = tmp.path().join("out");
        let written = write_case(&case, &out, &SlicemapStyle::default()).unwrap();
        assert_eq!(written, CaseSlices { pid: "p1".into(), slices: 2, montage_slice: 0 });
        // |error| 30 in a window 0..150 is jet at 0.2; 0 elsewhere.
        let error = RgbImage::load(&out.join("error/x_1.png")).unwrap();
        assert_eq!(error.get(1, 0), crate::analysis::jet_rgb(30.0, SlicemapStyle::default().window(Panel::Error)));
        assert_eq!(error.get(0, 0), crate::analysis::jet_rgb(0.0, SlicemapStyle::default().window(Panel::Error)));
        for panel in Panel::ALL {
            assert!(out.join(panel.stem()).join("x_0.png").is_file(), "{panel:?}");
        }
    }
}
