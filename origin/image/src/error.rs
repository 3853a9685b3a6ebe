//! Why an image could not be imported; every message names the file, blob or entry at fault.

use prewarm_client::pack::PackError;
use prewarm_client::push::PushError;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The image is malformed or refers to something it cannot be (an unsafe name, a wrong
    /// media type, a document that does not parse…).
    #[error("{0}")]
    BadImage(String),
    /// A file the image's documents name is not in it.
    #[error("the image has no file {0:?} (a blob its index, manifest or config names)")]
    Missing(String),
    /// A blob's bytes are not what its descriptor says.
    #[error("{what} {name}: {message}")]
    Digest {
        what: &'static str,
        name: String,
        message: String,
    },
    /// No manifest matches `--platform` / `--ref`, or several do.
    #[error("{0}")]
    Selection(String),
    /// The sidecar or a flag is wrong.
    #[error("{0}")]
    Spec(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// The layers could not be packed (an entry refused, a limit hit, a layer digest wrong).
    #[error(transparent)]
    Pack(#[from] PackError),
    #[error(transparent)]
    Push(#[from] PushError),
    #[error("import task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl ImportError {
    /// Stable machine code, for `--json` output and logs.
    pub fn code(&self) -> &'static str {
        match self {
            ImportError::BadImage(_) => "bad_image",
            ImportError::Missing(_) => "missing_blob",
            ImportError::Digest { .. } => "digest_mismatch",
            ImportError::Selection(_) => "no_such_image",
            ImportError::Spec(_) => "bad_spec",
            ImportError::Io { .. } => "io",
            ImportError::Pack(e) => e.code(),
            ImportError::Push(_) => "push",
            ImportError::Join(_) => "internal",
        }
    }

    pub(crate) fn bad(m: impl Into<String>) -> Self {
        ImportError::BadImage(m.into())
    }

    pub(crate) fn missing(name: &str) -> Self {
        ImportError::Missing(name.to_string())
    }

    pub(crate) fn io(context: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.to_string();
        move |source| ImportError::Io { context, source }
    }
}
