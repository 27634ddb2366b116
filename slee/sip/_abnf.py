"""RFC 3261 §25 grammar as precompiled regexes, each beside the rule it implements.

Only the pieces the parser needs are here; where the code is more liberal than the ABNF a
comment says why (RFC 4475 asks receivers to be tolerant wherever that is unambiguous).
"""

from __future__ import annotations

import re

# alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~"
TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" )
TOKEN = rf"[{TOKEN_CHARS}]+"
TOKEN_RE = re.compile(TOKEN)
TOKEN_FULL_RE = re.compile(rf"{TOKEN}\Z")

# Method = INVITEm / ACKm / OPTIONSm / BYEm / CANCELm / REGISTERm / extension-method
# extension-method = token
METHOD_RE = TOKEN_FULL_RE

# SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT   (literal "SIP" is case-insensitive, §25)
SIP_VERSION_RE = re.compile(r"SIP/(\d+)\.(\d+)\Z", re.IGNORECASE)

# Status-Code = 3DIGIT ; Reason-Phrase = *(reserved / unreserved / escaped / UTF8-NONASCII /
#   UTF8-CONT / SP / HTAB)
STATUS_CODE_RE = re.compile(r"[1-6]\d\d\Z")

# scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )   (RFC 3986 §3.1)
SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+\-.]*):")

# header-name = token ; HCOLON = *( SP / HTAB ) ":" SWS
HEADER_NAME_RE = TOKEN_FULL_RE

# LWS = [*WSP CRLF] 1*WSP ; folded lines are unfolded to a single SP before parsing (§7.3.1)
FOLD_RE = re.compile(r"[ \t]*\r?\n[ \t]+")

# quoted-string = SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE
# quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
# Liberal: any character may follow the backslash (UTF-8 included); CR/LF never appear
# here because folding was undone already.
QUOTED_STRING = r'"(?:[^"\\]|\\.)*"'
QUOTED_STRING_RE = re.compile(QUOTED_STRING, re.DOTALL)
QUOTED_PAIR_RE = re.compile(r"\\(.)", re.DOTALL)

# generic-param = token [ EQUAL gen-value ] ; gen-value = token / host / quoted-string
# EQUAL = SWS "=" SWS ; SEMI = SWS ";" SWS.  Values are taken as any run of characters
# other than separators (host covers IPv6 references with ":" and "[ ]").
PARAM_RE = re.compile(
    rf"\s*;\s*({TOKEN})(?:\s*=\s*({QUOTED_STRING}|[^\s;,\"]+))?",
    re.DOTALL,
)

# Via: sent-protocol LWS sent-by *( SEMI via-params )
# sent-protocol = protocol-name SLASH protocol-version SLASH transport ; SLASH = SWS "/" SWS
# sent-by = host [ COLON port ] ; host = hostname / IPv4address / IPv6reference
VIA_RE = re.compile(
    rf"\s*({TOKEN})\s*/\s*({TOKEN})\s*/\s*({TOKEN})\s+"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._]+)"
    r"(?:\s*:\s*(\d{1,5}))?"
    r"\s*(;.*)?\Z",
    re.DOTALL,
)

# The common shape, without LWS, IPv6 or an odd protocol, matched first for speed.
VIA_FAST_RE = re.compile(
    r"SIP/2\.0/([A-Za-z]+) ([A-Za-z0-9\-._]+)(?::(\d{1,4}|[1-5]\d{4}|6[0-4]\d{3}|65[0-4]\d\d"
    r"|655[0-2]\d|6553[0-5]))?(;[^ \t]*)?\Z"
)

# hostname = *( domainlabel "." ) toplabel [ "." ] ; IPv4address = 1*3DIGIT "." ...
# Liberal: "_" is accepted in labels (seen in the wild, harmless).
HOSTNAME_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9\-_.]*[A-Za-z0-9_.])?\Z")
IPV4_RE = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\Z")
# IPv6reference = "[" IPv6address "]".  Liberal per RFC 5118 §4.10: "2001:db8:::192.0.2.1"
# (three colons) must be tolerated, so only the character set and shape are checked here.
IPV6_RE = re.compile(r"[0-9A-Fa-f:]*:[0-9A-Fa-f:]*(?:\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})?\Z")

# delta-seconds = 1*DIGIT
DIGITS_RE = re.compile(r"\d+\Z")

# CSeq = "CSeq" HCOLON 1*DIGIT LWS Method
CSEQ_RE = re.compile(rf"\s*(\d+)\s+({TOKEN})\s*\Z")

# Fast path for the common name-addr shape: [display] "<" addr-spec ">" *(SEMI param)
NAME_ADDR_FAST_RE = re.compile(
    rf'\s*(?:({QUOTED_STRING})|([^<>"]*?))\s*<([A-Za-z][A-Za-z0-9+\-.]*:[^<>\s]*)>\s*(.*)\Z',
    re.DOTALL,
)

# reserved / unreserved sets used when escaping URI components (§25.1)
ALPHANUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
MARK = "-_.!~*'()"
UNRESERVED = ALPHANUM + MARK
# user = 1*( unreserved / escaped / user-unreserved )
# user-unreserved = "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"
USER_SAFE = UNRESERVED + "&=+$,;?/"
# password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
PASSWORD_SAFE = UNRESERVED + "&=+$,"
# paramchar = param-unreserved / unreserved / escaped ; param-unreserved = "[" / "]" / "/" /
#   ":" / "&" / "+" / "$"
PARAM_SAFE = UNRESERVED + "[]/:&+$"
# hname / hvalue: hnv-unreserved = "[" / "]" / "/" / "?" / ":" / "+" / "$"
HEADER_SAFE = UNRESERVED + "[]/?:+$"
