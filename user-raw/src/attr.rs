//! Netlink attributes (`struct nlattr`, `<linux/netlink.h>`), built and
//! parsed by hand.
//!
//! An attribute is a type-length-value record. In host byte order:
//!
//! ```text
//! offset 0        2         4                 4+n        NLA_ALIGN(4+n)
//!        +--------+---------+-----------------+-----------+
//!        | nla_len| nla_type| value (n bytes) | pad 0..3  |
//!        +--------+---------+-----------------+-----------+
//!          u16      u16                        zero bytes
//! ```
//!
//! `nla_len` = `NLA_HDRLEN` (4) + n, *unpadded*; the next attribute starts at
//! `NLA_ALIGN(nla_len)`. The top two bits of `nla_type` are flags
//! (`NLA_F_NESTED`, `NLA_F_NET_BYTEORDER`); the type is `nla_type &
//! NLA_TYPE_MASK`. A nested attribute's value is itself a run of attributes.
//!
//! The same records carry generic netlink request/reply data and the
//! extended-ack details of an `NLMSG_ERROR` (see [`crate::parse_error`]).

use crate::Error;

/// Attributes start on 4-byte boundaries (`NLA_ALIGNTO`).
pub const NLA_ALIGNTO: usize = 4;

/// `NLA_ALIGN(len)`: round `len` up to the next multiple of 4. `len` must be
/// below `usize::MAX - 3`; every caller passes a length bounded by a buffer.
pub const fn nla_align(len: usize) -> usize {
    (len + NLA_ALIGNTO - 1) & !(NLA_ALIGNTO - 1)
}

/// `NLA_HDRLEN`: the aligned size of `struct nlattr`, 4 bytes.
pub const NLA_HDRLEN: usize = nla_align(4);

/// `nla_type` flag: the value is a run of attributes.
pub const NLA_F_NESTED: u16 = libc::NLA_F_NESTED as u16;

/// `nla_type` flag: the value is in network byte order.
pub const NLA_F_NET_BYTEORDER: u16 = libc::NLA_F_NET_BYTEORDER as u16;

/// `NLA_TYPE_MASK`: `nla_type` without the two flags.
pub const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);

/// Append one attribute (header, value, zero padding) to `buf`, as the
/// kernel's `nla_put()` does. `buf` is first zero-padded to a 4-byte
/// boundary, in case the previous data left it unaligned.
///
/// `nla_len` is a u16: a value longer than 65531 bytes is
/// [`Error::AttrTooLarge`].
pub fn put_attr(buf: &mut Vec<u8>, ty: u16, value: &[u8]) -> Result<(), Error> {
    let nla_len = NLA_HDRLEN
        .checked_add(value.len())
        .and_then(|len| u16::try_from(len).ok())
        .ok_or(Error::AttrTooLarge {
            ty,
            len: value.len(),
        })?;
    buf.resize(nla_align(buf.len()), 0);
    buf.extend_from_slice(&nla_len.to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize(nla_align(buf.len()), 0);
    Ok(())
}

/// Append a string attribute with its terminating NUL (`nla_put_string()`,
/// for an `NLA_NUL_STRING` policy): the value is `s` then one 0 byte, so
/// `nla_len` = 4 + `s.len()` + 1.
///
/// `s` must not contain a NUL itself: the receiver would stop there
/// ([`Error::NulInString`]).
pub fn put_nul_string(buf: &mut Vec<u8>, ty: u16, s: &[u8]) -> Result<(), Error> {
    if let Some(offset) = s.iter().position(|&b| b == 0) {
        return Err(Error::NulInString { offset });
    }
    let mut value = Vec::with_capacity(s.len() + 1);
    value.extend_from_slice(s);
    value.push(0);
    put_attr(buf, ty, &value)
}

/// One parsed attribute, borrowed from the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    /// `nla_type & NLA_TYPE_MASK`.
    pub ty: u16,
    /// The two flag bits of `nla_type` (`NLA_F_NESTED`, `NLA_F_NET_BYTEORDER`).
    pub flags: u16,
    /// The value: `nla_len - 4` bytes, without the padding.
    pub value: &'a [u8],
    /// Where the attribute starts in the run it was parsed from.
    pub offset: usize,
}

impl<'a> Attr<'a> {
    fn bad(&self, reason: &'static str) -> Error {
        Error::Decode {
            offset: self.offset,
            reason,
        }
    }

    /// The value as a host-order u16 (`NLA_U16`): exactly 2 bytes.
    pub fn u16(&self) -> Result<u16, Error> {
        let bytes = self.value.try_into();
        bytes
            .map(u16::from_ne_bytes)
            .map_err(|_| self.bad("u16 attribute whose value is not 2 bytes"))
    }

    /// The value as a host-order u32 (`NLA_U32`): exactly 4 bytes.
    pub fn u32(&self) -> Result<u32, Error> {
        let bytes = self.value.try_into();
        bytes
            .map(u32::from_ne_bytes)
            .map_err(|_| self.bad("u32 attribute whose value is not 4 bytes"))
    }

    /// The value as a NUL-terminated string (`NLA_NUL_STRING`): it must end
    /// with its only NUL. Returns the bytes before the NUL.
    pub fn nul_string(&self) -> Result<&'a [u8], Error> {
        match self.value.split_last() {
            Some((0, text)) if !text.contains(&0) => Ok(text),
            Some((0, _)) => Err(self.bad("string attribute with a NUL before its end")),
            _ => Err(self.bad("string attribute without a terminating NUL")),
        }
    }

    /// The value as a run of attributes (a nested attribute).
    pub fn nested(&self) -> Attrs<'a> {
        attrs(self.value)
    }
}

/// Iterate a run of attributes: see [`attrs`].
#[derive(Debug, Clone)]
pub struct Attrs<'a> {
    buf: &'a [u8],
    offset: usize,
}

/// Walk a run of attributes like `nla_for_each_attr()`, but with every
/// length checked: fewer than 4 bytes left, an `nla_len` below 4, or an
/// `nla_len` past the end of `buf`, each yield one [`Error::Decode`] and end
/// the iteration. The last attribute's padding may be missing.
pub fn attrs(buf: &[u8]) -> Attrs<'_> {
    Attrs { buf, offset: 0 }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<Attr<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.buf.get(self.offset..).filter(|r| !r.is_empty())?;
        let at = self.offset;
        self.offset = self.buf.len(); // on any error, stop after this item
        let bad = |reason| Some(Err(Error::Decode { offset: at, reason }));
        let (Some(len), Some(ty)) = (crate::ne_u16(rest, 0), crate::ne_u16(rest, 2)) else {
            return bad("trailing bytes shorter than an attribute header");
        };
        let len = usize::from(len);
        if len < NLA_HDRLEN {
            return bad("nla_len smaller than the attribute header");
        }
        let Some(value) = rest.get(NLA_HDRLEN..len) else {
            return bad("nla_len beyond the end of the attributes");
        };
        self.offset = at + nla_align(len).min(rest.len());
        Some(Ok(Attr {
            ty: ty & NLA_TYPE_MASK,
            flags: ty & !NLA_TYPE_MASK,
            value,
            offset: at,
        }))
    }
}

/// The first attribute of type `ty` in `buf`. Every attribute of the run is
/// checked, so garbage after the one we want is an error too.
pub fn find_attr(buf: &[u8], ty: u16) -> Result<Option<Attr<'_>>, Error> {
    let mut found = None;
    for attr in attrs(buf) {
        let attr = attr?;
        if attr.ty == ty && found.is_none() {
            found = Some(attr);
        }
    }
    Ok(found)
}
