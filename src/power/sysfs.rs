//! Small helpers for reading sysfs attribute files (one value per file), shared by the Linux
//! backends, with errors that say which file and why.

#![cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))]

use std::io;
use std::path::{Path, PathBuf};

/// The contents of a sysfs attribute, trimmed.
pub(crate) fn read_trimmed(path: &Path) -> io::Result<String> {
    Ok(std::fs::read_to_string(path)?.trim().to_string())
}

/// A sysfs attribute holding an integer.
pub(crate) fn read_i64(path: &Path) -> io::Result<i64> {
    let text = read_trimmed(path)?;
    text.parse::<i64>().map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{}: `{text}` is not an integer", path.display()))
    })
}

/// A sysfs attribute holding a non-negative integer.
pub(crate) fn read_u64(path: &Path) -> io::Result<u64> {
    let text = read_trimmed(path)?;
    text.parse::<u64>().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: `{text}` is not a non-negative integer", path.display()),
        )
    })
}

/// The entries of a directory, sorted by file name so labels and domain order are stable.
pub(crate) fn sorted_entries(dir: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(name) = entry.file_name().to_str() {
            out.push((name.to_string(), entry.path()));
        }
    }
    out.sort_by(|a, b| natural_cmp(&a.0, &b.0));
    Ok(out)
}

/// Orders `hwmon2` before `hwmon10` and `intel-rapl:1` before `intel-rapl:1:0`: digit runs compare
/// as numbers.
pub(crate) fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(p), Some(q)) if p.is_ascii_digit() && q.is_ascii_digit() => {
                let nx = x.iter().take_while(|c| c.is_ascii_digit()).count();
                let ny = y.iter().take_while(|c| c.is_ascii_digit()).count();
                let (dx, dy) = (&x[..nx], &y[..ny]);
                let (tx, ty) = (trim_zeros(dx), trim_zeros(dy));
                let ord = tx.len().cmp(&ty.len()).then_with(|| tx.cmp(ty));
                if ord != std::cmp::Ordering::Equal {
                    return ord;
                }
                x = &x[nx..];
                y = &y[ny..];
            }
            (Some(p), Some(q)) => {
                if p != q {
                    return p.cmp(q);
                }
                x = &x[1..];
                y = &y[1..];
            }
        }
    }
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let n = digits.iter().take_while(|&&c| c == b'0').count();
    &digits[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_compares_digit_runs_as_numbers() {
        let mut v = vec!["hwmon10", "hwmon2", "intel-rapl:1:0", "intel-rapl:1", "intel-rapl:0"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["hwmon2", "hwmon10", "intel-rapl:0", "intel-rapl:1", "intel-rapl:1:0"]);
    }
}
