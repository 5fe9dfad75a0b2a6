//! The automatic level of one sending channel: faster when compression is
//! what holds the channel up, tighter when the channel waits anyway.
//!
//! Per packet the sender reports how long it compressed and how long it
//! was away between two packets (sending on the socket, waiting for QEMU to
//! hand it pages). When compression fills nearly all of the channel's time,
//! the channel is CPU-bound and a faster level sends more per second; when
//! the channel spends a good part of its time outside compression, it is
//! waiting on the network (or on QEMU), and a tighter level costs nothing
//! that is waited for and sends fewer bytes. A smoothed share, two
//! thresholds and a run of packets before each move keep it from
//! oscillating. The receiver needs nothing: every level is the same format.

use std::time::Duration;

use crate::codec::Level;

/// The levels in order of speed, fastest first.
const LADDER: [Level; 3] = [Level::Turbo, Level::Fast, Level::Strong];
/// Above this share of time compressing, the channel is CPU-bound.
const CPU_BOUND: f64 = 0.85;
/// Below it, the channel waits more than it compresses.
const WAITING: f64 = 0.60;
/// Packets in a row on one side of a threshold before the level moves.
const RUN: u32 = 8;
/// Weight of the newest packet in the smoothed share.
const ALPHA: f64 = 0.25;

#[derive(Debug, Clone)]
pub struct AutoLevel {
    step: usize,
    share: Option<f64>,
    /// Packets in a row above CPU_BOUND (positive) or below WAITING (negative).
    run: i64,
    /// Packets sent at each step of the ladder.
    packets: [u64; 3],
    moves: u64,
}

impl Default for AutoLevel {
    fn default() -> Self {
        Self::new()
    }
}

impl AutoLevel {
    /// Starts at the default level.
    pub fn new() -> Self {
        AutoLevel {
            step: 1,
            share: None,
            run: 0,
            packets: [0; 3],
            moves: 0,
        }
    }

    /// The level for the next packet.
    pub fn level(&self) -> Level {
        LADDER[self.step]
    }

    /// Takes one packet's times: `compress`, spent in the sender, and
    /// `away`, since the previous packet was handed over. Returns the level
    /// for the next packet.
    pub fn observe(&mut self, compress: Duration, away: Duration) -> Level {
        self.packets[self.step] += 1;
        let total = compress + away;
        if total.is_zero() {
            return self.level();
        }
        let now = compress.as_secs_f64() / total.as_secs_f64();
        let share = self.share.map_or(now, |s| s + ALPHA * (now - s));
        self.share = Some(share);
        self.run = if share > CPU_BOUND {
            self.run.max(0) + 1
        } else if share < WAITING {
            self.run.min(0) - 1
        } else {
            0
        };
        if self.run >= i64::from(RUN) && self.step > 0 {
            self.step -= 1;
            self.moved();
        } else if self.run <= -i64::from(RUN) && self.step + 1 < LADDER.len() {
            self.step += 1;
            self.moved();
        }
        self.level()
    }

    fn moved(&mut self) {
        self.run = 0;
        self.moves += 1;
    }

    /// Packets sent at turbo, fast and strong, and the number of moves.
    pub fn packets(&self) -> ([u64; 3], u64) {
        (self.packets, self.moves)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_cpu_bound_channel_speeds_up_and_a_waiting_one_tightens() {
        let mut auto = AutoLevel::new();
        assert_eq!(auto.level(), Level::Fast);
        // Compression fills the channel's time: faster, one step at a time.
        for _ in 0..RUN {
            auto.observe(ms(10), ms(0));
        }
        assert_eq!(auto.level(), Level::Turbo);
        for _ in 0..3 * RUN {
            auto.observe(ms(10), ms(0));
        }
        assert_eq!(auto.level(), Level::Turbo, "turbo is the fastest");
        // The network holds it up: tighter, step by step.
        let mut seen = Vec::new();
        for _ in 0..4 * RUN {
            seen.push(auto.observe(ms(2), ms(10)));
        }
        assert_eq!(auto.level(), Level::Strong);
        assert!(seen.contains(&Level::Fast), "it passes through fast");
        let (packets, moves) = auto.packets();
        assert_eq!(packets.iter().sum::<u64>(), 8 * u64::from(RUN));
        assert_eq!(moves, 3);
    }

    #[test]
    fn between_the_thresholds_and_on_alternating_packets_it_stays() {
        let mut auto = AutoLevel::new();
        // 70 % compressing: neither CPU-bound nor waiting.
        for _ in 0..100 {
            auto.observe(ms(7), ms(3));
        }
        assert_eq!(auto.level(), Level::Fast);
        // Alternating extremes average out in the smoothed share.
        for k in 0..100 {
            let away = if k % 2 == 0 { ms(0) } else { ms(9) };
            auto.observe(ms(5), away);
        }
        assert_eq!(auto.level(), Level::Fast);
        assert_eq!(auto.packets().1, 0, "no move");
    }

    #[test]
    fn a_short_burst_does_not_move_it() {
        let mut auto = AutoLevel::new();
        for _ in 0..20 {
            auto.observe(ms(7), ms(3));
        }
        for _ in 0..RUN - 3 {
            auto.observe(ms(10), ms(0));
        }
        for _ in 0..20 {
            auto.observe(ms(7), ms(3));
        }
        assert_eq!(auto.level(), Level::Fast);
    }
}
