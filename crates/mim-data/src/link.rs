//! Link formulas `g: R^r → R`: grammar, parser, AST, evaluation and canonical printing.
//!
//! # Grammar
//!
//! ```text
//! expr    := term { ('+' | '-') term }
//! term    := unary { ('*' | '/') unary }
//! unary   := [ '+' | '-' ] power
//! power   := atom [ '^' K ]                     K integer in 0..=16
//! atom    := number | 'z'I | '(' expr ')' | func '(' expr ')'        I ≥ 1
//! func    := 'h'K (K in 0..=8, probabilists' Hermite He_K) | 'abs' | 'sign' | 'tanh' | 'relu'
//! number  := digits ['.' [digits]] [('e'|'E') ['+'|'-'] digits]  |  '.' digits [exponent]
//! ```
//!
//! or, as the **whole** link, the hierarchical form (seed 003, see [`Hierarchical`]):
//!
//! ```text
//! link    := 'hierarchical' '(' arg { ',' arg } ')'
//! arg     := 'K=' integer          1..=10000, required
//!          | 'gamma=' number       finite, ≥ 0, required
//!          | 'g=' ('h2' | 'abs' | 'h4')        required
//!          | 'signs=' ('positive' | 'random')  optional, default positive
//!          | 'seed=' integer       u64; required with, and only allowed with, signs=random
//! ```
//!
//! Arguments are named, in any order, each at most once, with whitespace allowed anywhere
//! between tokens. `hierarchical(K=K, gamma=γ, g=φ)` denotes
//! `g(z) = Σ_{k=1..K} a_k φ(z_k)`, `a_k = Z_γ k^{−γ}` (times a seeded Rademacher sign with
//! `signs=random`), `Σ_k a_k² = 1`, with the unit-variance, mean-zero
//! `φ = He₂/√2`, `(|t| − √(2/π))/√(1 − 2/π)` or `He₄/√24`, so `E[g] = 0`, `Var g = 1`. It is
//! stored as the ordinary flat link `Σ_k c_k·h2(zk)` (`abs(zk)` plus a constant term, `h4(zk)`),
//! so every flat path applies, and `max_index()` is `K`; [`Link::hierarchical`] returns the
//! parameters. The form cannot be part of a larger formula: `hierarchical(...) + z1` or
//! `tanh(hierarchical(...))` is [`LinkError::HierarchicalNotWhole`].
//!
//! Whitespace between tokens is ignored. `^` binds tighter than a sign (`-z1^2` is `−(z1²)`),
//! and `a^b^c` is rejected (write `(a^b)^c`). Division is only by a nonzero numeric constant
//! (`(h2(z1) + h2(z2))/4`; `z1/z2` is [`LinkError::DivisionByNonConstant`]). Parentheses and
//! function calls nest at most [`MAX_DEPTH`] deep. Indices are 1-based: `z1` is the first
//! coordinate of `z = Ux`. Semantics: `sign(0) = 0`, `relu(t) = max(t, 0)`, `x^0 = 1`.
//!
//! # Flat and nested links
//!
//! A formula that, after the simplifications below, is a sum of terms `c · Π_j F_j(z_{I_j})` of
//! univariate factors `hK(zI)`, `zI^K`, `abs/sign/tanh/relu(zI)` of plain coordinates is **flat**
//! and stored exactly as before nested formulas existed: [`Link::terms`] returns its terms and
//! every fast / exact path applies. Numbers in a product multiply into its coefficient, left to
//! right, so `0.5*h4(z2)` and `h4(z2)*0.5` both denote `0.5·He_4(z_2)`; a term made of numbers
//! only is a constant; several factors may use the same index (`h3(z1)*h3(z1)`). The
//! simplifications, all exact or single roundings of the coefficients:
//!
//! - parentheses around a single term vanish: `2*(h2(z1))` is `2*h2(z1)`, `-(z1*z2)` is
//!   `-z1*z2`;
//! - a number multiplying or dividing a sum is distributed over its terms:
//!   `(h2(z1) + h2(z2))/4` is the flat `0.25*h2(z1) + 0.25*h2(z2)`, `2*(z1 + z2)` is
//!   `2*z1 + 2*z2`; division by a constant divides each coefficient (`z1/3` has coefficient
//!   `1/3` rounded once);
//! - a function of a plain variable is the flat factor (`tanh((z1))` is `tanh(z1)`), `(zI^a)^b`
//!   is `zI^{a·b}` when `a·b ≤ 16`, and a power of a product of flat factors is the product
//!   repeated while it has at most 64 factors (`h2(z1)^2` is `h2(z1)*h2(z1)`, `(2*z1)^2` is
//!   `4*z1*z1`); `x^1` is `x`, a number's power is folded (`2^3` is `8`);
//! - like terms are never merged and nothing else is expanded (`(z1 + z2)^2` stays a power,
//!   `h2(z1)^0` stays `(h2(z1))^0`).
//!
//! Everything else is **nested**: a function applied to a sub-expression (`tanh(z1 + z2)`,
//! `h3(0.5*z1 + 0.5*z2)`, `abs(h2(z1))`), a power of a sum (`(z1 + z2)^2`) or a product with a
//! sum (`z3*(z1 + z2)`). A nested link keeps an expression tree in the same normal form (see
//! `Display` below); [`Link::is_nested`] tells which representation a link has, and
//! [`Link::terms`] is empty for it.
//!
//! # Canonical form
//!
//! [`Display`](fmt::Display) prints terms joined by ` + ` / ` - `, the coefficient first and
//! omitted when it is `±1` (shortest decimal that parses back exactly), factors joined by `*`. A
//! nested factor prints as `f(…)`, `(…)` (a sum inside a product) or `(…)^K` (`f(…)^K` for a
//! lone function call), its argument printed the same way. A term containing a parenthesised
//! sum always has coefficient 1, any other coefficient being multiplied into that sum's first
//! group. Examples: `tanh(3*(h2(z1)+h2(z2))/4)` prints as `tanh(0.75*h2(z1) + 0.75*h2(z2))`,
//! `(z1+z2)^2` as `(z1 + z2)^2`, `2*z3*(z1 - 1)` as `z3*(2*z1 - 2)`. The printed form parses back
//! to an equal `Link`, and flat formulas print exactly as they always have. A hierarchical link
//! prints as `hierarchical(K=20, gamma=1, g=h2)` (arguments in the order `K`, `gamma`, `g`, then
//! `signs=random, seed=S` for random signs; `gamma` as the shortest exact decimal).

use std::fmt;
use std::str::FromStr;

use crate::error::LinkError;
use crate::expr::{fmt_terms, Expr, Func};
use crate::hermite::hermite;
pub use crate::hierarchical::{Hierarchical, HierarchicalG, HierarchicalSigns, MAX_HIERARCHICAL_K};

/// sign(t) ∈ {−1, 0, 1} (0 at t = 0, unlike `f64::signum`).
pub fn sign(t: f64) -> f64 {
    if t > 0.0 {
        1.0
    } else if t < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// Largest Hermite degree `K` accepted in `hK(zI)`.
pub const MAX_HERMITE_DEGREE: usize = 8;
/// Largest exponent `K` accepted in `zI^K`.
pub const MAX_EXPONENT: u32 = 16;

/// One univariate factor of a term, acting on coordinate `z_index` (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Factor {
    /// `hK(zI)`: probabilists' Hermite polynomial `He_K(z_I)`.
    Hermite {
        /// Degree `K` (`≤ 8` when parsed).
        degree: usize,
        /// 1-based index `I`.
        index: usize,
    },
    /// `zI^K` (`zI` is `zI^1`): the monomial `z_I^K`.
    Power {
        /// 1-based index `I`.
        index: usize,
        /// Exponent `K` (`≤ 16` when parsed).
        exponent: u32,
    },
    /// `abs(zI)`: `|z_I|`.
    Abs {
        /// 1-based index `I`.
        index: usize,
    },
    /// `sign(zI)`: `+1` for `z_I > 0`, `−1` for `z_I < 0`, `0` at `0`.
    Sign {
        /// 1-based index `I`.
        index: usize,
    },
    /// `tanh(zI)`: hyperbolic tangent of `z_I`.
    Tanh {
        /// 1-based index `I`.
        index: usize,
    },
    /// `relu(zI)`: `max(z_I, 0)`.
    Relu {
        /// 1-based index `I`.
        index: usize,
    },
}

impl Factor {
    /// The 1-based coordinate index `I` this factor reads.
    pub fn index(&self) -> usize {
        match *self {
            Factor::Hermite { index, .. }
            | Factor::Power { index, .. }
            | Factor::Abs { index }
            | Factor::Sign { index }
            | Factor::Tanh { index }
            | Factor::Relu { index } => index,
        }
    }

    /// Value of the factor when its coordinate equals `t`, e.g. `He_K(t)`, `t^K`, `|t|`.
    pub fn eval(&self, t: f64) -> f64 {
        match *self {
            Factor::Hermite { degree, .. } => hermite(degree, t),
            Factor::Power { exponent, .. } => t.powi(exponent as i32),
            Factor::Abs { .. } => t.abs(),
            Factor::Sign { .. } => sign(t),
            Factor::Tanh { .. } => t.tanh(),
            Factor::Relu { .. } => {
                if t > 0.0 {
                    t
                } else {
                    0.0
                }
            }
        }
    }

    /// Polynomial degree of the factor, or `None` for the non-polynomial `abs`, `sign`,
    /// `tanh`, `relu`.
    pub fn polynomial_degree(&self) -> Option<usize> {
        match *self {
            Factor::Hermite { degree, .. } => Some(degree),
            Factor::Power { exponent, .. } => Some(exponent as usize),
            _ => None,
        }
    }
}

impl fmt::Display for Factor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Factor::Hermite { degree, index } => write!(f, "h{degree}(z{index})"),
            Factor::Power { index, exponent: 1 } => write!(f, "z{index}"),
            Factor::Power { index, exponent } => write!(f, "z{index}^{exponent}"),
            Factor::Abs { index } => write!(f, "abs(z{index})"),
            Factor::Sign { index } => write!(f, "sign(z{index})"),
            Factor::Tanh { index } => write!(f, "tanh(z{index})"),
            Factor::Relu { index } => write!(f, "relu(z{index})"),
        }
    }
}

/// One term `c · Π_j F_j(z_{I_j})` of a link; no factors means the constant `c`.
#[derive(Clone, Debug, PartialEq)]
pub struct Term {
    /// The coefficient `c` (sign included; finite).
    pub coefficient: f64,
    /// The factors, in the order written.
    pub factors: Vec<Factor>,
}

impl Term {
    /// `c · Π_j F_j(z_{I_j})`. Panics if `z` is shorter than the largest index used.
    pub fn eval(&self, z: &[f64]) -> f64 {
        self.coefficient
            * self
                .factors
                .iter()
                .map(|f| f.eval(z[f.index() - 1]))
                .product::<f64>()
    }
}

/// Deepest nesting of parentheses and function calls accepted by the parser.
pub const MAX_DEPTH: usize = 32;

/// A parsed link `g(z)` (see the module docs for the grammar and the flat / nested forms).
///
/// Build one with [`Link::parse`] or [`str::parse`]; [`Display`](fmt::Display) prints a canonical
/// form that parses back to an equal `Link`. Equality is structural (terms and factors in the
/// order written, after the simplifications of the module docs), not algebraic.
#[derive(Clone, PartialEq)]
pub struct Link {
    repr: Repr,
    /// The parameters when parsed from the `hierarchical(...)` form (`repr` is then flat).
    hierarchical: Option<Hierarchical>,
}

#[derive(Clone, Debug, PartialEq)]
enum Repr {
    /// `Σ_t c_t Π_j F_{t,j}(z_{I_{t,j}})`.
    Flat(Vec<Term>),
    /// An expression tree with at least one non-flat factor.
    Nested(Expr),
}

impl fmt::Debug for Link {
    /// `Link { terms: [...] }` for a flat link (as it always printed), `Link { expr: ... }` for a
    /// nested one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(h) = &self.hierarchical {
            return f
                .debug_struct("Link")
                .field("hierarchical", h)
                .field("terms", &self.terms())
                .finish();
        }
        match &self.repr {
            Repr::Flat(terms) => f.debug_struct("Link").field("terms", terms).finish(),
            Repr::Nested(expr) => f.debug_struct("Link").field("expr", expr).finish(),
        }
    }
}

impl Link {
    /// Parse a link formula, e.g. `h2(z1) + 0.5*h4(z2)`, `tanh(3*(h2(z1) + h2(z2))/4)` or
    /// `hierarchical(K=20, gamma=1, g=h2)`. Never panics; see [`LinkError`] for the failure
    /// cases (each message quotes the offending piece and its 1-based position).
    pub fn parse(s: &str) -> Result<Link, LinkError> {
        let chars: Vec<char> = s.chars().collect();
        if let Some(h) = crate::hierarchical::try_parse(&chars) {
            let h = h?;
            return Ok(Link {
                repr: Repr::Flat(h.terms()),
                hierarchical: Some(h),
            });
        }
        let tokens = lex(&chars)?;
        let mut parser = Parser {
            toks: &tokens,
            chars: &chars,
            i: 0,
        };
        let expr = parser.link()?;
        Ok(Link::from_expr(expr))
    }

    /// The flat representation when every factor is flat, else the tree.
    fn from_expr(expr: Expr) -> Link {
        let repr = match expr.to_flat() {
            Some(terms) => Repr::Flat(terms),
            None => Repr::Nested(expr),
        };
        Link {
            repr,
            hierarchical: None,
        }
    }

    /// The parameters of a link parsed from the `hierarchical(...)` form (its flat
    /// [`Link::terms`] are `Σ_k c_k φ(z_k)`), `None` for any other formula.
    pub fn hierarchical(&self) -> Option<&Hierarchical> {
        self.hierarchical.as_ref()
    }

    /// The terms of a flat link, in the order written; **empty for a nested link** (see
    /// [`Link::is_nested`]).
    pub fn terms(&self) -> &[Term] {
        match &self.repr {
            Repr::Flat(terms) => terms,
            Repr::Nested(_) => &[],
        }
    }

    /// True when the link is nested (a function of a sub-expression, a power of a sum, …; see
    /// the module docs), false when it is flat and [`Link::terms`] describes it.
    pub fn is_nested(&self) -> bool {
        matches!(self.repr, Repr::Nested(_))
    }

    /// The expression tree of a nested link.
    pub(crate) fn nested_expr(&self) -> Option<&Expr> {
        match &self.repr {
            Repr::Flat(_) => None,
            Repr::Nested(expr) => Some(expr),
        }
    }

    /// Largest index `I` appearing as `zI` (0 for a constant link).
    pub fn max_index(&self) -> usize {
        match &self.repr {
            Repr::Flat(terms) => terms
                .iter()
                .flat_map(|t| t.factors.iter().map(Factor::index))
                .max()
                .unwrap_or(0),
            Repr::Nested(expr) => expr.max_index(),
        }
    }

    /// Error unless every index is at most `r`, i.e. `max_index() ≤ r`; the error names the
    /// largest index and `r`.
    pub fn check_indices(&self, r: usize) -> Result<(), LinkError> {
        let index = self.max_index();
        if index > r {
            return Err(LinkError::IndexAboveRank { index, r });
        }
        Ok(())
    }

    /// True when `g` is a polynomial: every flat factor is `hK` or `zI^K` and, for a nested
    /// link, every function applied to a sub-expression is some `hK` (sums, products and powers
    /// of polynomials are polynomials). `abs`, `sign`, `tanh`, `relu` anywhere make it false.
    pub fn is_polynomial(&self) -> bool {
        match &self.repr {
            Repr::Flat(terms) => terms
                .iter()
                .all(|t| t.factors.iter().all(|f| f.polynomial_degree().is_some())),
            Repr::Nested(expr) => expr.is_polynomial(),
        }
    }

    /// `g(z)` with `z[0] = z1`: `Σ_t c_t Π_j F_{t,j}(z_{I_{t,j}})` for a flat link, a
    /// recursive evaluation of the tree for a nested one.
    ///
    /// # Panics
    /// If `z.len() < self.max_index()` (a caller bug; [`crate::Target`] guarantees the length).
    pub fn eval(&self, z: &[f64]) -> f64 {
        match &self.repr {
            Repr::Flat(terms) => terms.iter().map(|t| t.eval(z)).sum(),
            Repr::Nested(expr) => expr.eval(z),
        }
    }
}

impl FromStr for Link {
    type Err = LinkError;

    fn from_str(s: &str) -> Result<Link, LinkError> {
        Link::parse(s)
    }
}

/// Shortest decimal that parses back to exactly `x` (`x ≥ 0`, finite): plain notation for
/// moderate magnitudes, exponent notation otherwise.
pub(crate) fn fmt_number(x: f64) -> String {
    if x == 0.0 || (1e-4..1e15).contains(&x) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

impl fmt::Display for Link {
    /// Canonical form (see the module docs): terms joined by ` + ` / ` - `, coefficient first
    /// and omitted when it is `±1`, e.g. `-z1 + 2*z2^3`, `h2(z1) + 0.5*h4(z2)`,
    /// `tanh(0.75*h2(z1) + 0.75*h2(z2))`; a hierarchical link prints its canonical
    /// `hierarchical(K=20, gamma=1, g=h2)` form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(h) = &self.hierarchical {
            return write!(f, "{h}");
        }
        match &self.repr {
            Repr::Flat(terms) => fmt_terms(
                f,
                terms.iter().map(|t| (t.coefficient, t.factors.as_slice())),
            ),
            Repr::Nested(expr) => write!(f, "{expr}"),
        }
    }
}

impl serde::Serialize for Link {
    /// Serialises as the canonical formula string.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Link {
    /// Deserialises from a formula string (errors carry the [`LinkError`] message).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Link, D::Error> {
        let s = String::deserialize(d)?;
        Link::parse(&s).map_err(serde::de::Error::custom)
    }
}

// ----------------------------------------------------------------------------------------------
// Lexer

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(String),
    Ident(String),
    Plus,
    Minus,
    Star,
    Slash,
    Caret,
    LParen,
    RParen,
    End,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    /// 1-based character position of the token's first character.
    pos: usize,
    /// 1-based character position just after the token's last character.
    end: usize,
}

impl Token {
    /// How the token is quoted in error messages.
    fn describe(&self) -> String {
        match &self.tok {
            Tok::Num(t) => format!("number `{t}`"),
            Tok::Ident(t) => format!("`{t}`"),
            Tok::End => "end of formula".to_string(),
            other => format!("`{}`", op_char(other).unwrap_or('?')),
        }
    }
}

fn op_char(tok: &Tok) -> Option<char> {
    Some(match tok {
        Tok::Plus => '+',
        Tok::Minus => '-',
        Tok::Star => '*',
        Tok::Slash => '/',
        Tok::Caret => '^',
        Tok::LParen => '(',
        Tok::RParen => ')',
        _ => return None,
    })
}

fn lex(chars: &[char]) -> Result<Vec<Token>, LinkError> {
    let n = chars.len();
    let mut out = Vec::new();
    let mut i = 0;
    while i < n {
        let c = chars[i];
        let pos = i + 1;
        let simple = match c {
            '+' => Some(Tok::Plus),
            '-' => Some(Tok::Minus),
            '*' => Some(Tok::Star),
            '/' => Some(Tok::Slash),
            '^' => Some(Tok::Caret),
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            _ => None,
        };
        if let Some(tok) = simple {
            out.push(Token {
                tok,
                pos,
                end: pos + 1,
            });
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() || c == '.' {
            let start = i;
            while i < n && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            if i < n && (chars[i] == 'e' || chars[i] == 'E') {
                i += 1;
                if i < n && (chars[i] == '+' || chars[i] == '-') {
                    i += 1;
                }
                while i < n && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            let text: String = chars[start..i].iter().collect();
            out.push(Token {
                tok: Tok::Num(text),
                pos,
                end: i + 1,
            });
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < n && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            if text == crate::hierarchical::KEYWORD {
                return Err(LinkError::HierarchicalNotWhole { pos });
            }
            out.push(Token {
                tok: Tok::Ident(text),
                pos,
                end: i + 1,
            });
        } else {
            return Err(LinkError::UnexpectedChar { ch: c, pos });
        }
    }
    out.push(Token {
        tok: Tok::End,
        pos: n + 1,
        end: n + 1,
    });
    Ok(out)
}

/// Validate `digits[.digits][e[+-]digits]` (or `.digits…`) and convert; the value must be finite.
pub(crate) fn parse_number(text: &str, pos: usize) -> Result<f64, LinkError> {
    let malformed = || LinkError::MalformedNumber {
        text: text.to_string(),
        pos,
    };
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(k) => (&text[..k], Some(&text[k + 1..])),
        None => (text, None),
    };
    let dots = mantissa.chars().filter(|&c| c == '.').count();
    let digits = mantissa.chars().filter(char::is_ascii_digit).count();
    if dots > 1 || digits == 0 {
        return Err(malformed());
    }
    if let Some(e) = exponent {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        if e.is_empty() || !e.chars().all(|c| c.is_ascii_digit()) {
            return Err(malformed());
        }
    }
    let v: f64 = text.parse().map_err(|_| malformed())?;
    if !v.is_finite() {
        return Err(LinkError::NumberOutOfRange {
            text: text.to_string(),
            pos,
        });
    }
    Ok(v)
}

/// If `name` is `z` followed by digits, its 1-based index (errors for 0 and overflow).
fn variable_index(name: &str, pos: usize) -> Option<Result<usize, LinkError>> {
    let digits = name.strip_prefix('z')?;
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(match digits.parse::<usize>() {
        Ok(0) => Err(LinkError::IndexZero {
            text: name.to_string(),
            pos,
        }),
        Ok(i) => Ok(i),
        Err(_) => Err(LinkError::IndexTooLarge {
            text: name.to_string(),
            pos,
        }),
    })
}

// ----------------------------------------------------------------------------------------------
// Parser: recursive descent, iterative along sums and products; recursion only through
// parentheses and function calls, at most `MAX_DEPTH` deep, so it cannot overflow the stack.

const EXPECT_ITEM: &str =
    "a number, a variable zI, `(`, or a function hK/abs/sign/tanh/relu followed by `(`";

/// The operator just consumed and its position (for dangling-operator errors).
type Op = Option<(char, usize)>;

struct Parser<'a> {
    /// Always ends with `Tok::End`.
    toks: &'a [Token],
    /// The formula, for quoting sub-expressions in errors.
    chars: &'a [char],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        &self.toks[self.i.min(self.toks.len() - 1)]
    }

    fn advance(&mut self) {
        if self.i + 1 < self.toks.len() {
            self.i += 1;
        }
    }

    /// End position of the last consumed token.
    fn last_end(&self) -> usize {
        match self.i {
            0 => 1,
            i => self.toks[i - 1].end,
        }
    }

    /// The formula text between 1-based positions `start` (inclusive) and `end` (exclusive).
    fn text(&self, start: usize, end: usize) -> String {
        let (a, b) = (start.saturating_sub(1), end.saturating_sub(1));
        self.chars[a.min(self.chars.len())..b.min(self.chars.len())]
            .iter()
            .collect::<String>()
            .trim()
            .to_string()
    }

    fn out_of_range(&self, start: usize) -> LinkError {
        LinkError::NumberOutOfRange {
            text: self.text(start, self.last_end()),
            pos: start,
        }
    }

    fn link(&mut self) -> Result<Expr, LinkError> {
        if matches!(self.peek().tok, Tok::End) {
            return Err(LinkError::Empty);
        }
        let expr = self.expr(0)?;
        let t = self.peek().clone();
        match t.tok {
            Tok::End => Ok(expr),
            Tok::Caret => Err(LinkError::Unexpected {
                found: "`^`".to_string(),
                expected: "an operator or the end after a power (write `(x^a)^b` for x^a^b)",
                pos: t.pos,
            }),
            _ => Err(LinkError::TrailingGarbage {
                found: t.describe(),
                pos: t.pos,
            }),
        }
    }

    /// `term { ('+' | '-') term }`.
    fn expr(&mut self, depth: usize) -> Result<Expr, LinkError> {
        let mut acc = self.term(depth, None)?;
        loop {
            let t = self.peek().clone();
            let minus = match t.tok {
                Tok::Plus => false,
                Tok::Minus => true,
                _ => return Ok(acc),
            };
            self.advance();
            let op = op_char(&t.tok).map(|c| (c, t.pos));
            let b = self.term(depth, op)?;
            acc = if minus { acc.sub(b) } else { acc.add(b) };
        }
    }

    /// `unary { ('*' | '/') unary }`; `op` is the operator just consumed.
    fn term(&mut self, depth: usize, op: Op) -> Result<Expr, LinkError> {
        let mut acc = self.unary(depth, op)?;
        loop {
            let t = self.peek().clone();
            let divide = match t.tok {
                Tok::Star => false,
                Tok::Slash => true,
                _ => return Ok(acc),
            };
            self.advance();
            let start = self.peek().pos;
            let op = op_char(&t.tok).map(|c| (c, t.pos));
            let b = self.unary(depth, op)?;
            acc = if divide {
                match b.as_constant() {
                    None => {
                        return Err(LinkError::DivisionByNonConstant {
                            divisor: self.text(start, self.last_end()),
                            pos: t.pos,
                        })
                    }
                    Some(0.0) => {
                        return Err(LinkError::DivisionByZero {
                            divisor: self.text(start, self.last_end()),
                            pos: t.pos,
                        })
                    }
                    Some(d) if !d.is_finite() => return Err(self.out_of_range(start)),
                    Some(d) => acc.div(d).map_err(|_| self.out_of_range(start))?,
                }
            } else {
                acc.mul(b).map_err(|_| self.out_of_range(start))?
            };
        }
    }

    /// `['+' | '-'] power`.
    fn unary(&mut self, depth: usize, op: Op) -> Result<Expr, LinkError> {
        let t = self.peek().clone();
        match t.tok {
            Tok::Plus => {
                self.advance();
                self.power(depth, Some(('+', t.pos)))
            }
            Tok::Minus => {
                self.advance();
                Ok(self.power(depth, Some(('-', t.pos)))?.neg())
            }
            _ => self.power(depth, op),
        }
    }

    /// `atom ['^' K]`.
    fn power(&mut self, depth: usize, op: Op) -> Result<Expr, LinkError> {
        let start = self.peek().pos;
        let base = self.atom(depth, op)?;
        let caret = self.peek().clone();
        if caret.tok != Tok::Caret {
            return Ok(base);
        }
        self.advance();
        let k = self.peek().clone();
        let exponent = match &k.tok {
            Tok::Num(text) if text.chars().all(|c| c.is_ascii_digit()) => {
                match text.parse::<u32>() {
                    Ok(e) if e <= MAX_EXPONENT => e,
                    _ => {
                        return Err(LinkError::ExponentTooLarge {
                            text: text.clone(),
                            pos: k.pos,
                        })
                    }
                }
            }
            Tok::End => {
                return Err(LinkError::DanglingOperator {
                    op: '^',
                    pos: caret.pos,
                })
            }
            Tok::Num(text) | Tok::Ident(text) => {
                return Err(LinkError::BadExponent {
                    text: text.clone(),
                    pos: k.pos,
                })
            }
            other => {
                return Err(LinkError::BadExponent {
                    text: op_char(other).unwrap_or('?').to_string(),
                    pos: k.pos,
                })
            }
        };
        self.advance();
        base.pow(exponent).map_err(|_| self.out_of_range(start))
    }

    /// `number | zI | '(' expr ')' | func '(' expr ')'`.
    fn atom(&mut self, depth: usize, op: Op) -> Result<Expr, LinkError> {
        let t = self.peek().clone();
        match &t.tok {
            Tok::Num(text) => {
                let v = parse_number(text, t.pos)?;
                self.advance();
                Ok(Expr::constant(v))
            }
            Tok::Ident(name) => {
                if let Some(index) = variable_index(name, t.pos) {
                    let index = index?;
                    self.advance();
                    return Ok(Expr::variable(index));
                }
                let func = function(name, t.pos)?;
                self.advance();
                let open = self.peek().clone();
                if open.tok != Tok::LParen {
                    return Err(LinkError::MissingParen {
                        expected: '(',
                        found: open.describe(),
                        pos: open.pos,
                    });
                }
                Ok(self.parenthesised(depth)?.apply(func))
            }
            Tok::LParen => self.parenthesised(depth),
            Tok::End
            | Tok::Plus
            | Tok::Minus
            | Tok::Star
            | Tok::Slash
            | Tok::Caret
            | Tok::RParen
                if op.is_some() =>
            {
                let (op, pos) = op.unwrap_or(('?', t.pos));
                Err(LinkError::DanglingOperator { op, pos })
            }
            _ => Err(LinkError::Unexpected {
                found: t.describe(),
                expected: EXPECT_ITEM,
                pos: t.pos,
            }),
        }
    }

    /// `'(' expr ')'`, the current token being `(`.
    fn parenthesised(&mut self, depth: usize) -> Result<Expr, LinkError> {
        let open = self.peek().pos;
        if depth >= MAX_DEPTH {
            return Err(LinkError::TooDeep {
                max: MAX_DEPTH,
                pos: open,
            });
        }
        self.advance();
        let inner = self.expr(depth + 1)?;
        let close = self.peek().clone();
        if close.tok != Tok::RParen {
            return Err(LinkError::MissingParen {
                expected: ')',
                found: close.describe(),
                pos: close.pos,
            });
        }
        self.advance();
        Ok(inner)
    }
}

/// The function named `name` (`hK`, `abs`, `sign`, `tanh`, `relu`).
fn function(name: &str, pos: usize) -> Result<Func, LinkError> {
    if let Some(digits) = name.strip_prefix('h') {
        if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
            return match digits.parse::<usize>() {
                Ok(k) if k <= MAX_HERMITE_DEGREE => Ok(Func::Hermite(k)),
                _ => Err(LinkError::HermiteDegree {
                    text: name.to_string(),
                    pos,
                }),
            };
        }
    }
    Ok(match name {
        "abs" => Func::Abs,
        "sign" => Func::Sign,
        "tanh" => Func::Tanh,
        "relu" => Func::Relu,
        _ => {
            return Err(LinkError::UnknownFunction {
                name: name.to_string(),
                pos,
            })
        }
    })
}
