//! user-genl: work in progress.
#[cfg(test)]
mod t {
    use neli::{
        consts::nl::NlmF,
        nl::{NlPayload, NlmsghdrBuilder},
        types::Buffer,
        ToBytes,
    };
    use std::io::Cursor;
    #[test]
    fn pad() {
        let m = NlmsghdrBuilder::default()
            .nl_type(0x10u16)
            .nl_flags(NlmF::REQUEST)
            .nl_payload(NlPayload::Payload(Buffer::from(&b"hello netlink"[..])))
            .build()
            .unwrap();
        let mut c = Cursor::new(Vec::new());
        m.to_bytes(&mut c).unwrap();
        eprintln!("{:?} len {}", m.nl_len(), c.get_ref().len());
        eprintln!("{:?}", c.get_ref());
    }
}
