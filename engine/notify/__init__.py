"""Notifications: telling people what a run does, over Slack, Microsoft Teams, a generic JSON
webhook, email (SMTP with STARTTLS) and PagerDuty's Events API v2 (docs/notifications.md).

- ``templates``: what an event says (``Facts``: procedure, run id, status, the step, its error,
  who) and the default text of each message;
- ``channels``: each channel's payload (``build``) and sending it once, bounded by a timeout
  (``send``), with failures as one line that never shows a URL's path or a credential;
- ``dispatch``: the ``Dispatcher`` of one run: renders an entry's templates on the caller's
  thread, sends on a small pool off the run's critical path, keeps a record of each send,
  runs the escalation clocks, and waits (bounded) for what is in flight when the run ends.

It knows nothing of the run's event stream: ``engine.execution.notifying`` listens to it
and tells the dispatcher which events happened. Its options models and load-time checks
are the format's (``engine.format.notifications``). A notification that fails is recorded
and shown; it never fails the run.
"""
