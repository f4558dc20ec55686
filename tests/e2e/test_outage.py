"""End-to-end: Redis goes away in the middle of consumption and comes back;
journeyd pauses, retries, never skips, and ends with exactly the state of a
run without the outage (SPEC §8: nothing lost, exactly-once effect)."""
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jdtest  # noqa: E402

PARTITIONS = 4
REDIS_SH = os.path.join(jdtest.SRC, "deploy", "local", "redis.sh")


def committed_total(prefix, topic):
    return sum(max(v, 0) for v in jdtest.redis_offsets(prefix, topic, PARTITIONS).values())


class OutageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.topic, cls.dlq = jdtest.unique("outage"), jdtest.unique("outage-dlq")
        jdtest.create_topic(cls.topic, PARTITIONS)
        jdtest.create_topic(cls.dlq, 1)
        cls.prefixes = []

    @classmethod
    def tearDownClass(cls):
        subprocess.run([REDIS_SH, "start"], capture_output=True)
        jdtest.drop_prefix(*cls.prefixes)
        jdtest.delete_topics(cls.topic, cls.dlq)

    def config(self, name):
        prefix = jdtest.unique(name)
        self.prefixes.append(prefix)
        path = jdtest.write_config(self.topic, self.dlq, prefix, jdtest.unique("g"),
                                   "  batch_max_events: 500\n")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:  # bounded back-off, so the test does not wait long
            f.write(text.replace("processing:\n", "processing:\n  retry_backoff_max: 300ms\n", 1))
        return path, prefix

    def test_redis_outage_loses_nothing(self):
        # journeyd consumes a live stream (open loop, 20,000 events/s for 4 s);
        # Redis is shut down for 2 s in the middle of it
        path, prefix = self.config("outage")
        d = jdtest.Daemon(path)
        time.sleep(1)
        gen = subprocess.Popen([jdtest.JOURNEYCTL, "gen", "--seed", "9", "--customers", "8000",
                                "--events", "80000", "--rate", "20000", "--topic", self.topic,
                                "--brokers", jdtest.BROKERS, "--dup-rate", "0.02", "--anon-rate", "0.2",
                                "--invalid-rate", "0.01"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60       # until journeyd has committed part of the stream
        while committed_total(prefix, self.topic) < 5000 and time.time() < deadline:
            time.sleep(0.01)
        self.assertGreater(committed_total(prefix, self.topic), 0)
        subprocess.run(["redis-cli", "-p", str(jdtest.REDIS_PORT), "shutdown"], capture_output=True)
        time.sleep(2)                       # journeyd keeps running without Redis
        self.assertIsNone(d.proc.poll(), d.logtext()[-2000:])
        subprocess.run([REDIS_SH, "start"], check=True, capture_output=True)
        self.assertIn(gen.wait(120), (0, 3))  # 3: fell behind its schedule, which is fine here
        self.total = sum(jdtest.high_watermarks(self.topic, PARTITIONS).values())
        jdtest.wait_committed(prefix, self.topic, PARTITIONS, timeout=300, proc=d.proc)
        self.assertEqual(d.stop(), 0)
        self.assertIn("msg=\"retrying\"", d.logtext())

        # the same topic, read again without any outage
        clean, cprefix = self.config("clean")
        c = jdtest.Daemon(clean)
        jdtest.wait_committed(cprefix, self.topic, PARTITIONS, timeout=300, proc=c.proc)
        self.assertEqual(c.stop(), 0)

        a = jdtest.journeyctl(clean, "dump").stdout.splitlines()
        b = jdtest.journeyctl(path, "dump").stdout.splitlines()
        self.assertGreater(len(a), 1000)
        self.assertEqual(a, b)
        sa, sb = jdtest.stats_without_clock(clean), jdtest.stats_without_clock(path)
        self.assertEqual(sa, sb)
        self.assertEqual(sa["total"]["consumed"], self.total)


if __name__ == "__main__":
    unittest.main(verbosity=2)
