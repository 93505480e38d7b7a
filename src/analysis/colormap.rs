//! Display windows and colour maps of docs/design.md §7: a value is clamped to
//! `[wl − ww/2, wl + ww/2]` and scaled to 0–255; CTA is shown grey, MBF through matplotlib's
//! "jet" (its 256-entry lookup table, built from the same segment data).

/// A display window: width and level, in image units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// Window width.
    pub width: f32,
    /// Window level (centre).
    pub level: f32,
}

impl Window {
    /// The reference's default for both CTA and MBF: width 150, level 75.
    pub const REFERENCE: Window = Window { width: 150.0, level: 75.0 };

    /// `value` clamped to the window and mapped to `[0, 1]`.
    pub fn unit(&self, value: f32) -> f32 {
        let low = self.level - self.width / 2.0;
        ((value - low) / self.width).clamp(0.0, 1.0)
    }

    /// `value` windowed to a grey level 0–255.
    pub fn byte(&self, value: f32) -> u8 {
        (self.unit(value) * 255.0).round() as u8
    }
}

/// Grey RGB of `value` in `window`.
pub fn gray_rgb(value: f32, window: Window) -> [u8; 3] {
    let g = window.byte(value);
    [g, g, g]
}

/// matplotlib's `jet` segment data: (x, y) breakpoints per channel.
const JET_R: &[(f64, f64)] = &[(0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5)];
const JET_G: &[(f64, f64)] = &[(0.0, 0.0), (0.125, 0.0), (0.375, 1.0), (0.64, 1.0), (0.91, 0.0), (1.0, 0.0)];
const JET_B: &[(f64, f64)] = &[(0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0)];

/// Table entry `index` of a channel, computed as matplotlib's `_create_lookup_table` does
/// (breakpoints scaled to table positions, distance first, then the rise) so that the bytes
/// agree to the last bit.
fn segment(points: &[(f64, f64)], index: usize) -> f64 {
    let n1 = 255.0;
    let xi = n1 * (index as f64 * (1.0 / 255.0)); // (N-1) * np.linspace(0, 1, N)[index]
    for w in points.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        let (x0, x1) = (x0 * n1, x1 * n1);
        if xi <= x1 {
            let distance = (xi - x0) / (x1 - x0);
            return (distance * (y1 - y0) + y0).clamp(0.0, 1.0);
        }
    }
    points[points.len() - 1].1
}

/// RGB of `value` in `window` through jet, as matplotlib writes it to an image
/// (256-colour table, `cm.jet(v, bytes=True)`: channels scaled by 255 and truncated).
pub fn jet_rgb(value: f32, window: Window) -> [u8; 3] {
    let index = ((window.unit(value) * 256.0) as usize).min(255);
    [JET_R, JET_G, JET_B].map(|p| (segment(p, index) * 255.0) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_clamps_and_scales() {
        let w = Window::REFERENCE;
        assert_eq!(w.byte(-1024.0), 0);
        assert_eq!(w.byte(0.0), 0);
        assert_eq!(w.byte(75.0), 128);
        assert_eq!(w.byte(150.0), 255);
        assert_eq!(w.byte(1e6), 255);
    }

    #[test]
    fn jet_matches_matplotlib() {
        // matplotlib.cm.jet(i, bytes=True) for i = 0, 64, 128, 192, 255
        // Window [0, 1]; the middle of table bin i is (i + 0.5) / 256.
        let w = Window { width: 1.0, level: 0.5 };
        let bin = |i: usize| (i as f32 + 0.5) / 256.0;
        assert_eq!(jet_rgb(bin(0), w), [0, 0, 127]);
        assert_eq!(jet_rgb(bin(64), w), [0, 128, 255]);
        assert_eq!(jet_rgb(bin(128), w), [124, 255, 121]);
        assert_eq!(jet_rgb(bin(192), w), [255, 148, 0]);
        assert_eq!(jet_rgb(bin(255), w), [127, 0, 0]);
        assert_eq!(jet_rgb(-5.0, w), [0, 0, 127]);
        assert_eq!(jet_rgb(5.0, w), [127, 0, 0]);
    }
}
