//! The runner of pair-bench.sh: two builds of the page codec, `a` and `b`,
//! timed on the same blocks of 4 KiB pages, in alternating order, round
//! after round. Each round compresses one block with both builds and
//! decompresses each build's own output; the round's speed ratios B/A are
//! collected and their medians reported. Every round trip is verified.

use std::time::Instant;

/// Pages per round: 16 MiB, long enough to time, short enough that the
/// machine's speed does not drift between the two halves of a pair.
const BLOCK: usize = 4096;
const PAGE: usize = 4096;

/// One build's encoder and decoder behind closures, so that the timing loop
/// is the same code for both.
struct Build {
    encode: Box<dyn FnMut(&[u8], &mut [u8]) -> Option<usize>>,
    decode: Box<dyn FnMut(&[u8], &mut [u8]) -> bool>,
}

macro_rules! build {
    ($krate:ident, $level:expr) => {{
        let level = match $level {
            "strong" => $krate::codec::Level::Strong,
            "turbo" => $krate::codec::Level::Turbo,
            _ => $krate::codec::Level::Fast,
        };
        let mut encoder = $krate::codec::PageEncoder::new(level);
        let mut decoder = $krate::codec::PageDecoder::new();
        Build {
            encode: Box::new(move |page: &[u8], out: &mut [u8]| encoder.encode(page, out)),
            decode: Box::new(move |stream: &[u8], page: &mut [u8]| {
                decoder.decode(stream, page).is_ok()
            }),
        }
    }};
}

/// Times one block through one build: (compress s, decompress s, wire bytes).
/// The streams go into `arena`, one page-sized slot per page, so that the
/// timed loops allocate nothing.
fn run(build: &mut Build, block: &[&[u8]], arena: &mut Vec<u8>) -> (f64, f64, usize) {
    // Both builds start with the block equally warm in the caches, whichever
    // goes first.
    let touched: u64 = block
        .iter()
        .map(|p| p.iter().map(|&b| b as u64).sum::<u64>())
        .sum();
    std::hint::black_box(touched);
    arena.resize(block.len() * PAGE, 0);
    let mut lengths: Vec<Option<usize>> = Vec::with_capacity(block.len());
    let started = Instant::now();
    for (page, slot) in block.iter().zip(arena.chunks_exact_mut(PAGE)) {
        lengths.push((build.encode)(page, &mut slot[..PAGE - 1]));
    }
    let compress = started.elapsed().as_secs_f64();
    let streams = || {
        arena
            .chunks_exact(PAGE)
            .zip(&lengths)
            .filter_map(|(slot, n)| n.map(|n| &slot[..n]))
    };
    let mut back = vec![0u8; PAGE];
    let started = Instant::now();
    for stream in streams() {
        assert!(
            (build.decode)(stream, &mut back),
            "a stream failed to decode"
        );
    }
    let decompress = started.elapsed().as_secs_f64();
    // Verified outside the timed loop: every page comes back exactly.
    for (page, (slot, n)) in block.iter().zip(arena.chunks_exact(PAGE).zip(&lengths)) {
        if let Some(n) = n {
            assert!((build.decode)(&slot[..*n], &mut back) && back[..] == page[..]);
        }
    }
    let wire = lengths.iter().map(|n| 4 + n.unwrap_or(PAGE)).sum();
    (compress, decompress, wire)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|x, y| x.total_cmp(y));
    values[values.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let data = std::fs::read(&args[1]).expect("the input file");
    let rounds: usize = args[2].parse().expect("a round count");
    let level = args[3].as_str();
    let pages: Vec<&[u8]> = data.chunks_exact(PAGE).collect();
    let blocks: Vec<&[&[u8]]> = pages.chunks(BLOCK).collect();
    let mut builds = [build!(a, level), build!(b, level)];
    let mut arena = Vec::new();
    // One untimed pass each: allocations, page faults, branch history.
    for build in builds.iter_mut() {
        run(build, blocks[0], &mut arena);
    }
    let (mut compress, mut decompress) = (Vec::new(), Vec::new());
    let mut mbps = [Vec::new(), Vec::new()];
    let mut wire = [0usize; 2];
    let mut input = 0usize;
    for round in 0..rounds {
        let block = blocks[round % blocks.len()];
        let mut times = [(0.0, 0.0); 2];
        // A first in even rounds, B first in odd ones.
        for k in [round % 2, 1 - round % 2] {
            let (c, d, w) = run(&mut builds[k], block, &mut arena);
            times[k] = (c, d);
            wire[k] += w;
            mbps[k].push(block.len() as f64 * PAGE as f64 / c / 1e6);
        }
        input += block.len() * PAGE;
        compress.push(times[0].0 / times[1].0);
        decompress.push(times[0].1 / times[1].1);
    }
    println!(
        "B/A speed (median of {rounds} paired rounds): compress x{:.3}, decompress x{:.3}",
        median(compress),
        median(decompress)
    );
    for (k, name) in ["A", "B"].iter().enumerate() {
        println!(
            "{name}: median compress {:.0} MB/s, ratio {:.4}",
            median(mbps[k].clone()),
            input as f64 / wire[k] as f64
        );
    }
}
