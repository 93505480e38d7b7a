//! Overlap of label maps: the Dice coefficient of each label between a prediction and the
//! truth, as segmentation is scored.

use ndarray::{Array3, Zip};

/// Dice `2|A ∩ B| / (|A| + |B|)` of each label `1..classes` between two label maps of one
/// shape; `None` for a label absent from both.
pub fn dice_per_label(pred: &Array3<f32>, truth: &Array3<f32>, classes: usize) -> Vec<Option<f64>> {
    assert_eq!(pred.shape(), truth.shape(), "label maps must share a shape");
    let mut both = vec![0usize; classes];
    let mut count_p = vec![0usize; classes];
    let mut count_t = vec![0usize; classes];
    let index = |v: f32| {
        let l = v.round();
        (l >= 0.0 && (l as usize) < classes).then_some(l as usize)
    };
    Zip::from(pred).and(truth).for_each(|&p, &t| {
        let (p, t) = (index(p), index(t));
        if let Some(p) = p {
            count_p[p] += 1;
        }
        if let Some(t) = t {
            count_t[t] += 1;
        }
        if let (Some(p), Some(t)) = (p, t)
            && p == t
        {
            both[p] += 1;
        }
    });
    (1..classes)
        .map(|l| {
            let total = count_p[l] + count_t[l];
            (total > 0).then(|| 2.0 * both[l] as f64 / total as f64)
        })
        .collect()
}

/// The mean of the labels' Dice values that are defined.
pub fn mean_dice(dice: &[Option<f64>]) -> Option<f64> {
    let known: Vec<f64> = dice.iter().flatten().copied().collect();
    (!known.is_empty()).then(|| known.iter().sum::<f64>() / known.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dice_by_hand() {
        let t = Array3::from_shape_vec((4, 1, 1), vec![0.0, 1.0, 1.0, 2.0]).unwrap();
        let p = Array3::from_shape_vec((4, 1, 1), vec![1.0, 1.0, 0.0, 2.0]).unwrap();
        let d = dice_per_label(&p, &t, 4);
        assert_eq!(d, vec![Some(0.5), Some(1.0), None]);
        assert_eq!(mean_dice(&d), Some(0.75));
    }
}
