//! The ops the graph records, each with the state its gradient rule needs beyond the
//! input values (which the graph keeps through its input `Var`s) and the output value.

use crate::tensor::{AttentionMasks, CrossEntropyOut, Tensor};

pub(crate) enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Neg,
    AddScalar,
    MulScalar(f32),
    Powf(f32),
    Exp,
    Log,
    Sqrt,
    Rsqrt,
    Tanh,
    Sigmoid,
    Relu,
    GeluErf,
    GeluTanh,
    Sum {
        dims: Vec<isize>,
        keepdim: bool,
    },
    Mean {
        dims: Vec<isize>,
        keepdim: bool,
    },
    Max {
        dims: Vec<isize>,
        args: Vec<usize>,
    },
    Matmul,
    Reshape,
    Permute {
        perm: Vec<usize>,
    },
    Narrow {
        dim: usize,
        start: usize,
    },
    BroadcastTo,
    Softmax,
    LogSoftmax,
    LayerNorm {
        mean: Tensor,
        rstd: Tensor,
    },
    RmsNorm {
        rstd: Tensor,
    },
    Embedding {
        ids: Tensor,
        padding_idx: Option<usize>,
    },
    IndexSelect {
        dim: usize,
        ids: Tensor,
    },
    Gather {
        dim: usize,
        index: Tensor,
    },
    Cat {
        dim: usize,
        sizes: Vec<usize>,
    },
    MaskedFill {
        mask: Tensor,
    },
    Where {
        cond: Tensor,
    },
    /// Inverted dropout at probability p with the counter-based mask of stream `seed`.
    Dropout {
        p: f32,
        seed: u64,
    },
    CrossEntropy {
        saved: CrossEntropyOut,
        ignore_index: i64,
        smoothing: f32,
    },
    Attention {
        masks: AttentionMasks,
        /// Per-row softmax statistics of the forward (the backward recomputes p from them).
        stats: crate::backend::cpu::attention::AttnStats,
    },
}

impl Op {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Op::Add => "add",
            Op::Sub => "sub",
            Op::Mul => "mul",
            Op::Div => "div",
            Op::Neg => "neg",
            Op::AddScalar => "add_scalar",
            Op::MulScalar(_) => "mul_scalar",
            Op::Powf(_) => "powf",
            Op::Exp => "exp",
            Op::Log => "log",
            Op::Sqrt => "sqrt",
            Op::Rsqrt => "rsqrt",
            Op::Tanh => "tanh",
            Op::Sigmoid => "sigmoid",
            Op::Relu => "relu",
            Op::GeluErf => "gelu",
            Op::GeluTanh => "gelu_tanh",
            Op::Sum { .. } => "sum",
            Op::Mean { .. } => "mean",
            Op::Max { .. } => "max",
            Op::Matmul => "matmul",
            Op::Reshape => "reshape",
            Op::Permute { .. } => "permute",
            Op::Narrow { .. } => "narrow",
            Op::BroadcastTo => "broadcast_to",
            Op::Softmax => "softmax",
            Op::LogSoftmax => "log_softmax",
            Op::LayerNorm { .. } => "layer_norm",
            Op::RmsNorm { .. } => "rms_norm",
            Op::Embedding { .. } => "embedding",
            Op::IndexSelect { .. } => "index_select",
            Op::Gather { .. } => "gather",
            Op::Cat { .. } => "cat",
            Op::MaskedFill { .. } => "masked_fill",
            Op::Where { .. } => "where",
            Op::Dropout { .. } => "dropout",
            Op::CrossEntropy { .. } => "cross_entropy",
            Op::Attention { .. } => "attention",
        }
    }
}
