//! `pretext mlp`: fits a two-layer MLP to a 2-D three-arm spiral with plain SGD through the
//! autograd engine, printing the loss and accuracy as it learns. A small end-to-end check
//! that tensors, autograd, nn and optim work together.

use clap::Args as ClapArgs;

use crate::autograd::{ParamStore, Var};
use crate::error::Result;
use crate::nn::{Init, Linear};
use crate::optim::Sgd;
use crate::tensor::{Rng, Tensor};

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Training steps (full batch).
    #[arg(long, default_value_t = 1500)]
    pub steps: usize,
    /// Hidden width.
    #[arg(long, default_value_t = 64)]
    pub hidden: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.5)]
    pub lr: f32,
    /// Points per spiral arm.
    #[arg(long, default_value_t = 100)]
    pub points: usize,
    #[arg(long, default_value_t = 1337)]
    pub seed: u64,
}

/// `classes` interleaved spiral arms of `n` points each: (x (N, 2), labels (N,)).
pub fn spiral(n: usize, classes: usize, rng: &mut Rng) -> Result<(Tensor, Tensor)> {
    let mut xs = Vec::with_capacity(n * classes * 2);
    let mut ys = Vec::with_capacity(n * classes);
    for c in 0..classes {
        for i in 0..n {
            let r = i as f32 / n as f32;
            let t = c as f32 * 4.0 + 4.0 * r + 0.2 * rng.normal() as f32;
            xs.extend([r * t.sin(), r * t.cos()]);
            ys.push(c as i64);
        }
    }
    Ok((
        Tensor::from_vec(xs, &[n * classes, 2])?,
        Tensor::from_vec(ys, &[n * classes])?,
    ))
}

/// Trains and returns (initial loss, final loss, final accuracy).
pub fn fit(args: &Args, mut log: impl FnMut(usize, f32, f32)) -> Result<(f32, f32, f32)> {
    let mut rng = Rng::new(args.seed);
    let classes = 3;
    let (x, y) = spiral(args.points, classes, &mut rng)?;
    let mut store = ParamStore::new();
    let l1 = Linear::new(
        &mut store,
        "fc1",
        2,
        args.hidden,
        true,
        Init::Normal(1.0),
        &mut rng,
    )?;
    let l2 = Linear::new(
        &mut store,
        "fc2",
        args.hidden,
        classes,
        true,
        Init::Normal(0.1),
        &mut rng,
    )?;
    let sgd = Sgd::new(args.lr);
    let xv = Var::constant(x);
    let labels = y.to_vec::<i64>()?;
    let (mut first, mut last, mut acc) = (f32::NAN, f32::NAN, 0.0);
    for step in 0..=args.steps {
        let logits = l2.forward(&l1.forward(&xv)?.relu()?)?;
        let loss = logits.cross_entropy(&y, -100, 0.0)?;
        let lv = loss.value().scalar()?;
        let pred = logits.value().max_dims_with_arg(&[-1], false)?.1;
        acc = pred
            .iter()
            .zip(&labels)
            .filter(|(p, &l)| **p as i64 == l)
            .count() as f32
            / labels.len() as f32;
        if step == 0 {
            first = lv;
        }
        last = lv;
        log(step, lv, acc);
        if step == args.steps {
            break;
        }
        store.zero_grad();
        loss.backward()?;
        sgd.step(&store)?;
    }
    Ok((first, last, acc))
}

pub fn run(args: Args) -> Result<()> {
    println!(
        "fitting a 2-layer MLP (2 → {} → 3, ReLU) to a 3-arm spiral of {} points with SGD (lr {})",
        args.hidden,
        3 * args.points,
        args.lr
    );
    let every = (args.steps / 10).max(1);
    let (first, last, acc) = fit(&args, |step, loss, acc| {
        if step % every == 0 {
            println!(
                "step {step:>5}  loss {loss:.4}  accuracy {:.1}%",
                acc * 100.0
            );
        }
    })?;
    println!(
        "loss {first:.4} → {last:.4}, accuracy {:.1}% (chance 33.3%)",
        acc * 100.0
    );
    Ok(())
}
