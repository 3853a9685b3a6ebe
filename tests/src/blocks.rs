//! Trees whose blocks stress the content coding: every size class, in content that compresses
//! extremely well, not at all, or in runs of both.

use std::path::Path;

/// xorshift bytes: incompressible and reproducible.
fn noise(len: usize, mut x: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// One line of a JSON schema bundle, the kind of file real Python trees ship by the megabyte.
const SCHEMA: &str = r#"{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{"name":{"type":"string"},"version":{"type":"string"}},"required":["name"]},"#;

/// Writes the tree. Zeros and schemas of 4 MiB are one 4 MiB block each, a multiple of zstd's
/// 128 KiB block (the sizes a pull once failed on); the rest covers small bundled files, files
/// just around 128 KiB, random bytes, and a file cut by content into mixed blocks.
pub fn write_awkward_tree(root: &Path) {
    let dir = root.join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, bytes: &[u8]| std::fs::write(dir.join(name), bytes).unwrap();
    write("zeros-4m.bin", &vec![0u8; 4 << 20]);
    write(
        "schemas.json",
        SCHEMA.repeat((4 << 20) / SCHEMA.len() + 1).as_bytes()[..4 << 20].as_ref(),
    );
    write("zeros-1m.bin", &vec![0u8; 1 << 20]);
    for (i, len) in [(128 << 10) - 1, 128 << 10, (128 << 10) + 1]
        .into_iter()
        .enumerate()
    {
        write(&format!("zeros-{i}.bin"), &vec![0u8; len]);
        write(
            &format!("schema-{i}.json"),
            &SCHEMA.repeat(len / SCHEMA.len() + 1).as_bytes()[..len],
        );
    }
    write("random.bin", &noise(3 << 20, 0x9E37_79B9_7F4A_7C15));
    let mut mixed = Vec::new();
    for i in 0..24u64 {
        match i % 3 {
            0 => mixed.resize(mixed.len() + (300 << 10), 0),
            1 => mixed.extend_from_slice(&noise(200 << 10, i + 1)),
            _ => mixed.extend(SCHEMA.bytes().cycle().take(250 << 10)),
        }
    }
    write("mixed.bin", &mixed);
    for i in 0..50 {
        write(
            &format!("small-{i:02}.txt"),
            SCHEMA.repeat(i + 1).as_bytes(),
        );
    }
    write("empty", b"");
}
