//! The one error type of the library. Every variant names the offending thing
//! (the op and the shapes, the file and the field), so a user can act on it.

use std::fmt;
use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug)]
pub enum Error {
    /// Shapes that do not fit an op: `op` names it, `shapes` lists every operand's shape.
    Shape {
        op: &'static str,
        shapes: Vec<Vec<usize>>,
        msg: String,
    },
    /// A dtype the op does not accept.
    DType {
        op: &'static str,
        expected: String,
        got: String,
    },
    /// Operands on different devices, or a device that is not available.
    Device { op: &'static str, msg: String },
    /// An index out of range (gather, embedding, narrow, cross-entropy targets).
    Index { op: &'static str, msg: String },
    /// The autograd engine was used wrongly (backward on a non-scalar, a freed graph).
    Autograd(String),
    /// A file that could not be read or written.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file whose content is wrong: `field` names what is wrong in it.
    Format {
        path: PathBuf,
        field: String,
        msg: String,
    },
    /// Anything else, with a message that says what and where.
    Msg(String),
}

impl Error {
    pub fn shape(op: &'static str, shapes: &[&[usize]], msg: impl Into<String>) -> Self {
        Error::Shape {
            op,
            shapes: shapes.iter().map(|s| s.to_vec()).collect(),
            msg: msg.into(),
        }
    }
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub fn format(
        path: impl Into<PathBuf>,
        field: impl Into<String>,
        msg: impl Into<String>,
    ) -> Self {
        Error::Format {
            path: path.into(),
            field: field.into(),
            msg: msg.into(),
        }
    }
    pub fn msg(msg: impl Into<String>) -> Self {
        Error::Msg(msg.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Shape { op, shapes, msg } => {
                write!(f, "{op}: shape mismatch")?;
                for (i, s) in shapes.iter().enumerate() {
                    write!(f, "{}{:?}", if i == 0 { " between " } else { " and " }, s)?;
                }
                if !msg.is_empty() {
                    write!(f, ": {msg}")?;
                }
                Ok(())
            }
            Error::DType { op, expected, got } => {
                write!(f, "{op}: expected dtype {expected}, got {got}")
            }
            Error::Device { op, msg } => write!(f, "{op}: device error: {msg}"),
            Error::Index { op, msg } => write!(f, "{op}: index out of range: {msg}"),
            Error::Autograd(msg) => write!(f, "autograd: {msg}"),
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Format { path, field, msg } => {
                write!(f, "{}: field `{field}`: {msg}", path.display())
            }
            Error::Msg(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Return early with a shape error: `bail_shape!("matmul", [a, b], "inner dims {} and {}", k1, k2)`.
#[macro_export]
macro_rules! bail_shape {
    ($op:expr, [$($s:expr),*], $($fmt:tt)*) => {
        return Err($crate::error::Error::shape($op, &[$(&$s[..]),*], format!($($fmt)*)))
    };
}
