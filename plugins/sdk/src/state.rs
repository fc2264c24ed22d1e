//! Accumulators: plain structs, encoded field by field in declaration order, little-endian,
//! with no padding and no length prefix. `#[derive(State)]` writes the [`State`] impl.
//!
//! | field type | bytes |
//! |---|---|
//! | `u8`, `bool` (0 or 1) | 1 |
//! | `u32`, `i32`, `f32` | 4 |
//! | `u64`, `i64`, `f64` | 8 |
//! | `Option<T>` | 1 (0 = none, 1 = some), then `T`'s bytes (zeros when none) |
//! | `[T; N]` | `N` times `T` |
//! | `Vec<T>` | every `T` to the end of the accumulator (so only as the last field) |
//!
//! The layout is what the plugin's `STATE_VERSION` versions: the host carries open
//! windows' bytes across a hot swap only between builds that declare the same version.

use crate::{Error, Result};

/// An accumulator the host can store: `#[derive(State)]` implements it for a struct
/// whose fields are all [`Field`]s.
pub trait State: Sized {
    /// Appends the accumulator's bytes to `out`.
    fn encode(&self, out: &mut Vec<u8>);
    /// Reads an accumulator from exactly `bytes`.
    fn decode(bytes: &[u8]) -> Result<Self>;
}

/// One field of an accumulator (see the table in this module's documentation).
pub trait Field: Sized {
    fn put(&self, out: &mut Vec<u8>);
    fn get(reader: &mut Reader<'_>) -> Result<Self>;
}

/// Reads an accumulator's fields in order and says clearly what does not fit.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, at: 0 }
    }

    /// The next `n` bytes.
    pub fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        let end = self.at + N;
        let Some(bytes) = self.bytes.get(self.at..end) else {
            return Err(Error::new(format!(
                "accumulator of {} bytes is too short: its fields need at least {end}",
                self.bytes.len()
            )));
        };
        self.at = end;
        Ok(bytes.try_into().expect("a slice of N bytes"))
    }

    /// How many bytes are left.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    /// Fails unless every byte was read.
    pub fn end(self) -> Result<()> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(Error::new(format!(
                "accumulator of {} bytes is too long: its fields take {}",
                self.bytes.len(),
                self.at
            )))
        }
    }
}

macro_rules! number_fields {
    ($($ty:ty),*) => {$(
        impl Field for $ty {
            fn put(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn get(reader: &mut Reader<'_>) -> Result<Self> {
                Ok(<$ty>::from_le_bytes(reader.take()?))
            }
        }
    )*};
}

number_fields!(u8, u16, u32, u64, i8, i16, i32, i64, f32, f64);

impl Field for bool {
    fn put(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
    fn get(reader: &mut Reader<'_>) -> Result<Self> {
        match reader.take::<1>()? {
            [0] => Ok(false),
            [1] => Ok(true),
            [other] => Err(Error::new(format!(
                "accumulator holds {other} where a flag (0 or 1) belongs"
            ))),
        }
    }
}

impl<T: Field + Default> Field for Option<T> {
    fn put(&self, out: &mut Vec<u8>) {
        self.is_some().put(out);
        match self {
            Some(value) => value.put(out),
            // Zeros stand in for the absent value, so the layout has one length.
            None => T::default().put(out),
        }
    }
    fn get(reader: &mut Reader<'_>) -> Result<Self> {
        let present = bool::get(reader)?;
        let value = T::get(reader)?;
        Ok(present.then_some(value))
    }
}

impl<T: Field, const N: usize> Field for [T; N] {
    fn put(&self, out: &mut Vec<u8>) {
        self.iter().for_each(|item| item.put(out));
    }
    fn get(reader: &mut Reader<'_>) -> Result<Self> {
        let mut items = Vec::with_capacity(N);
        for _ in 0..N {
            items.push(T::get(reader)?);
        }
        Ok(items.try_into().ok().expect("N items"))
    }
}

impl<T: Field> Field for Vec<T> {
    fn put(&self, out: &mut Vec<u8>) {
        self.iter().for_each(|item| item.put(out));
    }
    fn get(reader: &mut Reader<'_>) -> Result<Self> {
        let mut items = Vec::new();
        while reader.remaining() > 0 {
            items.push(T::get(reader)?);
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Field + PartialEq + std::fmt::Debug>(value: T, bytes: &[u8]) {
        let mut out = Vec::new();
        value.put(&mut out);
        assert_eq!(out, bytes);
        let mut reader = Reader::new(bytes);
        assert_eq!(T::get(&mut reader).unwrap(), value);
        reader.end().unwrap();
    }

    #[test]
    fn numbers_are_little_endian() {
        round_trip(0x0102_0304u32, &[4, 3, 2, 1]);
        round_trip(-2i64, &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        round_trip(1.5f64, &1.5f64.to_le_bytes());
    }

    #[test]
    fn an_absent_option_keeps_its_length_with_zeros() {
        round_trip(None::<u32>, &[0, 0, 0, 0, 0]);
        round_trip(Some(7u32), &[1, 7, 0, 0, 0]);
    }

    #[test]
    fn a_vector_takes_the_rest_of_the_bytes() {
        round_trip(vec![Some(1u8), None], &[1, 1, 0, 0]);
        let mut reader = Reader::new(&[1, 1, 0]);
        let err = Vec::<Option<u8>>::get(&mut reader).unwrap_err();
        assert!(err.message().contains("too short"), "{err}");
    }

    #[test]
    fn a_flag_other_than_0_or_1_is_an_error() {
        let err = bool::get(&mut Reader::new(&[2])).unwrap_err();
        assert!(err.message().contains("flag (0 or 1)"), "{err}");
    }

    #[test]
    fn leftover_bytes_are_an_error() {
        let mut reader = Reader::new(&[0; 9]);
        u64::get(&mut reader).unwrap();
        let err = reader.end().unwrap_err();
        assert!(
            err.message()
                .contains("9 bytes is too long: its fields take 8"),
            "{err}"
        );
    }
}
