"""A check scripts/schemathesis.sh adds to schemathesis's own.

scripts/schemathesis.toml lets the two lists answer valid-looking data with 400, for the
cursors of the declared format the server did not make. This check keeps that allowance to
exactly those: a 400 to data the document calls valid must be `invalid_cursor`, for a request
that sent a cursor.
"""

import schemathesis

LISTS = {"/v1/callbacks", "/v1/callback"}


@schemathesis.check
def positive_400_is_a_forged_cursor(ctx, response, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    if case.operation.path not in LISTS or response.status_code != 400:
        return None
    code = response.json()["error"]["code"]
    cursor = (case.query or {}).get("cursor")
    if code != "invalid_cursor" or not cursor:
        raise AssertionError(
            f"valid data answered 400 `{code}` (cursor {cursor!r}): only a cursor the server "
            "did not make may be refused"
        )
    return None
