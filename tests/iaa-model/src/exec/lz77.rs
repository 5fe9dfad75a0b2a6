//! The model's match finder: greedy LZ77 over a 4 KiB window (IAA 1.0's
//! compression history), hash chains on 3 bytes. Silicon's own match choices
//! are not public; any valid choice gives a stream that inflates to the same
//! data, so only the compression ratio depends on this (docs/iaa-model.md).

pub const WINDOW: usize = 4096;
const MIN_MATCH: usize = 3;
const MAX_MATCH: usize = 258;
const CHAIN: usize = 32;
const HASH_BITS: u32 = 13;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    Literal(u8),
    Match { length: u16, distance: u16 },
}

fn hash(data: &[u8], at: usize) -> usize {
    let value = u32::from(data[at]) | u32::from(data[at + 1]) << 8 | u32::from(data[at + 2]) << 16;
    (value.wrapping_mul(0x9E37_79B1) >> (32 - HASH_BITS)) as usize
}

/// Tokens for `data`; with `literals_only`, no matches (Huffman-only mode).
pub fn tokens(data: &[u8], literals_only: bool) -> Vec<Token> {
    let mut out = Vec::with_capacity(data.len() / 2);
    if literals_only || data.len() < MIN_MATCH {
        out.extend(data.iter().map(|&b| Token::Literal(b)));
        return out;
    }
    let mut head = vec![usize::MAX; 1 << HASH_BITS];
    let mut prev = vec![usize::MAX; data.len()];
    let insert = |head: &mut Vec<usize>, prev: &mut Vec<usize>, at: usize| {
        if at + MIN_MATCH <= data.len() {
            let h = hash(data, at);
            prev[at] = head[h];
            head[h] = at;
        }
    };
    let mut at = 0;
    while at < data.len() {
        let mut best_len = 0;
        let mut best_dist = 0;
        if at + MIN_MATCH <= data.len() {
            let mut candidate = head[hash(data, at)];
            let max = (data.len() - at).min(MAX_MATCH);
            let mut steps = 0;
            while candidate != usize::MAX && at - candidate <= WINDOW && steps < CHAIN {
                let len = data[candidate..]
                    .iter()
                    .zip(&data[at..at + max])
                    .take_while(|(a, b)| a == b)
                    .count();
                if len > best_len {
                    best_len = len;
                    best_dist = at - candidate;
                    if len == max {
                        break;
                    }
                }
                candidate = prev[candidate];
                steps += 1;
            }
        }
        if best_len >= MIN_MATCH {
            out.push(Token::Match {
                length: best_len as u16,
                distance: best_dist as u16,
            });
            for position in at..at + best_len {
                insert(&mut head, &mut prev, position);
            }
            at += best_len;
        } else {
            out.push(Token::Literal(data[at]));
            insert(&mut head, &mut prev, at);
            at += 1;
        }
    }
    out
}

/// DEFLATE's length symbol (257..285) with its extra bits and their count.
pub fn length_code(length: u16) -> (usize, u32, u32) {
    const BASE: [u16; 29] = [
        3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115,
        131, 163, 195, 227, 258,
    ];
    const EXTRA: [u32; 29] = [
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
    ];
    let index = BASE.iter().rposition(|&base| base <= length).unwrap_or(0);
    (257 + index, (length - BASE[index]) as u32, EXTRA[index])
}

/// DEFLATE's distance symbol (0..29) with its extra bits and their count.
pub fn distance_code(distance: u16) -> (usize, u32, u32) {
    const BASE: [u16; 30] = [
        1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
        2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
    ];
    let index = BASE.iter().rposition(|&base| base <= distance).unwrap_or(0);
    let extra = if index < 4 { 0 } else { (index as u32 - 2) / 2 };
    (index, (distance - BASE[index]) as u32, extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(length_code(3), (257, 0, 0));
        assert_eq!(length_code(258), (285, 0, 0));
        assert_eq!(length_code(257), (284, 30, 5));
        assert_eq!(distance_code(1), (0, 0, 0));
        assert_eq!(distance_code(4096), (23, 1023, 10));
    }

    #[test]
    fn tokens_expand_back() {
        let data: Vec<u8> = b"abcabcabcabcxyzxyzabc".repeat(50);
        let mut out = Vec::new();
        for token in tokens(&data, false) {
            match token {
                Token::Literal(b) => out.push(b),
                Token::Match { length, distance } => {
                    for _ in 0..length {
                        out.push(out[out.len() - distance as usize]);
                    }
                }
            }
        }
        assert_eq!(out, data);
    }
}
