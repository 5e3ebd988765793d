//! The payload parser on arbitrary bytes: it never panics, and whatever it accepts keeps the exact
//! bytes and parses the same way again.

#![no_main]

use libfuzzer_sys::fuzz_target;
use okra_callbacks::Envelope;

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = Envelope::parse(data.to_vec()) else {
        return;
    };
    assert_eq!(
        envelope.raw().as_ref(),
        data,
        "the raw bytes are kept exactly"
    );
    assert!(!envelope.callback_type().is_empty());
    let _ = (
        envelope.callback(),
        envelope.error(),
        envelope.fields().len(),
    );
    let again = Envelope::parse(envelope.raw().clone()).expect("accepted bytes parse again");
    assert_eq!(again.callback(), envelope.callback());
    assert_eq!(again.callback_type(), envelope.callback_type());
    assert_eq!(again.callback_code(), envelope.callback_code());
});
