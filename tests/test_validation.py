"""Bad option values fail where they are written, at ``@remote(...)`` or ``.options(...)``, with the
error types Ray raises (ray/_private/ray_option_utils.py's rules, checked against Ray 2.60)."""
from __future__ import annotations

import pytest

import miniray as ray
from miniray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

BAD_TASK = [
    ({"num_cpus": -1}, ValueError), ({"num_cpus": "2"}, TypeError), ({"num_gpus": -0.5}, ValueError),
    ({"memory": -1}, ValueError), ({"resources": {"chip": -1}}, ValueError),
    ({"resources": {"chip": "x"}}, TypeError), ({"resources": [1]}, TypeError),
    ({"resources": {"CPU": 1}}, ValueError), ({"max_retries": -2}, ValueError),
    ({"max_retries": "3"}, TypeError), ({"num_returns": -1}, ValueError),
    ({"num_returns": 1.5}, TypeError), ({"num_returns": "many"}, ValueError),
    ({"scheduling_strategy": "FASTEST"}, ValueError), ({"scheduling_strategy": 5}, TypeError),
    ({"retry_exceptions": 5}, TypeError), ({"retry_exceptions": [1]}, ValueError),
    ({"name": 5}, TypeError), ({"max_calls": -1}, ValueError), ({"runtime_env": 5}, TypeError),
    ({"no_such_option": 1}, ValueError),
]
GOOD_TASK = [{"num_cpus": 1.5}, {"num_gpus": 0.5}, {"resources": {"chip": 1.5}}, {"max_retries": -1},
             {"num_returns": None}, {"num_returns": "dynamic"}, {"scheduling_strategy": "SPREAD"},
             {"scheduling_strategy": "DEFAULT"}, {"retry_exceptions": [ValueError]}, {"memory": 1.5},
             {"scheduling_strategy": NodeAffinitySchedulingStrategy("n", soft=True)}]
BAD_ACTOR = [
    ({"max_restarts": -2}, ValueError), ({"max_restarts": "1"}, TypeError),
    ({"max_task_retries": -2}, ValueError), ({"max_concurrency": "a"}, TypeError),
    ({"lifetime": "forever"}, ValueError), ({"name": 5}, TypeError), ({"namespace": 5}, TypeError),
    ({"get_if_exists": 1}, TypeError), ({"num_returns": 1}, ValueError), ({"max_retries": 1}, ValueError),
    ({"num_cpus": -1}, ValueError),
]


def f():
    return 1


class A:
    def m(self):
        return 1


@pytest.mark.parametrize("opts,error", BAD_TASK, ids=lambda v: str(v))
def test_bad_task_options_fail_at_decoration_and_at_options(opts, error):
    with pytest.raises(error):
        ray.remote(**opts)(f)
    with pytest.raises(error):
        ray.remote(f).options(**opts)
    with pytest.raises(error):                     # a second .options() checks too
        ray.remote(f).options(num_cpus=1).options(**opts)


@pytest.mark.parametrize("opts", GOOD_TASK, ids=lambda v: str(v))
def test_good_task_options_are_accepted(opts):
    ray.remote(**opts)(f)
    ray.remote(f).options(**opts)


@pytest.mark.parametrize("opts,error", BAD_ACTOR, ids=lambda v: str(v))
def test_bad_actor_options_fail_at_decoration_and_at_options(opts, error):
    with pytest.raises(error):
        ray.remote(**opts)(A)
    with pytest.raises(error):
        ray.remote(A).options(**opts)


def test_actor_name_and_get_if_exists_rules():
    actor = ray.remote(A)
    with pytest.raises(ValueError, match="empty string"):
        actor.options(name="")
    with pytest.raises(ValueError, match="needs a name"):
        actor.options(get_if_exists=True).remote()


def test_remote_on_async_def_is_an_error():
    async def work():
        return 1
    with pytest.raises(ValueError, match="async def"):
        ray.remote(work)
    with pytest.raises(ValueError, match="async def"):
        ray.remote(num_cpus=1)(work)


def test_method_options_are_checked():
    with pytest.raises(ValueError, match="Unknown option"):
        ray.method(no_such=1)
    with pytest.raises(ValueError):
        ray.method(num_returns=-1)
    with pytest.raises(TypeError):
        ray.method(lambda self: 1)
    marked = ray.method(num_returns=2)(lambda self: (1, 2))
    assert marked.__miniray_num_returns__ == 2


def test_remote_takes_keyword_options_only():
    with pytest.raises(TypeError):
        ray.remote(1)
    with pytest.raises(TypeError):
        ray.remote(f, f)
