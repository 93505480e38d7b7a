//! The annotation table (`annotation/`): which series UID is each patient's CTA, MIP, AVG
//! and BF. CSV, or Excel (`.xlsx`, `.xls`, `.ods`: the first sheet) as the reference's
//! tables were. Columns: patient id, CTA, MIP, AVG, BF; a header row naming them (any
//! order, case-insensitive) is recognised, otherwise that column order is assumed.

use crate::cohort::MODALITIES;
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// Series UIDs per patient, per modality (`CTA`, `BF`, `AVG`, `MIP`); an empty cell is absent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Annotation {
    /// `entries[pid][modality] = SeriesInstanceUID`.
    pub entries: BTreeMap<String, BTreeMap<String, String>>,
}

/// Column order assumed when the table has no header row.
pub const DEFAULT_COLUMNS: [&str; 5] = ["pid", "CTA", "MIP", "AVG", "BF"];

impl Annotation {
    /// The series UID of `modality` for `pid`, if the table names one.
    pub fn series(&self, pid: &str, modality: &str) -> Option<&str> {
        self.entries.get(pid)?.get(modality).map(String::as_str)
    }

    /// Build from table rows (cells as text); `path` names the table in errors.
    pub fn from_rows(path: &Path, rows: &[Vec<String>]) -> Result<Self> {
        let clean = |s: &str| s.trim().trim_matches('"').trim().to_string();
        let mut rows = rows.iter().map(|r| r.iter().map(|c| clean(c)).collect::<Vec<_>>()).enumerate().filter(|(_, r)| r.iter().any(|c| !c.is_empty()));
        let Some((_, first)) = rows.clone().next() else {
            return Err(Error::format(path, "the annotation table is empty"));
        };
        // Column index of pid and of each modality.
        let lower: Vec<String> = first.iter().map(|c| c.to_ascii_lowercase()).collect();
        let named = |m: &str| lower.iter().position(|c| c == &m.to_ascii_lowercase() || c.split(|ch: char| !ch.is_ascii_alphanumeric()).any(|w| w == m.to_ascii_lowercase()));
        let has_header = MODALITIES.iter().all(|m| named(m).is_some());
        let columns: Vec<(String, usize)> = if has_header {
            rows.next();
            let pid = lower.iter().position(|c| c.contains("pid") || c.contains("patient") || c == "id").unwrap_or(0);
            std::iter::once(("pid".to_string(), pid)).chain(MODALITIES.iter().map(|m| (m.to_string(), named(m).unwrap()))).collect()
        } else {
            DEFAULT_COLUMNS.iter().enumerate().map(|(i, c)| (c.to_string(), i)).collect()
        };
        let mut entries = BTreeMap::new();
        for (line, row) in rows {
            let cell = |i: usize| row.get(i).cloned().unwrap_or_default();
            let pid = cell(columns[0].1);
            if pid.is_empty() {
                return Err(Error::format(path, format!("row {}: no patient id", line + 1)));
            }
            let series: BTreeMap<String, String> = columns[1..].iter().map(|(m, i)| (m.clone(), cell(*i))).filter(|(_, uid)| !uid.is_empty()).collect();
            if entries.insert(pid.clone(), series).is_some() {
                return Err(Error::format(path, format!("row {}: patient {pid} appears twice", line + 1)));
            }
        }
        Ok(Annotation { entries })
    }

    /// Read a CSV or spreadsheet table (chosen by the file extension).
    pub fn read(path: &Path) -> Result<Self> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        let rows = match ext.as_str() {
            "xlsx" | "xlsm" | "xls" | "xlsb" | "ods" => spreadsheet_rows(path)?,
            _ => csv_rows(path)?,
        };
        Self::from_rows(path, &rows)
    }
}

fn csv_rows(path: &Path) -> Result<Vec<Vec<String>>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let delimiter = if text.lines().next().is_some_and(|l| l.contains('\t') && !l.contains(',')) { b'\t' } else { b',' };
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).delimiter(delimiter).from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    reader
        .records()
        .map(|r| r.map(|rec| rec.iter().map(str::to_string).collect()).map_err(|e| Error::format(path, format!("CSV: {e}"))))
        .collect()
}

fn spreadsheet_rows(path: &Path) -> Result<Vec<Vec<String>>> {
    use calamine::{Data, Reader, open_workbook_auto};
    let mut book = open_workbook_auto(path).map_err(|e| Error::format(path, format!("spreadsheet: {e}")))?;
    let sheet = book
        .worksheet_range_at(0)
        .ok_or_else(|| Error::format(path, "spreadsheet has no sheet"))?
        .map_err(|e| Error::format(path, format!("spreadsheet: {e}")))?;
    let text = |d: &Data| match d {
        Data::Int(i) => i.to_string(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Data::Float(f) => f.to_string(),
        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Bool(b) => b.to_string(),
        Data::DateTime(t) => t.to_string(),
        Data::Error(_) | Data::Empty => String::new(),
    };
    Ok(sheet.rows().map(|r| r.iter().map(text).collect()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(t: &[&[&str]]) -> Vec<Vec<String>> {
        t.iter().map(|r| r.iter().map(|c| c.to_string()).collect()).collect()
    }

    #[test]
    fn header_in_any_order_or_none() {
        let p = Path::new("a.csv");
        let a = Annotation::from_rows(p, &rows(&[&["BF", "Patient ID", "cta", "MIP", "AVG"], &["1.5", "123", "1.2", "1.3", "1.4"]])).unwrap();
        assert_eq!(a.series("123", "CTA"), Some("1.2"));
        assert_eq!(a.series("123", "BF"), Some("1.5"));
        let b = Annotation::from_rows(p, &rows(&[&["123", "1.2", "1.3", "1.4", "1.5"], &["", "", "", "", ""]])).unwrap();
        assert_eq!(a, b);
        let e = Annotation::from_rows(p, &rows(&[&["1", "1.2"], &["1", "1.3"]])).unwrap_err().to_string();
        assert!(e.contains("a.csv") && e.contains("twice"), "{e}");
    }
}
