//! Expression trees of nested link formulas (crate-internal).
//!
//! A nested link is stored in the same shape as a flat one — a sum of terms `c · Π_j F_j` — but
//! a factor may also be a function of a sub-expression ([`EFactor::Apply`]), a parenthesised
//! sum used as a product factor ([`EFactor::Group`]) or a power of a sub-expression
//! ([`EFactor::Pow`]). The parser builds every formula in this shape through the constructors
//! below, which keep it in a normal form (so that printing and re-parsing gives back an equal
//! tree):
//!
//! - constants are folded into the coefficient of the term they multiply, and a constant factor
//!   of a sum is distributed over its terms (`2*(z1 + z2)` is `2*z1 + 2*z2`, `(…)/4` divides
//!   every coefficient by 4);
//! - a product of single terms is one term (coefficients multiplied left to right, factors
//!   concatenated in the order written); a sum of two or more terms inside a product becomes a
//!   [`EFactor::Group`];
//! - a term containing a group has coefficient `1`: any other coefficient is pushed into the
//!   coefficients of its first group (`z3*(z1 + z2)*2` is `z3*(2*z1 + 2*z2)`);
//! - `f(zI)` for a plain variable is the flat factor `f(zI)`; `zI^K` is the flat `zI^K`, and a
//!   power of a product of flat factors is that product repeated (`(2*z1*h2(z2))^2` is
//!   `4*z1*h2(z2)*z1*h2(z2)`) while it has at most [`MAX_REPEATED_FACTORS`] factors; other powers
//!   (`(z1 + z2)^2`, `tanh(z1 + z2)^2`) are [`EFactor::Pow`]; `x^1` is `x`;
//! - like terms are never merged (`z1 - z1` keeps both terms).

use std::fmt;

use crate::link::{fmt_number, Factor, Term, MAX_EXPONENT};

/// Largest number of factors a power of a flat product is expanded into (see the module docs).
pub(crate) const MAX_REPEATED_FACTORS: usize = 64;

/// A univariate function of the grammar, applied to a sub-expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Func {
    /// `hK(·)`: `He_K`.
    Hermite(usize),
    /// `abs(·)`.
    Abs,
    /// `sign(·)` (`sign(0) = 0`).
    Sign,
    /// `tanh(·)`.
    Tanh,
    /// `relu(·) = max(·, 0)`.
    Relu,
}

impl Func {
    /// The flat factor `f(zI)`.
    pub(crate) fn flat(self, index: usize) -> Factor {
        match self {
            Func::Hermite(degree) => Factor::Hermite { degree, index },
            Func::Abs => Factor::Abs { index },
            Func::Sign => Factor::Sign { index },
            Func::Tanh => Factor::Tanh { index },
            Func::Relu => Factor::Relu { index },
        }
    }

    /// `f(t)`, with the same semantics as [`Factor::eval`].
    pub(crate) fn apply(self, t: f64) -> f64 {
        self.flat(1).eval(t)
    }

    /// Polynomial growth degree of `f(x)` when `x` grows like degree `d`.
    pub(crate) fn growth(self, d: usize) -> usize {
        match self {
            Func::Hermite(k) => k.saturating_mul(d),
            Func::Abs | Func::Relu => d,
            Func::Sign | Func::Tanh => 0,
        }
    }
}

impl fmt::Display for Func {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Func::Hermite(k) => write!(f, "h{k}"),
            Func::Abs => f.write_str("abs"),
            Func::Sign => f.write_str("sign"),
            Func::Tanh => f.write_str("tanh"),
            Func::Relu => f.write_str("relu"),
        }
    }
}

/// A sum of terms (at least one), in normal form (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Expr {
    /// The terms, in the order written.
    pub(crate) terms: Vec<ETerm>,
}

/// One term `c · Π_j F_j` of an [`Expr`].
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ETerm {
    /// The coefficient (finite; exactly 1 when a factor is a [`EFactor::Group`]).
    pub(crate) coefficient: f64,
    /// The factors, in the order written.
    pub(crate) factors: Vec<EFactor>,
}

/// One factor of an [`ETerm`].
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum EFactor {
    /// A univariate factor of one coordinate, as in flat links.
    Flat(Factor),
    /// `f(x)` for a sub-expression `x` that is not a plain variable.
    Apply(Func, Box<Expr>),
    /// `(x)` for a sum `x` of two or more terms, as a factor of a product.
    Group(Box<Expr>),
    /// `(x)^K`, `K ≠ 1`, when `x` is not expanded (see the module docs).
    Pow(Box<Expr>, u32),
}

/// A coefficient overflowed `f64` while building the expression.
#[derive(Debug)]
pub(crate) struct Overflow;

impl Expr {
    /// The constant `c`.
    pub(crate) fn constant(c: f64) -> Expr {
        Expr {
            terms: vec![ETerm {
                coefficient: c,
                factors: Vec::new(),
            }],
        }
    }

    /// The single term `1·f`.
    pub(crate) fn factor(f: EFactor) -> Expr {
        Expr {
            terms: vec![ETerm {
                coefficient: 1.0,
                factors: vec![f],
            }],
        }
    }

    /// The variable `zI`.
    pub(crate) fn variable(index: usize) -> Expr {
        Expr::factor(EFactor::Flat(Factor::Power { index, exponent: 1 }))
    }

    /// Value when every term is a number (`Σ_t c_t`, left to right), else `None`.
    pub(crate) fn as_constant(&self) -> Option<f64> {
        self.terms
            .iter()
            .map(|t| t.factors.is_empty().then_some(t.coefficient))
            .sum()
    }

    /// `I` when the expression is exactly the variable `zI`.
    fn as_variable(&self) -> Option<usize> {
        match self.terms.as_slice() {
            [ETerm {
                coefficient,
                factors,
            }] if *coefficient == 1.0 => match factors.as_slice() {
                [EFactor::Flat(Factor::Power { index, exponent: 1 })] => Some(*index),
                _ => None,
            },
            _ => None,
        }
    }

    /// The single number `c` when the expression is one term without factors.
    fn as_number(&self) -> Option<f64> {
        match self.terms.as_slice() {
            [t] if t.factors.is_empty() => Some(t.coefficient),
            _ => None,
        }
    }

    /// Apply `op` to every coefficient (a term with a group passes it into the group).
    fn map_coefficients(mut self, op: &dyn Fn(f64) -> f64) -> Result<Expr, Overflow> {
        for t in &mut self.terms {
            t.map_coefficient(op)?;
        }
        Ok(self)
    }

    /// `−x` (exact).
    pub(crate) fn neg(self) -> Expr {
        self.map_coefficients(&|c| -c)
            .expect("negation cannot overflow")
    }

    /// `a + b`: the terms of `a` then those of `b`.
    pub(crate) fn add(mut self, b: Expr) -> Expr {
        self.terms.extend(b.terms);
        self
    }

    /// `a − b`.
    pub(crate) fn sub(self, b: Expr) -> Expr {
        self.add(b.neg())
    }

    /// `a · b` (see the module docs for the normal form).
    pub(crate) fn mul(self, b: Expr) -> Result<Expr, Overflow> {
        if let Some(v) = b.as_number() {
            return self.map_coefficients(&|c| c * v);
        }
        if let Some(v) = self.as_number() {
            return b.map_coefficients(&|c| v * c);
        }
        let mut term = match (self.terms.len(), b.terms.len()) {
            (1, 1) => {
                let mut a = self.terms.into_iter().next().expect("one term");
                let b = b.terms.into_iter().next().expect("one term");
                a.coefficient *= b.coefficient;
                a.factors.extend(b.factors);
                a
            }
            (1, _) => {
                let mut a = self.terms.into_iter().next().expect("one term");
                a.factors.push(EFactor::Group(Box::new(b)));
                a
            }
            (_, 1) => {
                let b = b.terms.into_iter().next().expect("one term");
                let mut factors = vec![EFactor::Group(Box::new(self))];
                factors.extend(b.factors);
                ETerm {
                    coefficient: b.coefficient,
                    factors,
                }
            }
            _ => ETerm {
                coefficient: 1.0,
                factors: vec![EFactor::Group(Box::new(self)), EFactor::Group(Box::new(b))],
            },
        };
        if !term.coefficient.is_finite() {
            return Err(Overflow);
        }
        term.normalize()?;
        Ok(Expr { terms: vec![term] })
    }

    /// `a / d` for a nonzero number `d`: every coefficient divided by `d`.
    pub(crate) fn div(self, d: f64) -> Result<Expr, Overflow> {
        self.map_coefficients(&|c| c / d)
    }

    /// `a^k` (see the module docs for when the power is expanded).
    pub(crate) fn pow(self, k: u32) -> Result<Expr, Overflow> {
        if k == 1 {
            return Ok(self);
        }
        if let Some(c) = self.as_number() {
            let v = c.powi(k as i32);
            return if v.is_finite() {
                Ok(Expr::constant(v))
            } else {
                Err(Overflow)
            };
        }
        if let [t] = self.terms.as_slice() {
            if let (1.0, [EFactor::Flat(Factor::Power { index, exponent })]) =
                (t.coefficient, t.factors.as_slice())
            {
                if let Some(e) = exponent.checked_mul(k).filter(|&e| e <= MAX_EXPONENT) {
                    return Ok(Expr::factor(EFactor::Flat(Factor::Power {
                        index: *index,
                        exponent: e,
                    })));
                }
            }
            let all_flat = t.factors.iter().all(|f| matches!(f, EFactor::Flat(_)));
            if k > 0 && all_flat && t.factors.len() * k as usize <= MAX_REPEATED_FACTORS {
                let coefficient = t.coefficient.powi(k as i32);
                if !coefficient.is_finite() {
                    return Err(Overflow);
                }
                let factors = (0..k).flat_map(|_| t.factors.iter().cloned()).collect();
                return Ok(Expr {
                    terms: vec![ETerm {
                        coefficient,
                        factors,
                    }],
                });
            }
        }
        Ok(Expr::factor(EFactor::Pow(Box::new(self), k)))
    }

    /// `f(x)`: the flat factor `f(zI)` when `x` is the variable `zI`.
    pub(crate) fn apply(self, f: Func) -> Expr {
        match self.as_variable() {
            Some(index) => Expr::factor(EFactor::Flat(f.flat(index))),
            None => Expr::factor(EFactor::Apply(f, Box::new(self))),
        }
    }

    /// The flat terms when every factor is flat, else `None`.
    pub(crate) fn to_flat(&self) -> Option<Vec<Term>> {
        self.terms
            .iter()
            .map(|t| {
                let factors = t
                    .factors
                    .iter()
                    .map(|f| match f {
                        EFactor::Flat(f) => Some(*f),
                        _ => None,
                    })
                    .collect::<Option<Vec<Factor>>>()?;
                Some(Term {
                    coefficient: t.coefficient,
                    factors,
                })
            })
            .collect()
    }

    /// `Σ_t c_t Π_j F_{t,j}(z)`.
    pub(crate) fn eval(&self, z: &[f64]) -> f64 {
        self.terms.iter().map(|t| t.eval(z)).sum()
    }

    /// Largest index `I` of any `zI` (0 if none).
    pub(crate) fn max_index(&self) -> usize {
        self.terms
            .iter()
            .flat_map(|t| t.factors.iter().map(EFactor::max_index))
            .max()
            .unwrap_or(0)
    }

    /// Every index used, appended to `out` (unsorted, with repeats).
    pub(crate) fn indices(&self, out: &mut Vec<usize>) {
        for t in &self.terms {
            for f in &t.factors {
                f.indices(out);
            }
        }
    }

    /// True when the expression is a polynomial in `z`.
    pub(crate) fn is_polynomial(&self) -> bool {
        self.terms
            .iter()
            .all(|t| t.factors.iter().all(EFactor::is_polynomial))
    }

    /// An upper bound on the polynomial growth degree of `|x(z)|` as `|z| → ∞` (bounded
    /// functions count 0), saturating.
    pub(crate) fn growth(&self) -> usize {
        self.terms
            .iter()
            .map(|t| {
                t.factors
                    .iter()
                    .fold(0usize, |d, f| d.saturating_add(f.growth()))
            })
            .max()
            .unwrap_or(0)
    }
}

impl ETerm {
    fn map_coefficient(&mut self, op: &dyn Fn(f64) -> f64) -> Result<(), Overflow> {
        if let Some(group) = self.first_group_mut() {
            return group
                .terms
                .iter_mut()
                .try_for_each(|t| t.map_coefficient(op));
        }
        self.coefficient = op(self.coefficient);
        if self.coefficient.is_finite() {
            Ok(())
        } else {
            Err(Overflow)
        }
    }

    fn first_group_mut(&mut self) -> Option<&mut Expr> {
        self.factors.iter_mut().find_map(|f| match f {
            EFactor::Group(g) => Some(&mut **g),
            _ => None,
        })
    }

    /// Push a coefficient other than 1 into the first group, if there is one.
    fn normalize(&mut self) -> Result<(), Overflow> {
        let c = self.coefficient;
        if c == 1.0 {
            return Ok(());
        }
        if let Some(group) = self.first_group_mut() {
            group
                .terms
                .iter_mut()
                .try_for_each(|t| t.map_coefficient(&|x| x * c))?;
            self.coefficient = 1.0;
        }
        Ok(())
    }

    /// `c · Π_j F_j(z)`.
    pub(crate) fn eval(&self, z: &[f64]) -> f64 {
        self.coefficient * self.factors.iter().map(|f| f.eval(z)).product::<f64>()
    }
}

impl EFactor {
    /// Value of the factor at `z` (`z[0] = z1`).
    pub(crate) fn eval(&self, z: &[f64]) -> f64 {
        match self {
            EFactor::Flat(f) => f.eval(z[f.index() - 1]),
            EFactor::Apply(func, x) => func.apply(x.eval(z)),
            EFactor::Group(x) => x.eval(z),
            EFactor::Pow(x, k) => x.eval(z).powi(*k as i32),
        }
    }

    /// The sub-expression of a non-flat factor.
    pub(crate) fn argument(&self) -> Option<&Expr> {
        match self {
            EFactor::Flat(_) => None,
            EFactor::Apply(_, x) | EFactor::Group(x) | EFactor::Pow(x, _) => Some(x),
        }
    }

    fn max_index(&self) -> usize {
        match self {
            EFactor::Flat(f) => f.index(),
            other => other.argument().map_or(0, Expr::max_index),
        }
    }

    /// Every index used, appended to `out`.
    pub(crate) fn indices(&self, out: &mut Vec<usize>) {
        match self {
            EFactor::Flat(f) => out.push(f.index()),
            other => {
                if let Some(x) = other.argument() {
                    x.indices(out);
                }
            }
        }
    }

    fn is_polynomial(&self) -> bool {
        match self {
            EFactor::Flat(f) => f.polynomial_degree().is_some(),
            EFactor::Apply(Func::Hermite(_), x) | EFactor::Group(x) | EFactor::Pow(x, _) => {
                x.is_polynomial()
            }
            EFactor::Apply(..) => false,
        }
    }

    /// Polynomial growth degree bound of the factor (see [`Expr::growth`]).
    pub(crate) fn growth(&self) -> usize {
        match self {
            EFactor::Flat(f) => match f {
                Factor::Abs { .. } | Factor::Relu { .. } => 1,
                other => other.polynomial_degree().unwrap_or(0),
            },
            EFactor::Apply(func, x) => func.growth(x.growth()),
            EFactor::Group(x) => x.growth(),
            EFactor::Pow(x, k) => x.growth().saturating_mul(*k as usize),
        }
    }
}

/// Print terms in the canonical form shared by flat and nested links: terms joined by ` + ` /
/// ` - `, the coefficient first and omitted when it is `±1`, factors joined by `*`.
pub(crate) fn fmt_terms<'a, F: fmt::Display + 'a>(
    f: &mut fmt::Formatter<'_>,
    terms: impl Iterator<Item = (f64, &'a [F])>,
) -> fmt::Result {
    for (n, (c, factors)) in terms.enumerate() {
        let negative = c < 0.0;
        match (n, negative) {
            (0, true) => f.write_str("-")?,
            (0, false) => {}
            (_, true) => f.write_str(" - ")?,
            (_, false) => f.write_str(" + ")?,
        }
        let a = c.abs();
        if factors.is_empty() {
            f.write_str(&fmt_number(a))?;
            continue;
        }
        if a != 1.0 {
            write!(f, "{}*", fmt_number(a))?;
        }
        for (k, factor) in factors.iter().enumerate() {
            if k > 0 {
                f.write_str("*")?;
            }
            write!(f, "{factor}")?;
        }
    }
    Ok(())
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_terms(
            f,
            self.terms
                .iter()
                .map(|t| (t.coefficient, t.factors.as_slice())),
        )
    }
}

impl fmt::Display for EFactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EFactor::Flat(x) => write!(f, "{x}"),
            EFactor::Apply(func, x) => write!(f, "{func}({x})"),
            EFactor::Group(x) => write!(f, "({x})"),
            EFactor::Pow(x, k) => match x.terms.as_slice() {
                // `tanh(z1 + z2)^2`: a lone function call needs no parentheses.
                [t] if t.coefficient == 1.0
                    && matches!(t.factors.as_slice(), [EFactor::Apply(..)]) =>
                {
                    write!(f, "{x}^{k}")
                }
                _ => write!(f, "({x})^{k}"),
            },
        }
    }
}
