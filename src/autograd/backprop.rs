//! The gradient rule of every op, in one match. `g` is ∂L/∂out; each rule returns ∂L/∂input
//! for the inputs marked in `need` (and `None` for the rest, which are never computed).
//! Broadcast operands get their gradient summed back to their own shape.

use super::op::Op;
use super::Var;
use crate::backend::cpu::activation::Gelu;
use crate::error::Result;
use crate::tensor::{Tensor, Unary};

pub(super) fn backward(
    op: &Op,
    inputs: &[Var],
    out: &Tensor,
    g: &Tensor,
    need: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    let values: Vec<std::cell::Ref<'_, Tensor>> = inputs.iter().map(|v| v.value()).collect();
    let x = |i: usize| -> &Tensor { &values[i] };
    // Compute the gradient of input i only when it is needed.
    let when = |i: usize, f: &dyn Fn() -> Result<Tensor>| -> Result<Option<Tensor>> {
        if need[i] {
            f().map(Some)
        } else {
            Ok(None)
        }
    };
    let unary =
        |f: &dyn Fn() -> Result<Tensor>| -> Result<Vec<Option<Tensor>>> { Ok(vec![when(0, f)?]) };
    match op {
        // d(a+b) = g, g; reduced over broadcast dims.
        Op::Add => Ok(vec![
            when(0, &|| g.sum_to_shape(x(0).shape()))?,
            when(1, &|| g.sum_to_shape(x(1).shape()))?,
        ]),
        Op::Sub => Ok(vec![
            when(0, &|| g.sum_to_shape(x(0).shape()))?,
            when(1, &|| g.neg()?.sum_to_shape(x(1).shape()))?,
        ]),
        // d(a·b) = g·b, g·a
        Op::Mul => Ok(vec![
            when(0, &|| g.mul(x(1))?.sum_to_shape(x(0).shape()))?,
            when(1, &|| g.mul(x(0))?.sum_to_shape(x(1).shape()))?,
        ]),
        // d(a/b) = g/b, −g·a/b² = −g·out/b
        Op::Div => Ok(vec![
            when(0, &|| g.div(x(1))?.sum_to_shape(x(0).shape()))?,
            when(1, &|| {
                g.mul(out)?.div(x(1))?.neg()?.sum_to_shape(x(1).shape())
            })?,
        ]),
        Op::Neg => unary(&|| g.neg()),
        Op::AddScalar => unary(&|| Ok(g.clone())),
        Op::MulScalar(c) => unary(&|| g.mul_scalar(*c)),
        // d xᵖ = p·xᵖ⁻¹
        Op::Powf(p) => unary(&|| g.mul(&x(0).powf(p - 1.0)?.mul_scalar(*p)?)),
        // d eˣ = eˣ
        Op::Exp => unary(&|| g.mul(out)),
        // d ln x = 1/x
        Op::Log => unary(&|| g.div(x(0))),
        // d √x = 1/(2√x)
        Op::Sqrt => unary(&|| g.div(&out.mul_scalar(2.0)?)),
        // d x^{-1/2} = −½·x^{-3/2} = −½·out³
        Op::Rsqrt => unary(&|| g.mul(&out.powf(3.0)?.mul_scalar(-0.5)?)),
        // d tanh = 1 − tanh²
        Op::Tanh => unary(&|| g.mul(&out.mul(out)?.neg()?.add_scalar(1.0)?)),
        // d σ = σ(1 − σ)
        Op::Sigmoid => unary(&|| g.mul(&out.mul(&out.neg()?.add_scalar(1.0)?)?)),
        // d relu = [x > 0]
        Op::Relu => unary(&|| g.mul(&x(0).unary(Unary::Step)?)),
        Op::GeluErf => unary(&|| Tensor::gelu_backward(x(0), g, Gelu::Erf)),
        Op::GeluTanh => unary(&|| Tensor::gelu_backward(x(0), g, Gelu::Tanh)),
        // d Σ = broadcast g back over the reduced dims
        Op::Sum { dims, keepdim } => unary(&|| expand_reduced(g, x(0).shape(), dims, *keepdim)),
        Op::Mean { dims, keepdim } => unary(&|| {
            let count = x(0).numel() / out.numel().max(1);
            expand_reduced(
                &g.mul_scalar(1.0 / count as f32)?,
                x(0).shape(),
                dims,
                *keepdim,
            )
        }),
        // d max = g at the arg-max position
        Op::Max { dims, args, .. } => unary(&|| x(0).max_dims_backward(dims, args, g)),
        // C = A·B: dA = g·Bᵀ, dB = Aᵀ·g (transposes are stride views), reduced over broadcast
        // batch dims. An operand stored column-major (a transposed view, as Linear's Wᵀ) gets
        // its gradient as the transpose of (B·gᵀ) or (gᵀ·A), i.e. in its own memory order, as
        // torch's mm_mat{1,2}_backward: its Permute's backward then hands W a contiguous
        // gradient instead of a strided one every later reader would gather.
        Op::Matmul => Ok(vec![
            when(0, &|| {
                let (a, b) = (x(0), x(1));
                let da = if col_major(a) {
                    b.matmul(&g.transpose(-1, -2)?)?.transpose(-1, -2)?
                } else {
                    g.matmul(&b.transpose(-1, -2)?)?
                };
                da.sum_to_shape(a.shape())
            })?,
            when(1, &|| {
                let (a, b) = (x(0), x(1));
                let db = if col_major(b) {
                    g.transpose(-1, -2)?.matmul(a)?.transpose(-1, -2)?
                } else {
                    a.transpose(-1, -2)?.matmul(g)?
                };
                db.sum_to_shape(b.shape())
            })?,
        ]),
        Op::Reshape => unary(&|| g.reshape(x(0).shape())),
        // d permute = g permuted back (a view: whoever reads it next reads through strides)
        Op::Permute { perm } => unary(&|| {
            let mut inv = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inv[p] = i;
            }
            g.permute(&inv)
        }),
        // d narrow = g placed back at start..start+len, zeros elsewhere (the backward pass adds
        // it into the slice of the input's gradient instead: `Tensor::narrow_backward_add`)
        Op::Narrow { dim, start } => unary(&|| g.narrow_backward(*dim, *start, x(0).shape()[*dim])),
        Op::BroadcastTo => unary(&|| g.sum_to_shape(x(0).shape())),
        // softmax: dx = y ⊙ (g − Σ g⊙y); log-softmax: dx = g − eʸ·Σ g
        Op::Softmax => unary(&|| Tensor::softmax_last_backward(out, g)),
        Op::LogSoftmax => unary(&|| Tensor::log_softmax_last_backward(out, g)),
        Op::LayerNorm { mean, rstd } => norm_grads(inputs, need, Some(mean), rstd, g),
        Op::RmsNorm { rstd } => norm_grads(inputs, need, None, rstd, g),
        // embedding: scatter-add the rows of g into a zero table
        // (rows looked up at `padding_idx` get no gradient, as torch's nn.Embedding(padding_idx))
        Op::Embedding { ids, padding_idx } => {
            unary(&|| Tensor::embedding_backward(g, ids, x(0).shape()[0], *padding_idx))
        }
        Op::IndexSelect { dim, ids } => {
            unary(&|| g.index_add_into(*dim as isize, ids, x(0).shape()[*dim]))
        }
        Op::Gather { dim, index } => {
            unary(&|| g.scatter_add_into(*dim as isize, index, x(0).shape()))
        }
        // cat: each input gets its slice of g
        Op::Cat { dim, sizes } => {
            let pieces = g.split(sizes, *dim as isize)?;
            pieces
                .into_iter()
                .enumerate()
                .map(|(i, p)| when(i, &|| p.contiguous()))
                .collect()
        }
        Op::MaskedFill { mask } => unary(&|| g.masked_fill(mask, 0.0)),
        Op::Where { cond } => {
            let zeros = Tensor::zeros(&[]);
            Ok(vec![
                when(0, &|| {
                    Tensor::where_cond(cond, g, &zeros)?.sum_to_shape(x(0).shape())
                })?,
                when(1, &|| {
                    Tensor::where_cond(cond, &zeros, g)?.sum_to_shape(x(1).shape())
                })?,
            ])
        }
        // d dropout = g through the same mask, regenerated from its seed: keep ? g/(1 − p) : 0
        Op::Dropout { p, seed } => unary(&|| g.dropout_seeded(*p, *seed)),
        Op::CrossEntropy {
            saved,
            ignore_index,
            smoothing,
        } => unary(&|| Tensor::cross_entropy_backward(x(0), saved, *ignore_index, *smoothing, g)),
        Op::Attention { masks, stats } => {
            let bias = values.get(3).map(|b| &**b);
            let want_bias = need.get(3).copied().unwrap_or(false);
            let (dq, dk, dv, db) = Tensor::attention_backward(
                x(0),
                x(1),
                x(2),
                bias,
                masks,
                out,
                stats,
                g,
                want_bias,
            )?;
            let mut grads = vec![
                need[0].then_some(dq),
                need[1].then_some(dk),
                need[2].then_some(dv),
            ];
            if let Some(b) = bias {
                grads.push(match db {
                    Some(db) if want_bias => Some(db.sum_to_shape(b.shape())?),
                    _ => None,
                });
            }
            Ok(grads)
        }
    }
}

/// Broadcast a reduced gradient back to the input shape.
fn expand_reduced(g: &Tensor, in_shape: &[usize], dims: &[isize], keepdim: bool) -> Result<Tensor> {
    let g = if keepdim {
        g.clone()
    } else {
        // Re-insert the reduced dims as size 1, in increasing order.
        let r = in_shape.len() as isize;
        let mut ds: Vec<usize> = dims
            .iter()
            .map(|&d| if d < 0 { (d + r) as usize } else { d as usize })
            .collect();
        ds.sort_unstable();
        let mut shape = g.shape().to_vec();
        for d in ds {
            shape.insert(d, 1);
        }
        g.reshape(&shape)?
    };
    g.broadcast_to(in_shape)?.contiguous()
}

/// Gradients of LayerNorm / RMSNorm w.r.t. x, γ and β (inputs: x, then γ and β when present).
fn norm_grads(
    inputs: &[Var],
    need: &[bool],
    mean: Option<&Tensor>,
    rstd: &Tensor,
    g: &Tensor,
) -> Result<Vec<Option<Tensor>>> {
    let gamma = inputs.get(1).map(|v| v.value());
    let (dx, dg, db) = Tensor::norm_backward(&inputs[0].value(), gamma.as_deref(), mean, rstd, g)?;
    let mut out = vec![need[0].then_some(dx)];
    if inputs.len() > 1 {
        out.push(need[1].then_some(dg));
    }
    if inputs.len() > 2 {
        out.push(need[2].then_some(db));
    }
    Ok(out)
}

/// Whether the last two dims of `t` are a dense column-major matrix (row stride 1, column
/// stride = rows): torch's test in mm_mat{1,2}_backward for returning the gradient transposed.
fn col_major(t: &Tensor) -> bool {
    let r = t.rank();
    let rows = t.shape()[r - 2];
    rows > 1 && t.strides()[r - 2] == 1 && t.strides()[r - 1] == rows
}
