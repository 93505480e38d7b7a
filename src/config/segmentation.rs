//! The chamber-segmentation training configuration: one JSON file in `configs/` (e.g.
//! `chamber_seg_phantom.json`), overridable from the command line, validated before anything
//! starts, and saved with every checkpoint — so a checkpoint carries the network, the fixed
//! grid and the CTA clip + normalization that inference must repeat.

use super::run::{RunConfig, RunSettings, UnknownKeys, refuse_unknown};
use crate::data::{AugmentConfig, ClipNormalize, PairPattern};
use crate::error::{Error, Result};
use crate::models::UNet3dConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Everything that defines a segmentation training run. Unknown keys are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegConfig {
    /// The settings every training run has (name, data root — a `3.sorted_mask` —, held-out
    /// cases, rate and schedule, loop); their keys sit at the top level.
    #[serde(flatten)]
    pub run: RunSettings,
    /// The image inside each case folder.
    #[serde(default = "default_image")]
    pub image: String,
    /// The label map inside each case folder, on the image's grid.
    #[serde(default = "default_labels")]
    pub labels: String,
    /// Case ids to train on, one per line (used when the file exists).
    #[serde(default = "default_train_list")]
    pub train_list: PathBuf,
    /// Case ids to validate on, one per line (used when the file exists).
    #[serde(default = "default_val_list")]
    pub val_list: PathBuf,
    /// Cases held out when neither `val_cases` nor the lists say otherwise.
    #[serde(default)]
    pub val_count: usize,
    /// The network and its fixed grid.
    pub net: UNet3dConfig,
    /// CTA clip and normalization.
    #[serde(default)]
    pub intensity: ClipNormalize,
    /// Leave classes below this out of the Dice loss (0: all classes, 1: no background).
    #[serde(default)]
    pub dice_first_class: usize,
    /// Weight of the cross-entropy term added to the Dice loss (0: Dice only).
    #[serde(default)]
    pub ce_weight: f64,
    /// Adam β1.
    #[serde(default = "beta1")]
    pub beta1: f64,
    /// Augmentation; flips of the x (left-right) axis are refused.
    #[serde(default = "default_augment")]
    pub augment: AugmentConfig,
    /// Keys no field took (refused by [`SegConfig::validate`] and [`RunConfig::load`]).
    #[serde(flatten, skip_serializing)]
    pub unknown: UnknownKeys,
}

fn default_image() -> String {
    format!("CTA/{}", crate::cohort::mask::CTA)
}
fn default_labels() -> String {
    format!("CTA/{}", crate::cohort::mask::CONNECTED)
}
fn default_train_list() -> PathBuf {
    PathBuf::from("config/train.txt")
}
fn default_val_list() -> PathBuf {
    PathBuf::from("config/val.txt")
}
/// Augmentation for chamber masks: no flips (the heart is not symmetric), random shifts,
/// anisotropy, blur and noise as for the generator.
pub fn default_augment() -> AugmentConfig {
    AugmentConfig { flip: 0.0, flip_axes: [false, true, true], max_shift: 4, ..AugmentConfig::default() }
}
fn beta1() -> f64 { 0.9 }

impl RunConfig for SegConfig {
    fn run(&self) -> &RunSettings {
        &self.run
    }

    fn unknown(&self) -> &UnknownKeys {
        &self.unknown
    }
}

impl SegConfig {
    /// The file pattern of a case folder (image as source, labels as target).
    pub fn pattern(&self) -> PairPattern {
        PairPattern { src: self.image.clone(), dst: self.labels.clone(), mask: None }
    }

    /// Check every value; the first problem is returned as one message.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid(m));
        refuse_unknown(&self.unknown)?;
        self.run.validate(self.beta1)?;
        if !(self.ce_weight.is_finite() && self.ce_weight >= 0.0) {
            return bad(format!("ce_weight must be a non-negative number, got {}", self.ce_weight));
        }
        if self.dice_first_class >= self.net.classes {
            return bad(format!("dice_first_class {} leaves no class of {} to score", self.dice_first_class, self.net.classes));
        }
        if self.net.in_channels != 1 {
            return bad(format!("net.in_channels must be 1 (one CTA), got {}", self.net.in_channels));
        }
        if self.augment.enabled && self.augment.flip > 0.0 && self.augment.flip_axes[0] {
            return bad("augment: flipping the x (left-right) axis would swap left and right chambers; set augment.flip_axes[0] to false".into());
        }
        self.net.validate()?;
        self.augment.validate()?;
        self.intensity.validate()
    }
}

/// Case ids listed one per line in `path` (blank lines and `#` comments skipped), or `None`
/// when the file does not exist.
pub fn read_case_list(path: &Path) -> Result<Option<Vec<String>>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(Some(
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SegConfig {
        serde_json::from_str(
            r#"{"name": "t", "net": {"classes": 8, "base_n_filter": 2, "input_size": [16, 16, 16]}, "lr": 0.001, "n_epochs": 1}"#,
        )
        .unwrap()
    }

    #[test]
    fn defaults_are_valid_and_left_right_flips_refused() {
        let c = config();
        c.validate().unwrap();
        assert_eq!(c.image, "CTA/CTA.nii.gz");
        assert_eq!(c.labels, "CTA/CTA_MASK_connected.nii.gz");
        let mut c = config();
        c.augment.flip = 0.5;
        c.augment.flip_axes = [true, true, true];
        assert!(c.validate().unwrap_err().to_string().contains("left-right"));
        c.augment.flip_axes = [false, true, true];
        c.validate().unwrap();
    }

    #[test]
    fn case_lists_skip_blank_lines_and_comments() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("train.txt");
        std::fs::write(&p, "# training cases\n123\n\n  456 \n").unwrap();
        assert_eq!(read_case_list(&p).unwrap(), Some(vec!["123".to_string(), "456".to_string()]));
        assert_eq!(read_case_list(&dir.path().join("none.txt")).unwrap(), None);
    }
}
