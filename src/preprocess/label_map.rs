//! A label map: how another tool's label numbers become our chamber labels (docs/design.md §3).
//!
//! Written as JSON, source labels (decimal strings, 0–65535) to our labels (0–7):
//! `{"labels": {"3": 1, "5": 2, "2": 3, "4": 4, "6": 5, "1": 6, "7": 7}, "unmapped": "background"}`.
//! A source label the map does not name becomes background (0) by default, or is refused
//! with `"unmapped": "error"`. Mapping to 0 drops a label explicitly.

use crate::error::{Error, Result};
use crate::volume::Volume;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// Our highest chamber label (7, the pulmonary artery).
pub const MAX_CHAMBER_LABEL: u8 = 7;
/// The highest source label a map may name.
pub const MAX_SOURCE_LABEL: u32 = u16::MAX as u32;

/// What becomes of a source label the map does not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unmapped {
    /// It becomes background (0).
    #[default]
    Background,
    /// The file is refused, naming the labels.
    Error,
}

/// Source label → chamber label, with the rule for unnamed source labels.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelMap {
    map: BTreeMap<u32, u8>,
    /// The rule for source labels the map does not name.
    pub unmapped: Unmapped,
    /// The JSON file the map was read from (`None` for a built-in map).
    pub file: Option<PathBuf>,
    /// What the map is called in messages.
    pub name: String,
}

/// The JSON form of a label map.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MapFile {
    labels: Entries,
    #[serde(default)]
    unmapped: Unmapped,
}

/// The entries of a JSON object in file order, duplicates kept (serde_json keeps the last).
struct Entries(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of source label → chamber label")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        d.deserialize_map(Visit)
    }
}

impl LabelMap {
    /// A map from `(source, chamber)` pairs; an error names the first bad pair.
    pub fn new(pairs: &[(u32, u8)], unmapped: Unmapped, name: impl Into<String>) -> std::result::Result<Self, String> {
        let mut map = BTreeMap::new();
        for &(source, ours) in pairs {
            if source > MAX_SOURCE_LABEL {
                return Err(format!("source label {source} is above {MAX_SOURCE_LABEL}"));
            }
            if ours > MAX_CHAMBER_LABEL {
                return Err(format!("source label {source} maps to {ours}, not one of our labels 0-{MAX_CHAMBER_LABEL}"));
            }
            if source == 0 && ours != 0 {
                return Err(format!("source label 0 is background and can only map to 0, not {ours}"));
            }
            if map.insert(source, ours).is_some() {
                return Err(format!("source label {source} is named twice"));
            }
        }
        if !map.values().any(|&v| v != 0) {
            return Err("the map names no chamber label (every entry maps to 0, or there are none)".into());
        }
        Ok(LabelMap { map, unmapped, file: None, name: name.into() })
    }

    /// Parse the JSON form (see the module documentation).
    pub fn parse(text: &str, name: impl Into<String>) -> std::result::Result<Self, String> {
        let file: MapFile = serde_json::from_str(text)
            .map_err(|e| format!("not a label map ({{\"labels\": {{\"<source>\": <0-7>, ...}}, \"unmapped\": \"background\"|\"error\"}}): {e}"))?;
        let mut pairs = Vec::with_capacity(file.labels.0.len());
        for (key, value) in &file.labels.0 {
            let source = key
                .parse::<u32>()
                .ok()
                .filter(|s| key.bytes().all(|b| b.is_ascii_digit()) && *s <= MAX_SOURCE_LABEL)
                .ok_or_else(|| format!("the key \"{key}\" is not a source label (an integer 0-{MAX_SOURCE_LABEL})"))?;
            let ours = value
                .as_u64()
                .filter(|&v| v <= MAX_CHAMBER_LABEL as u64)
                .ok_or_else(|| format!("source label {source} maps to {value}, not one of our labels 0-{MAX_CHAMBER_LABEL}"))?;
            pairs.push((source, ours as u8));
        }
        LabelMap::new(&pairs, file.unmapped, name)
    }

    /// Read a JSON label map; errors name the file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut map = LabelMap::parse(&text, format!("the label map {}", path.display())).map_err(|m| Error::format(path, m))?;
        map.file = Some(path.to_path_buf());
        Ok(map)
    }

    /// TotalSegmentator's `-ta heartchambers_highres --ml` labels (1 myocardium, 2 LA, 3 LV,
    /// 4 RA, 5 RV, 6 aorta, 7 pulmonary artery); any other label is refused, since it means
    /// the file came from another task.
    pub fn totalsegmentator() -> Self {
        LabelMap::new(
            &[(1, 6), (2, 3), (3, 1), (4, 4), (5, 2), (6, 5), (7, 7)],
            Unmapped::Error,
            "TotalSegmentator's heartchambers_highres labels (1-7; for another task or tool pass --label-map)",
        )
        .expect("a valid built-in map")
    }

    /// Our label for `source`, when the map names it.
    pub fn get(&self, source: u32) -> Option<u8> {
        self.map.get(&source).copied()
    }

    /// The label file `labels` (read from `path`, named in errors) in our labels, on its own grid.
    pub fn apply(&self, labels: &Volume, path: &Path) -> Result<Volume> {
        let top = self.map.keys().next_back().copied().unwrap_or(0) as usize;
        let mut table: Vec<Option<u8>> = vec![None; top + 1];
        for (&s, &o) in &self.map {
            table[s as usize] = Some(o);
        }
        table[0] = Some(0);
        let mut unnamed = BTreeSet::new();
        let mut out = labels.data.clone();
        for v in out.iter_mut() {
            if !(*v >= 0.0 && v.fract() == 0.0 && *v <= (1u32 << 24) as f32) {
                return Err(Error::format(path, format!("holds the value {v}: not a label file (non-negative integers)")));
            }
            let source = *v as u32;
            *v = match table.get(source as usize).copied().flatten() {
                Some(o) => o as f32,
                None => {
                    if self.unmapped == Unmapped::Error {
                        unnamed.insert(source);
                    }
                    0.0
                }
            };
        }
        if !unnamed.is_empty() {
            let listed: Vec<String> = unnamed.iter().take(10).map(|l| l.to_string()).collect();
            let more = if unnamed.len() > 10 { format!(" and {} more", unnamed.len() - 10) } else { String::new() };
            return Err(Error::format(path, format!("holds the labels {}{more}, which {} does not name", listed.join(", "), self.name)));
        }
        Ok(Volume::new(out, labels.geometry))
    }
}

impl fmt::Display for LabelMap {
    /// `1→6, 2→3, …; unmapped → background` (what a settings record needs to see a change).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pairs: Vec<String> = self.map.iter().map(|(s, o)| format!("{s}→{o}")).collect();
        let rule = match self.unmapped {
            Unmapped::Background => "background",
            Unmapped::Error => "error",
        };
        write!(f, "{}; unmapped → {rule}", pairs.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::Geometry;
    use ndarray::Array3;

    #[test]
    fn bad_maps_are_refused_with_the_reason() {
        for (text, reason) in [
            ("{\"labels\": {\"1\": 6, \"1\": 2}}", "named twice"),
            ("{\"labels\": {\"x\": 6}}", "\"x\" is not a source label"),
            ("{\"labels\": {\"-1\": 6}}", "\"-1\" is not a source label"),
            ("{\"labels\": {\"+1\": 6}}", "\"+1\" is not a source label"),
            ("{\"labels\": {\"70000\": 6}}", "\"70000\" is not a source label"),
            ("{\"labels\": {\"1\": 8}}", "maps to 8, not one of our labels"),
            ("{\"labels\": {\"1\": 1.5}}", "maps to 1.5"),
            ("{\"labels\": {\"1\": \"LV\"}}", "maps to \"LV\""),
            ("{\"labels\": {\"0\": 1}}", "background and can only map to 0"),
            ("{\"labels\": {\"3\": 0}}", "names no chamber label"),
            ("{\"labels\": {}}", "names no chamber label"),
            ("{\"labels\": {\"1\": 6}, \"unmapped\": \"keep\"}", "unknown variant"),
            ("{\"labels\": {\"1\": 6}, \"extra\": 1}", "unknown field"),
            ("{\"1\": 6}", "unknown field"),
            ("{\"labels\": [1, 6]}", "not a label map"),
            ("{\"labels\": {\"1\": 6}", "not a label map"),
        ] {
            let err = LabelMap::parse(text, "m").unwrap_err();
            assert!(err.contains(reason), "{text}: {err}");
        }
    }

    #[test]
    fn a_map_file_is_named_in_its_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tool_map.json");
        std::fs::write(&path, "{\"labels\": {\"1\": 9}}").unwrap();
        let err = LabelMap::read(&path).unwrap_err().to_string();
        assert!(err.contains("tool_map.json") && err.contains("maps to 9"), "{err}");
        let err = LabelMap::read(&dir.path().join("absent.json")).unwrap_err().to_string();
        assert!(err.contains("absent.json"), "{err}");
        std::fs::write(&path, "{\"labels\": {\"10\": 1, \"11\": 0}, \"unmapped\": \"error\"}").unwrap();
        let map = LabelMap::read(&path).unwrap();
        assert_eq!((map.get(10), map.get(11), map.get(12)), (Some(1), Some(0), None));
        assert_eq!(map.file.as_deref(), Some(path.as_path()));
        assert_eq!(map.to_string(), "10→1, 11→0; unmapped → error");
    }

    #[test]
    fn unmapped_labels_become_background_or_are_refused() {
        let data = Array3::from_shape_vec([1, 1, 5], vec![0.0, 10.0, 11.0, 42.0, 300.0]).unwrap();
        let labels = Volume::new(data, Geometry::default());
        let path = Path::new("seg.nii.gz");
        let map = LabelMap::parse("{\"labels\": {\"10\": 1, \"11\": 0}}", "m").unwrap();
        assert_eq!(map.unmapped, Unmapped::Background);
        let out = map.apply(&labels, path).unwrap();
        assert_eq!(out.data.iter().copied().collect::<Vec<_>>(), vec![0.0, 1.0, 0.0, 0.0, 0.0]);
        let strict = LabelMap { unmapped: Unmapped::Error, ..map.clone() };
        let err = strict.apply(&labels, path).unwrap_err().to_string();
        assert!(err.contains("seg.nii.gz") && err.contains("the labels 42, 300, which m does not name"), "{err}");
        let err = LabelMap::totalsegmentator().apply(&labels, path).unwrap_err().to_string();
        assert!(err.contains("heartchambers_highres"), "{err}");
        for bad in [-1.0, 2.5, f32::NAN] {
            let v = Volume::new(Array3::from_elem([1, 1, 1], bad), Geometry::default());
            let err = map.apply(&v, path).unwrap_err().to_string();
            assert!(err.contains("seg.nii.gz") && err.contains("not a label file"), "{bad}: {err}");
        }
    }
}
