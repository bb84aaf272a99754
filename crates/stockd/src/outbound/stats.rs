//! Small helpers shared by the delivery figures, the demo and the
//! benchmarks: nearest-rank percentiles and a repeatable random generator.

/// The `p`-th percentile (nearest rank) of ascending `sorted`; 0 when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A small xorshift generator: backoff jitter, the demo's sample traffic
/// (no cryptographic use).
pub struct Rng(u64);

impl Rng {
    /// A fixed sequence (the demo's traffic is repeatable). The seed is
    /// mixed first (SplitMix64's finaliser): xorshift needs a non-zero state,
    /// and forcing the low bit alone made seeds 2k and 2k + 1 one sequence.
    pub fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x9E37_79B9_7F4A_7C15 } else { z })
    }

    pub fn seeded() -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15);
        Rng::new(nanos)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [0, 1).
    pub fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// In [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_the_nearest_rank() {
        let sorted = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!(percentile(&sorted, 50.0), 5.0);
        assert_eq!(percentile(&sorted, 95.0), 10.0);
        assert_eq!(percentile(&sorted, 0.0), 1.0);
        assert_eq!(percentile(&[], 99.0), 0.0);
    }

    #[test]
    fn a_seed_gives_a_fixed_sequence_within_bounds() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        for _ in 0..1_000 {
            assert_eq!(a.next_u64(), b.next_u64());
            let unit = a.next_unit();
            assert!((0.0..1.0).contains(&unit), "{unit}");
            assert!(a.below(7) < 7);
            b.next_unit();
            b.below(7);
        }
    }

    #[test]
    fn neighbouring_seeds_give_different_sequences() {
        // Seeds 2k and 2k + 1 once gave one day twice in a seed sweep.
        for seed in [0_u64, 2, 0x5151_7A7E_D0D0_CAFE] {
            let mut a = Rng::new(seed);
            let mut b = Rng::new(seed + 1);
            let first: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
            let second: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
            assert_ne!(first, second, "seed {seed}");
        }
        let mut zero = Rng::new(0);
        assert_ne!(zero.next_u64(), 0);
    }
}
