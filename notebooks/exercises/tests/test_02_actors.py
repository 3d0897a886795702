"""Graded tests for exercise 2 (actors).

Each ``test_task_N_M_*`` runs in the sandbox that executed the submitted notebook; ``nb`` is that
notebook's namespace.  Actor state is checked against a plain Python model of the same calls.
"""
from miniray.grading.checks import events_during, tasks_named

EXERCISE = "02_actors"

HINTS = {
    "2.1": "In increment, add the multiplier to self.n (watch the spelling of `multiplier`).",
    "2.2": "Keep the balance in self; in withdraw, check `amount > balance` and raise ValueError before subtracting.",
    "2.3": "count_words.remote(tally, text) for each text; ray.get the list of refs; then ray.get(tally.read.remote()).",
    "2.4": "pool = ActorPool([Squarer.remote(), Squarer.remote()]); list(pool.map(lambda a, x: a.compute.remote(x), xs)).",
}


def test_task_2_1_counters_like_the_slides(nb):
    ray = nb.ray         # the engine the notebook imported: miniray, or real Ray

    counters = [nb.Counter.remote(i) for i in range(4)]
    ray.get([c.increment.remote(2) for c in counters])
    got = ray.get([c.read.remote() for c in counters])
    assert got == [2, 3, 4, 5], f"Counters started at 0..3 and incremented by 2 should read [2, 3, 4, 5], got {got}."


def test_task_2_1_default_start_and_step(nb):
    ray = nb.ray         # the engine the notebook imported: miniray, or real Ray

    c = nb.Counter.remote()
    for _ in range(3):
        c.increment.remote()
    c.increment.remote(multiplier=10)
    got = ray.get(c.read.remote())
    assert got == 13, f"Counter.remote() then increment() three times and increment(multiplier=10) should read 13, got {got}."


def test_task_2_2_deposits_and_withdrawals_in_order(nb):
    ray = nb.ray         # the engine the notebook imported: miniray, or real Ray

    acct = nb.Account.remote(0)
    refs = [acct.deposit.remote(100), acct.withdraw.remote(30), acct.withdraw.remote(100),
            acct.deposit.remote(5)]
    assert ray.get(refs[0]) == 100, "deposit(100) on an empty account should return the new balance, 100."
    assert ray.get(refs[1]) == 70, "withdraw(30) after deposit(100) should return 70."
    try:
        ray.get(refs[2])
    except ValueError:
        pass
    else:
        raise AssertionError("withdraw(100) with only 70 in the account should raise ValueError.")
    assert ray.get(refs[3]) == 75, ("After a refused withdrawal the balance must be unchanged: "
                                    "deposit(5) should then return 75.")
    assert ray.get(acct.balance.remote()) == 75, "balance() should return 75 at the end."


def test_task_2_2_opening_balance(nb):
    ray = nb.ray         # the engine the notebook imported: miniray, or real Ray

    acct = nb.Account.remote(balance=40)
    assert ray.get(acct.balance.remote()) == 40, "Account.remote(balance=40).balance() should be 40."
    assert ray.get(acct.withdraw.remote(40)) == 0, "Withdrawing the whole balance is allowed and leaves 0."


def test_task_2_3_counts_every_word(nb):
    texts = ["the quick brown fox", "jumps over", "the lazy dog", "", "a b c d e f"]
    expected = sum(len(t.split()) for t in texts)
    got, evs = events_during(nb.count_all, texts)
    assert got == expected, f"count_all({texts}) returned {got}; the texts have {expected} words."
    n = len(tasks_named(evs, "count_words", kind="task"))
    assert n == len(texts), f"count_all should run one count_words task per text ({len(texts)}), it ran {n}."
    tallies = tasks_named(evs, "Tally.__init__")
    assert len(tallies) == 1, f"count_all should start exactly one Tally actor and share it; it started {len(tallies)}."


def test_task_2_4_pool_map_in_order(nb):
    xs = [3, 1, 4, 1, 5, 9, 2, 6]
    got, evs = events_during(nb.pool_squares, xs)
    assert list(got) == [x * x for x in xs], f"pool_squares({xs}) returned {got}; expected {[x * x for x in xs]}."
    created = tasks_named(evs, "Squarer.__init__")
    assert len(created) == 2, f"pool_squares should start two Squarer actors, it started {len(created)}."
    used = {e.get("actor_id") for e in tasks_named(evs, "compute", kind="actor_method")}
    assert len(used) == 2, "Both actors in the pool should get compute calls; let ActorPool.map hand them out."
