//! Slice maps of an inference folder (DESIGN §7): every axial slice of `real_a` (grey),
//! `real_b` and `fake_b` (jet) as PNG under `<out>/<pid>/{real_a,real_b,fake_b}/x_<i>.png`,
//! one montage per case (real_a | real_b | fake_b | |error|) and an `index.html` that browses
//! variants, cases and slices with the scores of each case. The |error| panel covers only
//! the voxels where MBF was measured (`real_b` > 0, the myocardium): elsewhere `real_b` holds
//! the −1024 fill, so an error there would only show how far the prediction is from it.
//! With [`SlicemapStyle::fake_where_measured`], `fake_b` is drawn there only too (for a
//! generator whose loss saw only the myocardium, so that its output elsewhere is untrained).

use super::colormap::Window;
use super::metrics::is_measured;
use super::report::VariantScores;
use super::slice::{ColorMap, axial_slice};
use crate::error::{Error, Result};
use crate::infer::cohort::files;
use crate::io::atomic::write_bytes_atomically;
use crate::io::nifti::read_nifti;
use crate::io::png::RgbImage;
use ndarray::Array3;
use std::path::{Path, PathBuf};

/// File name of a case's montage.
pub const MONTAGE: &str = "montage.png";
/// File name of the browser page.
pub const INDEX: &str = "index.html";
/// The three volumes drawn per slice, their file stem and colour map.
pub const LAYERS: [(&str, ColorMap); 3] = [("real_a", ColorMap::Gray), ("real_b", ColorMap::Jet), ("fake_b", ColorMap::Jet)];

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
    for (stem, _) in LAYERS {
        volumes.push(read_nifti(case.join(format!("{stem}.nii.gz")))?.data);
    }
    let shape = volumes[0].dim();
    if let Some((i, _)) = volumes.iter().enumerate().find(|(_, v)| v.dim() != shape) {
        return Err(Error::format(case.join(format!("{}.nii.gz", LAYERS[i].0)), format!("size {:?} differs from real_a's {:?}", volumes[i].dim(), shape)));
    }
    let error = measured_error(&volumes[2], &volumes[1]);
    if style.fake_where_measured {
        volumes[2] = fake_where_measured(&volumes[2], &volumes[1]);
    }
    let window_of = |map: ColorMap| if map == ColorMap::Gray { style.src } else { style.dst };
    for ((stem, map), volume) in LAYERS.iter().zip(&volumes) {
        for z in 0..shape.2 {
            axial_slice(volume, z, window_of(*map), *map).save(&out.join(stem).join(format!("x_{z}.png")))?;
        }
    }
    let z = most_myocardium_slice(&volumes[1]);
    let error_window = Window { width: style.dst.width, level: style.dst.width / 2.0 };
    let mut panels: Vec<RgbImage> = LAYERS.iter().zip(&volumes).map(|((_, map), v)| axial_slice(v, z, window_of(*map), *map)).collect();
    panels.push(axial_slice(&error, z, error_window, ColorMap::Jet));
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

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The browser page over `variants`: a table of case scores per variant, and a viewer with a
/// variant and case choice and a slice slider showing real_a, real_b and fake_b (drawn as
/// `style` says; the page says so).
pub fn index_html(variants: &[VariantSlices], style: &SlicemapStyle) -> String {
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
                html_escape(&v.label), html_escape(&c.pid), fmt(s.map(|s| s.mae)), fmt(s.and_then(|s| s.mae_myocardium)), html_escape(&dir)
            );
        }
    }
    table += "</table>";
    let legend = if style.fake_where_measured {
        "real_a: CTA (grey); real_b: measured MBF; fake_b: predicted MBF, shown where MBF was measured (the myocardium) only (jet)."
    } else {
        "real_a: CTA (grey); real_b: measured MBF; fake_b: predicted MBF (jet)."
    };
    INDEX_TEMPLATE.replace("{{LEGEND}}", legend).replace("{{TABLE}}", &table).replace("{{DATA}}", &serde_json::Value::Array(data).to_string().replace("</", "<\\/"))
}

const INDEX_TEMPLATE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>cta2mbf slice maps</title>
<style>
body { font-family: sans-serif; margin: 1.5em; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
img { image-rendering: pixelated; width: 256px; margin-right: 6px; }
.viewer label { margin-right: 1em; }
</style></head>
<body>
<h1>cta2mbf slice maps</h1>
<p>{{LEGEND}}</p>
{{TABLE}}
<div class="viewer">
<label>variant <select id="variant"></select></label>
<label>case <select id="case"></select></label>
<label>slice <input id="slice" type="range" min="0" value="0"> <span id="z"></span></label>
<p id="score"></p>
<div><img id="real_a" alt="real_a"><img id="real_b" alt="real_b"><img id="fake_b" alt="fake_b"></div>
</div>
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
  ['real_a', 'real_b', 'fake_b'].forEach(k => $(k).src = `${base}/${k}/x_${z}.png`);
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

/// Write `index.html` into `out` for `variants`.
pub fn write_index(out: &Path, variants: &[VariantSlices], style: &SlicemapStyle) -> Result<PathBuf> {
    let path = out.join(INDEX);
    write_bytes_atomically(&path, index_html(variants, style).as_bytes())?;
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
        let html = index_html(&[v], &SlicemapStyle::default());
        assert!(html.contains("a&lt;b"));
        assert!(html.contains(r#""pid":"p1""#));
        assert!(html.contains("v1/p1/montage.png"));
    }
}
