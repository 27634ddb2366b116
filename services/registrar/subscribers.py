"""The subscriber profile specification: who may register, with which credentials.

Passwords are never stored: ``bin/slee users add`` stores HA1 = H(user:realm:password) for
MD5 and SHA-256 (RFC 3261 §22.4, RFC 8760), which is all a digest server needs.
"""

from __future__ import annotations

from slee import ProfileSpec
from slee.facilities.profile import ProfileAttribute

SUBSCRIBER_SPEC_ID = "SubscriberProfile/slee.sip/1.0"


class SubscriberProfile(ProfileSpec):
    """One subscriber; the profile name is ``user@realm`` (realm = the SIP domain)."""

    username = ProfileAttribute(str, indexed=True, description="digest username (user part of the AOR)")
    realm = ProfileAttribute(str, description="digest realm = the SIP domain")
    ha1_md5 = ProfileAttribute(str, description="H(username:realm:password) with MD5")
    ha1_sha256 = ProfileAttribute(str, description="H(username:realm:password) with SHA-256")
    addresses = ProfileAttribute(list, default=[], description="AORs this user may register")
    enabled = ProfileAttribute(bool, default=True)


class SipSettingsProfile(ProfileSpec):
    """Service settings a recipe sets from its variables (profile ``default`` of table
    ``sip-settings``): the registrar and the proxy read them when they handle a request."""

    auth = ProfileAttribute(str, default="off", description="'on' for digest authentication of REGISTER")
    auth_algorithms = ProfileAttribute(str, default="SHA-256,MD5",
                                       description="digest algorithms offered, strongest first (MD5 only for "
                                                   "clients that take the first challenge, e.g. SIPp)")
    domains = ProfileAttribute(list, default=[], description="served domains (empty: any)")
    default_expires = ProfileAttribute(int, default=3600)
    max_expires = ProfileAttribute(int, default=7200)
    min_expires = ProfileAttribute(int, default=60)
    record_route = ProfileAttribute(bool, default=False, description="proxy: Record-Route dialogs")
