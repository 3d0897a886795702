"""Loads the grading plugin for the graded exercise tests in tests/.

``pytest --submission NOTEBOOK`` (or ``miniray grade NOTEBOOK``) runs each
``test_task_N_M_*`` function in a sandbox process that has executed NOTEBOOK; see
``miniray.grading.plugin``.  The plugin is registered here unless it already is (``-p`` or an entry
point), so the options are never added twice.
"""


def pytest_addoption(parser, pluginmanager):
    from miniray.grading import plugin

    if not pluginmanager.is_registered(plugin):
        pluginmanager.register(plugin, "miniray.grading.plugin")
