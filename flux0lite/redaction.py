"""Secrets kept out of messages: URL credentials, and what the command line gave secret options.

A usage error echoes what was typed (``unrecognized arguments: --token=T``, ``invalid choice:
'T'``), argparse's and :mod:`flux0lite.cli_reader`'s alike, so the secrets are found in the
command line itself, before anything is parsed, and removed from every message written. No
imports: the CLI's start-up time includes this module.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import Iterable, List, Mapping, Sequence

__all__ = ["redact", "url_userinfo", "command_line_secrets", "environment_secrets"]

# the variables a proxy URL comes from (flux0lite.proxy), in either case
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")

# scheme://userinfo@ : the userinfo of any URL in a message, up to the authority's last "@"
# (a password may hold "@" and quotes; urllib splits the same way).
_URL_USERINFO = r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#]*@"


# A secret this short is replaced only where it stands alone (not inside a word): a one-letter
# URL user such as "u" must not turn "flux0-sync" into "fl***x0-sync". A longer one goes wherever
# it appears.
_WHOLE_WORD_BELOW = 8


def redact(text: str, secrets: "Iterable[str]" = ()) -> str:
    """``text`` without URL credentials: any ``scheme://user:pw@`` and each known secret."""
    for secret in sorted(secrets, key=len, reverse=True):  # longest first: none left in part
        if not secret or secret not in text:
            continue
        if len(secret) >= _WHOLE_WORD_BELOW:
            text = text.replace(secret, "***")
        else:
            import re

            text = re.sub(r"(?<![^\W_])" + re.escape(secret) + r"(?![^\W_])", "***", text)
    if "://" in text:  # the pattern needs one
        import re

        text = re.sub(_URL_USERINFO, r"\1***@", text)
    return text


def url_userinfo(url: str) -> "List[str]":
    """The credentials part of a URL as typed (with or without a scheme), also as ``repr`` shows it."""
    rest = url.split("://", 1)[1] if "://" in url else url
    for end in "/?#":
        rest = rest.split(end, 1)[0]
    userinfo = rest.rpartition("@")[0]
    if ":" not in userinfo and len(userinfo) < _WHOLE_WORD_BELOW:
        # a user name alone, as peer authentication has it (postgresql://sync@/flux0): no secret
        # to hide in every word of every message ("flux0-***"); a token standing there is longer,
        # and inside a URL the pattern hides it anyway
        return []
    return _forms(userinfo)


def environment_secrets(env: "Mapping[str, str]", url_variables: "Sequence[str]" = ()) -> "List[str]":
    """The credentials of the URLs in ``url_variables`` and in every proxy variable of ``env``:
    a message about a bad value may quote part of it."""
    found: "List[str]" = []
    for name, value in env.items():
        if name in url_variables or name.lower() in _PROXY_VARIABLES:
            found += url_userinfo(value)
    return found


def _forms(secret: str) -> "List[str]":
    # argparse quotes an unknown word with repr(): a quote or a control character is escaped
    return list(dict.fromkeys((secret, repr(secret)[1:-1]))) if secret else []


def command_line_secrets(
    argv: "Sequence[str]", secret_options: "Sequence[str]", url_options: "Sequence[str]"
) -> "List[str]":
    """What ``argv`` gives options that carry a secret, however spelled, and URL credentials.

    ``secret_options`` (``--token``) give a whole secret and ``url_options`` (``--server-url``)
    a URL whose credentials are secret, as ``--opt=V`` or ``--opt V``, and also when abbreviated
    as argparse allows (``--tok=V``; an ambiguous prefix counts too). The credentials of a URL
    anywhere in ``argv`` (``--bogus=http://u:p@h``) are secret as well.
    """
    found: "List[str]" = []
    wanted = ""  # what the previous token's option takes: "secret", "url" or nothing
    for token in argv:
        if wanted:
            found += _forms(token) if wanted == "secret" else url_userinfo(token)
        name, equals, value = token.partition("=")
        wanted = ""
        if name.startswith("--") and len(name) > 2:
            if any(option.startswith(name) for option in secret_options):
                wanted = "secret"
            elif any(option.startswith(name) for option in url_options):
                wanted = "url"
            if wanted and equals:
                found += _forms(value) if wanted == "secret" else url_userinfo(value)
                wanted = ""
        if "://" in token:
            for part in token.split("://")[1:]:
                found += url_userinfo(part)
    return list(dict.fromkeys(found))
