//! The payload parser on arbitrary bytes: it never panics, and whatever it accepts keeps the exact
//! bytes, parses the same way again, and is within the model's bounds.

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
    // What is accepted is within the model's bounds, and a record id is never blank.
    let bound = okra_callbacks::MAX_FIELD_CHARS;
    assert!(!envelope.record().as_str().trim().is_empty());
    assert!(envelope.record().as_str().chars().count() <= bound);
    assert!(envelope.callback_type().chars().count() <= bound);
    assert!(envelope.callback_code().is_none_or(|c| c.chars().count() <= bound));
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
