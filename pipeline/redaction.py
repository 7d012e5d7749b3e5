"""What vindex may store, log or print of a URI or a name: no credentials, no terminal controls.

* Credentials typed into a URL (``http://user:password@host/x.mp4``) are needed to read the
  object and nowhere else: :func:`strip_userinfo` removes them from a URI before it becomes a
  ``video_id``, a table value, a log line or terminal output, and :func:`redact` masks them in
  free text (an error message quoting a URL).
* File names are bytes a stranger chose: a name holding ``ESC ] 0 ; ... BEL`` retitles the
  terminal that prints it, a newline forges an output line. :func:`printable` escapes control
  characters for human output; tables and machine formats (CSV, JSON) keep the raw value.

Pure functions, no imports beyond the standard library: the pure core uses them too.
"""

from __future__ import annotations

import logging
import re

#: ``scheme://userinfo@``: the userinfo is everything between ``//`` and the first ``@``
#: before any ``/``, ``?``, ``#`` or blank (RFC 3986 authority).
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#@\s]*)@")
#: What stands for masked credentials in free text.
MASK = "***"
#: C0 and C1 control characters and DEL; tab is kept as a space-like character in tables of text.
_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def has_userinfo(uri: str) -> bool:
    """Whether ``uri`` carries credentials (``user[:password]@``) in its authority."""
    match = _USERINFO.match(uri)
    return match is not None


def strip_userinfo(uri: str) -> str:
    """``uri`` without ``user[:password]@``: the form that is stored, logged and shown."""
    return _USERINFO.sub(r"\g<scheme>", uri, count=1) if _USERINFO.match(uri) else uri


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it masked."""
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)


def printable(text: str) -> str:
    """``text`` safe for a terminal: control characters as ``\\xNN`` escapes, backslashes kept."""
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def shown(text: str) -> str:
    """``text`` as human output shows it: credentials masked, controls escaped."""
    return printable(redact(text))


class RedactingFilter(logging.Filter):
    """A logging filter that applies :func:`shown` to every record's message.

    The message is formatted once here (``msg % args``), so a URL or a file name passed as an
    argument is cleaned too; tracebacks are cleaned by the formatter of :func:`install`.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed call: leave it to logging's own report
            return True
        record.msg, record.args = shown(message), None
        return True


class _RedactingFormatter(logging.Formatter):
    def formatException(self, ei: object) -> str:  # noqa: N802 - logging's name
        return redact(super().formatException(ei))  # type: ignore[arg-type]


def install(handler: logging.Handler) -> None:
    """Make ``handler`` mask credentials and escape controls in what it writes."""
    handler.addFilter(RedactingFilter())
    formatter = handler.formatter
    handler.setFormatter(
        _RedactingFormatter(formatter._fmt if formatter else None, formatter.datefmt if formatter else None)
    )


__all__ = ["MASK", "RedactingFilter", "has_userinfo", "install", "printable", "redact", "shown", "strip_userinfo"]
