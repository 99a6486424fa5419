//! Every random draw of a run derives from the config's `seed` through [`derive_seed`], one
//! independent stream per purpose.

/// What a derived seed is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// The hidden directions U.
    Target = 1,
    /// D1, D2 and the test set (split inside by `mim_data::Split`).
    Data = 2,
    /// Symmetric initialisation of W.
    Init = 3,
    /// Stage-2 bias re-draw.
    Bias = 4,
}

/// SplitMix64 finaliser of (seed, purpose): well-mixed, distinct seeds per purpose.
pub fn derive_seed(seed: u64, purpose: Purpose) -> u64 {
    let mut z = seed ^ (purpose as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn purposes_differ() {
        let s: Vec<u64> = [Purpose::Target, Purpose::Data, Purpose::Init, Purpose::Bias]
            .iter()
            .map(|&p| derive_seed(7, p))
            .collect();
        for i in 0..4 {
            for j in 0..i {
                assert_ne!(s[i], s[j]);
            }
        }
        assert_ne!(derive_seed(7, Purpose::Data), derive_seed(8, Purpose::Data));
    }
}
