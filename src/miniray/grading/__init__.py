"""Graded exercises: student copies generated from solutions, and a sandboxed pytest grader.

    solutions/NN_topic.ipynb ──generate──► NN_topic.ipynb (stubs raise NotImplementedError("Task N.M"))
    NN_topic.ipynb + tests/test_NN_topic.py ──plugin + runner──► per-task outcomes ──cli──► score table

Modules: ``notebook`` (reading cells and their tasks), ``generate`` (markers to stubs), ``sandbox``
(the child process that runs a submission), ``runner`` (the grader's side of it, with time limits),
``report`` (outcomes and the words students read), ``plugin`` (pytest ``--submission`` and ``nb``),
``checks`` (helpers graded tests use: events during a call, a ``get`` inside a loop), ``cli``
(``miniray grade``).
"""
__all__ = ["student_notebook", "strip_solutions", "grade"]


def __getattr__(name: str):
    # Lazy, so ``python -m miniray.grading.generate`` does not import its own module twice.
    if name in ("student_notebook", "strip_solutions"):
        from miniray.grading import generate

        return getattr(generate, name)
    raise AttributeError(name)


def grade(notebook: str, **kwargs) -> int:
    """Grade one notebook and print the score table; the exit status ``miniray grade`` would give."""
    from miniray.grading.cli import grade as _grade

    return _grade(notebook, **kwargs)
