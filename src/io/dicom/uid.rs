//! DICOM unique identifiers (UIDs): validation before a UID becomes a folder name, and
//! generation of new UIDs for files cta2mbf writes.

/// Longest UID the standard allows (PS3.5 §9.1).
pub const MAX_UID_LEN: usize = 64;

/// True when `uid` is a valid DICOM UID: 1 to 64 characters, digits and dots only, made of
/// non-empty dot-separated components. Such a string is safe as a single path component
/// (it cannot be `.`, `..`, empty, or contain a separator).
pub fn is_valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= MAX_UID_LEN
        && uid.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && uid.split('.').all(|part| !part.is_empty())
}

/// A UID under the `2.25` root (PS3.5 §B.2): `2.25.` followed by the decimal value of a
/// 128-bit number, which the caller draws at random or derives from a seed.
pub fn uid_from_u128(value: u128) -> String {
    format!("2.25.{value}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_real_uids_and_rejects_paths() {
        assert!(is_valid_uid("1.3.12.2.1107.5.1.4.75608.30000019021923054822600003249"));
        assert!(is_valid_uid(&uid_from_u128(u128::MAX)));
        assert!(uid_from_u128(u128::MAX).len() <= MAX_UID_LEN);
        for bad in ["", ".", "..", "../../x", "1..2", ".1.2", "1.2.", "1.2/3", "1.2\\3", "1.2 ", "abc", &"1".repeat(65)] {
            assert!(!is_valid_uid(bad), "{bad:?} accepted");
        }
    }
}
