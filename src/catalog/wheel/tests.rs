//! Tests of the zip reader against archives written by Python's `zipfile` (an independent writer) and
//! a hand-made ZIP64 archive.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("edgespec-wheel-unit-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Write a zip with Python's zipfile: each member is (name, bytes, deflate?).
fn python_zip(dir: &Path, out: &Path, members: &[(&str, Vec<u8>, bool)]) {
    let mut args = vec![out.to_str().unwrap().to_owned()];
    for (i, (name, data, deflate)) in members.iter().enumerate() {
        let data_path = dir.join(format!("member{i}.bin"));
        std::fs::write(&data_path, data).unwrap();
        args.push((*name).to_owned());
        args.push(data_path.to_str().unwrap().to_owned());
        args.push(if *deflate { "deflated" } else { "stored" }.to_owned());
    }
    let script = "import sys, zipfile\n\
        out, rest = sys.argv[1], sys.argv[2:]\n\
        with zipfile.ZipFile(out, 'w') as z:\n\
        \x20   for i in range(0, len(rest), 3):\n\
        \x20       name, path, how = rest[i:i+3]\n\
        \x20       m = zipfile.ZIP_DEFLATED if how == 'deflated' else zipfile.ZIP_STORED\n\
        \x20       z.write(path, arcname=name, compress_type=m)\n";
    let status = Command::new("python3").arg("-c").arg(script).args(&args).status().expect("python3 runs");
    assert!(status.success());
}

/// Pseudo-random but compressible bytes (so deflate really does something).
fn data(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if i % 3 == 0 {
                b'a' + (x % 4) as u8
            } else {
                (x >> 24) as u8
            }
        })
        .collect()
}

fn extract(archive: &mut ZipArchive, name: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    archive.extract(name, &mut out, "memory", &mut Progress::new("", None, true))?;
    Ok(out)
}

#[test]
fn stored_and_deflated_members_round_trip() {
    let dir = scratch("roundtrip");
    let big = data(3 << 20, 1); // several inflate chunks
    let small = data(1000, 2);
    let zip = dir.join("a.whl");
    python_zip(
        &dir,
        &zip,
        &[
            ("pkg/__init__.py", b"".to_vec(), true),
            ("pkg/big.bin", big.clone(), true),
            ("pkg/s.bin", small.clone(), false),
        ],
    );
    let mut a = ZipArchive::open(&zip, "test.zip").unwrap();
    let names: Vec<&str> = a.entries().iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["pkg/__init__.py", "pkg/big.bin", "pkg/s.bin"]);
    assert_eq!(a.entries()[1].method, METHOD_DEFLATED);
    assert_eq!(a.entries()[2].method, METHOD_STORED);
    assert!(a.entries()[1].compressed_size < big.len() as u64);
    assert_eq!(extract(&mut a, "pkg/big.bin").unwrap(), big);
    assert_eq!(extract(&mut a, "pkg/s.bin").unwrap(), small);
    assert_eq!(extract(&mut a, "pkg/__init__.py").unwrap(), b"");

    let e = extract(&mut a, "pkg/nope.bin").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.message().contains("pkg/big.bin"), "lists the members: {e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupt_member_data_is_caught_by_the_crc() {
    let dir = scratch("crc");
    let payload = data(5000, 3);
    let zip = dir.join("a.zip");
    python_zip(&dir, &zip, &[("x.bin", payload.clone(), false)]);
    let mut bytes = std::fs::read(&zip).unwrap();
    let at = bytes.windows(16).position(|w| w == &payload[..16]).unwrap() + 100;
    bytes[at] ^= 0x55;
    std::fs::write(&zip, &bytes).unwrap();
    let e = extract(&mut ZipArchive::open(&zip, "test.zip").unwrap(), "x.bin").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Format);
    assert!(e.message().contains("CRC"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn truncated_or_foreign_files_are_format_errors() {
    let dir = scratch("trunc");
    let zip = dir.join("a.zip");
    python_zip(&dir, &zip, &[("x.bin", data(20_000, 4), true)]);
    let bytes = std::fs::read(&zip).unwrap();
    // Cut off the end: no end-of-central-directory record.
    std::fs::write(&zip, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(ZipArchive::open(&zip, "test.zip").err().unwrap().kind(), ErrorKind::Format);
    // Not a zip at all.
    std::fs::write(&zip, b"GGUF and some more bytes that are not a zip archive").unwrap();
    assert_eq!(ZipArchive::open(&zip, "test.zip").err().unwrap().kind(), ErrorKind::Format);
    std::fs::write(&zip, b"").unwrap();
    assert_eq!(ZipArchive::open(&zip, "test.zip").err().unwrap().kind(), ErrorKind::Format);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupt_deflate_stream_is_a_format_error() {
    let dir = scratch("deflate");
    let payload = data(50_000, 5);
    let zip = dir.join("a.zip");
    python_zip(&dir, &zip, &[("x.bin", payload, true)]);
    let mut bytes = std::fs::read(&zip).unwrap();
    // Overwrite the start of the deflate stream (right after the 30-byte header and the 5-byte name).
    for b in &mut bytes[35..60] {
        *b = 0xff;
    }
    std::fs::write(&zip, &bytes).unwrap();
    let e = extract(&mut ZipArchive::open(&zip, "test.zip").unwrap(), "x.bin").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Format, "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A stored member whose sizes and offset live only in ZIP64 records, as a writer does for >4 GiB.
fn zip64_archive(name: &str, payload: &[u8]) -> Vec<u8> {
    let mut crc = flate2::Crc::new();
    crc.update(payload);
    let mut z = Vec::new();
    // Local header: sizes 0xFFFFFFFF, real ones in its own ZIP64 extra.
    z.extend(LOCAL_SIG.to_le_bytes());
    z.extend(45u16.to_le_bytes()); // version needed
    z.extend(0u16.to_le_bytes()); // flags
    z.extend(METHOD_STORED.to_le_bytes());
    z.extend([0u8; 4]); // time, date
    z.extend(crc.sum().to_le_bytes());
    z.extend(u32::MAX.to_le_bytes());
    z.extend(u32::MAX.to_le_bytes());
    z.extend((name.len() as u16).to_le_bytes());
    z.extend(20u16.to_le_bytes());
    z.extend(name.as_bytes());
    z.extend(1u16.to_le_bytes());
    z.extend(16u16.to_le_bytes());
    z.extend((payload.len() as u64).to_le_bytes());
    z.extend((payload.len() as u64).to_le_bytes());
    z.extend(payload);
    let cd_offset = z.len() as u64;
    // Central entry: sizes and offset all in the ZIP64 extra (plus an unrelated extra before it).
    z.extend(CENTRAL_SIG.to_le_bytes());
    z.extend(45u16.to_le_bytes());
    z.extend(45u16.to_le_bytes());
    z.extend(0u16.to_le_bytes());
    z.extend(METHOD_STORED.to_le_bytes());
    z.extend([0u8; 4]);
    z.extend(crc.sum().to_le_bytes());
    z.extend(u32::MAX.to_le_bytes());
    z.extend(u32::MAX.to_le_bytes());
    z.extend((name.len() as u16).to_le_bytes());
    z.extend((8u16 + 28).to_le_bytes()); // extra length
    z.extend(0u16.to_le_bytes()); // comment
    z.extend(0u16.to_le_bytes()); // disk
    z.extend([0u8; 6]); // attributes
    z.extend(u32::MAX.to_le_bytes()); // local header offset
    z.extend(name.as_bytes());
    z.extend(0x5455u16.to_le_bytes()); // an extended-timestamp field to skip
    z.extend(4u16.to_le_bytes());
    z.extend([1u8, 2, 3, 4]);
    z.extend(1u16.to_le_bytes());
    z.extend(24u16.to_le_bytes());
    z.extend((payload.len() as u64).to_le_bytes());
    z.extend((payload.len() as u64).to_le_bytes());
    z.extend(0u64.to_le_bytes());
    let cd_size = z.len() as u64 - cd_offset;
    let zip64_eocd = z.len() as u64;
    z.extend(ZIP64_EOCD_SIG.to_le_bytes());
    z.extend(44u64.to_le_bytes());
    z.extend(45u16.to_le_bytes());
    z.extend(45u16.to_le_bytes());
    z.extend(0u32.to_le_bytes());
    z.extend(0u32.to_le_bytes());
    z.extend(1u64.to_le_bytes());
    z.extend(1u64.to_le_bytes());
    z.extend(cd_size.to_le_bytes());
    z.extend(cd_offset.to_le_bytes());
    z.extend(ZIP64_LOCATOR_SIG.to_le_bytes());
    z.extend(0u32.to_le_bytes());
    z.extend(zip64_eocd.to_le_bytes());
    z.extend(1u32.to_le_bytes());
    z.extend(EOCD_SIG.to_le_bytes());
    z.extend([0u8; 4]);
    z.extend(u16::MAX.to_le_bytes());
    z.extend(u16::MAX.to_le_bytes());
    z.extend(u32::MAX.to_le_bytes());
    z.extend(u32::MAX.to_le_bytes());
    z.extend(0u16.to_le_bytes());
    z
}

#[test]
fn zip64_records_are_read() {
    let dir = scratch("zip64");
    let payload = data(4096, 6);
    let zip = dir.join("a.zip");
    std::fs::write(&zip, zip64_archive("model.gguf", &payload)).unwrap();
    // Python agrees the hand-made archive is valid.
    let check = Command::new("python3")
        .arg("-c")
        .arg("import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; print(z.read('model.gguf').__len__())")
        .arg(&zip)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    assert_eq!(String::from_utf8_lossy(&check.stdout).trim(), "4096");
    let mut a = ZipArchive::open(&zip, "test.zip").unwrap();
    assert_eq!(a.entries()[0].size, 4096);
    assert_eq!(extract(&mut a, "model.gguf").unwrap(), payload);
    std::fs::remove_dir_all(&dir).unwrap();
}
