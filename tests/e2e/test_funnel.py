"""Drop-off and the funnel (SPEC §5, §6) end to end.

FunnelTest: the generator writes at least 200,000 events (duplicates,
out-of-order delivery within the allowed lateness, anonymous customers
identified later, invalid events, customers who come back for another
journey) into Kafka, ending with a heartbeat per partition that lets every
timeout fire. journeyd runs over it once cleanly and once killed with SIGKILL
several times; both snapshots must be identical and every funnel count and
every drop-off-by-touchpoint count must equal the simulation's truth.

LiveTest: traffic stamped with the wall clock, then silence: the drop-offs
and completions must still fire, by wall clock, after their timeouts, and not
before."""
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

import msgpack

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jdtest  # noqa: E402

PARTITIONS = 6
CUSTOMERS = int(os.environ.get("JD_FUNNEL_CUSTOMERS", "19000"))
KILLS = int(os.environ.get("JD_FUNNEL_KILLS", "3"))
PHASES = ["search", "information", "purchase", "loyalty"]
TIMEOUTS = [30 * 60000, 3 * 86400000, 2 * 3600000, 28 * 86400000]  # the default phases
# the funnel's windows: 365d holds every outcome, the others part of them
WINDOWS = {"30d": 30 * 86400000, "144d": 144 * 86400000, "365d": 365 * 86400000}
WINDOWS_CONFIG = "metrics:\n  windows: [30d, 144d, 365d]\n  buckets_per_window: 12\n"


metrics = jdtest.metrics


def funnel_of(doc, segment="all"):
    return {p["phase"]: p for p in next(f for f in doc["funnel"] if f["segment"] == segment)["phases"]}


class FunnelTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.topic, cls.dlq = jdtest.unique("funnel"), jdtest.unique("funnel-dlq")
        jdtest.create_topic(cls.topic, PARTITIONS)
        jdtest.create_topic(cls.dlq, 1)
        d = tempfile.mkdtemp(prefix="jd-funnel-")
        cls.tpath = os.path.join(d, "truth.json")
        cls.jpath = os.path.join(d, "journeys.ndjson")
        r = subprocess.run([jdtest.JOURNEYCTL, "gen", "--seed", "11", "--customers", str(CUSTOMERS),
                            "--topic", cls.topic, "--brokers", jdtest.BROKERS,
                            "--dup-rate", "0.02", "--ooo-rate", "0.05", "--anon-rate", "0.2",
                            "--invalid-rate", "0.01", "--return-rate", "0.1", "--truth", cls.tpath,
                            "--journeys", cls.jpath],
                           capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(r.stderr)
        with open(cls.tpath) as f:
            cls.truth = json.load(f)
        cls.total = sum(jdtest.high_watermarks(cls.topic, PARTITIONS).values())
        cls.prefixes = []
        # clean run
        prefix, group = jdtest.unique("fclean"), jdtest.unique("g")
        cls.prefixes.append(prefix)
        cls.clean = jdtest.static_config(cls.topic, cls.dlq, prefix, group, WINDOWS_CONFIG)
        dmn = jdtest.Daemon(cls.clean)
        jdtest.wait_committed(prefix, cls.topic, PARTITIONS, timeout=300, proc=dmn.proc)
        assert dmn.stop() == 0
        cls.snap = metrics(cls.clean)

    @classmethod
    def tearDownClass(cls):
        jdtest.drop_prefix(*cls.prefixes)
        jdtest.delete_topics(cls.topic, cls.dlq)

    def test_the_run_is_big_and_dirty(self):
        t = self.truth
        self.assertGreaterEqual(t["messages"], 200000)
        self.assertGreater(t["duplicates"], 0)
        self.assertGreater(t["out_of_order"], 0)
        self.assertGreater(t["invalid"], 0)
        self.assertGreater(t["identifies"], 0)
        self.assertGreater(t["journeys"], CUSTOMERS)  # some came back

    def test_funnel_equals_the_truth(self):
        got = funnel_of(self.snap)
        first = self.truth["phases"]["search"]["reached"]
        for ph in PHASES:
            want = self.truth["phases"][ph]
            g = got[ph]
            for k in ("reached", "progressed", "dropped", "completed"):
                self.assertEqual(g[k], want[k], "%s %s" % (ph, k))
            self.assertEqual(g["active"], 0, ph)  # every timeout fired
            done = want["dropped"] + want["progressed"] + want["completed"]
            self.assertAlmostEqual(g["dropoff_rate"], round(want["dropped"] / done, 6), places=6)
            self.assertAlmostEqual(g["conversion"], round(want["reached"] / first, 6), places=6)

    def test_windowed_funnel_equals_the_truth(self):
        """Each outcome counts in a window by the event time it happened at
        (reached: entering the phase; progressed: entering the next;
        dropped, completed: the deadline), in buckets of window / 12, the
        window holding the bucket of the watermark and the 11 before it."""
        wm = jdtest.parse_time(self.snap["complete_to"])
        got = funnel_of(self.snap)
        self.assertEqual([w["window"] for w in self.snap["funnel_windows"]], list(WINDOWS))
        want = {w: {ph: {k: 0 for k in ("reached", "progressed", "dropped", "completed")} for ph in PHASES}
                for w in WINDOWS}

        def count(ph, kind, ts):
            for w, length in WINDOWS.items():
                res = length // 12
                if wm // res - 11 <= ts // res <= wm // res:
                    want[w][ph][kind] += 1

        with open(self.jpath) as f:
            for line in f:
                j = json.loads(line)
                entered = [jdtest.parse_time(j["phase_entered"][ph]) for ph in PHASES if ph in j["phase_entered"]]
                for k, ts in enumerate(entered):
                    count(PHASES[k], "reached", ts)
                    if k + 1 < len(entered):
                        count(PHASES[k], "progressed", entered[k + 1])
                if entered and j["outcome"] != "in_progress":
                    k = len(entered) - 1
                    count(PHASES[k], j["outcome"], j["last_ts"] + TIMEOUTS[k])
        for w in WINDOWS:
            for ph in PHASES:
                self.assertEqual({k: got[ph]["windows"][w][k] for k in want[w][ph]}, want[w][ph], (w, ph))
        for ph in PHASES:  # 365d holds everything
            for k in ("reached", "progressed", "dropped", "completed"):
                self.assertEqual(got[ph]["windows"]["365d"][k], got[ph][k], (ph, k))
        # the run's events span two days some 145 days before its last
        # heartbeat: the 144d window ends among them
        self.assertGreater(got["search"]["windows"]["144d"]["reached"], 0)
        self.assertLess(got["search"]["windows"]["144d"]["reached"], got["search"]["reached"])

    def test_dropoff_points_equal_the_truth(self):
        got = funnel_of(self.snap)
        for ph in PHASES:
            points = {p["touchpoint"]: p["dropped"] for p in got[ph]["dropoff_points"]}
            self.assertEqual(points, self.truth["dropoff_by_touchpoint"][ph], ph)

    def test_segments_add_up(self):
        segs = [f for f in self.snap["funnel"] if f["segment"] != "all"]
        self.assertEqual(sorted(f["segment"] for f in segs),
                         ["consumer", "enterprise", "smb", "student"])
        total = funnel_of(self.snap)
        for ph in PHASES:
            for k in ("reached", "progressed", "dropped", "completed", "active"):
                self.assertEqual(sum(funnel_of(self.snap, f["segment"])[ph][k] for f in segs),
                                 total[ph][k], "%s %s" % (ph, k))
        # the CLI's segment filter shows the same numbers
        one = json.loads(jdtest.journeyctl(self.clean, "funnel", "--segment", "smb", "--json").stdout)
        self.assertEqual([f["segment"] for f in one["funnel"]], ["smb"])
        self.assertEqual(funnel_of(one, "smb"), funnel_of(self.snap, "smb"))

    def test_time_in_phase(self):
        got = funnel_of(self.snap)
        for ph in PHASES[:-1]:
            tip = got[ph]["time_in_phase"]
            # every journey that moved on, but those that skipped the phase
            progressed = self.truth["phases"][ph]["progressed"]
            self.assertLessEqual(tip["n"], progressed, ph)
            self.assertGreater(tip["n"], progressed * 0.9, ph)
            self.assertLessEqual(tip["median_s"], tip["p90_s"], ph)
        self.assertEqual(got["loyalty"]["time_in_phase"]["n"], 0)
        # the generator's search phase: ~3 touchpoints ~45 s apart, capped at 10 min
        self.assertLess(got["search"]["time_in_phase"]["p90_s"], 3600)

    def test_text_funnel(self):
        out = jdtest.journeyctl(self.clean, "funnel").stdout
        got = funnel_of(self.snap)
        self.assertIn("segment all", out)
        line = next(l for l in out.splitlines() if l.strip().startswith("purchase"))
        self.assertIn(" %d " % got["purchase"]["reached"], line)
        self.assertIn("drop-off after: cart", out)
        # over a window: its counts, no drop-off points (those are since the start)
        out = jdtest.journeyctl(self.clean, "funnel", "--window", "144d").stdout
        self.assertIn("window 144d (12 buckets of 12d00h00m)", out)
        line = next(l for l in out.splitlines() if l.strip().startswith("search"))
        self.assertIn(" %d " % got["search"]["windows"]["144d"]["reached"], line)
        self.assertIn(" %d " % got["search"]["windows"]["144d"]["dropped"], line)
        self.assertNotIn("drop-off after", out)
        r = subprocess.run([jdtest.JOURNEYCTL, "-c", self.clean, "funnel", "--window", "2h"], capture_output=True,
                           text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown window '2h' (metrics.windows: 30d 144d 365d)", r.stderr)

    def test_kill9_restarts_give_the_identical_snapshot(self):
        prefix, group = jdtest.unique("fcrash"), jdtest.unique("g")
        self.prefixes.append(prefix)
        cfg = jdtest.static_config(self.topic, self.dlq, prefix, group, WINDOWS_CONFIG)
        jdtest.run_with_kills(self, cfg, prefix, self.topic, PARTITIONS, self.total, KILLS, 7)
        a, b = dict(self.snap), metrics(cfg)
        for d in (a, b):  # when it was read, and idle advance by wall clock
            d.pop("computed_at")
            d.pop("complete_to")
            # finite satisfaction windows end at complete_to (test_satisfaction checks them)
            d["satisfaction"]["series"] = [x for x in d["satisfaction"]["series"] if x["window"] == "all"]
        self.assertEqual(a, b)


LIVE_RULES = """  idle_advance: 100ms
journey:
  allowed_lateness: 200ms
phases:
  - name: search
    timeout: 3s
  - name: information
    timeout: 3s
  - name: purchase
    timeout: 3s
  - name: loyalty
    timeout: 2s
rules:
  - match: {event: Products Searched}
    phase: search
    touchpoint: search_engine
  - match: {event: Product Viewed}
    phase: information
    touchpoint: company_site
  - match: {event: Order Completed}
    phase: purchase
    touchpoint: web_shop
  - match: {event: Order Delivered}
    phase: loyalty
    touchpoint: delivery
"""


class LiveTest(unittest.TestCase):
    def setUp(self):
        self.topic, self.dlq = jdtest.unique("live"), jdtest.unique("live-dlq")
        self.prefix = jdtest.unique("live")
        jdtest.create_topic(self.topic, 2)
        jdtest.create_topic(self.dlq, 1)
        # (LIVE_RULES continues the processing section write_config ends with)
        self.cfg = jdtest.write_config(self.topic, self.dlq, self.prefix, jdtest.unique("g"),
                                       LIVE_RULES)

    def tearDown(self):
        jdtest.drop_prefix(self.prefix)
        jdtest.delete_topics(self.topic, self.dlq)

    def send(self, p, user, event, i):
        now = int(time.time() * 1000)
        ev = {"messageId": "%s-%d" % (user, i), "type": "track", "event": event, "userId": user,
              "timestamp": now, "properties": {}, "traits": {"segment": "smb"}}
        p.send(self.topic, json.dumps(ev).encode(), key=user.encode())

    def test_dropoffs_fire_by_wall_clock_when_traffic_stops(self):
        d = jdtest.Daemon(self.cfg)
        try:
            p = jdtest.Producer1()
            self.send(p, "walker", "Products Searched", 1)        # drops off in search
            self.send(p, "buyer", "Products Searched", 1)         # goes all the way
            self.send(p, "buyer", "Product Viewed", 2)
            self.send(p, "buyer", "Order Completed", 3)
            self.send(p, "buyer", "Order Delivered", 4)
            self.send(p, "browser", "Product Viewed", 1)           # drops off in information
            sent = time.time()
            p.close()
            # in progress: reached, active, nothing dropped while the timeouts are open
            deadline = time.time() + 30
            while time.time() < deadline:
                f = funnel_of(metrics(self.cfg))
                if f["search"]["reached"] == 3 and f["loyalty"]["active"] == 1:
                    break
                time.sleep(0.05)
            self.assertLess(time.time() - sent, 1.9, "the events took too long to apply")
            self.assertEqual([f[ph]["active"] for ph in PHASES], [1, 1, 0, 1])
            self.assertEqual([f[ph]["dropped"] + f[ph]["completed"] for ph in PHASES], [0, 0, 0, 0])
            # then silence: no event, no heartbeat; the wall clock closes them
            deadline = time.time() + 30
            while time.time() < deadline:
                f = funnel_of(metrics(self.cfg))
                if f["search"]["dropped"] + f["information"]["dropped"] + f["loyalty"]["completed"] == 3:
                    break
                time.sleep(0.1)
            waited = time.time() - sent
            self.assertEqual([f[ph]["reached"] for ph in PHASES], [3, 2, 1, 1])
            # "browser" entered in information: it reached and moved on from search too
            self.assertEqual([f[ph]["progressed"] for ph in PHASES], [2, 1, 1, 0])
            self.assertEqual([f[ph]["dropped"] for ph in PHASES], [1, 1, 0, 0])
            self.assertEqual([f[ph]["completed"] for ph in PHASES], [0, 0, 0, 1])
            self.assertEqual([f[ph]["active"] for ph in PHASES], [0, 0, 0, 0])
            self.assertEqual(f["search"]["dropoff_points"], [{"touchpoint": "search_engine", "dropped": 1}])
            self.assertEqual(f["information"]["dropoff_points"], [{"touchpoint": "company_site", "dropped": 1}])
            # timeout 3 s + lateness 0.2 s, detected within a few idle ticks
            self.assertGreaterEqual(waited, 3.2)
            self.assertLess(waited, 10)
            j = json.loads(jdtest.journeyctl(self.cfg, "journey", "walker", "--json").stdout)
            self.assertEqual((j["status"], j["phase"], j["journey"]), ("dropped", "search", 1))
            # closing it wrote nothing to the journey: it is stored open, with a
            # deadline its partition's closed-through mark has passed (which
            # holds across a restart)
            r = jdtest.redis_client()
            keys = list(r.scan_iter("%s:*:j:walker" % self.prefix))
            self.assertEqual(len(keys), 1)
            blob = msgpack.unpackb(r.get(keys[0]))
            part = keys[0].decode().split("{")[1].split("}")[0]
            stats = json.loads(jdtest.journeyctl(self.cfg, "stats", "--json").stdout)
            mark = [x["counters"]["closed_through"] for x in stats["partitions"] if x["partition"] == part][0]
            self.assertEqual((len(blob), blob[0], blob[19]), (25, 5, 0))
            self.assertLessEqual(blob[22], mark)
            self.assertEqual(d.stop(), 0)
            d = jdtest.Daemon(self.cfg)
            # the customer's next event starts journey 2
            p = jdtest.Producer1()
            self.send(p, "walker", "Products Searched", 2)
            p.close()
            deadline = time.time() + 10
            while time.time() < deadline:
                j = json.loads(jdtest.journeyctl(self.cfg, "journey", "walker", "--json").stdout)
                if j["journey"] == 2:
                    break
                time.sleep(0.05)
            self.assertEqual((j["status"], j["phase"], j["journey"], j["events"]), ("in_progress", "search", 2, 1))
            f = funnel_of(metrics(self.cfg))
            self.assertEqual((f["search"]["reached"], f["search"]["active"]), (4, 1))
        finally:
            self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
