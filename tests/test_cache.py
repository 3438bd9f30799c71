"""The SQLite cache under concurrent writers and readers: processes and threads at once."""
import multiprocessing as mp
import threading

from affectgpt_patch.agent.cache import SQLiteCache

N_KEYS = 200


def _worker(path, worker, rounds, errors):
    try:
        cache = SQLiteCache(path)
        for r in range(rounds):
            keys = [f"k{(worker * 37 + r * 11 + i) % N_KEYS}" for i in range(40)]
            cache.put_many("ns", {k: k.encode() for k in keys})
            found = cache.get_many("ns", keys)
            assert found == {k: k.encode() for k in keys}
    except Exception as e:  # reported to the parent
        errors.append(repr(e))


def _process(path, worker, queue):
    errors = []
    threads = [threading.Thread(target=_worker, args=(path, worker * 10 + t, 15, errors)) for t in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.put(errors)


def test_processes_and_threads_share_one_cache(tmp_path):
    path = tmp_path / "c.sqlite"
    SQLiteCache(path)
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_process, args=(path, w, queue)) for w in range(4)]
    for p in procs:
        p.start()
    errors = [e for _ in procs for e in queue.get(timeout=120)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert errors == []
    cache = SQLiteCache(path)
    written = {f"k{(w * 37 + r * 11 + i) % N_KEYS}" for w0 in range(4) for t in range(3)
               for w in [w0 * 10 + t] for r in range(15) for i in range(40)}
    assert cache.get_many("ns", sorted(written)) == {k: k.encode() for k in written}
    assert cache.count("ns") == len(written)


def test_connection_is_not_reused_after_fork(tmp_path):
    cache = SQLiteCache(tmp_path / "c.sqlite")
    cache.put_many("ns", {"a": b"1"})
    ctx = mp.get_context("fork")
    queue = ctx.Queue()

    def child():
        cache.put_many("ns", {"b": b"2"})
        queue.put(cache.get_many("ns", ["a", "b"]))

    p = ctx.Process(target=child)
    p.start()
    assert queue.get(timeout=60) == {"a": b"1", "b": b"2"}
    p.join()
    assert cache.get_many("ns", ["a", "b"]) == {"a": b"1", "b": b"2"}


def test_hits_and_misses_are_counted(tmp_path):
    cache = SQLiteCache(tmp_path / "c.sqlite")
    cache.put_many("x", {"a": b"1"})
    cache.get_many("x", ["a", "b", "a"])
    assert cache.stats() == {"hits": 1, "misses": 1}
    assert cache.get_many("y", ["a"]) == {}  # namespaces never mix


def test_the_first_stored_value_wins_for_every_writer(tmp_path):
    """A process that lost the race for a key gets the stored value back, not its own."""
    first, second = SQLiteCache(tmp_path / "c.sqlite"), SQLiteCache(tmp_path / "c.sqlite")
    assert first.put_many("ns", {"k": b"first", "a": b"1"}) == {"k": b"first", "a": b"1"}
    assert second.put_many("ns", {"k": b"second", "b": b"2"}) == {"k": b"first", "b": b"2"}
    assert second.get_many("ns", ["k", "a", "b"]) == {"k": b"first", "a": b"1", "b": b"2"}


def test_agent_uses_the_stored_description_when_another_process_stored_first(tmp_path):
    from affectgpt_patch.agent import create_au_agent

    agent = create_au_agent(backend="rules", cache_dir=str(tmp_path))
    from au_core import contract

    inputs = [contract.format_input({"AU06": 2.5, "AU12": 3.0})]
    other = SQLiteCache(tmp_path / "descriptions.sqlite")
    other.put_many(agent.fingerprint, {inputs[0]: b"stored by another process"})
    assert agent._generate(inputs, 4, False) == {inputs[0]: "stored by another process"}
