"""Crash test: kill -9 journeyd at several random points while it consumes
200,000 generated events, restart it each time; the final Redis state (every
journey, every redirect, every counter, every offset) must equal that of a
run without crashes over the same topic. The crashing run also keeps no close
record (processing.close_records: 0), so every journey it closes is read from
Redis, while the clean run closes most from their records: both paths must
give the same state."""
import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jdtest  # noqa: E402

PARTITIONS = 12
EVENTS = int(os.environ.get("JD_CRASH_EVENTS", "200000"))
KILLS = int(os.environ.get("JD_CRASH_KILLS", "5"))
SEED = int(os.environ.get("JD_CRASH_SEED", "20261124"))


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
        cfg = jdtest.static_config(self.topic, self.dlq, prefix, group)
        d = jdtest.Daemon(cfg)
        jdtest.wait_committed(prefix, self.topic, PARTITIONS, timeout=300, proc=d.proc)
        self.assertEqual(d.stop(), 0)
        used = re.search(r"closed_by_record=(\d+)", d.logtext().split("msg=\"stopped\"")[-1])
        self.assertGreater(int(used.group(1)), 1000)  # the record path is what this run took
        return cfg

    def run_crashing(self):
        prefix, group = jdtest.unique("crashy"), jdtest.unique("g")
        self.prefixes.append(prefix)
        cfg = jdtest.static_config(self.topic, self.dlq, prefix, group, "  close_records: 0\n")
        jdtest.run_with_kills(self, cfg, prefix, self.topic, PARTITIONS, self.total, KILLS, SEED)
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
        sa, sb = jdtest.stats_without_clock(clean), jdtest.stats_without_clock(crashy)
        self.assertEqual(sa, sb)
        self.assertEqual(sa["total"]["consumed"], self.total)
        self.assertGreater(sa["total"]["duplicate"], 0)
        self.assertGreater(sa["total"]["deadletter"], 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
