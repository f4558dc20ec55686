"""journeyd over HTTP (issue #6) end to end: /healthz, /readyz and /metrics of
the real daemon. The page parses with the strict parser (promtext.py) and
`promtool check metrics`; its counters and journey gauges equal what
`journeyctl` reads from Redis; /readyz turns unready, with the reason, while
Redis is stopped, and ready again once it is back."""
import json
import os
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jdtest  # noqa: E402
import promtext  # noqa: E402

PARTITIONS = 3
REDIS_SH = os.path.join(jdtest.SRC, "deploy", "local", "redis.sh")


def get(port, path):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def wait_for(fn, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.2)
    return fn()


def sample(fams, family, **labels):
    vals = [v for (n, l, v) in fams[family]["samples"] if all(l.get(k) == x for k, x in labels.items())]
    return vals[0] if len(vals) == 1 else None


class HttpTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.topic, cls.dlq = jdtest.unique("http"), jdtest.unique("http-dlq")
        jdtest.create_topic(cls.topic, PARTITIONS)
        jdtest.create_topic(cls.dlq, 1)
        r = subprocess.run([jdtest.JOURNEYCTL, "gen", "--seed", "4", "--customers", "500", "--topic", cls.topic,
                            "--brokers", jdtest.BROKERS, "--invalid-rate", "0.02"], capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(r.stderr)
        cls.total = sum(jdtest.high_watermarks(cls.topic, PARTITIONS).values())
        cls.prefix = jdtest.unique("http")
        cls.cfg = jdtest.write_config(cls.topic, cls.dlq, cls.prefix, jdtest.unique("g"),
                                      "  retry_backoff_max: 300ms\n  idle_advance: 1h\n"
                                      "output:\n  publish_interval: 100ms\n"
                                      "metrics:\n  windows: [365d]\n")
        cls.port = jdtest.HTTP_PORTS[cls.cfg]
        cls.d = jdtest.Daemon(cls.cfg)
        jdtest.wait_committed(cls.prefix, cls.topic, PARTITIONS, timeout=120, proc=cls.d.proc)

    @classmethod
    def tearDownClass(cls):
        subprocess.run([REDIS_SH, "start"], capture_output=True)
        cls.d.stop()
        jdtest.drop_prefix(cls.prefix)
        jdtest.delete_topics(cls.topic, cls.dlq)

    def page(self):
        status, ctype, body = get(self.port, "/metrics")
        self.assertEqual(status, 200)
        self.assertEqual(ctype, "text/plain; version=0.0.4; charset=utf-8")
        return body

    def test_1_health_and_readiness(self):
        status, _, body = get(self.port, "/healthz")
        self.assertEqual((status, body), (200, "ok\n"))
        self.assertTrue(wait_for(lambda: get(self.port, "/readyz")[0] == 200))
        self.assertEqual(get(self.port, "/readyz")[2], "ready\n")
        self.assertEqual(get(self.port, "/nothing")[0], 404)

    def test_2_metrics_parse_and_equal_redis(self):
        # once the publisher has read the final state, the page holds it
        want = jdtest.metrics(self.cfg)
        reached = {p["phase"]: p["reached"] for p in want["funnel"][0]["phases"]}

        def settled():
            fams = promtext.parse(self.page())
            ok = "journeyd_funnel_journeys" in fams and all(
                sample(fams, "journeyd_funnel_journeys", phase=ph, segment="all", state="reached") == n
                for ph, n in reached.items())
            return fams if ok else None
        fams = wait_for(settled)
        self.assertIsNotNone(fams, self.page()[-3000:])
        text = self.page()
        promtext.parse(text)
        if promtext.PROMTOOL:
            promtext.promtool_check(text)
        stats = json.loads(jdtest.journeyctl(self.cfg, "stats", "--json").stdout)["total"]
        self.assertEqual(sample(fams, "journeyd_messages_consumed_total"), self.total)
        self.assertEqual(sample(fams, "journeyd_events_total", outcome="applied"), stats["applied"])
        self.assertEqual(sample(fams, "journeyd_events_total", outcome="deadletter"), stats["deadletter"])
        self.assertGreater(stats["deadletter"], 0)
        dl = sum(v for (n, l, v) in fams["journeyd_deadlettered_total"]["samples"])
        self.assertEqual(dl, stats["deadletter"])
        self.assertEqual(sample(fams, "journeyd_partitions_assigned"), PARTITIONS)
        for p in range(PARTITIONS):
            self.assertEqual(sample(fams, "journeyd_consumer_lag", partition="%s:%d" % (self.topic, p)), 0)
        self.assertEqual(fams["journeyd_batch_seconds"]["type"], "histogram")
        self.assertEqual(sample(fams, "journeyd_ready"), 1)
        # the funnel over its window (365d: every outcome so far)
        for p in want["funnel"][0]["phases"]:
            w = p["windows"]["365d"]
            for state in ("reached", "progressed", "dropped", "completed"):
                self.assertEqual(sample(fams, "journeyd_funnel_window_journeys", phase=p["phase"], segment="all",
                                        window="365d", state=state), w[state], (p["phase"], state))
                self.assertEqual(w[state], p[state])
            if w["dropoff_rate"] is not None:
                self.assertAlmostEqual(sample(fams, "journeyd_funnel_window_dropoff_rate", phase=p["phase"],
                                              segment="all", window="365d"), w["dropoff_rate"], places=6)
        # satisfaction gauges: the all-time N of each phase with answers
        for s in want["satisfaction"]["series"]:
            if s["breakdown"] != "all" or s["window"] != "all":
                continue
            for metric in ("nps", "csat", "ces"):
                n = s["touchpoint_scope"][metric]["n"]
                if n:
                    self.assertEqual(sample(fams, "journeyd_satisfaction_responses", phase=s["phase"], window="all",
                                            scope="touchpoint", metric=metric), n)

    def test_3_unready_while_redis_is_stopped(self):
        subprocess.run(["redis-cli", "-p", str(jdtest.REDIS_PORT), "shutdown"], capture_output=True)
        try:
            got = wait_for(lambda: get(self.port, "/readyz")[0] == 503, timeout=15)
            self.assertTrue(got)
            self.assertEqual(get(self.port, "/readyz")[2], "not ready: redis unavailable\n")
            self.assertEqual(get(self.port, "/healthz")[0], 200)  # alive all the same
            self.assertIsNone(self.d.proc.poll())
        finally:
            subprocess.run([REDIS_SH, "start"], check=True, capture_output=True)
        self.assertTrue(wait_for(lambda: get(self.port, "/readyz")[0] == 200, timeout=30))


if __name__ == "__main__":
    unittest.main(verbosity=2)
