"""Checks schemas/event.schema.json against the sample events of
tests/data/events/, the same files test_decode.c feeds the decoder:

- the schema is a valid draft 2020-12 schema, and every field it describes
  carries a description and its MessagePack mapping ("x-msgpack");
- every valid/*.json sample validates;
- every invalid/<reason>__<what>.json sample names a known decoder reason and
  fails validation, unless its rule is one JSON Schema cannot express (below).

And schemas/alert.schema.json against the alert messages of tests/data/alerts/,
which test_alert.c holds equal to alert_msg_json()'s output byte for byte:
every sample validates, and broken copies of them (ALERT_BREAKS) do not.

Python 3 standard library plus the jsonschema module (Debian python3-jsonschema).
"""
import json
import os
import sys

import jsonschema

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# decode_reason() names (daemon/decode.c).
REASONS = {
    "oversize", "syntax", "not_object", "depth", "type", "missing", "bad_event_type",
    "id_too_long", "string_too_long", "too_many_properties", "bad_timestamp", "bad_metric",
    "bad_score", "bad_scope", "duplicate_key",
}
# Rules only the decoder can check.
NOT_EXPRESSIBLE_REASONS = {
    "syntax": "not JSON at all",
    "duplicate_key": "JSON parsers keep the last of two equal keys",
    "depth": "JSON Schema has no nesting limit for unknown keys",
    "oversize": "JSON Schema sees no byte size",
}
NOT_EXPRESSIBLE_FILES = {
    "bad_timestamp__february_30.json": "a pattern cannot know the length of each month",
}


def walk_fields(node, path, problems):
    """Every property schema must say what it is and how it is sent in MessagePack."""
    for key, sub in node.get("properties", {}).items():
        where = path + key
        if "description" not in sub:
            problems.append("%s: no description" % where)
        if "x-msgpack" not in sub:
            problems.append("%s: no x-msgpack mapping" % where)
        walk_fields(sub, where + ".", problems)


def check_sample(validator, kind, name, path):
    """None if the sample behaves as its folder and name say, else the problem."""
    reason = name.split("__")[0] if "__" in name else None
    if kind == "invalid":
        if reason not in REASONS:
            return "file name must start with a decoder reason and '__'"
        if reason in NOT_EXPRESSIBLE_REASONS or name in NOT_EXPRESSIBLE_FILES:
            return None
    with open(path, encoding="utf-8") as f:
        event = json.load(f)
    errors = list(validator.iter_errors(event))
    if kind == "valid" and errors:
        return "%s at %s" % (errors[0].message, "/".join(str(p) for p in errors[0].absolute_path))
    if kind == "invalid" and not errors:
        return "accepted by the schema"
    return None


ZERO_TIME = "0001-01-01T00:00:00Z"
DELETE = object()

# (sample, path, new value or DELETE, what is wrong): each must fail validation.
ALERT_BREAKS = [
    ("firing.json", ["status"], "pending", "unknown status"),
    ("firing.json", ["alerts", 0, "status"], "resolved", "the alert's status differs from the message's"),
    ("firing.json", ["alerts", 0, "endsAt"], "2026-01-05T10:30:00.001Z", "a firing alert with an end"),
    ("resolved.json", ["alerts", 0, "endsAt"], ZERO_TIME, "a resolved alert without an end"),
    ("firing.json", ["alerts", 0, "startsAt"], "2026-01-05T10:02:00Z", "a time without milliseconds"),
    ("firing.json", ["value"], None, "a firing message without a value"),
    ("firing.json", ["id"], DELETE, "no id"),
    ("firing.json", ["id"], "7B9A8CF928C03861", "an id in capitals"),
    ("firing.json", ["alerts", 0, "fingerprint"], "7b9a8cf9", "a short fingerprint"),
    ("firing.json", ["alerts", 0, "labels", "team"], 5, "a label that is not a string"),
    ("firing.json", ["alerts", 0, "labels", "bad-name"], "x", "a label name Prometheus refuses"),
    ("firing.json", ["commonLabels", "severity"], DELETE, "no severity"),
    ("firing_default_summary.json", ["commonLabels", "segment"], "smb", "both a segment and a touchpoint"),
    ("firing.json", ["alerts"], [], "no alert"),
    ("firing.json", ["rule"], "Purchase Dropoff", "a rule name config.c refuses"),
    ("firing.json", ["n"], -1, "a negative sample size"),
    ("firing.json", ["extra"], 1, "an unknown field"),
]


def broken(doc, path, value):
    """A deep copy of doc with the member at path replaced (or deleted)."""
    doc = json.loads(json.dumps(doc))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


def check_alerts(failures):
    """The alert schema against its samples and their broken copies; the number of samples."""
    with open(os.path.join(SRC, "schemas", "alert.schema.json"), encoding="utf-8") as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    folder = os.path.join(SRC, "tests", "data", "alerts")
    samples = {}
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            samples[name] = json.load(f)
        errors = list(validator.iter_errors(samples[name]))
        if errors:
            failures.append("alerts/%s: %s at %s" % (name, errors[0].message,
                                                      "/".join(str(p) for p in errors[0].absolute_path)))
    if len(samples) < 4:
        failures.append("too few alert samples: %d" % len(samples))
    for name, path, value, what in ALERT_BREAKS:
        if name in samples and validator.is_valid(broken(samples[name], path, value)):
            failures.append("alerts/%s with %s: accepted by the schema" % (name, what))
    return len(samples)


def main():
    with open(os.path.join(SRC, "schemas", "event.schema.json"), encoding="utf-8") as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    failures = []
    walk_fields(schema, "", failures)
    counts = {"valid": 0, "invalid": 0}
    for kind in ("valid", "invalid"):
        folder = os.path.join(SRC, "tests", "data", "events", kind)
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".json"):
                continue
            counts[kind] += 1
            problem = check_sample(validator, kind, name, os.path.join(folder, name))
            if problem:
                failures.append("%s/%s: %s" % (kind, name, problem))
    if counts["valid"] < 15 or counts["invalid"] < 15:
        failures.append("too few samples: %r" % counts)
    alerts = check_alerts(failures)
    for f in failures:
        print("FAIL " + f)
    print("%d valid and %d invalid samples, %d alert samples (%d broken copies), %d failures"
          % (counts["valid"], counts["invalid"], alerts, len(ALERT_BREAKS), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
