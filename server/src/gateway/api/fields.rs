//! A request body's fields, read one at a time with the type each endpoint expects, so an
//! unknown field or a wrong type is a 400 that names the field.

use bytes::Bytes;
use http::StatusCode;

use super::ApiError;

/// The longest list a request may carry (rooms, arguments).
pub const MAX_LIST: usize = 1024;

/// The JSON object of a request.
#[derive(Debug)]
pub struct Fields(serde_json::Map<String, serde_json::Value>);

impl Fields {
    /// The body as an object (an empty body is `{}`).
    pub fn parse(body: &Bytes) -> Result<Self, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(serde_json::Map::new()));
        }
        match serde_json::from_slice(body) {
            Ok(serde_json::Value::Object(map)) => Ok(Self(map)),
            Ok(_) => Err(ApiError { field: None, ..ApiError::field("", "the body must be a JSON object") }),
            Err(e) => Err(ApiError {
                status: StatusCode::BAD_REQUEST,
                code: "bad_request",
                field: None,
                message: format!("the body is not JSON: {e}"),
            }),
        }
    }

    /// Refuses any field not in `known`.
    pub fn only(&self, known: &[&str]) -> Result<(), ApiError> {
        match self.0.keys().find(|k| !known.contains(&k.as_str())) {
            Some(unknown) => {
                Err(ApiError::field(unknown, format!("unknown field (known: {})", known.join(", "))))
            }
            None => Ok(()),
        }
    }

    /// A required string.
    pub fn string(&self, name: &str) -> Result<String, ApiError> {
        self.optional_string(name)?.ok_or_else(|| ApiError::field(name, "required"))
    }

    /// An optional string.
    pub fn optional_string(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.0.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::field(name, "must be a string")),
        }
    }

    /// An optional list of strings (absent: empty).
    pub fn strings(&self, name: &str) -> Result<Vec<String>, ApiError> {
        let bad = || ApiError::field(name, format!("must be a list of at most {MAX_LIST} strings"));
        match self.0.get(name) {
            None | Some(serde_json::Value::Null) => Ok(Vec::new()),
            Some(serde_json::Value::Array(items)) if items.len() <= MAX_LIST => {
                items.iter().map(|i| i.as_str().map(str::to_owned).ok_or_else(bad)).collect()
            }
            Some(_) => Err(bad()),
        }
    }

    /// An optional list of JSON values (absent: empty).
    pub fn values(&self, name: &str) -> Result<Vec<serde_json::Value>, ApiError> {
        match self.0.get(name) {
            None | Some(serde_json::Value::Null) => Ok(Vec::new()),
            Some(serde_json::Value::Array(items)) if items.len() <= MAX_LIST => Ok(items.clone()),
            Some(_) => Err(ApiError::field(name, format!("must be a list of at most {MAX_LIST} values"))),
        }
    }

    /// An optional boolean (absent: false).
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.0.get(name) {
            None | Some(serde_json::Value::Null) => Ok(false),
            Some(serde_json::Value::Bool(b)) => Ok(*b),
            Some(_) => Err(ApiError::field(name, "must be true or false")),
        }
    }

    /// An optional whole number in `range`.
    pub fn number(&self, name: &str, range: std::ops::RangeInclusive<u64>) -> Result<Option<u64>, ApiError> {
        match self.0.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(value) => match value.as_u64() {
                Some(n) if range.contains(&n) => Ok(Some(n)),
                _ => Err(ApiError::field(
                    name,
                    format!("must be a whole number from {} to {}", range.start(), range.end()),
                )),
            },
        }
    }
}
