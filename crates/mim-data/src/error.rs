//! Error types: [`LinkError`] for link formulas, [`DataError`] for target construction.
//!
//! Every message is one line. Link-formula positions are 1-based character (not byte) columns
//! into the formula as written, so they stay correct for non-ASCII input.

use thiserror::Error;

/// The functions and variables the link grammar knows, quoted by [`LinkError::UnknownFunction`].
pub const KNOWN_FUNCTIONS: &str = "hK(zI) with K = 0..=8, abs(zI), sign(zI), tanh(zI), relu(zI), \
     each also of any sub-expression as in tanh(z1 + z2); variables zI; powers x^K with K = 0..=16";

/// A link formula that could not be parsed, or that does not fit a target's rank.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LinkError {
    /// The formula is empty or only whitespace.
    #[error("link formula is empty (example: `h4(z1) + h4(z2)`)")]
    Empty,
    /// A character that is not part of the grammar.
    #[error("unexpected character `{ch}` at position {pos}")]
    UnexpectedChar {
        /// The offending character.
        ch: char,
        /// 1-based character position.
        pos: usize,
    },
    /// A name that is neither a known function nor a variable `zI`.
    #[error("unknown function `{name}` at position {pos} (known: {known})", known = KNOWN_FUNCTIONS)]
    UnknownFunction {
        /// The name as written.
        name: String,
        /// 1-based character position.
        pos: usize,
    },
    /// `hK` with `K > 8`.
    #[error("Hermite degree in `{text}` at position {pos} exceeds the maximum 8")]
    HermiteDegree {
        /// The function name as written, e.g. `h9`.
        text: String,
        /// 1-based character position.
        pos: usize,
    },
    /// `zI^K` with `K > 16`.
    #[error("exponent `{text}` at position {pos} is too large (maximum 16)")]
    ExponentTooLarge {
        /// The exponent as written.
        text: String,
        /// 1-based character position.
        pos: usize,
    },
    /// The exponent after `^` is not a non-negative integer literal.
    #[error("exponent `{text}` at position {pos} must be an integer 0..=16")]
    BadExponent {
        /// The token found after `^`.
        text: String,
        /// 1-based character position.
        pos: usize,
    },
    /// `z0`: variable indices are 1-based.
    #[error("variable `{text}` at position {pos} has index 0; indices start at 1 (z1, z2, ...)")]
    IndexZero {
        /// The variable as written.
        text: String,
        /// 1-based character position.
        pos: usize,
    },
    /// A variable index that does not fit in `usize`.
    #[error("variable `{text}` at position {pos} has an index that is too large")]
    IndexTooLarge {
        /// The variable as written.
        text: String,
        /// 1-based character position.
        pos: usize,
    },
    /// A number that does not follow `digits[.digits][e[+-]digits]`.
    #[error("malformed number `{text}` at position {pos}")]
    MalformedNumber {
        /// The number as written.
        text: String,
        /// 1-based character position.
        pos: usize,
    },
    /// A number (or a product of numbers) that overflows `f64`.
    #[error("number `{text}` at position {pos} is out of range (coefficient overflows f64)")]
    NumberOutOfRange {
        /// The number as written.
        text: String,
        /// 1-based character position.
        pos: usize,
    },
    /// A missing `(` after a function name or `)` after its argument.
    #[error("missing `{expected}` at position {pos} (found {found})")]
    MissingParen {
        /// The parenthesis that was expected.
        expected: char,
        /// Description of what was found instead.
        found: String,
        /// 1-based character position.
        pos: usize,
    },
    /// Input left over after a complete term, e.g. `z1 z2` or `z1)`.
    #[error(
        "unexpected trailing {found} at position {pos} (expected `+`, `-`, `*`, `/` or end of formula)"
    )]
    TrailingGarbage {
        /// Description of the leftover token.
        found: String,
        /// 1-based character position.
        pos: usize,
    },
    /// An operator with nothing (or another operator) after it, e.g. `z1 +` or `z1 + * z2`.
    #[error("dangling operator `{op}` at position {pos}: expected a factor or number after it")]
    DanglingOperator {
        /// The operator.
        op: char,
        /// 1-based character position.
        pos: usize,
    },
    /// Any other token in the wrong place.
    #[error("unexpected {found} at position {pos} (expected {expected})")]
    Unexpected {
        /// Description of what was found.
        found: String,
        /// Description of what the grammar expected.
        expected: &'static str,
        /// 1-based character position.
        pos: usize,
    },
    /// Division by something that is not a number, e.g. `z1/z2` (only division by a nonzero
    /// numeric constant such as `/4` or `/(2 + 2)` is supported).
    #[error("division by a non-constant `{divisor}` at position {pos}: only division by a nonzero number is supported (e.g. `(h2(z1) + h2(z2))/4`)")]
    DivisionByNonConstant {
        /// The divisor as written.
        divisor: String,
        /// 1-based character position of the `/`.
        pos: usize,
    },
    /// Division by a constant equal to zero, e.g. `z1/0`.
    #[error("division by zero (`{divisor}`) at position {pos}")]
    DivisionByZero {
        /// The divisor as written.
        divisor: String,
        /// 1-based character position of the `/`.
        pos: usize,
    },
    /// Parentheses and function calls nested deeper than [`crate::link::MAX_DEPTH`].
    #[error("parentheses / function calls nest deeper than {max} levels at position {pos}")]
    TooDeep {
        /// The maximum depth.
        max: usize,
        /// 1-based character position of the `(` that is too deep.
        pos: usize,
    },
    /// The moments of a nested link cannot be computed deterministically (see
    /// [`crate::Link::try_moments`]).
    #[error("the moments (mean, variance) of the nested link `{link}` are not available: {reason}; set data.normalize = false to use this link without normalisation")]
    MomentsUnavailable {
        /// The link, in canonical form.
        link: String,
        /// Why, e.g. which sub-expression couples too many coordinates.
        reason: String,
    },
    /// `hierarchical(...)` used inside a larger formula (e.g. `hierarchical(...) + z1` or
    /// `tanh(hierarchical(...))`): the form must be the whole link.
    #[error("hierarchical(...) must be the whole link (found more at position {pos})")]
    HierarchicalNotWhole {
        /// 1-based character position of `hierarchical` inside a formula, or of the first
        /// character after its closing `)`.
        pos: usize,
    },
    /// An argument name other than `K`, `gamma`, `g`, `signs`, `seed` in `hierarchical(...)`.
    #[error("unknown argument `{name}` of hierarchical(...) at position {pos} (known: K, gamma, g, signs, seed)")]
    HierarchicalUnknownArgument {
        /// The name as written.
        name: String,
        /// 1-based character position.
        pos: usize,
    },
    /// An argument given twice in `hierarchical(...)`.
    #[error("argument `{name}` of hierarchical(...) repeated at position {pos}")]
    HierarchicalRepeatedArgument {
        /// The name as written.
        name: String,
        /// 1-based character position of the repetition.
        pos: usize,
    },
    /// A required argument (`K`, `gamma`, `g`; `seed` with `signs=random`) is missing.
    #[error("hierarchical(...) is missing the argument `{name}=...` (closing `)` at position {pos}; example: `hierarchical(K=20, gamma=1, g=h2)`)")]
    HierarchicalMissingArgument {
        /// The missing argument's name.
        name: &'static str,
        /// 1-based character position of the closing `)`.
        pos: usize,
    },
    /// An argument value of `hierarchical(...)` that is not allowed, e.g. `K=2.5`, `K=0`,
    /// `gamma=-1`, `g=tanh`.
    #[error(
        "argument `{name}={value}` of hierarchical(...) at position {pos}: expected {expected}"
    )]
    HierarchicalBadValue {
        /// The argument's name.
        name: &'static str,
        /// The value as written.
        value: String,
        /// What is allowed.
        expected: &'static str,
        /// 1-based character position of the value.
        pos: usize,
    },
    /// `seed=...` in `hierarchical(...)` without `signs=random`.
    #[error("argument `seed` of hierarchical(...) at position {pos} is only allowed with `signs=random`")]
    HierarchicalSeedWithoutRandomSigns {
        /// 1-based character position of the seed's value.
        pos: usize,
    },
    /// The link uses `zI` with `I > r` (see [`crate::Link::check_indices`]).
    #[error("link uses z{index} but the target has only r = {r} directions (z1..z{r})")]
    IndexAboveRank {
        /// The largest index used.
        index: usize,
        /// The target rank.
        r: usize,
    },
}

/// Invalid target configuration, naming the offending `data.*` field.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum DataError {
    /// `d = 0`.
    #[error("data.d must be at least 1 (got 0)")]
    ZeroDim,
    /// `r = 0`.
    #[error("data.r must be at least 1 (got 0)")]
    ZeroRank,
    /// `r > d`: `U` cannot have more orthonormal rows than columns.
    #[error("data.r = {r} exceeds data.d = {d}")]
    RankExceedsDim {
        /// Requested rank.
        r: usize,
        /// Input dimension.
        d: usize,
    },
    /// A sparse θ* (`data.sparsity = k`) with `k = 0`, `k > d` or `r > 1`.
    #[error("data.sparsity = {k}: {why}")]
    Sparsity {
        /// The requested support size.
        k: usize,
        /// Why it is refused.
        why: String,
    },
    /// `r × d` does not fit in memory.
    #[error("data.r × data.d = {r} × {d} is too large to allocate")]
    TooLarge {
        /// Requested rank.
        r: usize,
        /// Input dimension.
        d: usize,
    },
    /// The link formula is invalid for this target.
    #[error("data.link: {0}")]
    Link(#[from] LinkError),
    /// `noise` negative, NaN or infinite.
    #[error("data.noise = {0} must be finite and non-negative")]
    Noise(f64),
    /// `normalize = true` with a constant link.
    #[error("data.normalize = true but data.link `{link}` is constant (variance 0), so it cannot be scaled to unit variance")]
    ConstantLink {
        /// The link, in canonical form.
        link: String,
    },
    /// `normalize = true` with a link whose variance overflows.
    #[error("data.normalize = true but data.link `{link}` has non-finite variance {variance}")]
    NonFiniteVariance {
        /// The link, in canonical form.
        link: String,
        /// The computed variance.
        variance: f64,
    },
}
