//! The `hierarchical(K=…, gamma=…, g=…)` link form (seed 003, hierarchical multi-index targets):
//! `g(z) = Σ_{k=1..K} a_k φ(z_k)` with `a_k = Z_γ k^{−γ}`, `Σ_k a_k² = 1`, and a unit-variance,
//! mean-zero `φ`. See the [`link`](crate::link) module docs for the grammar; the form is parsed
//! into an ordinary flat [`Link`](crate::Link) that remembers these parameters for printing.

use std::f64::consts::{FRAC_2_PI, SQRT_2};
use std::fmt;

use crate::error::LinkError;
use crate::link::{fmt_number, Factor, Term};

/// Largest `K` accepted in `hierarchical(K=…)`.
pub const MAX_HIERARCHICAL_K: usize = 10_000;

/// The unit-variance, mean-zero univariate function `φ` of a [`Hierarchical`] link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HierarchicalG {
    /// `g=h2`: `φ(t) = He₂(t)/√2 = (t² − 1)/√2`; `μ₂ = √2`.
    H2,
    /// `g=abs`: `φ(t) = (|t| − √(2/π)) / √(1 − 2/π)`; `μ₂ = √(2/π)/√(1 − 2/π)`.
    Abs,
    /// `g=h4`: `φ(t) = He₄(t)/√24`, the negative control with `μ₂ = 0`.
    H4,
}

impl HierarchicalG {
    /// The name used in the formula: `h2`, `abs` or `h4`.
    pub fn name(&self) -> &'static str {
        match self {
            HierarchicalG::H2 => "h2",
            HierarchicalG::Abs => "abs",
            HierarchicalG::H4 => "h4",
        }
    }

    /// `μ₂ = E[φ(z) He₂(z)]`, `z ~ N(0, 1)`, in closed form: `√2` for `h2`, `0` for `h4`, and
    /// `(E|z|³ − E|z|)/√(1 − 2/π) = (2√(2/π) − √(2/π))/√(1 − 2/π)` for `abs`.
    pub fn mu2(&self) -> f64 {
        match self {
            HierarchicalG::H2 => SQRT_2,
            HierarchicalG::H4 => 0.0,
            HierarchicalG::Abs => {
                let m1 = FRAC_2_PI.sqrt();
                (2.0 * m1 - m1) / (1.0 - FRAC_2_PI).sqrt()
            }
        }
    }

    fn from_name(name: &str) -> Option<HierarchicalG> {
        Some(match name {
            "h2" => HierarchicalG::H2,
            "abs" => HierarchicalG::Abs,
            "h4" => HierarchicalG::H4,
            _ => return None,
        })
    }
}

impl fmt::Display for HierarchicalG {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Signs of the coefficients `a_k` of a [`Hierarchical`] link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HierarchicalSigns {
    /// All `a_k > 0` (the default; `signs=positive`, not printed).
    Positive,
    /// `signs=random, seed=S`: `a_k = s_k Z_γ k^{−γ}` with Rademacher `s_k = ±1` fixed by the seed
    /// (bit 63 of SplitMix64 of `S + k·0x9E3779B97F4A7C15`; independent of any RNG crate version).
    Random {
        /// The seed `S`.
        seed: u64,
    },
}

/// Parameters of a `hierarchical(K=…, gamma=…, g=…[, signs=random, seed=…])` link:
/// `g(z) = Σ_{k=1..K} a_k φ(z_k)`, `a_k = ±Z_γ k^{−γ}`, `Z_γ = (Σ_k k^{−2γ})^{−1/2}`, so that
/// `E[g] = 0` and `Var g = Σ_k a_k² = 1`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hierarchical {
    /// Number of directions `K` (`1..=10 000` when parsed); the link's `max_index()`.
    pub k: usize,
    /// Decay exponent `γ` (finite, `> 0` when parsed).
    pub gamma: f64,
    /// The univariate function `φ`.
    pub g: HierarchicalG,
    /// Signs of the `a_k`.
    pub signs: HierarchicalSigns,
}

impl Hierarchical {
    /// The coefficients `a_1, …, a_K` (index 0 is `a_1`), signs included: `a_k = s_k Z_γ k^{−γ}`
    /// with `Σ_k a_k² = 1` (up to rounding). Theory and weighted metrics use `a_k²`.
    pub fn coefficients(&self) -> Vec<f64> {
        let decay: Vec<f64> = (1..=self.k).map(|k| (k as f64).powf(-self.gamma)).collect();
        let z = 1.0 / decay.iter().map(|d| d * d).sum::<f64>().sqrt();
        decay
            .iter()
            .enumerate()
            .map(|(i, d)| self.sign(i + 1) * z * d)
            .collect()
    }

    /// `μ₂ = E[φ(z) He₂(z)]` of the link's `φ` (see [`HierarchicalG::mu2`]).
    pub fn mu2(&self) -> f64 {
        self.g.mu2()
    }

    /// `s_k ∈ {±1}` for the 1-based index `k`.
    fn sign(&self, k: usize) -> f64 {
        match self.signs {
            HierarchicalSigns::Positive => 1.0,
            HierarchicalSigns::Random { seed } => {
                let x = splitmix64(seed.wrapping_add((k as u64).wrapping_mul(GOLDEN)));
                if x >> 63 == 1 {
                    -1.0
                } else {
                    1.0
                }
            }
        }
    }

    /// The flat terms `Σ_k c_k F(z_k)` (plus a constant for `abs`).
    pub(crate) fn terms(&self) -> Vec<Term> {
        let a = self.coefficients();
        let mut terms: Vec<Term> = a
            .iter()
            .enumerate()
            .map(|(i, &ak)| {
                let index = i + 1;
                let (c, factor) = match self.g {
                    HierarchicalG::H2 => (ak / SQRT_2, Factor::Hermite { degree: 2, index }),
                    HierarchicalG::H4 => (ak / 24f64.sqrt(), Factor::Hermite { degree: 4, index }),
                    HierarchicalG::Abs => (ak / (1.0 - FRAC_2_PI).sqrt(), Factor::Abs { index }),
                };
                Term {
                    coefficient: c,
                    factors: vec![factor],
                }
            })
            .collect();
        if self.g == HierarchicalG::Abs {
            let sum: f64 = a.iter().sum();
            terms.push(Term {
                coefficient: -FRAC_2_PI.sqrt() / (1.0 - FRAC_2_PI).sqrt() * sum,
                factors: Vec::new(),
            });
        }
        terms
    }
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl fmt::Display for Hierarchical {
    /// `hierarchical(K=20, gamma=1, g=h2)`, with `, signs=random, seed=S` appended for random
    /// signs; `gamma` is the shortest decimal that parses back exactly.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "hierarchical(K={}, gamma={}, g={}",
            self.k,
            fmt_number(self.gamma),
            self.g
        )?;
        if let HierarchicalSigns::Random { seed } = self.signs {
            write!(f, ", signs=random, seed={seed}")?;
        }
        f.write_str(")")
    }
}

// ----------------------------------------------------------------------------------------------
// Parser

/// The function-like name that introduces the form.
pub(crate) const KEYWORD: &str = "hierarchical";

const ARGUMENTS: [&str; 5] = ["K", "gamma", "g", "signs", "seed"];

/// If the formula (ignoring leading whitespace) starts with the identifier `hierarchical`,
/// parse the whole formula as that form.
pub(crate) fn try_parse(chars: &[char]) -> Option<Result<Hierarchical, LinkError>> {
    let start = chars.iter().position(|c| !c.is_whitespace())?;
    let end = ident_end(chars, start);
    let word: String = chars[start..end].iter().collect();
    (word == KEYWORD).then(|| parse(chars, end))
}

fn ident_end(chars: &[char], mut i: usize) -> usize {
    if i < chars.len() && (chars[i].is_ascii_alphabetic() || chars[i] == '_') {
        while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
            i += 1;
        }
    }
    i
}

fn skip_ws(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && chars[i].is_whitespace() {
        i += 1;
    }
    i
}

fn describe(chars: &[char], i: usize) -> String {
    match chars.get(i) {
        Some(c) => format!("`{c}`"),
        None => "end of formula".to_string(),
    }
}

/// Parse `'(' name '=' value { ',' name '=' value } ')'` starting at 0-based index `i`, then
/// require the end of the formula.
fn parse(chars: &[char], i: usize) -> Result<Hierarchical, LinkError> {
    let mut i = skip_ws(chars, i);
    if chars.get(i) != Some(&'(') {
        return Err(LinkError::MissingParen {
            expected: '(',
            found: describe(chars, i),
            pos: i + 1,
        });
    }
    i += 1;
    // Values in the order of `ARGUMENTS`, each with its 1-based position.
    let mut values: [Option<(String, usize)>; 5] = Default::default();
    loop {
        i = skip_ws(chars, i);
        let name_start = i;
        i = ident_end(chars, i);
        if i == name_start {
            return Err(LinkError::Unexpected {
                found: describe(chars, i),
                expected: "an argument `name=value` of hierarchical(K=…, gamma=…, g=h2|abs|h4)",
                pos: i + 1,
            });
        }
        let name: String = chars[name_start..i].iter().collect();
        let Some(slot) = ARGUMENTS.iter().position(|a| *a == name) else {
            return Err(LinkError::HierarchicalUnknownArgument {
                name,
                pos: name_start + 1,
            });
        };
        if values[slot].is_some() {
            return Err(LinkError::HierarchicalRepeatedArgument {
                name,
                pos: name_start + 1,
            });
        }
        i = skip_ws(chars, i);
        if chars.get(i) != Some(&'=') {
            return Err(LinkError::Unexpected {
                found: describe(chars, i),
                expected: "`=` after the argument name",
                pos: i + 1,
            });
        }
        i = skip_ws(chars, i + 1);
        let value_start = i;
        while i < chars.len() && !matches!(chars[i], ',' | ')') && !chars[i].is_whitespace() {
            i += 1;
        }
        if i == value_start {
            return Err(LinkError::Unexpected {
                found: describe(chars, i),
                expected: "a value after `=`",
                pos: i + 1,
            });
        }
        values[slot] = Some((chars[value_start..i].iter().collect(), value_start + 1));
        i = skip_ws(chars, i);
        match chars.get(i) {
            Some(',') => i += 1,
            Some(')') => break,
            _ => {
                return Err(LinkError::Unexpected {
                    found: describe(chars, i),
                    expected: "`,` or `)` after an argument of hierarchical(...)",
                    pos: i + 1,
                })
            }
        }
    }
    let close = i + 1;
    let after = skip_ws(chars, i + 1);
    if after < chars.len() {
        return Err(LinkError::HierarchicalNotWhole { pos: after + 1 });
    }
    let [k, gamma, g, signs, seed] = values;
    let missing = |name: &'static str| LinkError::HierarchicalMissingArgument { name, pos: close };
    let bad = |name: &'static str, (value, pos): (String, usize), expected: &'static str| {
        LinkError::HierarchicalBadValue {
            name,
            value,
            expected,
            pos,
        }
    };
    let k = k.ok_or_else(|| missing("K"))?;
    let gamma = gamma.ok_or_else(|| missing("gamma"))?;
    let g = g.ok_or_else(|| missing("g"))?;
    const K_EXPECTED: &str = "an integer 1..=10000";
    let k_value = match k.0.parse::<usize>() {
        Ok(v)
            if k.0.chars().all(|c| c.is_ascii_digit()) && (1..=MAX_HIERARCHICAL_K).contains(&v) =>
        {
            v
        }
        _ => return Err(bad("K", k, K_EXPECTED)),
    };
    const GAMMA_EXPECTED: &str = "a finite number > 0";
    let gamma_value = match crate::link::parse_number(&gamma.0, gamma.1) {
        Ok(v) if v > 0.0 && v.is_finite() => v,
        _ => return Err(bad("gamma", gamma, GAMMA_EXPECTED)),
    };
    let g_value =
        HierarchicalG::from_name(&g.0).ok_or_else(|| bad("g", g.clone(), "one of h2, abs, h4"))?;
    let random = match signs {
        None => false,
        Some((s, _)) if s == "positive" => false,
        Some((s, _)) if s == "random" => true,
        Some(s) => return Err(bad("signs", s, "`positive` or `random`")),
    };
    let signs = match (random, seed) {
        (false, None) => HierarchicalSigns::Positive,
        (false, Some((_, pos))) => {
            return Err(LinkError::HierarchicalSeedWithoutRandomSigns { pos })
        }
        (true, None) => return Err(missing("seed")),
        (true, Some(seed)) => match seed.0.parse::<u64>() {
            Ok(v) if seed.0.chars().all(|c| c.is_ascii_digit()) => {
                HierarchicalSigns::Random { seed: v }
            }
            _ => return Err(bad("seed", seed, "an integer 0..=18446744073709551615")),
        },
    };
    Ok(Hierarchical {
        k: k_value,
        gamma: gamma_value,
        g: g_value,
        signs,
    })
}
