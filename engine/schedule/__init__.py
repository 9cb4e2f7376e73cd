"""Schedules: a procedure's ``schedule:`` and those ``runproc schedule add`` stores, and the
scheduler that fires them (``runproc scheduler``, or inside ``runproc serve``); docs/web.md
"Schedules".

Layering: below ``engine.cli`` and ``engine.web``, which give the scheduler its launcher (how a
run is started: a ``runproc`` process, engine/web/starts.py); it reads procedures through
``engine.api`` and keeps its rows in ``engine.state``. croniter is imported when a schedule is
evaluated, never before.
"""
