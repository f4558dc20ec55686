"""End-to-end: a known set of journeys through the real journeyd, Kafka and
Redis; every journey checked field by field, every dead-lettered message
checked byte by byte with its headers, every counter exact."""
import json
import os
import subprocess
import sys
import time
import unittest

import msgpack

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jdtest  # noqa: E402


def ev(mid, typ, ts, **kw):
    e = {"messageId": mid, "type": typ, "timestamp": ts}
    e.update(kw)
    return e


def js(e):
    return json.dumps(e).encode()


ALICE = [  # partition 0, JSON
    ev("a1", "track", "2026-01-05T10:00:00.000Z", userId="alice", event="Search Result Clicked",
       context={"channel": "web"}, traits={"segment": "consumer"}),
    ev("a2", "page", "2026-01-05T10:01:00.000Z", userId="alice",
       context={"channel": "web", "page": {"path": "/products/sku-1"}}),
    ev("a3", "track", "2026-01-05T10:03:00.000Z", userId="alice", event="Product Added",
       context={"channel": "web"}, properties={"sku": "sku-1", "price": 19.9}),
]
ALICE_OOO = ev("a4", "page", "2026-01-05T10:02:00.000Z", userId="alice",
               context={"channel": "web", "page": {"path": "/reviews/sku-1"}})
ALICE_SURVEY = ev("a5", "track", "2026-01-05T11:04:00.000+01:00", userId="alice",
                  event="Survey Answered",
                  properties={"metric": "nps", "score": 9, "touchpoint": "checkout"})

T0 = 1767607200000  # 2026-01-05T10:00:00Z in epoch ms (bob's events are 1 h later)
BOB = [  # partition 1, MessagePack
    ev("b1", "track", T0 + 3600000, anonymousId="anon-b", event="Ad Clicked",
       context={"channel": "app"}),
    ev("b2", "screen", T0 + 3900000, anonymousId="anon-b", name="Product Detail",
       context={"channel": "app"}),
    ev("b3", "identify", T0 + 4200000, anonymousId="anon-b", userId="bob",
       traits={"segment": "smb"}),
    ev("b4", "track", T0 + 4800000, userId="bob", event="Order Completed",
       context={"channel": "app"}),
    ev("b5", "track", T0 + 5400000, anonymousId="anon-b", event="Order Delivered",
       context={"channel": "web"}),
]

BAD_SYNTAX = b'{"messageId": "x1", "type": "track", oops'
BAD_SCORE = js(ev("x2", "track", "2026-01-05T12:00:00Z", userId="carol", event="Survey Answered",
                  properties={"metric": "nps", "score": 11}))
BAD_MISSING = js({"type": "track", "event": "Chat Started", "userId": "carol",
                  "timestamp": "2026-01-05T12:00:00Z"})
BAD_HUGE = b"\x81\xa4type\xdb\x40\x00\x00\x00track"  # declares a 1 GiB string
BAD_PHASE = js(ev("x5", "track", "2026-01-05T12:00:00Z", userId="carol", event="Chat Started",
                  properties={"phase": "checkout"}))
BAD_FUTURE = js(ev("x6", "track", "9999-01-01T00:00:00Z", userId="carol", event="Chat Started"))
CAROL = ev("c1", "track", "2026-01-05T12:05:00Z", userId="carol", event="Chat Started",
           context={"channel": "chat"})
HEARTBEAT = {"type": "heartbeat", "timestamp": T0 + 7200000}


class CoreTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.topic = jdtest.unique("events")
        cls.dlq = jdtest.unique("dlq")
        cls.prefix = jdtest.unique("e2e")
        jdtest.create_topic(cls.topic, 3)
        jdtest.create_topic(cls.dlq, 1)
        cls.group = jdtest.unique("g")
        cls.config = jdtest.write_config(cls.topic, cls.dlq, cls.prefix, cls.group)
        p = jdtest.Producer1()
        t = cls.topic
        cls.bad = []
        for e in ALICE:
            p.send(t, js(e), b"alice", 0)
        p.send(t, js(ALICE[1]), b"alice", 0)             # duplicate, same bytes
        p.send(t, js(ALICE_OOO), b"alice", 0)            # out of order, within lateness
        p.send(t, js(ALICE_SURVEY), b"alice", 0)
        cls.bad.append(("syntax", p.send(t, BAD_SYNTAX, b"alice", 0)))
        for e in BOB:
            p.send(t, msgpack.packb(e), b"bob", 1)
        p.send(t, msgpack.packb(HEARTBEAT), None, 1)
        cls.bad.append(("bad_score", p.send(t, BAD_SCORE, b"carol", 2)))
        cls.bad.append(("missing", p.send(t, BAD_MISSING, b"carol", 2)))
        cls.bad.append(("syntax", p.send(t, BAD_HUGE, b"carol", 2)))
        cls.bad.append(("unknown_phase", p.send(t, BAD_PHASE, b"carol", 2)))
        cls.bad.append(("future_timestamp", p.send(t, BAD_FUTURE, b"carol", 2)))
        p.send(t, js(CAROL), b"carol", 2)
        p.close()
        cls.daemon = jdtest.Daemon(cls.config)
        jdtest.wait_committed(cls.prefix, cls.topic, 3, proc=cls.daemon.proc)
        time.sleep(1.5)  # idle: nothing to consume
        cls.rc = cls.daemon.stop()

    @classmethod
    def tearDownClass(cls):
        jdtest.drop_prefix(cls.prefix)
        jdtest.delete_topics(cls.topic, cls.dlq)

    def journey(self, customer):
        r = jdtest.journeyctl(self.config, "journey", customer, "--json")
        return json.loads(r.stdout)

    def test_clean_shutdown(self):
        self.assertEqual(self.rc, 0, self.daemon.logtext())
        self.assertIn("msg=\"stopped\"", self.daemon.logtext())

    def test_idle_is_not_a_failure(self):
        # a loop with nothing to commit neither backs off nor reconnects
        log = self.daemon.logtext()
        self.assertNotIn("retrying", log)
        self.assertNotIn("level=warn", log)

    def test_alice_field_by_field(self):
        j = self.journey("alice")
        self.assertEqual(j["customer"], "alice")
        self.assertEqual(j["journey"], 1)
        self.assertEqual(j["phase"], "purchase")
        self.assertEqual(j["start"], "2026-01-05T10:00:00.000Z")
        self.assertEqual(j["last_event"], "2026-01-05T10:04:00.000Z")  # a5: 11:04+01:00
        self.assertEqual(j["last_touchpoint"], "checkout")
        self.assertEqual(j["events"], 5)
        self.assertEqual(j["segment"], "consumer")
        self.assertEqual(j["phase_entered"], {
            "search": "2026-01-05T10:00:00.000Z",
            "information": "2026-01-05T10:01:00.000Z",
            "purchase": "2026-01-05T10:03:00.000Z"})
        self.assertEqual(j["satisfaction"], {
            "metric": "nps", "score": 9, "scope": "touchpoint", "phase": "purchase",
            "touchpoint": "checkout", "time": "2026-01-05T10:04:00.000Z"})
        self.assertEqual(j["merged_ids"], 0)
        self.assertEqual([(h["time"], h["phase"], h["touchpoint"]) for h in j["history"]], [
            ("2026-01-05T10:00:00.000Z", "search", "search_engine"),
            ("2026-01-05T10:01:00.000Z", "information", "company_site"),
            ("2026-01-05T10:02:00.000Z", "information", "reviews"),
            ("2026-01-05T10:03:00.000Z", "purchase", "cart"),
            ("2026-01-05T10:04:00.000Z", "", "checkout")])

    def test_bob_anonymous_journey_merged(self):
        j = self.journey("bob")
        self.assertEqual(j["phase"], "loyalty")
        self.assertEqual(j["events"], 5)
        self.assertEqual(j["merged_ids"], 1)
        self.assertEqual(j["segment"], "smb")
        self.assertEqual(j["start"], "2026-01-05T11:00:00.000Z")
        self.assertEqual(j["last_event"], "2026-01-05T11:30:00.000Z")
        self.assertEqual(j["last_touchpoint"], "delivery")
        self.assertEqual([h["touchpoint"] for h in j["history"]],
                         ["ads", "app_product", "app_shop", "delivery"])
        self.assertEqual(j["phase_entered"], {
            "search": "2026-01-05T11:00:00.000Z",
            "information": "2026-01-05T11:05:00.000Z",
            "purchase": "2026-01-05T11:20:00.000Z",
            "loyalty": "2026-01-05T11:30:00.000Z"})
        # the anonymous id now leads to bob's journey
        self.assertEqual(self.journey("anon-b")["customer"], "bob")

    def test_carol_after_bad_events(self):
        j = self.journey("carol")
        self.assertEqual((j["phase"], j["events"], j["last_touchpoint"]),
                         ("loyalty", 1, "support_chat"))

    def test_unknown_customer(self):
        r = jdtest.journeyctl(self.config, "journey", "nobody", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr, "journeyctl: no journey for customer 'nobody'\n")

    def test_text_form(self):
        out = jdtest.journeyctl(self.config, "journey", "carol").stdout
        self.assertIn("customer   carol\n", out)
        self.assertIn("phase      loyalty\n", out)

    def test_dead_letters_message_by_message(self):
        msgs = jdtest.consume_all(self.dlq, len(self.bad))
        self.assertEqual(len(msgs), len(self.bad))
        got = sorted((m.value(), dict(m.headers())) for m in msgs)
        want = []
        for reason, (topic, part, off, key, value) in self.bad:
            want.append((value, reason, topic, str(part), str(off), key))
        want.sort()
        byval = {m.value(): m for m in msgs}
        for value, reason, topic, part, off, key in want:
            m = byval[value]
            h = {k: v.decode() for k, v in m.headers()}
            self.assertEqual(h["jd-reason"], reason)
            self.assertEqual(h["jd-source-topic"], topic)
            self.assertEqual(h["jd-source-partition"], part)
            self.assertEqual(h["jd-source-offset"], off)
            self.assertTrue(h["jd-error"])
            self.assertEqual(m.key(), key)
        self.assertEqual(len(got), 6)

    def test_counters(self):
        r = jdtest.journeyctl(self.config, "stats", "--json")
        total = json.loads(r.stdout)["total"]
        want = {"consumed": 19, "applied": 11, "duplicate": 1, "unclassified": 1,
                "heartbeat": 1, "linked": 1, "merged": 1, "link_conflict": 0, "link_capped": 0,
                "deadletter": 6, "deadletter.syntax": 2, "deadletter.bad_score": 1,
                "deadletter.missing": 1, "deadletter.unknown_phase": 1, "deadletter.future_timestamp": 1}
        for k, v in want.items():
            self.assertEqual(total.get(k, 0), v, k)
        self.assertEqual(sum(v for k, v in total.items() if k.startswith("deadletter.")), 6)
        # the event from year 9999 moved no clock: carol's partition is at her own event
        part = next(x for x in json.loads(r.stdout)["partitions"] if x["partition"] == "%s:2" % self.topic)
        # (2026-01-05T12:05:00Z, and the idle advance since: seconds)
        self.assertGreaterEqual(part["counters"]["clock"], 1767614700000)
        self.assertLess(part["counters"]["clock"], 1767614700000 + 60000)

    def test_offsets_in_redis_and_kafka(self):
        hw = jdtest.high_watermarks(self.topic, 3)
        self.assertEqual(hw, {0: 7, 1: 6, 2: 6})
        self.assertEqual(jdtest.redis_offsets(self.prefix, self.topic, 3), hw)
        # committed to Kafka too, so lag is visible to standard tools
        self.assertEqual(jdtest.group_offsets(self.group, self.topic, 3), hw)



class LinkGuardTest(unittest.TestCase):
    """The guards against wrong merges, on one partition: a customer absorbs
    at most journey.max_linked_ids ids (here 2; the third keeps its own
    journey, counted as link_capped, and a repeated link of an id already
    linked costs nothing), and an id linked to one customer is never linked
    to another (shared device: link_conflict)."""

    def test_cap_and_shared_device(self):
        topic, dlq, prefix = jdtest.unique("guard"), jdtest.unique("guard-dlq"), jdtest.unique("guard")
        jdtest.create_topic(topic, 1)
        jdtest.create_topic(dlq, 1)
        cfg = jdtest.write_config(topic, dlq, prefix, jdtest.unique("g"), "journey:\n  max_linked_ids: 2\n")
        evs = []
        for i in range(3):  # three devices browse, then dan identifies on each
            evs.append(ev("d%d" % i, "track", T0 + i * 1000, anonymousId="dev-%d" % i, event="Ad Clicked"))
        for i in range(3):
            evs.append(ev("i%d" % i, "identify", T0 + 10000 + i * 1000, anonymousId="dev-%d" % i, userId="dan"))
        evs.append(ev("i0b", "identify", T0 + 14000, anonymousId="dev-0", userId="dan"))  # again: free
        evs.append(ev("e1", "identify", T0 + 15000, anonymousId="dev-1", userId="erin"))  # shared device
        p = jdtest.Producer1()
        for e in evs:
            p.send(topic, js(e), None, 0)
        p.close()
        d = jdtest.Daemon(cfg)
        try:
            jdtest.wait_committed(prefix, topic, 1, proc=d.proc)
            self.assertEqual(d.stop(), 0)
            dan = json.loads(jdtest.journeyctl(cfg, "journey", "dan", "--json").stdout)
            dev2 = json.loads(jdtest.journeyctl(cfg, "journey", "dev-2", "--json").stdout)
            erin = json.loads(jdtest.journeyctl(cfg, "journey", "erin", "--json").stdout)
            stats = json.loads(jdtest.journeyctl(cfg, "stats", "--json").stdout)["total"]
        finally:
            jdtest.drop_prefix(prefix)
            jdtest.delete_topics(topic, dlq)
        self.assertEqual((dan["merged_ids"], dan["linked_ids"], dan["events"]), (2, 2, 6))
        self.assertEqual((dev2["customer"], dev2["events"], dev2["merged_ids"]), ("dev-2", 1, 0))
        self.assertEqual((erin["customer"], erin["merged_ids"]), ("erin", 0))
        self.assertEqual({k: stats[k] for k in ("linked", "merged", "link_capped", "link_conflict")},
                         {"linked": 2, "merged": 2, "link_capped": 1, "link_conflict": 1})

    def test_a_long_chain_of_aliases(self):
        """u1 is aliased to u2, u2 (with its journey) to u3, ... up to u13,
        each in a batch of its own, so that u1's redirect is 12 hops from
        the journey; an event of u1 then still lands in u13's journey, and
        reading the chain shortens it: u1 points at u13 afterwards."""
        topic, dlq, prefix = jdtest.unique("chain"), jdtest.unique("chain-dlq"), jdtest.unique("chain")
        jdtest.create_topic(topic, 1)
        jdtest.create_topic(dlq, 1)
        cfg = jdtest.write_config(topic, dlq, prefix, jdtest.unique("g"))
        p = jdtest.Producer1()
        d = jdtest.Daemon(cfg)
        try:
            for k in range(1, 13):
                p.send(topic, js(ev("t%d" % k, "track", T0 + k * 2000, userId="u%d" % k, event="Ad Clicked")), None, 0)
                p.send(topic, js(ev("l%d" % k, "alias", T0 + k * 2000 + 1000, previousId="u%d" % k,
                                    userId="u%d" % (k + 1))), None, 0)
                jdtest.wait_committed(prefix, topic, 1, proc=d.proc)
            # journeyctl follows the 12 hops
            j = json.loads(jdtest.journeyctl(cfg, "journey", "u1", "--json").stdout)
            self.assertEqual((j["customer"], j["events"]), ("u13", 24))
            p.send(topic, js(ev("last", "track", T0 + 30000, userId="u1", event="Ad Clicked")), None, 0)
            jdtest.wait_committed(prefix, topic, 1, proc=d.proc)
            self.assertEqual(d.stop(), 0)
            u13 = json.loads(jdtest.journeyctl(cfg, "journey", "u13", "--json").stdout)
            r = jdtest.redis_client()
            u1 = r.get("%s:{%s:0}:j:u1" % (prefix, topic))
            stats = json.loads(jdtest.journeyctl(cfg, "stats", "--json").stdout)["total"]
        finally:
            jdtest.drop_prefix(prefix)
            jdtest.delete_topics(topic, dlq)
        self.assertEqual((u13["customer"], u13["events"], u13["merged_ids"]), ("u13", 25, 12))
        self.assertEqual(u1, b"\xc1u13")
        self.assertEqual((stats["linked"], stats["merged"], stats["applied"]), (12, 12, 25))


if __name__ == "__main__":
    unittest.main(verbosity=2)
