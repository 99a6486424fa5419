//! Link formulas `g: R^r → R`: grammar, parser, AST, evaluation and canonical printing.
//!
//! # Grammar
//!
//! ```text
//! link    := [sign] term { sign term }          sign := '+' | '-'
//! term    := item { '*' item }
//! item    := number | factor
//! factor  := 'z'I [ '^' K ]                     I ≥ 1, K integer in 0..=16
//!          | 'h'K '(' 'z'I ')'                  K in 0..=8 (probabilists' Hermite He_K)
//!          | ('abs' | 'sign' | 'tanh' | 'relu') '(' 'z'I ')'
//! number  := digits ['.' [digits]] [('e'|'E') ['+'|'-'] digits]  |  '.' digits [exponent]
//! ```
//!
//! Whitespace between tokens is ignored. Numbers in a term multiply into its coefficient, so
//! `0.5*h4(z2)`, `h4(z2)*0.5` and `0.5*h4(z2)` all denote `0.5·He_4(z_2)`; a term made of numbers
//! only is a constant. Several factors may use the same index (`h3(z1)*h3(z1)`).
//! Indices are 1-based: `z1` is the first coordinate of `z = Ux`.
//!
//! Factor semantics: `sign(0) = 0`, `relu(t) = max(t, 0)`, `zI^0 = 1`.

use std::fmt;
use std::str::FromStr;

use crate::error::LinkError;
use crate::hermite::hermite;

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
            Factor::Sign { .. } => {
                if t > 0.0 {
                    1.0
                } else if t < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
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

/// A parsed link `g(z) = Σ_t c_t Π_j F_{t,j}(z_{I_{t,j}})` (see the module docs for the grammar).
///
/// Build one with [`Link::parse`] or [`str::parse`]; [`Display`](fmt::Display) prints a canonical
/// form that parses back to an equal `Link`. Equality is structural (terms and factors in the
/// order written), not algebraic.
#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    terms: Vec<Term>,
}

impl Link {
    /// Parse a link formula, e.g. `h2(z1) + 0.5*h4(z2)`. Never panics; see [`LinkError`] for
    /// the failure cases (each message quotes the offending piece and its 1-based position).
    pub fn parse(s: &str) -> Result<Link, LinkError> {
        let tokens = lex(s)?;
        Parser {
            toks: &tokens,
            i: 0,
        }
        .link()
    }

    /// The terms, in the order written.
    pub fn terms(&self) -> &[Term] {
        &self.terms
    }

    /// Largest index `I` appearing as `zI` (0 for a constant link).
    pub fn max_index(&self) -> usize {
        self.terms
            .iter()
            .flat_map(|t| t.factors.iter().map(Factor::index))
            .max()
            .unwrap_or(0)
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

    /// True when every factor is a polynomial (`hK` or `zI^K`), so `g` is a polynomial.
    pub fn is_polynomial(&self) -> bool {
        self.terms
            .iter()
            .all(|t| t.factors.iter().all(|f| f.polynomial_degree().is_some()))
    }

    /// `g(z) = Σ_t c_t Π_j F_{t,j}(z_{I_{t,j}})` with `z[0] = z1`.
    ///
    /// # Panics
    /// If `z.len() < self.max_index()` (a caller bug; [`crate::Target`] guarantees the length).
    pub fn eval(&self, z: &[f64]) -> f64 {
        self.terms.iter().map(|t| t.eval(z)).sum()
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
fn fmt_number(x: f64) -> String {
    if x == 0.0 || (1e-4..1e15).contains(&x) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

impl fmt::Display for Link {
    /// Canonical form: terms joined by ` + ` / ` - `, coefficient first and omitted when it is
    /// `±1`, e.g. `-z1 + 2*z2^3`, `h2(z1) + 0.5*h4(z2)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, term) in self.terms.iter().enumerate() {
            let c = term.coefficient;
            let negative = c < 0.0;
            match (n, negative) {
                (0, true) => f.write_str("-")?,
                (0, false) => {}
                (_, true) => f.write_str(" - ")?,
                (_, false) => f.write_str(" + ")?,
            }
            let a = c.abs();
            if term.factors.is_empty() {
                f.write_str(&fmt_number(a))?;
                continue;
            }
            if a != 1.0 {
                write!(f, "{}*", fmt_number(a))?;
            }
            for (k, factor) in term.factors.iter().enumerate() {
                if k > 0 {
                    f.write_str("*")?;
                }
                write!(f, "{factor}")?;
            }
        }
        Ok(())
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
        Tok::Caret => '^',
        Tok::LParen => '(',
        Tok::RParen => ')',
        _ => return None,
    })
}

fn lex(s: &str) -> Result<Vec<Token>, LinkError> {
    let chars: Vec<char> = s.chars().collect();
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
            '^' => Some(Tok::Caret),
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            _ => None,
        };
        if let Some(tok) = simple {
            out.push(Token { tok, pos });
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
            });
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < n && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            out.push(Token {
                tok: Tok::Ident(text),
                pos,
            });
        } else {
            return Err(LinkError::UnexpectedChar { ch: c, pos });
        }
    }
    out.push(Token {
        tok: Tok::End,
        pos: n + 1,
    });
    Ok(out)
}

/// Validate `digits[.digits][e[+-]digits]` (or `.digits…`) and convert; the value must be finite.
fn parse_number(text: &str, pos: usize) -> Result<f64, LinkError> {
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
// Parser (iterative except for one fixed level per factor: cannot overflow the stack)

const EXPECT_ITEM: &str = "a factor (zI, zI^K, hK(zI), abs/sign/tanh/relu(zI)) or a number";

struct Parser<'a> {
    /// Always ends with `Tok::End`.
    toks: &'a [Token],
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

    fn link(&mut self) -> Result<Link, LinkError> {
        if matches!(self.peek().tok, Tok::End) {
            return Err(LinkError::Empty);
        }
        let mut terms = Vec::new();
        let mut sign = 1.0;
        let mut op = None;
        let first = self.peek().clone();
        match first.tok {
            Tok::Plus => {
                op = Some(('+', first.pos));
                self.advance();
            }
            Tok::Minus => {
                sign = -1.0;
                op = Some(('-', first.pos));
                self.advance();
            }
            _ => {}
        }
        loop {
            terms.push(self.term(sign, op)?);
            let t = self.peek().clone();
            match t.tok {
                Tok::Plus => sign = 1.0,
                Tok::Minus => sign = -1.0,
                Tok::End => return Ok(Link { terms }),
                Tok::Caret => {
                    return Err(LinkError::Unexpected {
                        found: "`^`".to_string(),
                        expected: "`^` only directly after a variable zI",
                        pos: t.pos,
                    })
                }
                _ => {
                    return Err(LinkError::TrailingGarbage {
                        found: t.describe(),
                        pos: t.pos,
                    })
                }
            }
            op = op_char(&t.tok).map(|c| (c, t.pos));
            self.advance();
        }
    }

    /// A product of items; `op` is the operator just consumed (for dangling-operator errors).
    fn term(&mut self, sign: f64, mut op: Option<(char, usize)>) -> Result<Term, LinkError> {
        let mut coefficient = sign;
        let mut factors = Vec::new();
        loop {
            let t = self.peek().clone();
            match &t.tok {
                Tok::Num(text) => {
                    coefficient *= parse_number(text, t.pos)?;
                    if !coefficient.is_finite() {
                        return Err(LinkError::NumberOutOfRange {
                            text: text.clone(),
                            pos: t.pos,
                        });
                    }
                    self.advance();
                }
                Tok::Ident(name) => factors.push(self.factor(name, t.pos)?),
                Tok::End | Tok::Plus | Tok::Minus | Tok::Star | Tok::Caret if op.is_some() => {
                    let (op, pos) = op.unwrap_or(('?', t.pos));
                    return Err(LinkError::DanglingOperator { op, pos });
                }
                _ => {
                    return Err(LinkError::Unexpected {
                        found: t.describe(),
                        expected: EXPECT_ITEM,
                        pos: t.pos,
                    })
                }
            }
            let next = self.peek().clone();
            if next.tok != Tok::Star {
                return Ok(Term {
                    coefficient,
                    factors,
                });
            }
            op = Some(('*', next.pos));
            self.advance();
        }
    }

    /// A factor starting at identifier `name` (the current token).
    fn factor(&mut self, name: &str, pos: usize) -> Result<Factor, LinkError> {
        if let Some(index) = variable_index(name, pos) {
            let index = index?;
            self.advance();
            let caret = self.peek().clone();
            if caret.tok != Tok::Caret {
                return Ok(Factor::Power { index, exponent: 1 });
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
            return Ok(Factor::Power { index, exponent });
        }
        if let Some(digits) = name.strip_prefix('h') {
            if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
                let degree = match digits.parse::<usize>() {
                    Ok(k) if k <= MAX_HERMITE_DEGREE => k,
                    _ => {
                        return Err(LinkError::HermiteDegree {
                            text: name.to_string(),
                            pos,
                        })
                    }
                };
                self.advance();
                let index = self.call_argument()?;
                return Ok(Factor::Hermite { degree, index });
            }
        }
        let make: fn(usize) -> Factor = match name {
            "abs" => |index| Factor::Abs { index },
            "sign" => |index| Factor::Sign { index },
            "tanh" => |index| Factor::Tanh { index },
            "relu" => |index| Factor::Relu { index },
            _ => {
                return Err(LinkError::UnknownFunction {
                    name: name.to_string(),
                    pos,
                })
            }
        };
        self.advance();
        Ok(make(self.call_argument()?))
    }

    /// `'(' zI ')'` after a function name; returns `I`.
    fn call_argument(&mut self) -> Result<usize, LinkError> {
        let open = self.peek().clone();
        if open.tok != Tok::LParen {
            return Err(LinkError::MissingParen {
                expected: '(',
                found: open.describe(),
                pos: open.pos,
            });
        }
        self.advance();
        let arg = self.peek().clone();
        let index = match &arg.tok {
            Tok::Ident(name) => variable_index(name, arg.pos),
            _ => None,
        };
        let index = match index {
            Some(index) => index?,
            None => {
                return Err(LinkError::Unexpected {
                    found: arg.describe(),
                    expected: "a variable zI as the function argument",
                    pos: arg.pos,
                })
            }
        };
        self.advance();
        let close = self.peek().clone();
        if close.tok != Tok::RParen {
            return Err(LinkError::MissingParen {
                expected: ')',
                found: close.describe(),
                pos: close.pos,
            });
        }
        self.advance();
        Ok(index)
    }
}
