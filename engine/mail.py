"""One email delivery over SMTP (the standard library's client, in a worker thread: a mail server that
answers slowly must not hold the engine's event loop). A failure is a value, not an exception."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote, urlsplit

ERROR_TEXT_MAX = 300


def compose(sender: str, recipients: list[str], notice: dict[str, Any]) -> EmailMessage:
    """The message for one alert change: a subject an inbox can sort by, the alert in plain text."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = (
        f"[fleetbridge] {notice['severity']} alert {notice['event']}: {notice['rule_name']} on {notice['device_id']}"
    )
    lines = [
        notice["message"],
        "",
        f"device:   {notice['device_id']}",
        f"rule:     {notice['rule_name']} (#{notice['rule_id']})",
        f"severity: {notice['severity']}",
        f"state:    {notice['state']} ({notice['event']})",
        f"started:  {notice['started_at']}",
        f"raised:   {notice['raised_at']}",
    ]
    if notice.get("cleared_at"):
        lines.append(f"cleared:  {notice['cleared_at']} ({notice.get('clear_reason')})")
    if notice.get("acknowledged_by"):
        lines.append(f"acknowledged by {notice['acknowledged_by']} at {notice['acknowledged_at']}")
    lines += ["", f"alert #{notice['alert_id']}, change #{notice['event_id']}"]
    message.set_content("\n".join(lines) + "\n")
    return message


async def send_mail(smtp_url: str, message: EmailMessage, *, timeout_s: float) -> str | None:
    """Send `message` through the server of `smtp_url`; None when it accepted it, else why not."""
    if not smtp_url:
        return "no mail server: set FLEETBRIDGE_NOTIFY_SMTP_URL (docs/configuration.md)"
    try:
        await asyncio.to_thread(_send, smtp_url, message, timeout_s)
    except (smtplib.SMTPException, OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"[:ERROR_TEXT_MAX]
    return None


def _send(smtp_url: str, message: EmailMessage, timeout_s: float) -> None:
    parts = urlsplit(smtp_url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError(
            f"the mail server URL must be smtp://host[:port] or smtps://host[:port], not {parts.scheme}://"
        )
    context = ssl.create_default_context()
    if parts.scheme == "smtps":
        client: smtplib.SMTP = smtplib.SMTP_SSL(parts.hostname, parts.port or 465, timeout=timeout_s, context=context)
    else:
        client = smtplib.SMTP(parts.hostname, parts.port or 25, timeout=timeout_s)
    with client:
        client.ehlo()
        secured = parts.scheme == "smtps"
        if not secured and client.has_extn("starttls"):
            client.starttls(context=context)
            client.ehlo()
            secured = True
        if parts.username:
            if not secured:
                raise ValueError("the mail server offers no STARTTLS: the password is not sent in clear (use smtps://)")
            client.login(unquote(parts.username), unquote(parts.password or ""))
        client.send_message(message)
