//! What an entity remembers of the operations it has applied, so that one
//! delivered again (a queue message a dead host had applied but not yet
//! deleted, or a message sent again by a sender that replays after a crash)
//! is applied once.
//!
//! An operation's id names a stream and a position in it, `{stream}:{n}`:
//! an orchestration's messages are `{instance}:{execution}:{event id}`, a
//! host's client signals `{host stream}:{n}` with `n` counting per entity,
//! an entity's own signals `{hash of entity and operation}:{i}`. Any other
//! id is a stream of its own at position 0. Per stream the entity keeps the
//! runs of positions it has applied (`[1, 5000]` after 5,000 signals from
//! one host), so what it keeps grows with its senders, not its operations,
//! and it can tell a repeat from a new message however busy it is.
//!
//! A stream quiet for the reorder window (`entityMessageReorderWindowInMinutes`,
//! 30, as Durable Functions uses it) is forgotten: a copy delivered later than
//! that is applied again. The record lives in one table property (base64, at
//! most [`BUDGET`] bytes); past that the quietest streams are forgotten first.
//! A stream costs ~11 bytes and each run 2-3 more: a sender whose places
//! reach this entity scattered (an orchestration that also calls activities,
//! an entity that signals many entities) costs a run per message.

use std::collections::HashMap;

use base64::Engine as _;

/// Bytes of the encoded record: base64 of it stays under the 32K characters
/// an Azure table string property holds.
pub const BUDGET: usize = 24_000;

/// (stream, position) of an operation id.
pub type Key = (u64, u64);

/// FNV-1a, 64 bits: stable across hosts and versions (unlike std's hasher).
pub fn id_hash(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Marks the stream of an id that names none, so that `x` and `x:0` differ.
const WHOLE: u64 = 0x9e37_79b9_7f4a_7c15;
/// Marks whole-id hashes read from a record of the older form (`Recent`).
const LEGACY: u64 = 0xc2b2_ae3d_27d4_eb4f;
/// Positions are below this (a larger one is not a position: the id is whole).
const MAX_POSITION: u64 = 1 << 53;

/// The stream and position an id names.
pub fn key(id: &str) -> Key {
    match split(id) {
        Some((stream, n)) => (id_hash(stream), n),
        None => (id_hash(id) ^ WHOLE, 0),
    }
}

fn split(id: &str) -> Option<(&str, u64)> {
    let (stream, n) = id.rsplit_once(':')?;
    if stream.is_empty() || n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse()
        .ok()
        .filter(|n| *n < MAX_POSITION)
        .map(|n| (stream, n))
}

/// The applied positions of every stream heard from lately.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Seen {
    streams: HashMap<u64, Stream>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Stream {
    /// Last time something of it was applied (ms since the epoch, whole seconds).
    last: u64,
    /// Applied positions: sorted, disjoint, never adjacent, inclusive.
    runs: Vec<(u64, u64)>,
}

impl Stream {
    fn contains(&self, n: u64) -> bool {
        let i = self.runs.partition_point(|r| r.1 < n);
        self.runs.get(i).is_some_and(|r| r.0 <= n)
    }

    fn insert(&mut self, n: u64) {
        let i = self.runs.partition_point(|r| r.1 < n);
        if self.runs.get(i).is_some_and(|r| r.0 <= n) {
            return;
        }
        let joins_left = i > 0 && self.runs[i - 1].1 + 1 == n;
        let joins_right = self.runs.get(i).is_some_and(|r| r.0 == n + 1);
        match (joins_left, joins_right) {
            (true, true) => {
                self.runs[i - 1].1 = self.runs[i].1;
                self.runs.remove(i);
            }
            (true, false) => self.runs[i - 1].1 = n,
            (false, true) => self.runs[i].0 = n,
            (false, false) => self.runs.insert(i, (n, n)),
        }
    }

    /// Encoded size: hash, time, run count, runs.
    fn size(&self, previous_last: u64) -> usize {
        let mut size =
            8 + varint_len((self.last - previous_last) / 1000) + varint_len(self.runs.len() as u64);
        let mut at = 0;
        for &(start, end) in &self.runs {
            size += varint_len(start - at) + varint_len(end - start);
            at = end + 1;
        }
        size
    }
}

impl Seen {
    /// Whether the operation `id` was applied. Records written before ids
    /// named streams keep whole ids at position 0: those count too.
    pub fn has(&self, id: &str) -> bool {
        self.contains(key(id)) || self.contains((id_hash(id) ^ LEGACY, 0))
    }

    pub fn contains(&self, (stream, n): Key) -> bool {
        self.streams.get(&stream).is_some_and(|s| s.contains(n))
    }

    /// Note `key` as applied at `now` (ms since the epoch).
    pub fn insert(&mut self, (stream, n): Key, now: u64) {
        let n = n.min(MAX_POSITION);
        let s = self.streams.entry(stream).or_default();
        s.last = s.last.max(now - now % 1000);
        s.insert(n);
    }

    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Forget streams quiet for `window` (ms), then the quietest ones until
    /// the record fits in `budget` bytes; a stream too big alone loses its
    /// oldest runs.
    pub fn trim(&mut self, now: u64, window: u64, budget: usize) {
        self.streams
            .retain(|_, s| s.last.saturating_add(window) >= now);
        let by_age = self.by_age();
        let mut previous = 0;
        let sizes: Vec<usize> = by_age
            .iter()
            .map(|(_, s)| {
                let size = s.size(previous);
                previous = s.last;
                size
            })
            .collect();
        let order: Vec<u64> = by_age.into_iter().map(|(h, _)| h).collect();
        let mut total: usize = 1 + varint_len(order.len() as u64) + sizes.iter().sum::<usize>();
        let mut dropped = 0;
        while total > budget && dropped + 1 < order.len() {
            total -= sizes[dropped];
            self.streams.remove(&order[dropped]);
            dropped += 1;
        }
        if total > budget
            && let Some(hash) = order.get(dropped)
            && let Some(s) = self.streams.get_mut(hash)
        {
            // Newest runs first, each at most 20 bytes (two varints), until full.
            let room = budget.saturating_sub(40);
            let mut used = 0;
            let keep = s
                .runs
                .iter()
                .rev()
                .take_while(|(start, end)| {
                    used += varint_len(*start) + varint_len(end - start);
                    used <= room
                })
                .count();
            s.runs.drain(..s.runs.len() - keep);
        }
    }

    fn by_age(&self) -> Vec<(u64, &Stream)> {
        let mut order: Vec<(u64, &Stream)> = self.streams.iter().map(|(h, s)| (*h, s)).collect();
        order.sort_by_key(|(h, s)| (s.last, *h));
        order
    }

    /// The record as stored: base64 of version 1, the stream count, then per
    /// stream (oldest first) its hash, seconds since the previous one, and
    /// its runs as deltas, all LEB128 but the hash.
    pub fn encode(&self) -> String {
        let mut out = vec![1u8];
        let order = self.by_age();
        put_varint(&mut out, order.len() as u64);
        let mut previous = 0;
        for (hash, s) in order {
            out.extend_from_slice(&hash.to_le_bytes());
            put_varint(&mut out, (s.last - previous) / 1000);
            previous = s.last;
            put_varint(&mut out, s.runs.len() as u64);
            let mut at = 0;
            for &(start, end) in &s.runs {
                put_varint(&mut out, start - at);
                put_varint(&mut out, end - start);
                at = end + 1;
            }
        }
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(out)
    }

    /// Read the record of `entity`; one that does not parse reads as empty
    /// (and says so: repeats of what it held are not recognised).
    pub fn decode(text: &str, entity: &str) -> Seen {
        if text.is_empty() {
            return Seen::default();
        }
        let parsed = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(text)
            .ok()
            .and_then(|bytes| Self::parse(&bytes));
        parsed.unwrap_or_else(|| {
            tracing::warn!(
                "entity '{entity}': its record of applied operations cannot be read; starting a new one"
            );
            Seen::default()
        })
    }

    fn parse(bytes: &[u8]) -> Option<Seen> {
        let mut r = Reader { bytes, at: 0 };
        if r.byte()? != 1 {
            return None;
        }
        let count = r.varint()?;
        let mut seen = Seen::default();
        let mut last = 0u64;
        for _ in 0..count {
            let hash = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
            last = last.checked_add(r.varint()?.checked_mul(1000)?)?;
            let runs = r.varint()?;
            let mut stream = Stream {
                last,
                runs: Vec::new(),
            };
            let mut at = 0u64;
            for _ in 0..runs {
                let start = at.checked_add(r.varint()?)?;
                let end = start.checked_add(r.varint()?)?;
                stream.runs.push((start, end));
                at = end.checked_add(1)?;
            }
            seen.streams.insert(hash, stream);
        }
        Some(seen)
    }

    /// A record of the form before streams: whole-id hashes (8 bytes each,
    /// big-endian, base64), all applied at `at`.
    pub fn from_hashes(text: &str, at: u64) -> Seen {
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(text)
            .unwrap_or_default();
        let mut seen = Seen::default();
        for chunk in bytes.chunks_exact(8) {
            let hash = u64::from_be_bytes(chunk.try_into().expect("chunks of 8"));
            seen.insert((hash ^ LEGACY, 0), at);
        }
        seen
    }
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.bytes.get(self.at..self.at + n)?;
        self.at += n;
        Some(s)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    #[test]
    fn ids_name_a_stream_and_a_position() {
        assert_eq!(key("inst:exec:17"), (id_hash("inst:exec"), 17));
        assert_eq!(key("c1f0:3"), (id_hash("c1f0"), 3));
        // Not a position: the whole id is a stream of its own.
        assert_eq!(key("0a1b2c"), (id_hash("0a1b2c") ^ WHOLE, 0));
        assert_eq!(key("a:b"), (id_hash("a:b") ^ WHOLE, 0));
        assert_eq!(key(":5"), (id_hash(":5") ^ WHOLE, 0));
        assert_eq!(key("a:-5"), (id_hash("a:-5") ^ WHOLE, 0));
        assert_ne!(key("x"), key("x:0"));
        let huge = format!("s:{}", u64::MAX);
        assert_eq!(key(&huge), (id_hash(&huge) ^ WHOLE, 0));
        let mut seen = Seen::default();
        seen.insert((1, u64::MAX), 1_000);
        assert_eq!(Seen::decode(&seen.encode(), "e"), seen);
        assert_eq!(id_hash("abc"), 0xe71f_a219_0541_574b);
    }

    #[test]
    fn runs_merge_so_a_busy_sender_costs_a_few_bytes() {
        let mut seen = Seen::default();
        let t = 1_700_000_000_000;
        // 5,000 signals from one host, delivered a little out of order.
        for n in (1..=5000u64)
            .rev()
            .step_by(2)
            .chain((1..=5000u64).step_by(2))
        {
            seen.insert(key(&format!("host-a:{n}")), t);
        }
        assert!(seen.has("host-a:1") && seen.has("host-a:5000"));
        assert!(!seen.has("host-a:5001") && !seen.has("host-a:0"));
        assert_eq!(seen.streams[&id_hash("host-a")].runs, vec![(1, 5000)]);
        assert!(seen.encode().len() < 40, "{}", seen.encode());
        // Gaps stay gaps until filled.
        let mut s = Stream::default();
        for n in [5, 1, 3, 2, 9, 4] {
            s.insert(n);
        }
        assert_eq!(s.runs, vec![(1, 5), (9, 9)]);
        assert!(s.contains(4) && !s.contains(6) && s.contains(9) && !s.contains(10));
        s.insert(8);
        s.insert(7);
        s.insert(6);
        assert_eq!(s.runs, vec![(1, 9)]);
    }

    #[test]
    fn records_round_trip_and_bad_ones_read_as_empty() {
        let mut seen = Seen::default();
        let t = 1_700_000_000_000;
        seen.insert(key("o1:e1:3"), t);
        seen.insert(key("o1:e1:7"), t + 5_000);
        seen.insert(key("ffee"), t + 2_000);
        seen.insert(key("c:123456789012"), t + 61_000);
        let back = Seen::decode(&seen.encode(), "e");
        assert_eq!(back, seen);
        assert_eq!(Seen::decode("not base64!", "e"), Seen::default());
        assert_eq!(Seen::decode("", "e"), Seen::default());
        assert_eq!(Seen::decode("AgA", "e"), Seen::default());
    }

    #[test]
    fn old_records_of_whole_id_hashes_still_count() {
        let hashes: Vec<u8> = [id_hash("o1:e1:3"), id_hash("uuid-like")]
            .iter()
            .flat_map(|h| h.to_be_bytes())
            .collect();
        let text = base64::engine::general_purpose::STANDARD_NO_PAD.encode(hashes);
        let seen = Seen::from_hashes(&text, 1_700_000_000_000);
        assert!(seen.has("o1:e1:3") && seen.has("uuid-like"));
        assert!(!seen.has("o1:e1:4"));
        // A whole id of the old form is not taken for position 0 of a stream.
        let mut seen = Seen::default();
        seen.insert(key("x:0"), 1_700_000_000_000);
        assert!(seen.has("x:0") && !seen.has("x"));
    }

    #[test]
    fn quiet_streams_are_forgotten_after_the_window_and_the_oldest_past_the_budget() {
        let t = 1_700_000_000_000;
        let mut seen = Seen::default();
        seen.insert(key("old:1"), t);
        seen.insert(key("new:1"), t + 20 * MIN);
        seen.trim(t + 31 * MIN, 30 * MIN, BUDGET);
        assert!(!seen.has("old:1") && seen.has("new:1"));

        // 4,000 one-operation streams do not fit: the oldest go.
        let mut seen = Seen::default();
        for i in 0..4000u64 {
            seen.insert(key(&format!("op{i}")), t + i * 1000);
        }
        seen.trim(t + 4000 * 1000, 30 * MIN, BUDGET);
        let kept = seen.len();
        assert!((1500..4000).contains(&kept), "{kept}");
        assert!(seen.has("op3999") && !seen.has("op0"));
        let encoded = seen.encode();
        assert!(encoded.len() <= BUDGET * 4 / 3 + 4 && encoded.len() < 32_768);

        // One stream with scattered positions alone: its oldest runs go.
        let mut seen = Seen::default();
        for n in 0..20_000u64 {
            seen.insert(key(&format!("o:e:{}", n * 2)), t);
        }
        seen.trim(t, 30 * MIN, BUDGET);
        assert!(seen.encode().len() < 32_768);
        assert!(seen.has("o:e:39998") && !seen.has("o:e:0"));
    }
}
