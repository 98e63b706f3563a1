//! How a plan's fields are written to and read from a result document: durations as
//! float seconds, targets as text (never resolved when read), CPU lists bounded while
//! they are read.

/// The most CPUs a plan names (as many load workers): what `--threads` allows.
pub const MAX_CPUS: usize = 1024;

/// Reads `cpus` from an untrusted document, refusing a list longer than [`MAX_CPUS`]
/// before it is stored (a file of millions of entries must not cost memory).
pub(super) fn bounded_cpus<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<usize>, D::Error> {
    crate::input::bounded_list(d, MAX_CPUS, || format!("more than {MAX_CPUS} CPUs"))
}

pub(super) mod secs {
    use serde::Deserialize;
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    /// Refuses what no `Duration` holds (negative, not finite, too large) instead of
    /// panicking on it.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(|_| {
            serde::de::Error::invalid_value(serde::de::Unexpected::Float(secs), &"seconds, at least 0")
        })
    }
}

/// An optional duration as float seconds (written only when set).
pub(super) mod opt_secs {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => crate::plan::fields::secs::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    /// As `secs::deserialize`, for a value that may be absent or `null`.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        use serde::Deserialize;
        let Some(secs) = Option::<f64>::deserialize(d)? else { return Ok(None) };
        Duration::try_from_secs_f64(secs).map(Some).map_err(|_| {
            serde::de::Error::invalid_value(serde::de::Unexpected::Float(secs), &"seconds, at least 0")
        })
    }
}

/// The target as text, `"builtin"` for none. Reading never resolves a name
/// ([`Target::parse_literal`]).
pub(super) mod target_text {
    use crate::target::Target;
    use serde::Deserialize;

    const BUILTIN: &str = "builtin";

    pub fn serialize<S: serde::Serializer>(t: &Option<Target>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&t.to_string()),
            None => s.serialize_str(BUILTIN),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Target>, D::Error> {
        let text = String::deserialize(d)?;
        if text == BUILTIN {
            return Ok(None);
        }
        Target::parse_literal(&text).map(Some).map_err(serde::de::Error::custom)
    }
}

/// An optional target as text, `null` for none. Reading never resolves a name.
pub(super) mod optional_target {
    use crate::target::Target;
    use serde::Deserialize;

    pub fn serialize<S: serde::Serializer>(t: &Option<Target>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&t.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Target>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => Target::parse_literal(&text).map(Some).map_err(serde::de::Error::custom),
        }
    }
}
