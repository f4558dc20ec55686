"""Checks the sample events of tests/data/events/ against
schemas/event.schema.json: every valid sample validates; every invalid sample
whose rule JSON Schema can express fails (the decoder's own test,
test_decode.c, decodes the same files and expects the reason in the name)."""
import json
import os
import sys

import jsonschema

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOT_EXPRESSIBLE = {"syntax", "duplicate_key"}  # not JSON / JSON parsers keep the last key


def main():
    with open(os.path.join(SRC, "schemas", "event.schema.json")) as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    v = jsonschema.Draft202012Validator(schema)
    failures, checked = [], 0
    for kind in ("valid", "invalid"):
        d = os.path.join(SRC, "tests", "data", "events", kind)
        for name in sorted(os.listdir(d)):
            reason = name.split("__")[0]
            if kind == "invalid" and reason in NOT_EXPRESSIBLE:
                continue
            with open(os.path.join(d, name)) as f:
                ev = json.load(f)
            errors = list(v.iter_errors(ev))
            checked += 1
            if kind == "valid" and errors:
                failures.append("%s: %s" % (name, errors[0].message))
            if kind == "invalid" and not errors:
                failures.append("%s: accepted by the schema" % name)
    for f in failures:
        print("FAIL " + f)
    print("%d passed, %d failed" % (checked - len(failures), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
