//! Multi-head attention plumbing shared by the model families: splitting features into
//! heads, merging them back, and the key/value cache of incremental decoding.
//!
//! Head h owns features h·D .. (h+1)·D of the projected (B, T, H·D) activations:
//!   split:  (B, T, H·D) → (B, T, H, D) → (B, H, T, D)
//!   merge:  (B, H, T, D) → (B, T, H, D) → (B, T, H·D)
//! Both are views, no copies, on the host: the split of a column slice of a fused QKV
//! projection is a strided view the attention kernels read in place, and the host attention
//! returns its output in (B, T, H, D) memory order, which the merge reshapes for free.

use crate::autograd::Var;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

pub fn split_heads(x: &Var, heads: usize) -> Result<Var> {
    let s = x.shape();
    if s.len() != 3 || !s[2].is_multiple_of(heads) {
        return Err(Error::shape(
            "split_heads",
            &[&s],
            format!("expected (B, T, H·D) with H = {heads} dividing the last dim"),
        ));
    }
    x.reshape(&[s[0], s[1], heads, s[2] / heads])?
        .permute(&[0, 2, 1, 3])
}

pub fn merge_heads(x: &Var) -> Result<Var> {
    let s = x.shape();
    if s.len() != 4 {
        return Err(Error::shape("merge_heads", &[&s], "expected (B, H, T, D)"));
    }
    x.permute(&[0, 2, 1, 3])?
        .reshape(&[s[0], s[2], s[1] * s[3]])
}

/// Keys and values of the positions already decoded, one entry per attention layer, each
/// read as (B, H, T_past, D). Only used without gradients (generation).
///
/// On the host each layer keeps (B, H, capacity, D) buffers whose first T_past positions hold
/// the cache: a step's keys and values are written in place after them, and the capacity
/// doubles when full, so decoding T tokens copies O(T) rows per layer in all (a `cat` per
/// step copies O(T²)). Attention reads the (B, H, T_past, D) view of the buffer in place.
/// The same on a device (the appends are strided device copies).
#[derive(Clone, Debug, Default)]
pub struct KvCache {
    layers: Vec<Option<LayerKv>>,
}

/// One layer's buffers: positions 0..len of dim 2 are the cache.
#[derive(Clone, Debug)]
struct LayerKv {
    k: Tensor,
    v: Tensor,
    len: usize,
}

impl LayerKv {
    /// The cached (B, H, len, D) keys and values (views of the buffers).
    fn views(&self) -> Result<(Tensor, Tensor)> {
        Ok((
            self.k.narrow(2, 0, self.len)?,
            self.v.narrow(2, 0, self.len)?,
        ))
    }
}

impl KvCache {
    pub fn new(layers: usize) -> Self {
        KvCache {
            layers: vec![None; layers],
        }
    }

    /// Number of attention layers the cache has room for.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Number of cached positions (0 when empty).
    pub fn past_len(&self) -> usize {
        self.layers.iter().flatten().next().map_or(0, |l| l.len)
    }

    /// The cached (k, v) of layer `i`, (B, H, T_past, D) each, if any.
    pub fn get(&self, i: usize) -> Result<Option<(Tensor, Tensor)>> {
        self.slot(i)?.as_ref().map(LayerKv::views).transpose()
    }

    /// Store (k, v) as layer `i`'s whole cache (cross-attention keys, computed once).
    pub fn set(&mut self, i: usize, k: &Tensor, v: &Tensor) -> Result<()> {
        let len = k.shape().get(2).copied().unwrap_or(0);
        *self.slot_mut(i)? = Some(LayerKv {
            k: k.clone(),
            v: v.clone(),
            len,
        });
        Ok(())
    }

    /// Append this step's (k, v), (B, H, T_new, D), to layer `i` and return the full (k, v)
    /// to attend over.
    pub fn extend(&mut self, i: usize, k: &Var, v: &Var) -> Result<(Var, Var)> {
        let (k, v) = (k.value().clone(), v.value().clone());
        let (k, v) = (&k, &v);
        let slot = self.slot_mut(i)?;
        let layer = match slot.take() {
            None => LayerKv {
                k: k.clone(),
                v: v.clone(),
                len: k.shape()[2],
            },
            Some(l) => {
                let t = k.shape()[2];
                let cap = l.k.shape()[2];
                let need = l.len + t;
                let grow = |buf: &Tensor| -> Result<Tensor> {
                    if need <= cap {
                        return Ok(buf.clone());
                    }
                    let mut shape = buf.shape().to_vec();
                    shape[2] = need.max(2 * cap);
                    let mut grown = match buf.cuda_context() {
                        Some(ctx) => Tensor::full_cuda(&shape, 0.0, ctx)?,
                        None => Tensor::zeros(&shape),
                    };
                    grown.write_narrow(2, 0, &buf.narrow(2, 0, l.len)?)?;
                    Ok(grown)
                };
                let (mut kb, mut vb) = (grow(&l.k)?, grow(&l.v)?);
                drop(l);
                kb.write_narrow(2, need - t, k)?;
                vb.write_narrow(2, need - t, v)?;
                LayerKv {
                    k: kb,
                    v: vb,
                    len: need,
                }
            }
        };
        let (kk, vv) = layer.views()?;
        *slot = Some(layer);
        Ok((Var::constant(kk), Var::constant(vv)))
    }

    /// Keeps the first `len` cached positions of every layer (HF's `DynamicCache.crop`), for
    /// rolling decoding back; the next append writes after them. For a self-attention cache
    /// (cross-attention entries from `set` would be cropped too).
    pub fn crop(&mut self, len: usize) {
        for l in self.layers.iter_mut().flatten() {
            l.len = l.len.min(len);
        }
    }

    fn slot(&self, i: usize) -> Result<&Option<LayerKv>> {
        let n = self.layers.len();
        self.layers
            .get(i)
            .ok_or_else(|| Error::msg(format!("kv cache: layer {i} of a cache of {n} layers")))
    }

    fn slot_mut(&mut self, i: usize) -> Result<&mut Option<LayerKv>> {
        let n = self.layers.len();
        self.layers
            .get_mut(i)
            .ok_or_else(|| Error::msg(format!("kv cache: layer {i} of a cache of {n} layers")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Rng;

    /// Appends of 3, 1, 1, 2, 1, … positions give the same (k, v) as concatenating them, with
    /// the buffers growing by doubling, and a view held across an append keeps its values.
    #[test]
    fn appends_equal_concatenation_and_grow_by_doubling() {
        let (b, h, d) = (2, 3, 5);
        let mut rng = Rng::new(3);
        let mut cache = KvCache::new(2);
        let (mut all_k, mut all_v): (Option<Tensor>, Option<Tensor>) = (None, None);
        let mut held: Option<(Tensor, Vec<f32>)> = None;
        let mut caps = vec![];
        for (step, &t) in [3, 1, 1, 2, 1, 1, 1, 5, 1, 40].iter().enumerate() {
            let k = Tensor::randn(&[b, h, t, d], 0.0, 1.0, &mut rng);
            let v = Tensor::randn(&[b, h, t, d], 0.0, 1.0, &mut rng);
            let (kk, vv) = cache
                .extend(1, &Var::constant(k.clone()), &Var::constant(v.clone()))
                .unwrap();
            let cat = |all: &Option<Tensor>, x: &Tensor| match all {
                Some(a) => Tensor::cat(&[a, x], 2).unwrap(),
                None => x.clone(),
            };
            all_k = Some(cat(&all_k, &k));
            all_v = Some(cat(&all_v, &v));
            let want_k = all_k.as_ref().unwrap().to_vec_f32().unwrap();
            assert_eq!(kk.value().to_vec_f32().unwrap(), want_k, "k at step {step}");
            let want_v = all_v.as_ref().unwrap().to_vec_f32().unwrap();
            assert_eq!(vv.value().to_vec_f32().unwrap(), want_v, "v at step {step}");
            assert_eq!(cache.past_len(), kk.value().shape()[2]);
            caps.push(cache.layers[1].as_ref().unwrap().k.shape()[2]);
            if let Some((view, values)) = &held {
                assert_eq!(&view.to_vec_f32().unwrap(), values, "held view changed");
            }
            if step == 4 {
                held = Some((kk.value().clone(), kk.value().to_vec_f32().unwrap()));
            }
        }
        // Lengths 3, 4, 5, 7, 8, 9, 10, 15, 16, 56: doubled when full, or just enough for a
        // step longer than the doubled buffer.
        assert_eq!(caps, [3, 6, 6, 12, 12, 12, 12, 24, 24, 56]);
        assert!(cache.get(0).unwrap().is_none());
        assert!(
            cache.get(2).is_err()
                && cache
                    .set(2, &Tensor::zeros(&[1]), &Tensor::zeros(&[1]))
                    .is_err()
        );
    }

    #[test]
    fn a_step_of_another_shape_is_an_error() {
        let mut cache = KvCache::new(1);
        let kv = |h: usize| Var::constant(Tensor::zeros(&[1, h, 2, 4]));
        cache.extend(0, &kv(2), &kv(2)).unwrap();
        let err = cache.extend(0, &kv(3), &kv(3)).unwrap_err().to_string();
        assert!(err.contains("write_narrow"), "{err}");
    }
}
