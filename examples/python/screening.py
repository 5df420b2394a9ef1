#!/usr/bin/env python3
"""Call screening: a session supplement that turns away blocked callers.

- A new call (an INVITE from the caller's side, leg A) whose caller is on the
  block list is answered `603 Decline` and goes no further.
- Every INVITE sipbus sends on (leg B, towards the callee) gets the header
  `X-Screened: passed`, so the callee's side can tell it went through here.

The block list is a file, read again whenever it changes:

    # one entry per line; blank lines and comments are ignored
    mallory                      # a user part: any caller mallory@<any host>
    sip:eve@evil.example.com     # a whole URI: exactly this caller
    trudy@example.org            # the same, `sip:` understood

Matching ignores case and URI parameters.

    ./run.sh screening.py --block-list blocked.txt
"""

import argparse
import os
import sys
from typing import FrozenSet, Iterable, NamedTuple, Optional, Tuple

import registry  # first: it also puts the generated code (gen/) on sys.path
from sipbus.edge.v1 import edge_pb2
from sipbus.extension.v1 import registry_pb2
from sipbus.session.v1 import supplement_pb2 as pb
from sipbus.session.v1 import supplement_pb2_grpc as pb_grpc
from watchfile import WatchedFile, config_lines

log = registry.setup_logging("screening")


# --- A little SIP: enough to find who is calling -------------------------------

def header_values(msg: edge_pb2.SipMessage, *names: str) -> list:
    """The values of the header fields with these (lower-case) names; the edge
    keeps names as spelled on the wire, compact forms included."""
    return [h.value for h in msg.headers if h.name.strip().lower() in names]


def split_address(value: str) -> Tuple[str, str]:
    """Splits a From/To value into (URI, header parameters).

    `"Mallory" <sip:mallory@example.com>;tag=1` -> (`sip:mallory@example.com`, `;tag=1`)
    `sip:mallory@example.com;tag=1`             -> (`sip:mallory@example.com`, `;tag=1`)
    """
    value = value.strip()
    start = 0
    if value.startswith('"'):
        # A quoted display name may hold `<`; skip it (backslash escapes too).
        i = 1
        while i < len(value) and value[i] != '"':
            i += 2 if value[i] == "\\" else 1
        start = i + 1
    lt = value.find("<", start)
    if lt >= 0:
        gt = value.find(">", lt)
        if gt < 0:
            return value[lt + 1:].strip(), ""
        return value[lt + 1:gt].strip(), value[gt + 1:]
    # addr-spec without brackets: parameters after `;` are the header's (RFC 3261 20.10).
    uri, _, params = value[start:].partition(";")
    return uri.strip(), ";" + params if params else ""


def has_tag(value: str) -> bool:
    params = split_address(value)[1]
    return any(p.strip().lower().split("=", 1)[0] == "tag" for p in params.split(";"))


class Caller(NamedTuple):
    uri: str   # `sip:mallory@example.com`: scheme, user and host, lower case, no parameters
    user: str  # `mallory`


def parse_uri(uri: str) -> Optional[Caller]:
    """A SIP, SIPS or TEL URI reduced to what matching looks at; None if it is none."""
    uri = uri.strip().strip("<>").lower()
    scheme, colon, rest = uri.partition(":")
    if not colon or scheme not in ("sip", "sips", "tel"):
        return None
    if "@" in rest:
        user, _, host = rest.partition("@")
        user = user.split(":", 1)[0].split(";", 1)[0]  # drop a password, user parameters
        host = host.split(";", 1)[0].split("?", 1)[0]
        return Caller(f"{scheme}:{user}@{host}", user)
    rest = rest.split(";", 1)[0].split("?", 1)[0]
    # sip:example.com has no user; tel:+4930123 is all user.
    return Caller(f"{scheme}:{rest}", rest if scheme == "tel" else "")


# --- The block list ------------------------------------------------------------

class BlockList(NamedTuple):
    users: FrozenSet[str]
    uris: FrozenSet[str]

    def match(self, callers: Iterable[Caller]) -> Optional[str]:
        """The entry that blocks one of these callers, or None."""
        for caller in callers:
            if caller.uri in self.uris:
                return caller.uri
            if caller.user and caller.user in self.users:
                return caller.user
        return None


def parse_block_list(text: str) -> BlockList:
    users, uris = set(), set()
    for number, entry in config_lines(text, inline_comments=True):
        if ":" not in entry and "@" not in entry:
            users.add(entry.lower())
            continue
        if ":" not in entry.split("@", 1)[0]:
            entry = "sip:" + entry  # `user@host`
        parsed = parse_uri(entry)
        if parsed is None:
            log.warning("block list line %d: %r is neither a user nor a SIP URI, ignored", number, entry)
        else:
            uris.add(parsed.uri)
    log.info("block list: %d users, %d URIs", len(users), len(uris))
    return BlockList(frozenset(users), frozenset(uris))


# --- The supplement ------------------------------------------------------------

def leg_name(leg: int) -> str:
    return pb.Leg.Name(leg) if leg in pb.Leg.values() else str(leg)


def method_of(msg: edge_pb2.SipMessage) -> Optional[str]:
    return msg.request.method if msg.WhichOneof("start_line") == "request" else None


class Screening(pb_grpc.SessionSupplementServicer):
    def __init__(self, block_list: WatchedFile):
        self.block_list = block_list

    def IncomingRequest(self, event, context):
        msg = event.request
        if method_of(msg) != "INVITE" or event.leg != pb.LEG_A:
            return pb.RequestVerdict()
        sid = event.session.id or "?"
        to = header_values(msg, "to", "t")
        if to and has_tag(to[0]):
            # A re-INVITE in a call that was let in already: not a new caller.
            log.info("session %s: re-INVITE on leg A, not screened", sid)
            return pb.RequestVerdict()

        # The caller as sipbus recorded it, and the From of the request itself
        # (which is all there is when the session carries no caller).
        addresses = [event.session.caller] + header_values(msg, "from", "f")[:1]
        callers = [c for c in (parse_uri(split_address(a)[0]) for a in addresses if a) if c]
        who = callers[0].uri if callers else "an unknown caller"
        entry = self.block_list.get().match(callers)
        if entry is not None:
            log.info("session %s: INVITE from %s blocked by %r: 603 Decline", sid, who, entry)
            # sipbus fills in Via, From, To, Call-ID and CSeq from the request.
            return pb.RequestVerdict(stop=edge_pb2.SipMessage(
                status=edge_pb2.StatusLine(code=603, reason="Decline")))
        log.info("session %s: INVITE from %s passes", sid, who)
        return pb.RequestVerdict()

    def OutgoingRequest(self, event, context):
        if method_of(event.message) != "INVITE":
            return pb.OutgoingReply()
        log.info("session %s: INVITE out on %s marked X-Screened: passed",
                 event.session.id or "?", leg_name(event.leg))
        # REPLACE, not ADD: a retried send calls this again for the same
        # message, and must still end up with one X-Screened.
        return pb.OutgoingReply(edits=[pb.HeaderEdit(
            op=pb.HeaderEdit.OP_REPLACE, name="X-Screened", value="passed")])

    # The rest of the service: nothing to do, neutral replies.

    def Begin(self, event, context):
        log.debug("session %s begins: %s -> %s", event.session.id, event.session.caller, event.session.callee)
        return pb.BeginReply()

    def End(self, event, context):
        log.debug("session %s ends", event.session.id)
        return pb.EndReply()

    def IncomingResponse(self, event, context):
        return pb.ResponseReply()

    def OutgoingResponse(self, event, context):
        return pb.OutgoingReply()

    def Timer(self, event, context):
        return pb.TimerReply()


def main() -> None:
    parser = argparse.ArgumentParser(description="sipbus session supplement: call screening")
    parser.add_argument("--block-list", metavar="FILE", default=os.environ.get("BLOCK_LIST"),
                        help="blocked callers, one per line (env BLOCK_LIST)")
    args = parser.parse_args()
    if not args.block_list:
        parser.error("--block-list FILE (or BLOCK_LIST) is required")
    if not os.path.exists(args.block_list):
        log.warning("%s does not exist (yet): blocking nobody until it does", args.block_list)

    block_list = WatchedFile(args.block_list, parse_block_list, BlockList(frozenset(), frozenset()))
    registry.serve(
        registry_pb2.SESSION_SUPPLEMENT, "screening",
        lambda server: pb_grpc.add_SessionSupplementServicer_to_server(Screening(block_list), server),
        filters=["INVITE"])


if __name__ == "__main__":
    sys.exit(main())
