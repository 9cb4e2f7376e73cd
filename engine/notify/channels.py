"""Each channel's payload, and sending it once.

``build`` turns an entry's rendered options, the event's facts and the message into an
``Outgoing``: an HTTP request with a JSON body (Slack, Teams, a webhook, PagerDuty) or a mail
(SMTP). ``send`` makes one attempt bounded by the entry's timeout (no retries: a notifier that
retries a dead receiver only delays the run's end) and reports a failure as one line that
names the receiver by scheme, host and port only: a webhook URL's path is its credential.

What reaches ``build`` is already redacted where it is content (the message, the facts, a
title, a custom JSON body); credentials (URLs, headers, the routing key, the SMTP password)
are used as given and never appear in a payload, a record or an error.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from ..format.notifications import PAGERDUTY_URL, PAGERDUTY_URL_ENV
from .templates import Facts

# Teams' Adaptive Card colours and a legacy card's theme, by how the event reads
_CARD_COLOUR = {"bad": "Attention", "good": "Good", "neutral": "Default"}
_THEME = {"bad": "D93F0B", "good": "2EB67D", "neutral": "0078D7"}
PAGERDUTY_SUMMARY_MAX = 1024  # the Events API refuses a longer summary


@dataclass
class Outgoing:
    """One notification ready to go. ``target`` is what records and errors may show."""

    channel: str
    target: str
    timeout: float
    url: str | None = None
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    mail: Any = None  # an email.message.EmailMessage
    smtp: dict[str, Any] = field(default_factory=dict)  # host, port, user, password, starttls, verify


@dataclass
class Sent:
    ok: bool
    error: str | None = None
    status_code: int | None = None


def shown_url(url: str) -> str:
    """scheme://host:port of a URL: never its path, query or user info (a webhook's token)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "an invalid URL"
    if not parts.scheme:
        return "a URL without a scheme"
    return f"{parts.scheme}://{host}{port}"


def build(channel: str, options: dict[str, Any], facts: Facts, message: str, timeout: float) -> Outgoing:
    """The request or mail for ``channel`` (options rendered, content redacted)."""
    if channel == "email":
        return _email(options, facts, message, timeout)
    url = str(options.get("url") or "")
    if channel == "pagerduty" and not url:
        url = os.environ.get(PAGERDUTY_URL_ENV) or PAGERDUTY_URL
    out = Outgoing(channel, shown_url(url), timeout, url=url,
                   headers={"Content-Type": "application/json", "User-Agent": _user_agent()})
    if channel == "slack":
        out.body = {"text": message, **{k: options[k] for k in ("channel", "username", "icon_emoji")
                                         if options.get(k)}}
        if options.get("channel"):
            out.target += f" {options['channel']}"
    elif channel == "teams":
        out.body = _teams(options, facts, message)
    elif channel == "webhook":
        out.method = str(options.get("method") or "POST")
        out.headers.update({str(k): str(v) for k, v in (options.get("headers") or {}).items()})
        custom = options.get("json")
        facts_now = facts.as_namespace()
        out.body = custom if custom is not None else {"event": facts_now.pop("name"), **facts_now,
                                                      "message": message, "sender": "runproc"}
    elif channel == "pagerduty":
        out.body = _pagerduty(options, facts, message)
    else:  # the format's models admit no other channel
        raise ValueError(f"unknown channel {channel!r}")
    return out


def _user_agent() -> str:
    from ..version import __version__

    return f"runproc/{__version__}"


def _teams(options: dict[str, Any], facts: Facts, message: str) -> dict[str, Any]:
    title = str(options.get("title") or facts.headline)
    tone = facts.severity
    if options.get("format") == "messagecard":
        # a legacy Office 365 connector's card
        return {"@type": "MessageCard", "@context": "https://schema.org/extensions", "summary": title,
                "themeColor": _THEME[tone], "title": title, "text": message.replace("\n", "\n\n"),
                "sections": [{"facts": [{"name": k, "value": v} for k, v in facts.lines()]}]}
    # a Workflows webhook ("post to a channel when a webhook request is received") takes a
    # message whose attachments are Adaptive Cards
    card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
            "version": "1.4", "msteams": {"width": "Full"},
            "body": [{"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium", "wrap": True,
                      "color": _CARD_COLOUR[tone]},
                     {"type": "TextBlock", "text": message, "wrap": True},
                     {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in facts.lines()]}]}
    return {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                                                "contentUrl": None, "content": card}]}


def pagerduty_action(facts: Facts) -> str:
    """resolve when the news is good (success, a complete rollback); otherwise trigger."""
    return "resolve" if facts.severity == "good" else "trigger"


def _pagerduty(options: dict[str, Any], facts: Facts, message: str) -> dict[str, Any]:
    action = pagerduty_action(facts)
    body: dict[str, Any] = {
        "routing_key": str(options.get("routing_key") or ""),  # a credential: used, never shown
        "event_action": action,
        # one incident per run: every trigger of the run adds to it, a resolve closes it
        "dedup_key": str(options.get("dedup_key") or f"runproc-{facts.procedure}-{facts.run_id}"),
        "client": "runproc",
    }
    if action == "trigger":
        summary = " | ".join(line for line in message.splitlines() if line.strip()) or facts.headline
        payload: dict[str, Any] = {
            "summary": summary[:PAGERDUTY_SUMMARY_MAX], "source": str(options.get("source") or facts.host),
            "severity": str(options.get("severity") or "critical"),
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "component": str(options.get("component") or facts.procedure),
            "class": str(options.get("class") or facts.name),
            "custom_details": {**{k: v for k, v in facts.as_namespace().items()
                                  if v not in (None, [], "") and k != "summary"}, "message": message},
        }
        if options.get("group"):
            payload["group"] = str(options["group"])
        body["payload"] = payload
    return body


def _email(options: dict[str, Any], facts: Facts, message: str, timeout: float) -> Outgoing:
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    to = [str(a) for a in options.get("to") or []]
    mail = EmailMessage()
    # a header holds one line: a template that rendered several must not add headers
    mail["Subject"] = _one_line(str(options.get("subject") or f"[runproc] {facts.headline}"))
    mail["From"] = _one_line(str(options.get("from") or ""))
    mail["To"] = ", ".join(_one_line(a) for a in to)
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = make_msgid(domain=facts.host or None)
    mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to a robot
    details = "\n".join(f"{k}: {v}" for k, v in facts.lines())
    mail.set_content(f"{message}\n\n{details}\n")
    host, port = str(options.get("host") or ""), int(str(options.get("port") or 587).strip())
    return Outgoing("email", f"smtp://{host}:{port} to {', '.join(to)}", timeout, mail=mail,
                    smtp={"host": host, "port": port, "user": options.get("user"),
                          "password": options.get("password"), "starttls": options.get("starttls", True),
                          "verify": options.get("verify", True)})


def _one_line(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------- sending


def send(out: Outgoing) -> Sent:
    """One attempt; a failure is a Sent with one line of error, never an exception."""
    try:
        return _send_mail(out) if out.mail is not None else _send_http(out)
    except Exception as exc:  # noqa: BLE001 - whatever a library raised: the run must not care
        return Sent(False, f"{out.target}: {type(exc).__name__}: {exc}")


def _send_http(out: Outgoing) -> Sent:
    import httpx

    if not out.url or not out.url.startswith(("http://", "https://")):
        return Sent(False, f"{out.target}: the URL must start with http:// or https://")
    try:
        response = httpx.request(out.method, out.url, json=out.body, headers=out.headers, timeout=out.timeout,
                                 follow_redirects=False)
    except httpx.TimeoutException:
        return Sent(False, f"{out.target}: no answer within {out.timeout:g}s")
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        return Sent(False, f"cannot reach {out.target}: {reason}")
    if 200 <= response.status_code < 300:
        return Sent(True, None, response.status_code)
    said = " ".join(response.text.split())[:200]
    return Sent(False, f"{out.target} answered {response.status_code} {response.reason_phrase}"
                       + (f": {said}" if said else ""), response.status_code)


def _send_mail(out: Outgoing) -> Sent:
    import smtplib

    cfg = out.smtp
    try:
        with smtplib.SMTP(cfg["host"], cfg["port"], timeout=out.timeout) as smtp:
            smtp.ehlo()
            if cfg["starttls"]:
                if not smtp.has_extn("starttls"):
                    return Sent(False, f"{out.target}: the server does not offer STARTTLS (give starttls: false "
                                       "for a relay without it, and no password)")
                smtp.starttls(context=_tls_context(cfg["verify"]))
                smtp.ehlo()
            if cfg["user"]:
                smtp.login(str(cfg["user"]), str(cfg["password"] or ""))
            refused = smtp.send_message(out.mail)
    except smtplib.SMTPAuthenticationError as exc:
        return Sent(False, f"{out.target}: authentication refused ({exc.smtp_code})")
    except smtplib.SMTPResponseException as exc:
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return Sent(False, f"{out.target}: the server answered {exc.smtp_code} {' '.join(text.split())}")
    except smtplib.SMTPRecipientsRefused as exc:
        return Sent(False, f"{out.target}: every recipient refused ({', '.join(exc.recipients)})")
    except ssl.SSLError as exc:
        return Sent(False, f"{out.target}: TLS: {exc.reason or exc}")
    except TimeoutError:
        return Sent(False, f"{out.target}: no answer within {out.timeout:g}s")
    except OSError as exc:
        return Sent(False, f"cannot reach {out.target}: {exc.strerror or exc}")
    if refused:
        return Sent(False, f"{out.target}: refused for {', '.join(refused)}")
    return Sent(True)


def _tls_context(verify: Any) -> ssl.SSLContext:
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return ssl.create_default_context()
