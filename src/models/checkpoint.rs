//! safetensors checkpoints as named raw f32 arrays (row-major, shape + data), independent of the
//! tensor core.
//!
//! [`Checkpoint::open`] memory-maps a file and reads its header; tensors are converted to f32 on
//! request (F32 copied, F16 / BF16 widened exactly), so a file may hold tensors of other dtypes
//! (e.g. int64 `position_ids` buffers of old BERT checkpoints) as long as nobody asks for them.
//! [`save`] writes f32 tensors (HF layout and names) atomically, storing each group of tied
//! weights once, with the `{"format": "pt"}` metadata transformers expects.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::tensor::{Dtype, SafeTensors, TensorInfo, TensorView};

use crate::backend::cpu::gemm::f32_to_bf16_bits;
use crate::error::{Error, Result};
use crate::models::config::write_atomic;
use crate::tensor::{DType, Tensor};

/// One tensor: a row-major f32 array and its shape (`[]` for a scalar, one element).
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl RawTensor {
    /// A tensor from a shape and data; the element count must be the product of the shape.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::shape(
                "RawTensor::new",
                &[&shape],
                format!("{} elements given for a shape of {n}", data.len()),
            ));
        }
        Ok(Self { shape, data })
    }
    pub fn numel(&self) -> usize {
        self.data.len()
    }
    /// The transpose of a 2-D tensor (`(r, c)` → `(c, r)`): GPT-2 `Conv1D` (in, out) ↔ Linear (out, in).
    pub fn transpose2(&self) -> Result<Self> {
        let [r, c] = self.shape[..] else {
            return Err(Error::shape(
                "transpose2",
                &[&self.shape],
                "expected a 2-D tensor",
            ));
        };
        let out = transpose_tiles(r, c, |i| self.data[i]);
        Ok(Self {
            shape: vec![c, r],
            data: out,
        })
    }
}

/// An open safetensors file: the mapping and its validated header.
pub struct Checkpoint {
    path: PathBuf,
    mmap: Mmap,
    /// Byte offset of the data section (8-byte length + header).
    data_start: usize,
    index: BTreeMap<String, TensorInfo>,
    metadata: Option<HashMap<String, String>>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("path", &self.path)
            .field("tensors", &self.index.len())
            .finish()
    }
}

fn dtype_name(d: Dtype) -> String {
    format!("{d:?}")
}

impl Checkpoint {
    /// Memory-map `path` (a `.safetensors` file, or a directory holding `model.safetensors`) and
    /// validate its header (offsets inside the file, sizes matching shapes and dtypes).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let mut path = path.as_ref().to_path_buf();
        if path.is_dir() {
            path = path.join("model.safetensors");
        }
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        // SAFETY: the mapping is read-only and lives as long as `self`; the file is not expected to be
        // modified while open (pretext replaces checkpoints by rename, which leaves this mapping intact).
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
        let (header_len, meta) = SafeTensors::read_metadata(&mmap[..]).map_err(|e| {
            Error::format(
                &path,
                "<header>",
                format!("not a valid safetensors file: {e}"),
            )
        })?;
        let index = meta
            .tensors()
            .into_iter()
            .map(|(name, info)| (name, info.clone()))
            .collect();
        Ok(Self {
            metadata: meta.metadata().clone(),
            path,
            mmap,
            data_start: 8 + header_len,
            index,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }
    pub fn len(&self) -> usize {
        self.index.len()
    }
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }
    /// The `__metadata__` string map of the header, if any.
    pub fn metadata(&self) -> Option<&HashMap<String, String>> {
        self.metadata.as_ref()
    }
    /// Shape and dtype of `name` without reading its data.
    pub fn info(&self, name: &str) -> Result<(&[usize], Dtype)> {
        let info = self.lookup(name)?;
        Ok((&info.shape, info.dtype))
    }

    fn lookup(&self, name: &str) -> Result<&TensorInfo> {
        self.index.get(name).ok_or_else(|| {
            Error::format(
                &self.path,
                name,
                format!(
                    "tensor missing from the checkpoint ({} tensors present)",
                    self.index.len()
                ),
            )
        })
    }

    /// Read `name` as f32 (F32 / F16 / BF16 in the file).
    pub fn get(&self, name: &str) -> Result<RawTensor> {
        let info = self.lookup(name)?;
        let data = self.read(name, info, None)?;
        RawTensor::new(info.shape.clone(), data)
    }

    /// `name`, stored as the 2-D `stored` = (r, c), read transposed to (c, r) straight from
    /// the file (GPT-2's Conv1D weights into Linear layout, with no intermediate copy).
    pub fn get_transposed(&self, name: &str, stored: [usize; 2]) -> Result<RawTensor> {
        let info = self.lookup_shaped(name, &stored)?;
        let data = self.read(name, info, Some(stored))?;
        RawTensor::new(vec![stored[1], stored[0]], data)
    }

    /// The elements of `name` as f32, in file order or, with `Some((r, c))`, transposed.
    fn read(
        &self,
        name: &str,
        info: &TensorInfo,
        transposed: Option<[usize; 2]>,
    ) -> Result<Vec<f32>> {
        self.read_as(name, info, transposed, |x| x)
    }

    /// `read` with each f32 element mapped by `out` as it is decoded (no f32 copy first).
    fn read_as<O: Copy + Default>(
        &self,
        name: &str,
        info: &TensorInfo,
        transposed: Option<[usize; 2]>,
        out: impl Fn(f32) -> O,
    ) -> Result<Vec<O>> {
        let (start, end) = info.data_offsets;
        let bytes = &self.mmap[self.data_start + start..self.data_start + end];
        Ok(match info.dtype {
            Dtype::F32 => decode::<F32Le, O>(bytes, transposed, out),
            Dtype::F16 => decode::<F16Le, O>(bytes, transposed, out),
            Dtype::BF16 => decode::<Bf16Le, O>(bytes, transposed, out),
            other => {
                return Err(Error::format(
                    &self.path,
                    name,
                    format!(
                        "unsupported dtype {}; pretext reads F32, F16 and BF16",
                        dtype_name(other)
                    ),
                ))
            }
        })
    }

    /// `name` as a tensor of `shape` and `dtype` (F32, or BF16 rounded to nearest even as it
    /// is decoded: a bf16 model's matrices never exist in f32). With `transposed` the file
    /// holds the 2-D transpose of `shape` (GPT-2's Conv1D weights).
    pub fn get_tensor(
        &self,
        name: &str,
        shape: &[usize],
        transposed: bool,
        dtype: DType,
    ) -> Result<Tensor> {
        let stored = match (transposed, shape) {
            (false, _) => None,
            (true, &[r, c]) => Some([c, r]),
            (true, _) => {
                return Err(Error::format(
                    &self.path,
                    name,
                    format!("only a 2-D tensor is read transposed, not {shape:?}"),
                ))
            }
        };
        let info = match stored {
            Some(st) => self.lookup_shaped(name, &st)?,
            None => self.lookup_shaped(name, shape)?,
        };
        match dtype {
            DType::F32 => Tensor::from_vec(self.read(name, info, stored)?, shape),
            DType::BF16 => {
                let round = |x: f32| half::bf16::from_bits(f32_to_bf16_bits(x));
                Tensor::from_vec(self.read_as(name, info, stored, round)?, shape)
            }
            other => Err(Error::format(
                &self.path,
                name,
                format!("parameters are read as f32 or bf16, not {other}"),
            )),
        }
    }

    /// Read `name` and check that its shape is `expected`.
    pub fn get_shaped(&self, name: &str, expected: &[usize]) -> Result<RawTensor> {
        self.lookup_shaped(name, expected)?;
        self.get(name)
    }

    fn lookup_shaped(&self, name: &str, expected: &[usize]) -> Result<&TensorInfo> {
        let info = self.lookup(name)?;
        if info.shape != expected {
            return Err(Error::format(
                &self.path,
                name,
                format!(
                    "shape mismatch: expected {expected:?}, found {:?}",
                    info.shape
                ),
            ));
        }
        Ok(info)
    }

    /// Read every tensor (all must be F32 / F16 / BF16), sorted by name.
    pub fn load_all(&self) -> Result<BTreeMap<String, RawTensor>> {
        self.index
            .keys()
            .map(|n| Ok((n.clone(), self.get(n)?)))
            .collect()
    }
}

/// out[j·r + i] = at(i·c + j) for an (r, c) source: the transpose, in 32 × 32 tiles so that
/// both sides move whole lines (element by element, each write of a 768 × 2304 weight landed
/// on a new line).
fn transpose_tiles<O: Copy + Default>(r: usize, c: usize, at: impl Fn(usize) -> O) -> Vec<O> {
    const T: usize = 32;
    let mut out = vec![O::default(); r * c];
    for i0 in (0..r).step_by(T) {
        for j0 in (0..c).step_by(T) {
            for j in j0..(j0 + T).min(c) {
                let dst = &mut out[j * r..][i0..(i0 + T).min(r)];
                for (di, d) in dst.iter_mut().enumerate() {
                    *d = at((i0 + di) * c + j);
                }
            }
        }
    }
    out
}

/// A little-endian element type of the file, widened to f32 (exactly).
trait Le {
    const SIZE: usize;
    fn f32(b: &[u8]) -> f32;
}
struct F32Le;
struct F16Le;
struct Bf16Le;
impl Le for F32Le {
    const SIZE: usize = 4;
    fn f32(b: &[u8]) -> f32 {
        f32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}
impl Le for F16Le {
    const SIZE: usize = 2;
    fn f32(b: &[u8]) -> f32 {
        half::f16::from_le_bytes([b[0], b[1]]).to_f32()
    }
}
impl Le for Bf16Le {
    const SIZE: usize = 2;
    fn f32(b: &[u8]) -> f32 {
        half::bf16::from_le_bytes([b[0], b[1]]).to_f32()
    }
}

/// The elements of `bytes` widened to f32 and mapped by `out`, in order or transposed from
/// (r, c).
fn decode<E: Le, O: Copy + Default>(
    bytes: &[u8],
    transposed: Option<[usize; 2]>,
    out: impl Fn(f32) -> O,
) -> Vec<O> {
    match transposed {
        None => bytes
            .chunks_exact(E::SIZE)
            .map(|b| out(E::f32(b)))
            .collect(),
        Some([r, c]) => transpose_tiles(r, c, |i| out(E::f32(&bytes[i * E::SIZE..]))),
    }
}

/// Read every tensor of a safetensors file as f32.
pub fn load(path: impl AsRef<Path>) -> Result<BTreeMap<String, RawTensor>> {
    Checkpoint::open(path)?.load_all()
}

/// A `View` over f32 data stored as little-endian bytes.
struct F32View<'a> {
    shape: &'a [usize],
    bytes: Vec<u8>,
}

impl safetensors::View for &F32View<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Write `tensors` as an F32 safetensors file at `path`, atomically (temp file + rename).
///
/// `tied` lists `(alias, kept)` pairs: `alias` is a name that shares its storage with `kept` (e.g.
/// `("lm_head.weight", "transformer.wte.weight")`); it is not written. If `tensors` holds the alias,
/// it must be equal to `kept` (otherwise the weights are not tied and this is an error); `kept`
/// must be present. The header gets `{"format": "pt"}`.
pub fn save(
    path: impl AsRef<Path>,
    tensors: &BTreeMap<String, RawTensor>,
    tied: &[(&str, &str)],
) -> Result<()> {
    let path = path.as_ref();
    let mut skip = std::collections::BTreeSet::new();
    for &(alias, kept) in tied {
        let k = tensors.get(kept).ok_or_else(|| {
            Error::format(
                path,
                kept,
                format!("tied weight `{alias}` refers to `{kept}`, which is not given"),
            )
        })?;
        if let Some(a) = tensors.get(alias) {
            if a != k {
                return Err(Error::format(
                    path,
                    alias,
                    format!(
                        "declared tied to `{kept}` but its values or shape differ ({:?} vs {:?})",
                        a.shape, k.shape
                    ),
                ));
            }
        }
        skip.insert(alias);
    }
    let mut views = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        if skip.contains(name.as_str()) {
            continue;
        }
        let n: usize = t.shape.iter().product();
        if n != t.data.len() {
            return Err(Error::shape(
                "checkpoint::save",
                &[&t.shape],
                format!(
                    "tensor `{name}` has {} elements for a shape of {n}",
                    t.data.len()
                ),
            ));
        }
        let mut bytes = Vec::with_capacity(4 * n);
        for x in &t.data {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        views.push((
            name.as_str(),
            F32View {
                shape: &t.shape,
                bytes,
            },
        ));
    }
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    let buf = safetensors::tensor::serialize(views.iter().map(|(n, v)| (*n, v)), Some(meta))
        .map_err(|e| {
            Error::format(
                path,
                "<header>",
                format!("safetensors serialisation failed: {e}"),
            )
        })?;
    write_atomic(path, &buf)
}

/// Write tensors of any float dtype (F32 / F16 / BF16, given as raw little-endian bytes) — used by
/// tests and converters that must produce reduced-precision files.
pub fn save_raw(
    path: impl AsRef<Path>,
    tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)],
) -> Result<()> {
    let path = path.as_ref();
    let mut views = Vec::with_capacity(tensors.len());
    for (name, dtype, shape, bytes) in tensors {
        let v = TensorView::new(*dtype, shape.clone(), bytes)
            .map_err(|e| Error::format(path, *name, format!("invalid tensor: {e}")))?;
        views.push((*name, v));
    }
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    let buf = safetensors::tensor::serialize(views, Some(meta)).map_err(|e| {
        Error::format(
            path,
            "<header>",
            format!("safetensors serialisation failed: {e}"),
        )
    })?;
    write_atomic(path, &buf)
}
