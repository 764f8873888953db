//! Name-based GUIDs: the same name always gives the same GUID, so replays agree.

/// A GUID (RFC 9562 version 8, "custom") derived from `name`, lower-case with dashes.
pub(crate) fn from_name(name: &str) -> String {
    // FNV-1a, 128 bits: no dependency, and collisions are as unlikely as for random GUIDs
    // among the few thousand GUIDs one orchestration makes.
    let mut hash: u128 = 0x6c62272e07bb014262b821756295c58d;
    for byte in name.bytes() {
        hash ^= u128::from(byte);
        hash = hash.wrapping_mul(0x0000000001000000000000000000013b);
    }
    // FNV moves the last bytes (the counter) weakly into the high bits; this bijective
    // mix spreads them over all 128.
    let (hi, lo) = ((hash >> 64) as u64, hash as u64);
    let lo = mix(lo ^ hi.rotate_left(32));
    let hi = mix(hi ^ lo);
    let mut bytes = ((u128::from(hi) << 64) | u128::from(lo)).to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The splitmix64 finalizer: a bijection on u64 with good avalanche.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
}
