"""Crash test: kill -9 journeyd at several random points while it consumes
200,000 generated events, restart it each time; the final Redis state (every
journey, every redirect, every counter, every offset) must equal that of a
run without crashes over the same topic."""
import json
import os
import random
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jdtest  # noqa: E402

PARTITIONS = 12
EVENTS = int(os.environ.get("JD_CRASH_EVENTS", "200000"))
KILLS = int(os.environ.get("JD_CRASH_KILLS", "5"))
SEED = int(os.environ.get("JD_CRASH_SEED", "20261124"))


def config_for(topic, dlq, prefix, group):
    """Static membership (group.instance.id): a restarted daemon takes its
    partitions back at once instead of waiting for the killed member's
    session to expire."""
    path = jdtest.write_config(topic, dlq, prefix, group)
    with open(path) as f:
        text = f.read()
    text = text.replace("kafka:\n", "kafka:\n  group.instance.id: \"%s-1\"\n"
                        "  session.timeout.ms: \"6000\"\n" % group, 1)
    with open(path, "w") as f:
        f.write(text)
    return path


def committed_total(prefix, topic):
    return sum(max(v, 0) for v in jdtest.redis_offsets(prefix, topic, PARTITIONS).values())


class CrashTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.topic = jdtest.unique("crash")
        cls.dlq = jdtest.unique("crash-dlq")
        jdtest.create_topic(cls.topic, PARTITIONS)
        jdtest.create_topic(cls.dlq, 1)
        r = subprocess.run([jdtest.JOURNEYCTL, "gen", "--seed", "42", "--customers", "20000",
                            "--events", str(EVENTS), "--topic", cls.topic,
                            "--brokers", jdtest.BROKERS, "--dup-rate", "0.02",
                            "--ooo-rate", "0.05", "--anon-rate", "0.2", "--invalid-rate", "0.01"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("gen failed: %s" % r.stderr)
        cls.total = sum(jdtest.high_watermarks(cls.topic, PARTITIONS).values())
        cls.prefixes = []

    @classmethod
    def tearDownClass(cls):
        jdtest.drop_prefix(*cls.prefixes)
        jdtest.delete_topics(cls.topic, cls.dlq)

    def run_clean(self):
        prefix, group = jdtest.unique("clean"), jdtest.unique("g")
        self.prefixes.append(prefix)
        cfg = config_for(self.topic, self.dlq, prefix, group)
        d = jdtest.Daemon(cfg)
        jdtest.wait_committed(prefix, self.topic, PARTITIONS, timeout=300, proc=d.proc)
        self.assertEqual(d.stop(), 0)
        return cfg

    def run_crashing(self):
        prefix, group = jdtest.unique("crashy"), jdtest.unique("g")
        self.prefixes.append(prefix)
        cfg = config_for(self.topic, self.dlq, prefix, group)
        rnd = random.Random(SEED)
        points = sorted(rnd.uniform(0.05, 0.95) * self.total for _ in range(KILLS))
        kills = []
        for point in points:
            # every incarnation must make progress before it dies, and dies at
            # a random moment, usually with a batch in flight
            before = committed_total(prefix, self.topic)
            d = jdtest.Daemon(cfg)
            deadline = time.time() + 300
            while time.time() < deadline:
                now = committed_total(prefix, self.topic)
                if now >= point and now > before:
                    break
                if d.proc.poll() is not None:
                    self.fail("journeyd exited early: %s" % d.logtext()[-2000:])
                time.sleep(0.002)
            time.sleep(rnd.uniform(0, 0.03))
            d.kill9()
            kills.append(committed_total(prefix, self.topic))
        d = jdtest.Daemon(cfg)
        jdtest.wait_committed(prefix, self.topic, PARTITIONS, timeout=300, proc=d.proc)
        self.assertEqual(d.stop(), 0)
        print("killed at committed offsets %s of %d" % (kills, self.total), file=sys.stderr)
        # every incarnation advanced, and the kills happened mid-stream
        self.assertEqual(len(set(kills)), KILLS, kills)
        self.assertTrue(all(0 < k < self.total for k in kills), kills)
        return cfg

    def test_crashes_leave_identical_state(self):
        clean = self.run_clean()
        crashy = self.run_crashing()
        a = jdtest.journeyctl(clean, "dump").stdout.splitlines()
        b = jdtest.journeyctl(crashy, "dump").stdout.splitlines()
        self.assertGreater(len(a), 1000)
        self.assertEqual(len(a), len(b))
        for x, y in zip(a, b):
            self.assertEqual(x, y)
        sa = json.loads(jdtest.journeyctl(clean, "stats", "--json").stdout)
        sb = json.loads(jdtest.journeyctl(crashy, "stats", "--json").stdout)
        for s in (sa, sb):  # event time advanced while idle depends on wall time
            for p in s["partitions"]:
                p["counters"].pop("clock")
        self.assertEqual(sa, sb)
        self.assertEqual(sa["total"]["consumed"], self.total)
        self.assertGreater(sa["total"]["duplicate"], 0)
        self.assertGreater(sa["total"]["deadletter"], 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
