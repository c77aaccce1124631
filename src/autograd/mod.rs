//! Reverse-mode automatic differentiation over `tensor`.
//!
//! A `Var` is a tensor value plus, when it depends on a parameter, the op that made it and
//! that op's inputs: the graph is recorded as ops run. `backward()` on a scalar walks the
//! graph once in reverse topological order, applying each op's gradient rule (`backprop.rs`)
//! only for inputs that lead to a leaf requiring grad. Each node's gradient buffer is dropped
//! as soon as its rule has run, and each op's saved state with it (as PyTorch frees the graph:
//! a second backward through the same graph is an error).

mod backprop;
pub mod gradcheck;
mod no_grad;
mod op;
mod ops;
pub mod params;
mod params_device;

use std::cell::{Cell, Ref, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

pub use no_grad::{is_grad_enabled, no_grad, NoGradGuard};
pub use params::ParamStore;

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use op::Op;

thread_local! {
    static NEXT_ID: Cell<usize> = const { Cell::new(0) };
}

fn next_id() -> usize {
    NEXT_ID.with(|c| {
        let id = c.get();
        c.set(id + 1);
        id
    })
}

/// The op that produced a non-leaf variable, with the inputs its gradient rule needs.
struct GradFn {
    op: Op,
    inputs: Vec<Var>,
    /// Each input's `version` when the op ran: the rule reads the inputs' current values, so
    /// an input updated in place since then would silently get a wrong gradient.
    versions: Vec<u64>,
}

struct Node {
    id: usize,
    /// Mutable only through `update_value` (optimizer steps on leaves).
    value: RefCell<Tensor>,
    /// Bumped by every `update_value`.
    version: Cell<u64>,
    requires_grad: bool,
    is_leaf: bool,
    grad_fn: RefCell<Option<GradFn>>,
    /// Accumulated gradient (leaves only).
    grad: RefCell<Option<Tensor>>,
}

/// A tensor in the autograd graph.
#[derive(Clone)]
pub struct Var(Rc<Node>);

/// What one `backward()` did: how many nodes it visited and how many gradient tensors it made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackwardStats {
    pub nodes: usize,
    pub grads_computed: usize,
}

impl std::fmt::Debug for Var {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Var(id {}, {:?}, requires_grad {})",
            self.0.id,
            self.shape(),
            self.0.requires_grad
        )
    }
}

impl Var {
    fn make(value: Tensor, requires_grad: bool, is_leaf: bool, grad_fn: Option<GradFn>) -> Var {
        Var(Rc::new(Node {
            id: next_id(),
            value: RefCell::new(value),
            version: Cell::new(0),
            requires_grad,
            is_leaf,
            grad_fn: RefCell::new(grad_fn),
            grad: RefCell::new(None),
        }))
    }

    /// A leaf that accumulates gradients (a parameter).
    pub fn param(value: Tensor) -> Var {
        Var::make(value, true, true, None)
    }

    /// A leaf that needs no gradient (an input, a target).
    pub fn constant(value: Tensor) -> Var {
        Var::make(value, false, true, None)
    }

    /// Result of an op: recorded only when gradients are enabled and some input requires grad.
    pub(crate) fn from_op(value: Tensor, op: Op, inputs: &[&Var]) -> Var {
        if is_grad_enabled() && inputs.iter().any(|v| v.0.requires_grad) {
            let versions = inputs.iter().map(|v| v.0.version.get()).collect();
            let inputs = inputs.iter().map(|&v| v.clone()).collect();
            let gf = GradFn {
                op,
                inputs,
                versions,
            };
            Var::make(value, true, false, Some(gf))
        } else {
            Var::constant(value)
        }
    }

    pub fn value(&self) -> Ref<'_, Tensor> {
        self.0.value.borrow()
    }
    pub fn shape(&self) -> Vec<usize> {
        self.0.value.borrow().shape().to_vec()
    }
    /// Update a leaf's value in place (an optimizer step). Views of the old value held
    /// elsewhere keep the old numbers: the storage is copied on write when shared. A graph
    /// recorded before the update and not yet back-propagated reads this variable's new value,
    /// so its `backward()` returns an error instead of a wrong gradient (as PyTorch's version
    /// counter does).
    pub fn update_value<T>(&self, f: impl FnOnce(&mut Tensor) -> T) -> Result<T> {
        if !self.0.is_leaf {
            return Err(Error::Autograd(
                "update_value on a non-leaf variable".into(),
            ));
        }
        self.0.version.set(self.0.version.get() + 1);
        Ok(f(&mut self.0.value.borrow_mut()))
    }
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad
    }
    pub fn is_leaf(&self) -> bool {
        self.0.is_leaf
    }
    pub fn id(&self) -> usize {
        self.0.id
    }
    /// Same value, cut from the graph.
    pub fn detach(&self) -> Var {
        Var::constant(self.value().clone())
    }
    /// The accumulated gradient of a leaf (None before any backward reached it).
    pub fn grad(&self) -> Option<Tensor> {
        self.0.grad.borrow().clone()
    }
    pub fn zero_grad(&self) {
        *self.0.grad.borrow_mut() = None;
    }
    /// Replace the accumulated gradient (used by clipping and optimizers).
    pub fn set_grad(&self, g: Option<Tensor>) {
        *self.0.grad.borrow_mut() = g;
    }
    /// True when this node still holds the op that made it (its graph has not been freed).
    pub fn has_grad_fn(&self) -> bool {
        self.0.grad_fn.borrow().is_some()
    }

    /// Back-propagate from this scalar: leaves that require grad get ∂self/∂leaf added to
    /// their `grad`.
    pub fn backward(&self) -> Result<BackwardStats> {
        if self.value().numel() != 1 {
            return Err(Error::Autograd(format!(
                "backward needs a scalar, got shape {:?}",
                self.shape()
            )));
        }
        if !self.0.requires_grad {
            return Err(Error::Autograd(
                "backward on a value that depends on no parameter (requires_grad is false)".into(),
            ));
        }
        let order = self.topological_order()?;
        let mut stats = BackwardStats::default();
        let mut grads: HashMap<usize, Tensor> = HashMap::new();
        // ∂self/∂self = 1, on the device self lives on.
        grads.insert(self.0.id, self.value().full_like(1.0)?);
        for var in order.iter().rev() {
            let node = &var.0;
            let Some(g) = grads.remove(&node.id) else {
                continue;
            };
            stats.nodes += 1;
            if node.is_leaf {
                let mut slot = node.grad.borrow_mut();
                *slot = Some(match slot.take() {
                    Some(prev) => prev.add(&g)?,
                    None => g,
                });
                continue;
            }
            let gf = node.grad_fn.borrow_mut().take().ok_or_else(|| {
                Error::Autograd("graph already freed by an earlier backward".into())
            })?;
            for (i, (input, &v)) in gf.inputs.iter().zip(&gf.versions).enumerate() {
                if input.0.version.get() != v {
                    return Err(Error::Autograd(format!(
                        "{}: input {i} (shape {:?}) was changed by update_value after this op \
                         used it; run backward before updating",
                        gf.op.name(),
                        input.shape()
                    )));
                }
            }
            // A narrow's gradient (g at start..start+len along dim, zeros elsewhere) is added
            // straight into that slice of its input's gradient (`narrow_backward_add`), not
            // padded to the full shape and then added (the rule in `backprop`).
            if let Op::Narrow { dim, start } = gf.op {
                let input = &gf.inputs[0];
                if input.0.requires_grad {
                    let id = input.0.id;
                    let full = input.value().shape()[dim];
                    let acc = g.narrow_backward_add(grads.remove(&id), dim, start, full)?;
                    stats.grads_computed += 1;
                    grads.insert(id, acc);
                }
                continue;
            }
            let need: Vec<bool> = gf.inputs.iter().map(|v| v.0.requires_grad).collect();
            let input_grads =
                backprop::backward(&gf.op, &gf.inputs, &node.value.borrow(), &g, &need)?;
            drop(g);
            for ((input, ig), &needed) in gf.inputs.iter().zip(input_grads).zip(&need) {
                let Some(ig) = ig else { continue };
                debug_assert!(needed, "gradient computed for an input that needs none");
                if ig.shape() != input.value().shape() {
                    return Err(Error::Autograd(format!(
                        "{}: gradient of shape {:?} for an input of shape {:?}",
                        gf.op.name(),
                        ig.shape(),
                        input.shape()
                    )));
                }
                stats.grads_computed += 1;
                let id = input.0.id;
                let acc = match grads.remove(&id) {
                    Some(prev) => prev.add(&ig)?,
                    None => ig,
                };
                grads.insert(id, acc);
            }
        }
        Ok(stats)
    }

    /// Nodes reachable from self through inputs that require grad, inputs before users.
    fn topological_order(&self) -> Result<Vec<Var>> {
        let mut order = Vec::new();
        let mut visited = std::collections::HashSet::new();
        // Iterative DFS: (var, children already pushed?)
        let mut stack: Vec<(Var, bool)> = vec![(self.clone(), false)];
        while let Some((v, expanded)) = stack.pop() {
            if expanded {
                order.push(v);
                continue;
            }
            if !visited.insert(v.0.id) {
                continue;
            }
            if !v.0.is_leaf {
                let gf = v.0.grad_fn.borrow();
                let gf = gf.as_ref().ok_or_else(|| {
                    Error::Autograd("graph already freed by an earlier backward".into())
                })?;
                stack.push((v.clone(), true));
                for input in gf.inputs.iter().filter(|i| i.0.requires_grad) {
                    if !visited.contains(&input.0.id) {
                        stack.push((input.clone(), false));
                    }
                }
            } else {
                order.push(v.clone());
            }
        }
        Ok(order)
    }
}
