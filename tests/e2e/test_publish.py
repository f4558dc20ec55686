"""The metric topic (SPEC §7, issue #6) end to end.

A generated stream (duplicates, out-of-order delivery, anonymous customers,
invalid events, survey answers) is consumed by journeyd publishing to a
compacted metric topic every 200 ms. A real consumer reads the topic from
the beginning and keeps the latest message of every key: put together they
must equal `journeyctl metrics --json` exactly, and so the generator's
ground truth; every message is valid against schemas/metric.schema.json and
keyed by its entry; once nothing changes, nothing more is published."""
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

import jsonschema
import msgpack
from confluent_kafka import Consumer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jdtest  # noqa: E402

PARTITIONS = 4
CUSTOMERS = 3000
PHASES = ["search", "information", "purchase", "loyalty"]


def metric_validator():
    with open(os.path.join(jdtest.SRC, "schemas", "metrics.schema.json")) as f:
        metrics = json.load(f)
    with open(os.path.join(jdtest.SRC, "schemas", "metric.schema.json")) as f:
        metric = json.load(f)
    resolver = jsonschema.RefResolver.from_schema(metric, store={metrics["$id"]: metrics})
    return jsonschema.Draft202012Validator(metric, resolver=resolver)


class TopicReader:
    """Reads the metric topic from the beginning, keeping every message."""

    def __init__(self, topic):
        self.c = Consumer({"bootstrap.servers": jdtest.BROKERS, "group.id": jdtest.unique("mchk"),
                           "auto.offset.reset": "earliest", "enable.auto.commit": False})
        self.c.subscribe([topic])
        self.msgs = []

    def drain(self, seconds):
        end = time.time() + seconds
        while time.time() < end:
            m = self.c.poll(0.1)
            if m is not None and not m.error():
                self.msgs.append(m)

    def latest(self):
        out = {}
        for m in self.msgs:
            k = m.key().decode()
            if m.value() is None:
                out.pop(k, None)
            else:
                out[k] = json.loads(m.value())
        return out

    def close(self):
        self.c.close()


def assemble(latest):
    """The snapshot's funnel and satisfaction series from the latest messages."""
    funnel, series = {}, {}
    for k, v in latest.items():
        if v["kind"] == "funnel":
            funnel.setdefault(v["segment"], {})[v["entry"]["phase"]] = v["entry"]
        else:
            series[k] = v["entry"]
    return funnel, series


def from_snapshot(doc):
    funnel = {f["segment"]: {p["phase"]: p for p in f["phases"]} for f in doc["funnel"]}
    series = {"satisfaction|%s|%s|%s|%s" % (s["phase"], s["window"], s["breakdown"], s["name"]): s
              for s in doc["satisfaction"]["series"]}
    return funnel, series


class PublishTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.topic, cls.dlq = jdtest.unique("pub"), jdtest.unique("pub-dlq")
        cls.mtopic = jdtest.unique("pub-metrics")
        jdtest.create_topic(cls.topic, PARTITIONS)
        jdtest.create_topic(cls.dlq, 1)
        jdtest.create_topic(cls.mtopic, 3, {"cleanup.policy": "compact"})
        d = tempfile.mkdtemp(prefix="jd-pub-")
        tpath = os.path.join(d, "truth.json")
        r = subprocess.run([jdtest.JOURNEYCTL, "gen", "--seed", "21", "--customers", str(CUSTOMERS),
                            "--topic", cls.topic, "--brokers", jdtest.BROKERS, "--dup-rate", "0.02",
                            "--ooo-rate", "0.05", "--anon-rate", "0.2", "--invalid-rate", "0.01",
                            "--truth", tpath], capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(r.stderr)
        with open(tpath) as f:
            cls.truth = json.load(f)
        cls.prefix, group = jdtest.unique("pub"), jdtest.unique("g")
        cls.cfg = jdtest.static_config(cls.topic, cls.dlq, cls.prefix, group,
                                       "  idle_advance: 1h\noutput:\n  metrics_topic: %s\n"
                                       "  publish_interval: 200ms\n"
                                       # many checkpoints between the publisher's reads
                                       "satisfaction:\n  log_max_bytes: 8192\n" % cls.mtopic)
        cls.reader = TopicReader(cls.mtopic)
        dmn = jdtest.Daemon(cls.cfg)
        try:
            jdtest.wait_committed(cls.prefix, cls.topic, PARTITIONS, timeout=300, proc=dmn.proc)
            # the partitions' clocks stop moving once idle advance has nothing
            # left to close; then the topic must catch up with the snapshot
            deadline = time.time() + 60
            while True:
                cls.reader.drain(1.0)
                cls.snap = jdtest.metrics(cls.cfg)
                if assemble(cls.reader.latest()) == from_snapshot(cls.snap) or time.time() > deadline:
                    break
            cls.count_settled = len(cls.reader.msgs)
            cls.reader.drain(2.0)  # 10 more ticks
            cls.snap_after = jdtest.metrics(cls.cfg)
            cls.log = dmn.logtext()
        finally:
            assert dmn.stop() == 0
            cls.reader.close()

    @classmethod
    def tearDownClass(cls):
        jdtest.drop_prefix(cls.prefix)
        jdtest.delete_topics(cls.topic, cls.dlq, cls.mtopic)

    def test_latest_messages_equal_the_snapshot(self):
        funnel, series = assemble(self.reader.latest())
        want_f, want_s = from_snapshot(self.snap)
        self.assertEqual(sorted(funnel), sorted(want_f))
        for seg in want_f:
            self.assertEqual(funnel[seg], want_f[seg], seg)
        self.assertEqual(sorted(series), sorted(want_s))
        self.assertEqual(series, want_s)
        self.assertGreater(len(series), 20)

    def test_the_published_funnel_equals_the_truth(self):
        funnel, _ = assemble(self.reader.latest())
        first = self.truth["phases"]["search"]["reached"]
        for ph in PHASES:
            want, got = self.truth["phases"][ph], funnel["all"][ph]
            for k in ("reached", "progressed", "dropped", "completed"):
                self.assertEqual(got[k], want[k], "%s %s" % (ph, k))
            self.assertAlmostEqual(got["conversion"], round(want["reached"] / first, 6), places=6)
            points = {p["touchpoint"]: p["dropped"] for p in got["dropoff_points"]}
            self.assertEqual(points, self.truth["dropoff_by_touchpoint"][ph], ph)

    def test_messages_are_valid_and_keyed_by_their_entry(self):
        v = metric_validator()
        for m in self.reader.msgs:
            if m.value() is None:
                continue
            doc = json.loads(m.value())
            v.validate(doc)
            self.assertEqual(m.key().decode(), doc["key"])
            e = doc["entry"]
            if doc["kind"] == "funnel":
                self.assertEqual(doc["key"], "funnel|%s|%s" % (doc["segment"], e["phase"]))
            else:
                self.assertEqual(doc["key"], "satisfaction|%s|%s|%s|%s" %
                                 (e["phase"], e["window"], e["breakdown"], e["name"]))
        last = json.loads(next(m.value() for m in reversed(self.reader.msgs) if m.value() is not None))
        self.assertEqual(last["complete_to"], self.snap["complete_to"])

    def test_only_changes_are_published(self):
        # once the snapshot stopped changing, ten more ticks sent nothing
        self.assertEqual(self.snap_after["funnel"], self.snap["funnel"])
        self.assertEqual(len(self.reader.msgs), self.count_settled)
        # and no entry was ever sent twice with the same content in a row
        prev = {}
        for m in self.reader.msgs:
            k = m.key().decode()
            e = json.loads(m.value())["entry"] if m.value() is not None else None
            self.assertNotEqual(prev.get(k, "none"), e, k)
            prev[k] = e

    def test_msgpack_messages_carry_the_same_documents(self):
        prefix, mtopic = jdtest.unique("pubmp"), jdtest.unique("pub-metrics-mp")
        jdtest.create_topic(mtopic, 3, {"cleanup.policy": "compact"})
        try:
            cfg = jdtest.write_config(self.topic, self.dlq, prefix, jdtest.unique("g"),
                                      "  idle_advance: 1h\noutput:\n  metrics_topic: %s\n"
                                      "  publish_interval: 200ms\n  format: msgpack\n" % mtopic)
            reader = TopicReader(mtopic)
            dmn = jdtest.Daemon(cfg)
            jdtest.wait_committed(prefix, self.topic, PARTITIONS, timeout=300, proc=dmn.proc)
            want = {k: v["entry"] for k, v in self.reader.latest().items()}
            deadline, got = time.time() + 60, {}
            while time.time() < deadline and got != want:
                reader.drain(1.0)
                got = {}
                for m in reader.msgs:
                    if m.value() is None:
                        got.pop(m.key().decode(), None)
                    else:
                        doc = msgpack.unpackb(m.value())
                        self.assertEqual(doc["schema"], "journeyd.metric")
                        got[m.key().decode()] = doc["entry"]
            self.assertEqual(dmn.stop(), 0)
            reader.close()
            self.assertEqual(got, want)
        finally:
            jdtest.drop_prefix(prefix)
            jdtest.delete_topics(mtopic)

    def test_the_daemon_says_it_publishes(self):
        self.assertIn('msg="publishing metrics" topic=%s' % self.mtopic, self.log)



class IncrementalReadTest(unittest.TestCase):
    """The publisher keeps each partition's satisfaction counts as it read
    them and adds what the answer log gained since (a tail read), or after
    one checkpoint the rest of the previous log and the new one (a catch-up
    read), or reads the partition whole. Answers arrive in bursts slower
    than the publisher's 20 ms ticks, a checkpoint every third burst or so:
    every way of reading is taken, and the published rows equal the
    snapshot read whole."""

    def test_every_way_of_reading_the_answers_gives_the_snapshot(self):
        topic, dlq, mtopic = jdtest.unique("inc"), jdtest.unique("inc-dlq"), jdtest.unique("inc-metrics")
        prefix = jdtest.unique("inc")
        jdtest.create_topic(topic, 1)
        jdtest.create_topic(dlq, 1)
        jdtest.create_topic(mtopic, 1, {"cleanup.policy": "compact"})
        cfg = jdtest.write_config(topic, dlq, prefix, jdtest.unique("g"),
                                  "  idle_advance: 1h\noutput:\n  metrics_topic: %s\n  publish_interval: 20ms\n"
                                  "satisfaction:\n  log_max_bytes: 2500\nlog:\n  level: debug\n" % mtopic)
        reader, prod = TopicReader(mtopic), jdtest.Producer1()
        dmn = jdtest.Daemon(cfg)
        try:
            t0 = 1767607200000
            for burst in range(30):
                for i in range(8):
                    n = burst * 8 + i
                    ev = {"messageId": "a-%d" % n, "type": "track", "userId": "c-%d" % (n % 50),
                          "event": "Survey Answered", "timestamp": t0 + n * 1000,
                          "properties": {"metric": "csat", "score": 1 + n % 5, "phase": "purchase",
                                         "touchpoint": "checkout" if n % 3 else "chat"}}
                    prod.p.produce(topic, json.dumps(ev).encode(), key=ev["userId"].encode())
                prod.p.flush(30)
                time.sleep(0.15)
            jdtest.wait_committed(prefix, topic, 1, timeout=60, proc=dmn.proc)
            want = from_snapshot(jdtest.metrics(cfg))[1]
            deadline, got = time.time() + 30, None
            while time.time() < deadline and got != want:
                reader.drain(0.5)
                got = assemble(reader.latest())[1]
            log = dmn.logtext()
        finally:
            self.assertEqual(dmn.stop(), 0)
            reader.close()
            jdtest.drop_prefix(prefix)
            jdtest.delete_topics(topic, dlq, mtopic)
        self.assertEqual(got, want)
        self.assertEqual(want["satisfaction|purchase|all|all|all"]["touchpoint_scope"]["csat"]["n"], 240)
        last = [l for l in log.splitlines() if 'msg="metric snapshot published"' in l][-1]
        reads = dict(kv.split("=") for kv in last.split() if kv.startswith("sat_"))
        for way in ("sat_full_reads", "sat_tail_reads", "sat_catchup_reads"):
            self.assertGreater(int(reads[way]), 0, last)


if __name__ == "__main__":
    unittest.main(verbosity=2)
