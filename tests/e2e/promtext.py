#!/usr/bin/env python3
"""A strict parser of the Prometheus text exposition format (0.0.4), for
checking what journeyd serves at /metrics.

parse(text) -> {family name: {"type", "help", "samples": [(name, labels, value)]}}
raises ValueError("line N: ...") at the first problem. Stricter than
Prometheus (which merges a family split in two and lints the rest), it asks:

- every family has one # HELP and one # TYPE line, before its samples, and
  all its lines in one block (a family never appears twice);
- every sample belongs to the family of its block: the family's name for a
  counter, gauge or untyped family, name_bucket / _sum / _count for a
  histogram, name / _sum / _count for a summary;
- a counter's name ends in _total and its values are >= 0;
- names and labels: metric [a-zA-Z_:][a-zA-Z0-9_:]*, label
  [a-zA-Z_][a-zA-Z0-9_]* not starting with "__", each once per sample; label
  values escape only \\, \" and \n; help only \\ and \n; UTF-8 throughout;
- values are floats as Go spells them (NaN, +Inf, -Inf, 1.5e-3...),
  timestamps integers; no series twice;
- a histogram series has _bucket lines with le ascending to le="+Inf",
  cumulative integer counts, the +Inf count equal to its _count, one _sum
  and one _count; a summary's quantiles are in [0, 1];
- the text ends with a newline.

promtool_check(text) runs `promtool check metrics` (Debian package
prometheus) and raises ValueError with its output if it finds a problem.
`promtext.py --selftest` checks the parser against known-good and
known-bad texts (and promtool too, if installed); `promtext.py FILE` checks
a file. Python 3 standard library only.
"""
import math
import re
import shutil
import subprocess
import sys

METRIC_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
FLOAT_RE = re.compile(r"[+-]?(?:Inf|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)|NaN")
INT_RE = re.compile(r"-?\d+")
DIRECTIVE_RE = re.compile(r"#[ \t]+(HELP|TYPE)(?:[ \t]+|$)")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
SUFFIXES = {"counter": ("",), "gauge": ("",), "untyped": ("",),
            "histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count")}
LABEL_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}
HELP_ESCAPES = {"\\": "\\", "n": "\n"}
PROMTOOL = shutil.which("promtool")


def _fail(n, msg):
    raise ValueError(f"line {n}: {msg}")


def _float(s, n, what):
    if not FLOAT_RE.fullmatch(s):
        _fail(n, f"{what} {s!r} is not a float")
    return float(s)


def _unescape(s, escapes, n, what):
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            nxt = s[i + 1:i + 2]
            if nxt not in escapes:
                _fail(n, f"{what}: invalid escape \\{nxt}")
            out.append(escapes[nxt])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _blanks(line, i):
    while i < len(line) and line[i] in " \t":
        i += 1
    return i


def _label_value(line, i, n):
    """The quoted value starting after the opening quote at i; (value, index after the quote)."""
    j = i
    while j < len(line) and line[j] != '"':
        j += 2 if line[j] == "\\" else 1
    if j >= len(line):
        _fail(n, "unterminated label value")
    return _unescape(line[i:j], LABEL_ESCAPES, n, "label value"), j + 1


def _labels(line, i, n):
    """The labels after the '{' at i - 1; (dict, index after the '}')."""
    labels = {}
    i = _blanks(line, i)
    while not line.startswith("}", i):
        m = LABEL_RE.match(line, i)
        if not m:
            _fail(n, f"bad label name at column {i + 1}")
        name = m.group()
        if name.startswith("__"):
            _fail(n, f"reserved label name {name}")
        if name in labels:
            _fail(n, f"label {name} twice")
        i = _blanks(line, m.end())
        if not line.startswith("=", i):
            _fail(n, f"'=' expected after label {name}")
        i = _blanks(line, i + 1)
        if not line.startswith('"', i):
            _fail(n, f"'\"' expected for the value of label {name}")
        labels[name], i = _label_value(line, i + 1, n)
        i = _blanks(line, i)
        if line.startswith(",", i):
            i = _blanks(line, i + 1)
        elif not line.startswith("}", i):
            _fail(n, f"',' or '}}' expected after label {name}")
    return labels, i + 1


def _sample(line, n):
    m = METRIC_RE.match(line)
    if not m:
        _fail(n, "bad metric name")
    name, i, labels = m.group(), m.end(), {}
    if line.startswith("{", i):
        labels, i = _labels(line, i + 1, n)
    if not line[i:i + 1] or line[i] not in " \t":
        _fail(n, "a blank and a value expected after the name and labels")
    rest = line[i:].split()
    if not 1 <= len(rest) <= 2:
        _fail(n, "a value and an optional timestamp expected")
    value = _float(rest[0], n, "value")
    if len(rest) == 2 and not INT_RE.fullmatch(rest[1]):
        _fail(n, f"timestamp {rest[1]!r} is not an integer")
    return name, labels, value


class _Page:
    def __init__(self):
        self.families, self.current, self.series, self.hist = {}, None, set(), {}

    def enter(self, name, n):
        if self.current == name:
            return self.families[name]
        if name in self.families:
            _fail(n, f"family {name} appears a second time (its lines must be together)")
        fam = self.families[name] = {"type": None, "help": None, "samples": [], "line": n}
        self.current = name
        return fam

    def directive(self, kind, line, n):
        m = METRIC_RE.match(line)
        if not m:
            _fail(n, f"bad metric name in # {kind}")
        name, rest = m.group(), line[m.end():]
        if rest and rest[0] not in " \t":
            _fail(n, f"bad metric name in # {kind}")
        rest = rest[1:] if kind == "HELP" else rest.strip(" \t")
        fam = self.enter(name, n)
        if fam["type" if kind == "TYPE" else "help"] is not None:
            _fail(n, f"second # {kind} for {name}")
        if kind == "HELP":
            fam["help"] = _unescape(rest, HELP_ESCAPES, n, "help")
            return
        if fam["samples"]:
            _fail(n, f"# TYPE for {name} after its samples")
        if rest not in TYPES:
            _fail(n, f"unknown type {rest!r}")
        if rest == "counter" and not name.endswith("_total"):
            _fail(n, f"counter {name}: the name must end in _total")
        fam["type"] = rest

    def sample(self, line, n):
        name, labels, value = _sample(line, n)
        fam = self.families.get(self.current)
        if fam is None or fam["type"] is None:
            _fail(n, f"sample {name} before the # TYPE of its family")
        suffix = name[len(self.current):] if name.startswith(self.current) else None
        if suffix not in SUFFIXES[fam["type"]]:
            _fail(n, f"sample {name} outside its family (in the block of {fam['type']} {self.current})")
        key = (name, frozenset(labels.items()))
        if key in self.series:
            _fail(n, f"series {name}{labels} twice")
        self.series.add(key)
        if fam["type"] == "counter" and not value >= 0:
            _fail(n, f"counter {name}: value {value} below 0")
        if fam["type"] in ("histogram", "summary"):
            self.part(fam["type"], name, suffix, labels, value, n)
        fam["samples"].append((name, labels, value))

    def part(self, kind, name, suffix, labels, value, n):
        """Collect a histogram's or summary's series, keyed by labels without le/quantile."""
        special = "le" if kind == "histogram" else "quantile"
        has = special in labels
        if has != (suffix == ("_bucket" if kind == "histogram" else "")):
            _fail(n, f"{special} label {'on' if has else 'missing from'} {name}")
        rest = dict(labels)
        bound = _float(rest.pop(special), n, special) if has else None
        g = self.hist.setdefault((self.current, frozenset(rest.items())),
                                 {"kind": kind, "parts": [], "sum": None, "count": None, "line": n})
        if suffix in ("_sum", "_count"):
            g[suffix[1:]] = value
            return
        if kind == "summary" and not 0 <= bound <= 1:
            _fail(n, f"quantile {bound} outside [0, 1]")
        if kind == "histogram":
            prev = g["parts"][-1] if g["parts"] else None
            if value < 0 or value != math.floor(value):
                _fail(n, f"bucket count {value} is not a whole number")
            if prev and not bound > prev[0]:
                _fail(n, f"le {bound} not above the previous bucket's {prev[0]}")
            if prev and value < prev[1]:
                _fail(n, f"bucket le={bound}: count {value} below the previous bucket's {prev[1]}")
        g["parts"].append((bound, value))

    def finish(self):
        for name, fam in self.families.items():
            if fam["help"] is None or fam["type"] is None:
                _fail(fam["line"], f"family {name} has no # {'HELP' if fam['help'] is None else 'TYPE'}")
        for (name, labels), g in self.hist.items():
            where = f"{name}{dict(labels)}"
            if g["sum"] is None or g["count"] is None:
                _fail(g["line"], f"{where}: no _{'sum' if g['sum'] is None else 'count'}")
            if g["kind"] == "histogram":
                if not g["parts"] or g["parts"][-1][0] != math.inf:
                    _fail(g["line"], f"{where}: the buckets do not end with le=\"+Inf\"")
                if g["parts"][-1][1] != g["count"]:
                    _fail(g["line"], f"{where}: +Inf bucket {g['parts'][-1][1]} != _count {g['count']}")


def parse(text):
    """The families of text (str, or bytes that must be UTF-8); ValueError if anything is off."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            _fail(text[:e.start].count(b"\n") + 1, "not UTF-8")
    lines = text.split("\n")
    if lines[-1] != "":
        _fail(len(lines), "no newline at the end")
    page = _Page()
    for n, line in enumerate(lines[:-1], 1):
        m = DIRECTIVE_RE.match(line)
        if m:
            page.directive(m.group(1), line[m.end():], n)
        elif line.startswith("#") or not line.strip(" \t"):
            continue  # a comment or an empty line
        else:
            page.sample(line, n)
    page.finish()
    return {name: {k: fam[k] for k in ("type", "help", "samples")} for name, fam in page.families.items()}


def promtool_check(text):
    """`promtool check metrics` on text; ValueError with its report if it complains."""
    if not PROMTOOL:
        raise RuntimeError("promtool not found (Debian package prometheus)")
    data = text.encode("utf-8") if isinstance(text, str) else text
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=data, capture_output=True, timeout=60)
    if r.returncode != 0 or r.stdout.strip() or r.stderr.strip():
        raise ValueError(f"promtool (exit {r.returncode}): {(r.stdout + r.stderr).decode(errors='replace').strip()}")


# ---- self-test ------------------------------------------------------------------------

GOOD = [  # test_prom.c's exact pages, then the format's corners; all pass promtool too
    '# HELP journeyd_events_total Events by outcome.\n# TYPE journeyd_events_total counter\n'
    'journeyd_events_total{outcome="applied"} 1234\njourneyd_events_total{outcome="dead_lettered"} 5\n',
    '# HELP journeyd_batch_seconds Batch latency.\n# TYPE journeyd_batch_seconds histogram\n'
    'journeyd_batch_seconds_bucket{le="0.25"} 1\njourneyd_batch_seconds_bucket{le="0.5"} 3\n'
    'journeyd_batch_seconds_bucket{le="1"} 4\njourneyd_batch_seconds_bucket{le="2"} 4\n'
    'journeyd_batch_seconds_bucket{le="+Inf"} 5\njourneyd_batch_seconds_sum 6\njourneyd_batch_seconds_count 5\n'
    'journeyd_batch_seconds_bucket{stage="flush",le="0.25"} 1\njourneyd_batch_seconds_bucket{stage="flush",le="0.5"} 3\n'
    'journeyd_batch_seconds_bucket{stage="flush",le="1"} 4\njourneyd_batch_seconds_bucket{stage="flush",le="2"} 4\n'
    'journeyd_batch_seconds_bucket{stage="flush",le="+Inf"} 5\njourneyd_batch_seconds_sum{stage="flush"} 6\n'
    'journeyd_batch_seconds_count{stage="flush"} 5\n',
    '# HELP g back\\\\slash, new\\nline, "quotes" stay, é\n# TYPE g gauge\ng{v="a\\\\b\\nc\\"d\\"",w="ünï"} 1\n',
    "",
    '# HELP lag Lag.\n# TYPE lag gauge\nlag NaN\nlag{p="1"} +Inf\n'
    'lag{p="2"} -Inf 1700000000000\nlag{p="3",} 1.5e-3\nlag{ p = "4" } .5\n',
    "# a comment\n\n# HELP e_total Empty.\n# TYPE e_total counter\n",
    '# HELP rpc Latency.\n# TYPE rpc summary\nrpc{quantile="0.5"} 0.1\nrpc{quantile="1"} 0.3\nrpc_sum 1\nrpc_count 4\n',
]

BAD = [  # (text, the error it must give, whether promtool refuses it too)
    ("# HELP g h\n# TYPE g gauge\ng 1", "line 3: no newline at the end", True),
    ("# HELP g h\n# TYPE g gauge\ng 1\n# HELP g h\n", "line 4: second # HELP for g", True),
    ("# HELP g h\n# TYPE g gauge\n# TYPE g gauge\n", "line 3: second # TYPE for g", True),
    ("# HELP g h\n# TYPE g gauge\ng 1\n# HELP h h\n# TYPE h gauge\nh 2\ng 3\n",
     "line 7: sample g outside its family (in the block of gauge h)", False),
    ("# HELP g h\n# TYPE g gauge\ng 1\n# HELP h h\n# TYPE h gauge\n# HELP g h\n",
     "line 6: family g appears a second time", True),
    ("# HELP g h\ng 1\n", "line 2: sample g before the # TYPE of its family", False),
    ("g 1\n", "line 1: sample g before the # TYPE of its family", True),
    ("# TYPE g gauge\ng 1\n", "line 1: family g has no # HELP", True),
    ("# HELP g h\n", "line 1: family g has no # TYPE", False),
    ("# HELP g h\n# TYPE g gauge\ng_x 1\n", "line 3: sample g_x outside its family", False),
    ("# HELP c h\n# TYPE c counter\nc 1\n", "line 2: counter c: the name must end in _total", True),
    ("# HELP c_total h\n# TYPE c_total counter\nc_total -1\n", "line 3: counter c_total: value -1.0 below 0", False),
    ("# HELP g h\n# TYPE g gauge\ng 1\n# TYPE g gauge\n", "line 4: second # TYPE for g", True),
    ("# HELP g h\n# TYPE g gauge\ng 1\ng 2\n", "line 4: series g{} twice", False),
    ("# HELP g h\n# TYPE g gauge\ng{a=\"1\",a=\"2\"} 1\n", "line 3: label a twice", True),
    ("# HELP g h\n# TYPE g gauge\ng{a=\"\\x\"} 1\n", "line 3: label value: invalid escape \\x", True),
    ("# HELP g h\\t\n# TYPE g gauge\n", "line 1: help: invalid escape \\t", True),
    ("# HELP g h\n# TYPE g gauge\ng{a=\"1} 1\n", "line 3: unterminated label value", True),
    ("# HELP g h\n# TYPE g gauge\ng{a:b=\"1\"} 1\n", "line 3: '=' expected after label a", True),
    ("# HELP g h\n# TYPE g gauge\ng{__a=\"1\"} 1\n", "line 3: reserved label name __a", False),
    ("# HELP g h\n# TYPE g gauge\ng{a=\"1\"}1\n", "line 3: a blank and a value expected", False),
    ("# HELP g h\n# TYPE g gauge\ng one\n", "line 3: value 'one' is not a float", True),
    ("# HELP g h\n# TYPE g gauge\ng infinity\n", "line 3: value 'infinity' is not a float", False),
    ("# HELP g h\n# TYPE g gauge\ng 1 2.5\n", "line 3: timestamp '2.5' is not an integer", True),
    ("# HELP g h\n# TYPE g gauge\ng 1 2 3\n", "line 3: a value and an optional timestamp expected", True),
    ("# HELP 1g h\n", "line 1: bad metric name in # HELP", True),
    ("# HELP g h\n# TYPE g gauges\n", "line 2: unknown type 'gauges'", True),
    ("# HELP g h\n# TYPE g gauge\ng{v=\"\xff\"} 1\n".encode("latin-1"), "line 3: not UTF-8", True),
    ("# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
     "line 4: bucket le=inf: count 1.0 below the previous bucket's 2.0", False),
    ("# HELP h h\n# TYPE h histogram\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"1\"} 1\n",
     "line 4: le 1.0 not above the previous bucket's 2.0", False),
    ("# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
     "line 3: h{}: the buckets do not end with le=\"+Inf\"", False),
    ("# HELP h h\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
     "line 3: h{}: +Inf bucket 2.0 != _count 3.0", False),
    ("# HELP h h\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 2\n", "line 3: h{}: no _sum", False),
    ("# HELP h h\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2.5\nh_sum 1\nh_count 2.5\n",
     "line 3: bucket count 2.5 is not a whole number", False),
    ("# HELP h h\n# TYPE h histogram\nh_bucket 2\n", "line 3: le label missing from h_bucket", False),
    ("# HELP h h\n# TYPE h histogram\nh_sum{le=\"1\"} 2\n", "line 3: le label on h_sum", False),
    ("# HELP h h\n# TYPE h histogram\nh 2\n", "line 3: sample h outside its family", False),
    ("# HELP h h\n# TYPE h histogram\nh_bucket{le=\"x\"} 2\n", "line 3: le 'x' is not a float", True),
    ("# HELP s h\n# TYPE s summary\ns{quantile=\"2\"} 1\ns_sum 1\ns_count 1\n", "line 3: quantile 2.0 outside [0, 1]", False),
]


def selftest():
    failures = []
    for i, text in enumerate(GOOD):
        try:
            parse(text)
            if PROMTOOL:
                promtool_check(text)
        except ValueError as e:
            failures.append(f"good text {i} refused: {e}")
    for text, want, promtool_too in BAD:
        try:
            parse(text)
            failures.append(f"accepted: {text!r}")
        except ValueError as e:
            if not str(e).startswith(want):
                failures.append(f"{text!r}: got {e!r}, want {want!r}")
        if PROMTOOL and promtool_too:
            try:
                promtool_check(text)
                failures.append(f"promtool accepted: {text!r}")
            except ValueError:
                pass
    fams = parse(GOOD[1])["journeyd_batch_seconds"]
    if fams["type"] != "histogram" or len(fams["samples"]) != 14 or fams["samples"][4] != (
            "journeyd_batch_seconds_bucket", {"le": "+Inf"}, 5.0):
        failures.append(f"parsed histogram wrong: {fams}")
    if list(parse("# HELP a:b h\n# TYPE a:b gauge\na:b 1\n")) != ["a:b"]:  # promtool lints ':'
        failures.append("a name with ':' refused")
    if parse(GOOD[2])["g"]["samples"] != [("g", {"v": 'a\\b\nc"d"', "w": "ünï"}, 1.0)]:
        failures.append("escapes read wrong")
    for f in failures:
        print("FAIL", f)
    print(f"promtext: {len(GOOD)} good, {len(BAD)} bad texts; promtool: "
          f"{PROMTOOL or 'not found, skipped'}; {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--selftest"]:
        sys.exit(selftest())
    if len(sys.argv) == 2:
        with open(sys.argv[1], "rb") as f:
            parse(f.read())
        sys.exit(0)
    sys.exit("usage: promtext.py --selftest | FILE")
