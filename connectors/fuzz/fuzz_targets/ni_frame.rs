//! Fuzzes SAP NI framing and the SAProuter messages (NI_ROUTE, NI_RTERR) inside frames.
#![no_main]

use siteward_connectors::protocol::ni;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(Some((payload, used))) = ni::decode_frame(data, ni::MAX_FRAME) {
        assert!(used <= data.len());
        match ni::classify(payload) {
            ni::Message::Route(bytes) => {
                if let Ok(request) = ni::RouteRequest::decode(bytes) {
                    let _ = request.next_hop();
                    let _ = request.forwarded();
                }
            }
            ni::Message::RouteError(bytes) => {
                if let Ok(error) = ni::RouteError::decode(bytes) {
                    let _ = (error.error(), error.detail());
                    let _ = ni::return_code_meaning(error.return_code);
                }
            }
            _ => {}
        }
    }
    let _ = ni::RouteRequest::decode(data);
    let _ = ni::RouteError::decode(data);
});
