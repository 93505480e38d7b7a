//! The analytic cardiac anatomy of one phantom patient: a function from a world point to
//! the tissue found there (label, tissue class, perfusion-defect weight).

use crate::volume::mat3::{self, Vec3};
use rand::Rng;
use serde::Serialize;

/// Tissue classes; each modality maps them to its own values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TissueClass {
    /// Outside the body.
    Air,
    /// Lung parenchyma.
    Lung,
    /// Subcutaneous, mediastinal and epicardial fat.
    Fat,
    /// Chest-wall muscle and other non-enhancing soft tissue.
    Muscle,
    /// Walls of the right heart, atria and great vessels (enhancing soft tissue).
    Wall,
    /// Cancellous bone (vertebral body, sternum interior).
    Bone,
    /// Cortical bone (ribs, vertebral and sternal rims).
    Cortex,
    /// Contrast blood of the left heart and aorta.
    BloodLeft,
    /// Contrast blood of the right heart and pulmonary artery.
    BloodRight,
    /// LV myocardium.
    Myocardium,
}

/// What lies at one world point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tissue {
    /// Tissue class.
    pub class: TissueClass,
    /// Chamber label (docs/design.md §3): 0 background, 1 LV, 2 RV, 3 LA, 4 RA, 5 aorta, 6 LV myocardium, 7 PA.
    pub label: u8,
    /// For myocardium: relative flow (1 = normal, down to the defects' flow fraction).
    pub flow: f64,
}

impl Default for Tissue {
    fn default() -> Self {
        Tissue::of(TissueClass::Air)
    }
}

impl Tissue {
    fn of(class: TissueClass) -> Self {
        Tissue { class, label: 0, flow: 1.0 }
    }
    fn labelled(class: TissueClass, label: u8) -> Self {
        Tissue { class, label, flow: 1.0 }
    }
}

/// A perfusion defect: a coronary territory of reduced flow, from a basal level to the apex.
#[derive(Debug, Clone, Serialize)]
pub struct Defect {
    /// Coronary territory the defect lies in (LAD, LCx or RCA).
    pub territory: String,
    /// Centre angle around the long axis, degrees (0 = towards the RV / septum).
    pub center_angle_deg: f64,
    /// Half width of the territory, degrees.
    pub half_width_deg: f64,
    /// Where the defect starts along the ventricle, 0 = base, 1 = apex; it runs to the apex.
    pub start_fraction: f64,
    /// Flow in the defect core relative to normal (0.2–0.6).
    pub flow_fraction: f64,
}

/// Shape parameters of one patient (world LPS millimetres).
#[derive(Debug, Clone, Serialize)]
pub struct Anatomy {
    /// Centre of the LV (world).
    pub lv_center: Vec3,
    /// Unit long axis, base → apex.
    pub long_axis: Vec3,
    /// Unit axis from the LV towards the RV, perpendicular to the long axis.
    pub septal_axis: Vec3,
    /// Third axis of the heart frame.
    pub third_axis: Vec3,
    /// LV cavity semi-axis along the long axis (apical half), mm.
    pub lv_length: f64,
    /// LV cavity radius, mm.
    pub lv_radius: f64,
    /// Distance from the LV centre to the mitral (base) plane, mm.
    pub base_offset: f64,
    /// Mean LV wall thickness, mm.
    pub wall_thickness: f64,
    /// Relative variation of wall thickness around the ventricle.
    pub wall_variation: f64,
    /// Angle (radians) of the thickest wall.
    pub wall_phase: f64,
    /// Heart size factor.
    pub scale: f64,
    /// Body centre in the axial plane (x, y).
    pub body_center: [f64; 2],
    /// Body half widths (left-right, antero-posterior), mm.
    pub body_radii: [f64; 2],
    /// z of the first rib level; ribs repeat every `rib_pitch` mm.
    pub rib_phase: f64,
    /// Distance between rib levels, mm.
    pub rib_pitch: f64,
    /// Perfusion defects (reported at the top level of the truth file).
    #[serde(skip)]
    pub defects: Vec<Defect>,
    /// Phase of the smooth normal flow variation.
    pub flow_phase: f64,
}

fn smoothstep(edge0: f64, edge1: f64, x: f64) -> f64 {
    let t = ((x - edge0) / (edge1 - edge0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Distance from `p` to the segment `a`–`b`.
fn segment_distance(p: Vec3, a: Vec3, b: Vec3) -> f64 {
    let ab = mat3::sub(b, a);
    let t = (mat3::dot(mat3::sub(p, a), ab) / mat3::dot(ab, ab)).clamp(0.0, 1.0);
    mat3::norm(mat3::sub(p, mat3::add(a, mat3::scale(ab, t))))
}

fn wrap_angle(a: f64) -> f64 {
    let t = std::f64::consts::TAU;
    (a + std::f64::consts::PI).rem_euclid(t) - std::f64::consts::PI
}

impl Anatomy {
    /// A random patient whose heart is centred near `heart_center`.
    pub fn random(rng: &mut impl Rng, heart_center: Vec3) -> Anatomy {
        let scale = rng.random_range(0.88..1.12);
        // Apex points left (+x), anterior (−y) and inferior (−z), with per-case jitter.
        let jitter = |rng: &mut dyn rand::RngCore| rng.random_range(-0.15..0.15);
        let long_axis = normalize([0.55 + jitter(rng), -0.55 + jitter(rng), -0.62 + jitter(rng)]);
        // The RV lies anterior-right of the LV.
        let towards_rv = [-0.55, -0.75, 0.25];
        let septal_axis = normalize(mat3::sub(towards_rv, mat3::scale(long_axis, mat3::dot(towards_rv, long_axis))));
        let third_axis = mat3::cross(long_axis, septal_axis);
        let n_defects = rng.random_range(0..=2usize);
        let mut territories = vec![("LAD", 40.0), ("LCx", 180.0), ("RCA", -80.0)];
        let mut defects = Vec::new();
        for _ in 0..n_defects {
            let (name, angle) = territories.remove(rng.random_range(0..territories.len()));
            let flow_fraction: f64 = rng.random_range(0.2..0.6);
            defects.push(Defect {
                territory: name.to_string(),
                center_angle_deg: angle + rng.random_range(-20.0..20.0),
                half_width_deg: rng.random_range(35.0..65.0),
                start_fraction: rng.random_range(0.15..0.55),
                flow_fraction,
            });
        }
        let body_center = [heart_center[0] - 20.0 + rng.random_range(-5.0..5.0), heart_center[1] + 28.0 + rng.random_range(-5.0..5.0)];
        Anatomy {
            lv_center: heart_center,
            long_axis,
            septal_axis,
            third_axis,
            lv_length: 40.0 * scale,
            lv_radius: 22.0 * scale,
            base_offset: 20.0 * scale,
            wall_thickness: rng.random_range(8.0..12.0),
            wall_variation: rng.random_range(0.1..0.3),
            wall_phase: rng.random_range(0.0..std::f64::consts::TAU),
            scale,
            body_center,
            body_radii: [rng.random_range(150.0..180.0), rng.random_range(110.0..130.0)],
            rib_phase: rng.random_range(0.0..25.0),
            rib_pitch: rng.random_range(22.0..28.0),
            defects,
            flow_phase: rng.random_range(0.0..std::f64::consts::TAU),
        }
    }

    /// Heart-frame coordinates of `p`: (along the long axis, towards the RV, third axis).
    fn heart_frame(&self, p: Vec3) -> Vec3 {
        let d = mat3::sub(p, self.lv_center);
        [mat3::dot(d, self.long_axis), mat3::dot(d, self.septal_axis), mat3::dot(d, self.third_axis)]
    }

    fn point(&self, u: f64, s: f64, t: f64) -> Vec3 {
        mat3::add(
            self.lv_center,
            mat3::add(
                mat3::scale(self.long_axis, u),
                mat3::add(mat3::scale(self.septal_axis, s), mat3::scale(self.third_axis, t)),
            ),
        )
    }

    /// Wall thickness at angle `theta` around the long axis.
    fn thickness(&self, theta: f64) -> f64 {
        self.wall_thickness * (1.0 + self.wall_variation * (theta - self.wall_phase).cos())
    }

    /// Normalised radius of the heart-frame point in the ellipsoid with semi-axes `axes`
    /// centred at heart-frame `center` (< 1 inside).
    fn ellipsoid(&self, h: Vec3, center: Vec3, axes: Vec3) -> f64 {
        let d = mat3::sub(h, center);
        ((d[0] / axes[0]).powi(2) + (d[1] / axes[1]).powi(2) + (d[2] / axes[2]).powi(2)).sqrt()
    }

    /// Myocardial flow factor (relative to normal) at heart-frame angle and level.
    fn perfusion(&self, theta: f64, level: f64) -> f64 {
        let mut flow = 1.0 + 0.06 * (2.0 * theta + self.flow_phase).sin();
        for d in &self.defects {
            let off = wrap_angle(theta - d.center_angle_deg.to_radians()).abs().to_degrees();
            let w = smoothstep(d.half_width_deg + 12.0, d.half_width_deg - 12.0, off)
                * smoothstep(d.start_fraction - 0.08, d.start_fraction + 0.08, level);
            flow *= 1.0 - (1.0 - d.flow_fraction) * w;
        }
        flow
    }

    /// The tissue at world point `p`.
    pub fn tissue(&self, p: Vec3) -> Tissue {
        let k = self.scale;
        let h = self.heart_frame(p);
        let (u, s, t) = (h[0], h[1], h[2]);
        let rho = (s * s + t * t).sqrt();
        let theta = t.atan2(s);
        let above_base = u > -self.base_offset;
        // LV cavity and myocardium.
        let wall = self.thickness(theta);
        let cav = ((u / self.lv_length).powi(2) + (rho / self.lv_radius).powi(2)).sqrt();
        let outer_len = self.lv_length + 0.7 * self.wall_thickness;
        let outer = ((u / outer_len).powi(2) + (rho / (self.lv_radius + wall)).powi(2)).sqrt();
        if above_base && cav < 1.0 {
            return Tissue::labelled(TissueClass::BloodLeft, 1);
        }
        if above_base && outer < 1.0 {
            let level = (u + self.base_offset) / (outer_len + self.base_offset);
            let flow = self.perfusion(theta, level);
            return Tissue { class: TissueClass::Myocardium, label: 6, flow };
        }
        // Right ventricle: a crescent on the septal side, wrapped around the LV.
        let rv_c = [-4.0 * k, self.lv_radius + 4.0 * k, 0.0];
        let rv_ax = [0.85 * self.lv_length, 17.0 * k, 33.0 * k];
        let rv = self.ellipsoid(h, rv_c, rv_ax);
        let rv_above = u > -self.base_offset - 4.0 * k;
        if rv_above && rv < 1.0 {
            return Tissue::labelled(TissueClass::BloodRight, 2);
        }
        // Atria behind the base.
        let la = self.ellipsoid(h, [-self.base_offset - 19.0 * k, -8.0 * k, 4.0 * k], [20.0 * k, 22.0 * k, 25.0 * k]);
        if la < 1.0 {
            return Tissue::labelled(TissueClass::BloodLeft, 3);
        }
        let ra = self.ellipsoid(h, [-self.base_offset - 12.0 * k, self.lv_radius + 24.0 * k, -6.0 * k], [22.0 * k, 19.0 * k, 24.0 * k]);
        if ra < 1.0 {
            return Tissue::labelled(TissueClass::BloodRight, 4);
        }
        // Great vessels: ascending aorta from the LV outflow, pulmonary artery from the RV outflow.
        let ao0 = self.point(-self.base_offset + 2.0 * k, 7.0 * k, 0.0);
        let ao1 = mat3::add(ao0, mat3::scale(normalize([-0.25, -0.15, 1.0]), 90.0));
        let ao = segment_distance(p, ao0, ao1);
        if ao < 13.5 * k {
            return Tissue::labelled(TissueClass::BloodLeft, 5);
        }
        let pa0 = self.point(-self.base_offset + 6.0 * k, self.lv_radius + 16.0 * k, 14.0 * k);
        let pa1 = mat3::add(pa0, mat3::scale(normalize([0.45, 0.35, 0.85]), 65.0));
        let pa = segment_distance(p, pa0, pa1);
        if pa < 12.0 * k {
            return Tissue::labelled(TissueClass::BloodRight, 7);
        }
        // Walls of the right heart, atria and vessels (unlabelled enhancing tissue), then a
        // layer of epicardial fat around the whole heart.
        let near = |norm_r: f64, radius: f64, margin: f64| norm_r < 1.0 + margin / radius;
        let within = |margin: f64| {
            (rv_above && near(rv, 17.0 * k, margin))
                || near(la, 20.0 * k, margin)
                || near(ra, 19.0 * k, margin)
                || ao < 13.5 * k + margin
                || pa < 12.0 * k + margin
        };
        if within(3.0) {
            return Tissue::of(TissueClass::Wall);
        }
        if within(8.0) || (u > -self.base_offset - 6.0 && near(outer, self.lv_radius + wall, 8.0)) {
            return Tissue::of(TissueClass::Fat);
        }
        self.thorax(p)
    }

    /// Tissue of the chest outside the heart.
    fn thorax(&self, p: Vec3) -> Tissue {
        let [bx, by] = self.body_center;
        let [ax, ay] = self.body_radii;
        let (x, y, z) = (p[0] - bx, p[1] - by, p[2]);
        let r_body = ((x / ax).powi(2) + (y / ay).powi(2)).sqrt();
        if r_body >= 1.0 {
            return Tissue::of(TissueClass::Air);
        }
        // Spine (vertebral body) and spinal canal, posterior midline.
        let spine = [0.0, ay - 48.0];
        let dv = ((x - spine[0]).powi(2) + (y - spine[1]).powi(2)).sqrt();
        if dv < 19.0 {
            return Tissue::of(if dv > 15.5 { TissueClass::Cortex } else { TissueClass::Bone });
        }
        let dc = ((x - spine[0]).powi(2) + (y - spine[1] - 27.0).powi(2)).sqrt();
        if dc < 8.0 {
            return Tissue::of(TissueClass::Muscle);
        }
        // Descending aorta (contrast, not part of the chamber mask), left of the spine.
        if ((x - 24.0).powi(2) + (y - (ay - 72.0)).powi(2)).sqrt() < 11.5 {
            return Tissue::of(TissueClass::BloodLeft);
        }
        // Sternum, anterior midline.
        let ds = ((x / 18.0).powi(2) + ((y + ay - 24.0) / 8.0).powi(2)).sqrt();
        if ds < 1.0 {
            return Tissue::of(if ds > 0.7 { TissueClass::Cortex } else { TissueClass::Bone });
        }
        // Chest wall: skin fat, then muscle with ribs.
        let depth = (1.0 - r_body) * ax.min(ay);
        if depth < 10.0 {
            return Tissue::of(TissueClass::Fat);
        }
        if depth < 26.0 {
            let rib_z = (z - self.rib_phase).rem_euclid(self.rib_pitch);
            let rib = (rib_z - self.rib_pitch / 2.0).abs() < 4.5 && (13.0..22.0).contains(&depth) && y > -ay * 0.6;
            return Tissue::of(if rib { TissueClass::Cortex } else { TissueClass::Muscle });
        }
        // Mediastinum between the lungs, in front of the spine.
        let mediastinum = x.abs() < 32.0 && y < ay - 30.0;
        if mediastinum {
            return Tissue::of(TissueClass::Fat);
        }
        Tissue::of(TissueClass::Lung)
    }

}

/// `v / |v|`.
pub fn normalize(v: Vec3) -> Vec3 {
    mat3::scale(v, 1.0 / mat3::norm(v))
}
