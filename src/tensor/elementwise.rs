//! Pointwise ops: unary maps, scalar ops and binary ops with NumPy broadcasting.

use super::layout::broadcast_shapes;
use super::Tensor;
use crate::backend::cpu::activation::{self, Gelu};
use crate::backend::cpu::elementwise as kernels;
use crate::backend::cpu::isa;
use crate::backend::cpu::math;
use crate::backend::cpu::par::{self, fresh};
use crate::error::Result;

/// Unary pointwise functions on f32.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    Neg,
    Exp,
    Log,
    Sqrt,
    Rsqrt,
    Tanh,
    Sigmoid,
    Relu,
    GeluErf,
    GeluTanh,
    /// x^p
    Powf(f32),
    /// x + c
    AddScalar(f32),
    /// x · c
    MulScalar(f32),
    /// 1 when x > 0 else 0 (relu's derivative)
    Step,
    GeluErfGrad,
    GeluTanhGrad,
    Abs,
}

impl Unary {
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Unary::Neg => -x,
            Unary::Exp => x.exp(),
            Unary::Log => x.ln(),
            Unary::Sqrt => x.sqrt(),
            Unary::Rsqrt => 1.0 / x.sqrt(),
            Unary::Tanh => x.tanh(),
            Unary::Sigmoid => math::sigmoid(x),
            Unary::Relu => x.max(0.0),
            Unary::GeluErf => math::gelu_erf(x),
            Unary::GeluTanh => math::gelu_tanh(x),
            Unary::Powf(p) => x.powf(p),
            Unary::AddScalar(c) => x + c,
            Unary::MulScalar(c) => x * c,
            Unary::Step => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Unary::GeluErfGrad => math::gelu_erf_grad(x),
            Unary::GeluTanhGrad => math::gelu_tanh_grad(x),
            Unary::Abs => x.abs(),
        }
    }
}

/// Binary pointwise functions on f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Maximum,
    Minimum,
}

impl Binary {
    #[inline]
    fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            Binary::Add => a + b,
            Binary::Sub => a - b,
            Binary::Mul => a * b,
            Binary::Div => a / b,
            Binary::Maximum => a.max(b),
            Binary::Minimum => a.min(b),
        }
    }
    fn name(self) -> &'static str {
        match self {
            Binary::Add => "add",
            Binary::Sub => "sub",
            Binary::Mul => "mul",
            Binary::Div => "div",
            Binary::Maximum => "maximum",
            Binary::Minimum => "minimum",
        }
    }
}

/// y = f(x) elementwise, in parallel for large tensors, written straight into a fresh
/// output (`par::fresh`: no zeroing pass first), each block by the SIMD level's loop
/// (`backend::cpu::elementwise`).
fn map(x: &[f32], f: impl Fn(f32) -> f32 + Sync + Send) -> Vec<f32> {
    let level = isa::active();
    fresh(x.len(), |out| {
        par::rows_mut(out, 1, 1, |i, o| {
            let n = o.len();
            kernels::map(level, &x[i..i + n], o, &f)
        })
    })
}

/// out = f(a, b) elementwise on equal-length operands, as `map`.
fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync + Send) -> Vec<f32> {
    debug_assert_eq!(a.len(), b.len());
    let level = isa::active();
    fresh(a.len(), |out| {
        par::rows_mut(out, 1, 1, |i, o| {
            let n = o.len();
            kernels::zip_map(level, &a[i..i + n], &b[i..i + n], o, &f)
        })
    })
}

/// out = f(a, b) over broadcast operands, `total` elements: row by row along the last dim
/// (`n` long), row r of a starting at `ra[r]` with element stride `sa` (0 when broadcast),
/// likewise b.
fn broadcast_map(
    (a, ra, sa): (&[f32], &[usize], usize),
    (b, rb, sb): (&[f32], &[usize], usize),
    n: usize,
    total: usize,
    f: impl Fn(f32, f32) -> f32 + Sync + Send,
) -> Vec<f32> {
    let level = isa::active();
    fresh(total, |out| {
        par::rows_mut(out, n, 1, |r0, o| {
            o.write_rows(n, |r, o| {
                let (ia, ib) = (ra[r0 + r], rb[r0 + r]);
                match (sa, sb) {
                    (1, 1) => kernels::zip_map(level, &a[ia..ia + n], &b[ib..ib + n], o, &f),
                    (1, 0) => {
                        let y = b[ib];
                        kernels::map(level, &a[ia..ia + n], o, |x| f(x, y))
                    }
                    (0, 1) => {
                        let x = a[ia];
                        kernels::map(level, &b[ib..ib + n], o, |y| f(x, y))
                    }
                    _ => o.write_iter((0..n).map(|j| f(a[ia + j * sa], b[ib + j * sb]))),
                }
            })
        })
    })
}

impl Tensor {
    pub fn unary(&self, op: Unary) -> Result<Tensor> {
        if let Some(ctx) = super::device::on_device("unary", &[self])? {
            return super::device::unary(&ctx, self, op);
        }
        let x = self.f32s("unary")?;
        // GELU has SIMD kernels (backend::cpu::activation).
        if let Some(kind) = match op {
            Unary::GeluErf => Some(Gelu::Erf),
            Unary::GeluTanh => Some(Gelu::Tanh),
            _ => None,
        } {
            let out = fresh(x.len(), |y| activation::gelu(kind, &x, y));
            return Ok(Tensor::from_f32(out, self.shape()));
        }
        // One monomorphised loop per op, so the per-element `match` folds away.
        macro_rules! each {
            ($($v:ident),*) => {
                match op {
                    $(Unary::$v => map(&x, |v| Unary::$v.apply(v)),)*
                    Unary::Powf(p) => map(&x, |v| v.powf(p)),
                    Unary::AddScalar(c) => map(&x, |v| v + c),
                    Unary::MulScalar(c) => map(&x, |v| v * c),
                }
            };
        }
        let out = each!(
            Neg,
            Exp,
            Log,
            Sqrt,
            Rsqrt,
            Tanh,
            Sigmoid,
            Relu,
            GeluErf,
            GeluTanh,
            Step,
            GeluErfGrad,
            GeluTanhGrad,
            Abs
        );
        Ok(Tensor::from_f32(out, self.shape()))
    }

    /// dx = dy ⊙ gelu'(x) in one fused pass (the backward of `gelu` / `gelu_tanh`); `dy`
    /// must have `x`'s shape.
    pub fn gelu_backward(x: &Tensor, dy: &Tensor, kind: Gelu) -> Result<Tensor> {
        if super::device::on_device("gelu_backward", &[x, dy])?.is_some() {
            // on a device: dy · gelu'(x) from the pointwise kernels
            let grad = match kind {
                Gelu::Erf => Unary::GeluErfGrad,
                Gelu::Tanh => Unary::GeluTanhGrad,
            };
            return dy.mul(&x.unary(grad)?);
        }
        if x.shape() != dy.shape() {
            return Err(crate::error::Error::shape(
                "gelu_backward",
                &[x.shape(), dy.shape()],
                "dy must have x's shape",
            ));
        }
        let (xs, dys) = (x.f32s("gelu_backward")?, dy.f32s("gelu_backward")?);
        let dx = fresh(xs.len(), |dx| {
            activation::gelu_backward(kind, &xs, &dys, dx)
        });
        Ok(Tensor::from_f32(dx, x.shape()))
    }

    pub fn binary(&self, rhs: &Tensor, op: Binary) -> Result<Tensor> {
        let name = op.name();
        if let Some(ctx) = super::device::on_device(name, &[self, rhs])? {
            return super::device::binary(&ctx, self, rhs, op);
        }
        let shape = broadcast_shapes(name, self.shape(), rhs.shape())?;
        let n: usize = shape.iter().product();
        // One monomorphised loop per op, so the per-element `match` folds away and the loops
        // vectorise (with the match inside, each element took an indirect jump).
        macro_rules! each {
            (|$f:ident| $body:expr) => {
                each!(@ $f, $body; Add, Sub, Mul, Div, Maximum, Minimum)
            };
            (@ $f:ident, $body:expr; $($v:ident),*) => {
                match op {
                    $(Binary::$v => {
                        let $f = |x: f32, y: f32| Binary::$v.apply(x, y);
                        $body
                    })*
                }
            };
        }
        let out = if self.shape() == rhs.shape() && self.is_contiguous() && rhs.is_contiguous() {
            let (a, b) = (self.f32s(name)?, rhs.f32s(name)?);
            each!(|f| zip_map(&a, &b, f))
        } else {
            let la = self.layout.broadcast_to(name, &shape)?;
            let lb = rhs.layout.broadcast_to(name, &shape)?;
            let a = self.storage_slice::<f32>(name)?;
            let b = rhs.storage_slice::<f32>(name)?;
            // Row by row along the last dim, each operand with its own (possibly 0) stride.
            let (ra, last, sa) = la.rows();
            let (rb, _, sb) = lb.rows();
            each!(|f| broadcast_map((a, &ra, sa), (b, &rb, sb), last, n, f))
        };
        Ok(Tensor::from_f32(out, &shape))
    }

    pub fn add(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, Binary::Add)
    }
    pub fn sub(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, Binary::Sub)
    }
    pub fn mul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, Binary::Mul)
    }
    pub fn div(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, Binary::Div)
    }
    pub fn neg(&self) -> Result<Tensor> {
        self.unary(Unary::Neg)
    }
    pub fn exp(&self) -> Result<Tensor> {
        self.unary(Unary::Exp)
    }
    pub fn log(&self) -> Result<Tensor> {
        self.unary(Unary::Log)
    }
    pub fn sqrt(&self) -> Result<Tensor> {
        self.unary(Unary::Sqrt)
    }
    pub fn rsqrt(&self) -> Result<Tensor> {
        self.unary(Unary::Rsqrt)
    }
    pub fn tanh(&self) -> Result<Tensor> {
        self.unary(Unary::Tanh)
    }
    pub fn sigmoid(&self) -> Result<Tensor> {
        self.unary(Unary::Sigmoid)
    }
    pub fn relu(&self) -> Result<Tensor> {
        self.unary(Unary::Relu)
    }
    pub fn gelu(&self) -> Result<Tensor> {
        self.unary(Unary::GeluErf)
    }
    pub fn gelu_tanh(&self) -> Result<Tensor> {
        self.unary(Unary::GeluTanh)
    }
    pub fn powf(&self, p: f32) -> Result<Tensor> {
        self.unary(Unary::Powf(p))
    }
    pub fn add_scalar(&self, c: f32) -> Result<Tensor> {
        self.unary(Unary::AddScalar(c))
    }
    pub fn mul_scalar(&self, c: f32) -> Result<Tensor> {
        self.unary(Unary::MulScalar(c))
    }
    pub fn abs(&self) -> Result<Tensor> {
        self.unary(Unary::Abs)
    }
}
