"""Alert rules end to end (issue #6): a stream whose CSAT in `purchase` drops
(1h window at 0 %), then hovers between the resolve threshold and the
threshold (60 %), then recovers (100 %), with journeyd killed (-9) and
restarted while the alert is firing. The alert topic must carry exactly one
episode: one `firing` message with the value at the drop and one `resolved`
message after the recovery, both with the same id (a message re-sent after
the restart keeps its id), shaped like an Alertmanager webhook
(schemas/alert.schema.json). And the drop-off rate of `purchase` (counted
since the start) jumping when journeys drop off and coming back when more
move on, with a kill -9 while firing: one firing and one resolved message,
the values those of the snapshots that crossed the thresholds; and the same
stream watched over the 1h funnel window, which fires at 1.0 (only
drop-offs in the window) and resolves at 0.0 (only journeys that moved on)."""
import json
import os
import sys
import time
import unittest
import urllib.request

import jsonschema
from confluent_kafka import Consumer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jdtest  # noqa: E402

T0 = 1767607200000  # 2026-01-05T10:00:00Z
MIN = 60000
RULES = """satisfaction:
  min_n: 5
alerts:
  - name: purchase-csat
    metric: csat
    phase: purchase
    window: 1h
    op: "<"
    threshold: 50
    resolve: 70
    severity: critical
    labels: {team: checkout}
"""


def answers(first, scores, t, scope="touchpoint"):
    """Survey answers of customers first.. at t, t+10s, ..."""
    out = []
    for i, score in enumerate(scores):
        out.append({"messageId": "a-%d" % (first + i), "type": "track", "userId": "c-%d" % (first + i),
                    "event": "Survey Answered", "timestamp": t + i * 10000,
                    "properties": {"metric": "csat", "score": score, "phase": "purchase", "touchpoint": "checkout",
                                   "scope": scope}})
    return out


class AlertBase(unittest.TestCase):
    RULES = ""

    @classmethod
    def setUpClass(cls):
        if cls is AlertBase:
            raise unittest.SkipTest("base class")
        cls.topic, cls.dlq = jdtest.unique("alert"), jdtest.unique("alert-dlq")
        cls.atopic, cls.mtopic = jdtest.unique("alert-out"), jdtest.unique("alert-metrics")
        for t in (cls.topic, cls.dlq, cls.atopic, cls.mtopic):
            jdtest.create_topic(t, 1)
        cls.prefix = jdtest.unique("alert")
        cls.cfg = jdtest.static_config(cls.topic, cls.dlq, cls.prefix, jdtest.unique("g"),
                                       "  idle_advance: 1h\noutput:\n  metrics_topic: %s\n  alerts_topic: %s\n"
                                       "  publish_interval: 100ms\n" % (cls.mtopic, cls.atopic) + cls.RULES)
        cls.c = Consumer({"bootstrap.servers": jdtest.BROKERS, "group.id": jdtest.unique("achk"),
                          "auto.offset.reset": "earliest", "enable.auto.commit": False})
        cls.c.subscribe([cls.atopic])
        cls.msgs = []
        cls.prod = jdtest.Producer1()

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        jdtest.drop_prefix(cls.prefix)
        jdtest.delete_topics(cls.topic, cls.dlq, cls.atopic, cls.mtopic)

    def feed(self, events, heartbeat):
        for e in events + [{"type": "heartbeat", "timestamp": heartbeat}]:
            self.prod.send(self.topic, json.dumps(e).encode(), key=e.get("userId", "hb").encode())

    def read(self, seconds, until=None):
        end = time.time() + seconds
        while time.time() < end:
            m = self.c.poll(0.1)
            if m is not None and not m.error():
                self.msgs.append(json.loads(m.value()))
            if until and until():
                return True
        return until() if until else True

    def metric_shows(self, line, timeout=10):
        """Whether journeyd's /metrics page shows line within timeout."""
        end = time.time() + timeout
        while time.time() < end:
            try:
                url = "http://127.0.0.1:%d/metrics" % jdtest.HTTP_PORTS[self.cfg]
                with urllib.request.urlopen(url, timeout=5) as r:
                    if line in r.read().decode().splitlines():
                        return True
            except OSError:
                pass
            time.sleep(0.2)
        return False

    def jump_and_recover(self):
        """100 journeys move on from purchase, 100 then drop off in it, kill
        -9 once the rule fires, 200 more move on: the episode's firing and
        resolved messages."""
        d = jdtest.Daemon(self.cfg)
        self.feed(journeys(0, 100, T0, True), T0 + 10 * MIN)
        jdtest.wait_committed(self.prefix, self.topic, 1, timeout=60, proc=d.proc)
        self.read(1.5)
        self.assertEqual(self.msgs, [])
        # 100 journeys left in purchase; two hours later they have dropped off
        self.feed(journeys(100, 100, T0 + 60 * MIN, False), T0 + 200 * MIN)
        self.assertTrue(self.read(60, lambda: any(s == "firing" for s, _ in self.statuses())), d.logtext()[-3000:])
        d.kill9()
        d = jdtest.Daemon(self.cfg)
        self.feed(journeys(200, 200, T0 + 240 * MIN, True), T0 + 250 * MIN)
        self.assertTrue(self.read(60, lambda: any(s == "resolved" for s, _ in self.statuses())), d.logtext()[-3000:])
        self.read(1)
        self.assertEqual(d.stop(), 0)
        return self.episode()

    def statuses(self):
        return [(m["status"], m["id"]) for m in self.msgs]

    def episode(self):
        """The firing and the resolved message of the only episode."""
        episodes = sorted(set(self.statuses()))
        fid = self.msgs[0]["id"]
        self.assertEqual(episodes, sorted([("firing", fid), ("resolved", fid)]), self.statuses())
        self.assertEqual([m["status"] for m in self.msgs][-1], "resolved")
        return (next(m for m in self.msgs if m["status"] == "firing"),
                next(m for m in self.msgs if m["status"] == "resolved"))


class AlertTest(AlertBase):
    RULES = RULES

    def test_one_firing_and_one_resolved_through_a_restart(self):
        d = jdtest.Daemon(self.cfg)
        # the drop: ten answers of 1 (CSAT 0 %); the watermark passes them
        self.feed(answers(0, [1] * 10, T0), T0 + 20 * MIN)
        self.assertTrue(self.read(60, lambda: any(s == "firing" for s, _ in self.statuses())), d.logtext()[-3000:])
        # hovering: an hour later CSAT is 60 %, between resolve (70) and
        # threshold (50): nothing more is sent
        self.feed(answers(100, [5] * 6 + [1] * 4, T0 + 90 * MIN), T0 + 115 * MIN)
        jdtest.wait_committed(self.prefix, self.topic, 1, timeout=60, proc=d.proc)
        self.read(2)
        self.assertEqual([s for s, _ in self.statuses()], ["firing"])
        self.assertTrue(self.metric_shows('journeyd_alert_state{rule="purchase-csat",severity="critical"} 2'))
        # a crash while firing, and a restart
        d.kill9()
        d = jdtest.Daemon(self.cfg)
        self.read(3)
        # the recovery: CSAT 100 % in the last hour
        self.feed(answers(200, [5] * 10, T0 + 180 * MIN), T0 + 205 * MIN)
        self.assertTrue(self.read(60, lambda: any(s == "resolved" for s, _ in self.statuses())), d.logtext()[-3000:])
        self.read(2)
        self.assertTrue(self.metric_shows('journeyd_alert_state{rule="purchase-csat",severity="critical"} 0'))
        self.assertEqual(d.stop(), 0)

        firing, resolved = self.episode()
        self.assertEqual(firing["rule"], "purchase-csat")
        self.assertEqual(firing["value"], 0)
        self.assertEqual(firing["n"], 10)
        self.assertEqual(firing["threshold"], 50)
        self.assertEqual(firing["resolve_threshold"], 70)
        self.assertEqual(resolved["value"], 100)
        self.assertEqual(resolved["n"], 10)
        a = firing["alerts"][0]
        self.assertEqual(a["status"], "firing")
        self.assertEqual(a["labels"]["alertname"], "purchase-csat")
        self.assertEqual(a["labels"]["team"], "checkout")
        self.assertEqual(a["labels"]["severity"], "critical")
        self.assertEqual(a["labels"]["phase"], "purchase")
        self.assertEqual(a["labels"]["window"], "1h")
        self.assertEqual(a["endsAt"], "0001-01-01T00:00:00Z")
        r = resolved["alerts"][0]
        self.assertEqual(r["startsAt"], a["startsAt"])
        self.assertGreater(r["endsAt"], r["startsAt"])
        with open(os.path.join(jdtest.SRC, "schemas", "alert.schema.json")) as f:
            schema = json.load(f)
        for m in self.msgs:
            jsonschema.validate(m, schema)
        # the state is saved, and the outbox is empty once delivered
        rd = jdtest.redis_client()
        fields = rd.hgetall("%s:alerts" % self.prefix)
        self.assertEqual(sorted(k.decode() for k in fields), ["purchase-csat"])


def journeys(first, n, t, progress):
    """n customers entering purchase at t, t+1s, ...; those that progress
    reach loyalty 10 s later, the others are left to drop off."""
    out = []
    for i in range(n):
        c = "d-%d" % (first + i)
        out.append({"messageId": c + "-p", "type": "track", "userId": c, "event": "Checkout Started",
                    "timestamp": t + i * 1000, "properties": {"phase": "purchase", "touchpoint": "checkout"}})
        if progress:
            out.append({"messageId": c + "-l", "type": "track", "userId": c, "event": "Order Delivered",
                        "timestamp": t + i * 1000 + 10000, "properties": {"phase": "loyalty", "touchpoint": "delivery"}})
    return out


class DropoffAlertTest(AlertBase):
    """The drop-off rate in purchase (counted since the start) jumps when 100
    journeys drop off after 100 moved on (0.5 > 0.4: firing), and comes back
    when 200 more move on (100 / 400 = 0.25 < 0.3: resolved)."""
    RULES = """alerts:
  - name: purchase-dropoff
    metric: dropoff_rate
    phase: purchase
    op: ">"
    threshold: 0.4
    resolve: 0.3
    min_n: 50
"""

    def test_dropoff_jumps_and_recovers(self):
        firing, resolved = self.jump_and_recover()
        # fired by the first snapshot above 0.4: at the latest with all 100
        # dropped (100 / 200), at the earliest with 67 (67 / 167)
        self.assertEqual(firing["rule"], "purchase-dropoff")
        self.assertGreaterEqual(firing["n"], 167)
        self.assertLessEqual(firing["n"], 200)
        self.assertEqual(firing["value"], (firing["n"] - 100) / firing["n"])
        # resolved by the first snapshot that had the rate below 0.3: after
        # 134 of the 200 (100 / 334), or later if the batches were bigger
        self.assertGreaterEqual(resolved["n"], 334)
        self.assertLessEqual(resolved["n"], 400)
        self.assertEqual(resolved["value"], 100 / resolved["n"])
        purchase = jdtest.metrics(self.cfg)["funnel"][0]["phases"][2]
        self.assertEqual((purchase["dropped"], purchase["progressed"]), (100, 300))
        self.assertEqual(firing["alerts"][0]["labels"]["metric"], "dropoff_rate")
        self.assertEqual(firing["alerts"][0]["labels"]["window"], "all")



class WindowedDropoffAlertTest(AlertBase):
    """The same stream, watched over the 1h funnel window (5 min buckets):
    at watermark 195 min the window holds 140..200 min, so the 100 drop-offs
    (deadlines 180..182 min) are all it has, and not the 100 journeys that
    moved on at 0..2 min: 1.0 > 0.8, firing. At watermark 240 min it holds
    185..245 min: the 200 journeys that moved on at 240..244 min, none of
    the drop-offs: 0 < 0.5, resolved."""
    RULES = """alerts:
  - name: purchase-dropoff-1h
    metric: dropoff_rate
    phase: purchase
    window: 60m
    op: ">"
    threshold: 0.8
    resolve: 0.5
    min_n: 50
"""

    def test_dropoff_over_a_window_jumps_and_recovers(self):
        firing, resolved = self.jump_and_recover()
        # only drop-offs in the window: 1.0 from the first 50 of them on
        self.assertEqual(firing["value"], 1.0)
        self.assertGreaterEqual(firing["n"], 50)
        self.assertLessEqual(firing["n"], 100)
        self.assertEqual(firing["alerts"][0]["labels"]["window"], "1h")
        # no drop-off left in the window, and at least min_n moved on
        self.assertEqual(resolved["value"], 0.0)
        self.assertGreaterEqual(resolved["n"], 50)
        self.assertLessEqual(resolved["n"], 200)
        purchase = jdtest.metrics(self.cfg)["funnel"][0]["phases"][2]
        self.assertEqual((purchase["dropped"], purchase["progressed"]), (100, 300))
        self.assertEqual(purchase["windows"]["1h"], {"reached": 200, "progressed": 200, "dropped": 0, "completed": 0,
                                                     "dropoff_rate": 0.0, "conversion": 1.0})



class JourneyScopeAlertTest(AlertBase):
    """A rule on the journey-scope CSAT of purchase (scope: journey) fires
    on journey answers only: touchpoint answers of 1 leave it alone, journey
    answers of 1 fire it (0 %), journey answers of 5 an hour later resolve
    it (100 %); its messages say scope journey."""
    RULES = """satisfaction:
  min_n: 5
alerts:
  - name: journey-csat
    metric: csat
    phase: purchase
    window: 1h
    scope: journey
    op: "<"
    threshold: 50
    resolve: 70
"""

    def test_journey_scope_fires_and_resolves(self):
        d = jdtest.Daemon(self.cfg)
        self.feed(answers(0, [1] * 10, T0), T0 + 20 * MIN)  # touchpoint scope: not this rule's
        jdtest.wait_committed(self.prefix, self.topic, 1, timeout=60, proc=d.proc)
        self.read(1.5)
        self.assertEqual(self.msgs, [])
        self.feed(answers(100, [1] * 10, T0 + 30 * MIN, "journey"), T0 + 50 * MIN)
        self.assertTrue(self.read(60, lambda: any(s == "firing" for s, _ in self.statuses())), d.logtext()[-3000:])
        self.feed(answers(200, [5] * 10, T0 + 120 * MIN, "journey"), T0 + 145 * MIN)
        self.assertTrue(self.read(60, lambda: any(s == "resolved" for s, _ in self.statuses())), d.logtext()[-3000:])
        self.read(1)
        self.assertEqual(d.stop(), 0)
        firing, resolved = self.episode()
        self.assertEqual((firing["value"], firing["n"]), (0, 10))
        self.assertEqual((resolved["value"], resolved["n"]), (100, 10))
        self.assertEqual(firing["alerts"][0]["labels"]["scope"], "journey")


if __name__ == "__main__":
    unittest.main(verbosity=2)
