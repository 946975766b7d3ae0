//! The names of unit enum variants as serde writes them: the one table of names (the
//! `#[serde(rename_all)]` of each enum) that JSON, the CLI, logs and metrics share, so a
//! hand-written `name()` can never drift from the wire.

use serde::{
    Serialize,
    ser::{Error, Impossible, Serializer},
};

/// The name serde gives `value`, a unit variant (`Origin::Manual` is `"manual"`).
///
/// # Panics
/// When `value` is not a unit variant: a programming error, caught by each enum's tests.
pub fn of<T: Serialize>(value: &T) -> &'static str {
    value
        .serialize(VariantName)
        .expect("names::of is only used on unit enum variants")
}

/// A serializer that accepts a unit variant and returns its name.
struct VariantName;

#[derive(Debug)]
struct NotAVariant;

impl std::fmt::Display for NotAVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a unit variant")
    }
}

impl std::error::Error for NotAVariant {}

impl Error for NotAVariant {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        NotAVariant
    }
}

macro_rules! refuse {
    ($($name:ident($($arg:ty),*);)*) => {
        $(fn $name(self, $(_: $arg),*) -> Result<Self::Ok, Self::Error> {
            Err(NotAVariant)
        })*
    };
}

impl Serializer for VariantName {
    type Ok = &'static str;
    type Error = NotAVariant;
    type SerializeSeq = Impossible<&'static str, NotAVariant>;
    type SerializeTuple = Impossible<&'static str, NotAVariant>;
    type SerializeTupleStruct = Impossible<&'static str, NotAVariant>;
    type SerializeTupleVariant = Impossible<&'static str, NotAVariant>;
    type SerializeMap = Impossible<&'static str, NotAVariant>;
    type SerializeStruct = Impossible<&'static str, NotAVariant>;
    type SerializeStructVariant = Impossible<&'static str, NotAVariant>;

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Self::Ok, Self::Error> {
        Ok(variant)
    }

    refuse! {
        serialize_bool(bool);
        serialize_i8(i8);
        serialize_i16(i16);
        serialize_i32(i32);
        serialize_i64(i64);
        serialize_u8(u8);
        serialize_u16(u16);
        serialize_u32(u32);
        serialize_u64(u64);
        serialize_f32(f32);
        serialize_f64(f64);
        serialize_char(char);
        serialize_str(&str);
        serialize_bytes(&[u8]);
        serialize_none();
        serialize_unit();
        serialize_unit_struct(&'static str);
    }

    fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<Self::Ok, Self::Error> {
        Err(NotAVariant)
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<Self::Ok, Self::Error> {
        Err(NotAVariant)
    }

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Self::Ok, Self::Error> {
        Err(NotAVariant)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Self::Error> {
        Err(NotAVariant)
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Self::Error> {
        Err(NotAVariant)
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Self::Error> {
        Err(NotAVariant)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Self::Error> {
        Err(NotAVariant)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Self::Error> {
        Err(NotAVariant)
    }

    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, Self::Error> {
        Err(NotAVariant)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Self::Error> {
        Err(NotAVariant)
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "snake_case")]
    enum Sample {
        OneWord,
        #[serde(rename = "no decision")]
        Spaced,
    }

    #[test]
    fn names_are_serde_names() {
        assert_eq!(super::of(&Sample::OneWord), "one_word");
        assert_eq!(super::of(&Sample::Spaced), "no decision");
    }
}
