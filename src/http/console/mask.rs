//! Masks personal data in a payload before the console shows it: BVNs, names, phone numbers,
//! emails, addresses, dates of birth, … found by key name at any depth.
//!
//! The console shows the masked payload by default; the operator reveals the original on purpose
//! (a POST, logged). Masking keeps the payload's shape — which keys exist, how many phone numbers
//! there are — so a masked payload still answers most questions.

use serde_json::Value;

/// What a masked value is shown as.
pub(super) const MASK: &str = "••••••";

/// Keys (lowercased, without `_`, `-` or spaces) whose values are personal data.
const PERSONAL: &[&str] = &[
    "bvn",
    "nin",
    "ssn",
    "name",
    "names",
    "firstname",
    "lastname",
    "middlename",
    "fullname",
    "surname",
    "givenname",
    "familyname",
    "maidenname",
    "othername",
    "othernames",
    "customername",
    "accountname",
    "holdername",
    "accountholder",
    "dob",
    "dateofbirth",
    "birthdate",
    "birthday",
    "phone",
    "phones",
    "phonenumber",
    "phonenumbers",
    "mobile",
    "mobilenumber",
    "msisdn",
    "email",
    "emails",
    "emailaddress",
    "address",
    "addresses",
    "street",
    "postaladdress",
    "homeaddress",
    "residentialaddress",
    "photo",
    "photoid",
    "selfie",
    "signature",
    "accountnumber",
    "nuban",
];

/// Keys ending in a personal word that are not about a person.
const NOT_PERSONAL: &[&str] = &[
    "bankname",
    "institutionname",
    "productname",
    "typename",
    "hostname",
    "filename",
    "username",
    "eventname",
    "ipaddress",
    "macaddress",
    "callbackaddress",
];

/// Whether the values under `key` are personal data.
pub(super) fn is_personal(key: &str) -> bool {
    let key: String = key
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect();
    if NOT_PERSONAL.contains(&key.as_str()) {
        return false;
    }
    PERSONAL.contains(&key.as_str())
        || ["firstname", "lastname", "fullname", "phone", "phonenumber"]
            .iter()
            .chain(&["email", "address", "bvn", "dateofbirth", "dob"])
            .any(|suffix| key.ends_with(suffix))
}

/// Masks, in place, every value under a personal key at any depth; returns how many keys were
/// masked.
pub(super) fn mask(value: &mut Value) -> usize {
    match value {
        Value::Object(map) => map
            .iter_mut()
            .map(|(key, v)| {
                if is_personal(key) {
                    mask_all(v);
                    1
                } else {
                    mask(v)
                }
            })
            .sum(),
        Value::Array(items) => items.iter_mut().map(mask).sum(),
        _ => 0,
    }
}

/// Replaces every string, number and boolean under `value` by [`MASK`], keeping arrays, objects
/// (and their keys) and nulls, so the shape still shows.
fn mask_all(value: &mut Value) {
    match value {
        Value::Object(map) => map.values_mut().for_each(mask_all),
        Value::Array(items) => items.iter_mut().for_each(mask_all),
        Value::Null => {}
        other => *other = Value::String(MASK.to_owned()),
    }
}

/// A stored body as the console shows it: pretty JSON, masked unless `reveal`, and how many keys
/// were masked. A body that is not JSON (never stored by this receiver, but kept readable) is
/// shown only when revealed.
pub(super) fn render(body: &[u8], reveal: bool) -> (String, usize) {
    match serde_json::from_slice::<Value>(body) {
        Ok(mut value) => {
            let masked = if reveal { 0 } else { mask(&mut value) };
            let text = serde_json::to_string_pretty(&value).unwrap_or_default();
            (text, masked)
        }
        Err(_) if reveal => (String::from_utf8_lossy(body).into_owned(), 0),
        Err(_) => (
            format!(
                "(not JSON: {} bytes, masked — reveal to see them)",
                body.len()
            ),
            1,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn personal_keys_are_masked_at_any_depth() {
        let mut v = json!({
            "record": "rec_1",
            "bankName": "Example Bank",
            "identity": {
                "bvn": "22222222222",
                "firstname": "Ada",
                "last_name": "Obi",
                "dob": "1990-01-31",
                "phone": ["+2348000000000", "+2348111111111"],
                "email": ["ada@example.com"],
                "address": ["1 Example Street, Lagos"],
                "gender": "female",
                "nested": [{"customer": {"Full-Name": "Ada N Obi", "phoneNumber": 2348000000000_u64}}],
            },
        });
        let masked = mask(&mut v);
        let text = v.to_string();
        for secret in [
            "22222222222",
            "Ada",
            "Obi",
            "1990-01-31",
            "+2348000000000",
            "ada@example.com",
            "Example Street",
            "2348000000000",
        ] {
            assert!(!text.contains(secret), "{secret} shows in {text}");
        }
        assert_eq!(masked, 9, "{text}");
        assert_eq!(v["record"], "rec_1");
        assert_eq!(v["bankName"], "Example Bank");
        assert_eq!(v["identity"]["gender"], "female");
        // The shape stays: two phone numbers, still two.
        assert_eq!(v["identity"]["phone"], json!([MASK, MASK]));
    }

    #[test]
    fn render_reveals_only_when_asked() {
        let body = br#"{"record":"r","identity":{"bvn":"22222222222"}}"#;
        let (masked, n) = render(body, false);
        assert_eq!(n, 1);
        assert!(!masked.contains("22222222222") && masked.contains(MASK));
        let (shown, n) = render(body, true);
        assert_eq!(n, 0);
        assert!(shown.contains("22222222222"));
        let (not_json, _) = render(b"bvn=22222222222", false);
        assert!(!not_json.contains("22222222222"), "{not_json}");
    }
}
