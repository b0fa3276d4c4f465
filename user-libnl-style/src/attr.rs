//! Attributes: `struct nlattr` TLVs, [`nla_parse`] with a policy table
//! ([`NlaPolicy`], libnl's and the kernel's `struct nla_policy`), and the
//! `nla_get_*` accessors.

use crate::msg::{align4, ne_u16, NLA_HDRLEN, NLA_TYPE_MASK};
use crate::Error;

// ---------------------------------------------------------------------------
// Attributes: nla_parse() with a policy
// ---------------------------------------------------------------------------

/// One entry of an attribute policy (libnl's `struct nla_policy`; the
/// kernel's of the same name). Lengths are checked as the kernel's strict
/// validation does: integers and flags exactly, strings against `max_len`
/// (0: no limit) not counting a trailing NUL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NlaPolicy {
    /// Anything (`NLA_UNSPEC`).
    Unspec,
    U8,
    U16,
    U32,
    /// At least one byte, NUL-terminated or not (`NLA_STRING`).
    String {
        max_len: usize,
    },
    /// A NUL within the first `max_len + 1` bytes (`NLA_NUL_STRING`).
    NulString {
        max_len: usize,
    },
    /// No value (`NLA_FLAG`).
    Flag,
    /// Empty, or attributes: parse them with [`Attr::nla_parse_nested`].
    Nested,
}

/// One attribute: its type and value, borrowed from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    ty: u16,
    data: &'a [u8],
}

/// The result of [`nla_parse`]: libnl's `struct nlattr *tb[maxtype + 1]`.
#[derive(Debug, Clone)]
pub struct Attrs<'a> {
    tb: Vec<Option<Attr<'a>>>,
}

impl<'a> Attrs<'a> {
    /// `tb[ty]`: the attribute if present (the last one, if repeated).
    pub fn get(&self, ty: u16) -> Option<Attr<'a>> {
        self.tb.get(usize::from(ty)).copied().flatten()
    }

    /// `tb[ty]`, or an error naming the missing attribute.
    pub fn require(&self, ty: u16) -> Result<Attr<'a>, Error> {
        self.get(ty).ok_or(Error::Attr {
            ty,
            reason: "missing",
        })
    }
}

impl<'a> Attr<'a> {
    /// `nla_type()`, without the flag bits.
    pub fn nla_type(&self) -> u16 {
        self.ty
    }

    /// `nla_data()`: the value, without header or padding.
    pub fn nla_data(&self) -> &'a [u8] {
        self.data
    }

    fn fixed<const N: usize>(&self) -> Result<[u8; N], Error> {
        self.data.try_into().map_err(|_| Error::Attr {
            ty: self.ty,
            reason: "wrong length for its type",
        })
    }

    pub fn nla_get_u8(&self) -> Result<u8, Error> {
        self.fixed().map(u8::from_ne_bytes)
    }

    pub fn nla_get_u16(&self) -> Result<u16, Error> {
        self.fixed().map(u16::from_ne_bytes)
    }

    pub fn nla_get_u32(&self) -> Result<u32, Error> {
        self.fixed().map(u32::from_ne_bytes)
    }

    /// The value up to its first NUL, as bytes.
    pub(crate) fn c_str(&self) -> &'a [u8] {
        self.data.split(|&b| b == 0).next().unwrap_or_default()
    }

    /// `nla_get_string()`: the value up to its first NUL, which must be UTF-8.
    pub fn nla_get_string(&self) -> Result<&'a str, Error> {
        std::str::from_utf8(self.c_str()).map_err(|_| Error::Attr {
            ty: self.ty,
            reason: "string is not UTF-8",
        })
    }

    /// `nla_for_each_nested()`: the attributes inside this one, in order
    /// and with repeats (a list of nests, such as the controller's
    /// `CTRL_ATTR_MCAST_GROUPS`, whose types are only indexes). A bad
    /// length yields one [`Error::Decode`] and ends the walk.
    pub fn nested_attrs(&self) -> impl Iterator<Item = Result<Attr<'a>, Error>> {
        let mut rest = self.data;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let (Some(len), Some(ty)) = (ne_u16(rest, 0), ne_u16(rest, 2)) else {
                rest = &[];
                return Some(Err(Error::decode("truncated attribute header")));
            };
            let len = usize::from(len);
            let Some(data) = rest.get(NLA_HDRLEN..len) else {
                rest = &[];
                return Some(Err(Error::decode(
                    "nla_len below the attribute header or past the end of the attributes",
                )));
            };
            rest = &rest[align4(len).min(rest.len())..];
            Some(Ok(Attr {
                ty: ty & NLA_TYPE_MASK,
                data,
            }))
        })
    }

    /// `nla_parse_nested()`: the attributes inside this one.
    pub fn nla_parse_nested(
        &self,
        maxtype: u16,
        policy: &[(u16, NlaPolicy)],
    ) -> Result<Attrs<'a>, Error> {
        nla_parse(self.data, maxtype, policy)
    }
}

/// `nla_parse()`: split `data` into attributes indexed by type, validating
/// each against its `policy` entry (types without one are not checked).
/// Types above `maxtype` are skipped, as libnl and the kernel's non-strict
/// mode do, so that a newer kernel may add attributes. A header or a length
/// that does not fit is an [`Error::Decode`], a policy violation an
/// [`Error::Attr`].
pub fn nla_parse<'a>(
    mut data: &'a [u8],
    maxtype: u16,
    policy: &[(u16, NlaPolicy)],
) -> Result<Attrs<'a>, Error> {
    let mut tb = vec![None; usize::from(maxtype) + 1];
    while !data.is_empty() {
        let (Some(len), Some(ty)) = (ne_u16(data, 0), ne_u16(data, 2)) else {
            return Err(Error::decode("truncated attribute header"));
        };
        let (len, ty) = (usize::from(len), ty & NLA_TYPE_MASK);
        if len < NLA_HDRLEN {
            return Err(Error::decode("nla_len smaller than the attribute header"));
        }
        let value = data
            .get(NLA_HDRLEN..len)
            .ok_or(Error::decode("nla_len past the end of the attributes"))?;
        if ty <= maxtype {
            if let Some(&(_, pol)) = policy.iter().find(|(t, _)| *t == ty) {
                validate(ty, value, pol)?;
            }
            tb[usize::from(ty)] = Some(Attr { ty, data: value });
        }
        data = &data[align4(len).min(data.len())..];
    }
    Ok(Attrs { tb })
}

/// The kernel's `validate_nla()` for the types of [`NlaPolicy`].
fn validate(ty: u16, v: &[u8], policy: NlaPolicy) -> Result<(), Error> {
    let fail = |reason| Err(Error::Attr { ty, reason });
    let exact = |n: usize| {
        if v.len() == n {
            Ok(())
        } else {
            fail("wrong length for its type")
        }
    };
    let string = |max_len: usize| {
        let len = v.len() - usize::from(v.last() == Some(&0)); // minus a trailing NUL
        match (v.len(), max_len) {
            (0, _) => fail("empty string"),
            (_, 0) => Ok(()),
            _ if len > max_len => fail("string longer than its policy's max_len"),
            _ => Ok(()),
        }
    };
    match policy {
        NlaPolicy::Unspec => Ok(()),
        NlaPolicy::U8 => exact(1),
        NlaPolicy::U16 => exact(2),
        NlaPolicy::U32 => exact(4),
        NlaPolicy::Flag => exact(0),
        NlaPolicy::Nested if !v.is_empty() && v.len() < NLA_HDRLEN => {
            fail("nested attribute shorter than an attribute header")
        }
        NlaPolicy::Nested => Ok(()),
        NlaPolicy::String { max_len } => string(max_len),
        NlaPolicy::NulString { max_len } => {
            let scan = match max_len {
                0 => v,
                _ => &v[..v.len().min(max_len.saturating_add(1))],
            };
            if scan.contains(&0) {
                string(max_len)
            } else {
                fail("no NUL within max_len + 1 bytes")
            }
        }
    }
}
