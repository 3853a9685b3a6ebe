//! OpenAPI schemas of the validated string types (feature `openapi`, enabled by the origin only).
//!
//! Each type has exactly one text form; its schema is that form as a string with the pattern
//! its `FromStr` accepts, so a generated document (and a client generated from it) knows what
//! the origin will take.

use std::borrow::Cow;

use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::{Digest, RelPath, RuntimeName, RuntimeRef, Tag};

/// `^[a-z0-9][a-z0-9._-]{0,127}$`: [`RuntimeName`]'s rule.
const NAME: &str = "[a-z0-9][a-z0-9._-]{0,127}";
/// [`Tag`]'s rule: a name that may also hold uppercase letters.
const TAG: &str = "[A-Za-z0-9][A-Za-z0-9._-]{0,127}";
/// [`Digest`]'s one text form.
const DIGEST: &str = "sha256:[0-9a-f]{64}";

fn string(pattern: Option<String>, description: &str, example: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(pattern)
        .description(Some(description))
        .examples([serde_json::Value::from(example)])
        .into()
}

macro_rules! string_schema {
    ($ty:ty, $name:literal, $pattern:expr, $description:literal, $example:literal) => {
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                string($pattern, $description, $example)
            }
        }
        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

string_schema!(
    Digest,
    "Digest",
    Some(format!("^{DIGEST}$")),
    "A SHA-256 content digest in its one text form.",
    "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
);
string_schema!(
    RuntimeName,
    "RuntimeName",
    Some(format!("^{NAME}$")),
    "A runtime's name: lowercase letters, digits, `.`, `_`, `-`; at most 128 bytes.",
    "python-data"
);
string_schema!(
    Tag,
    "Tag",
    Some(format!("^{TAG}$")),
    "A movable tag on a runtime: letters, digits, `.`, `_`, `-`; at most 128 bytes.",
    "v1"
);
string_schema!(
    RuntimeRef,
    "RuntimeRef",
    Some(format!("^({DIGEST}|{NAME}:{TAG})$")),
    "A runtime to use: `name:tag` (resolved at request time) or an exact manifest digest.",
    "hello:v1"
);
string_schema!(
    RelPath,
    "RelPath",
    None,
    "A `/`-separated path relative to a root: no leading `/`, no `..`, `.` or empty components.",
    "src/main.py"
);
