#!/usr/bin/env python3
"""A custom event package, `x-status`: subscribe to a user's status line.

A SUBSCRIBE with `Event: x-status` for sip:alice@example.com gets NOTIFYs
whose text/plain body is

    sip:alice@example.com in a meeting

taken from a status file, read again whenever it changes:

    # user  status (the rest of the line)
    alice   in a meeting
    bob     away

A user without a line is `unknown`. pubsub-svc does all of RFC 6665 (dialog,
Expires, timers, NOTIFY retries); this handler only decides on new
subscriptions and says what the state is.

    ./run.sh status_package.py --status-file status.txt
"""

import argparse
import os
import sys
from typing import Dict

import registry  # first: it also puts the generated code (gen/) on sys.path
from sipbus.extension.v1 import registry_pb2
from sipbus.pubsub.v1 import subscription_pb2 as pb
from sipbus.pubsub.v1 import subscription_pb2_grpc as pb_grpc
from watchfile import WatchedFile, config_lines

PACKAGE = "x-status"
CONTENT_TYPE = "text/plain"

log = registry.setup_logging("x-status")


def user_part(resource: str) -> str:
    """`sip:Alice@example.com;transport=tcp` -> `alice`; a bare `alice` stays."""
    rest = resource.strip().strip("<>").lower()
    scheme, colon, after = rest.partition(":")
    if colon and scheme in ("sip", "sips", "tel", "pres"):
        rest = after
    return rest.split("@", 1)[0].split(";", 1)[0]


def parse_status_file(text: str) -> Dict[str, str]:
    statuses = {}
    for number, line in config_lines(text):
        fields = line.split(None, 1)
        if len(fields) < 2:
            log.warning("status file line %d: %r has no status, ignored", number, line)
            continue
        statuses[user_part(fields[0])] = fields[1].strip()
    log.info("status file: %d users", len(statuses))
    return statuses


def reason_name(reason: int) -> str:
    return pb.TerminationReason.Name(reason) if reason in pb.TerminationReason.values() else str(reason)


class StatusPackage(pb_grpc.SubscriptionHandlerServicer):
    def __init__(self, statuses: WatchedFile):
        self.statuses = statuses

    def NewSubscription(self, request, context):
        sub = request.subscription
        if request.allowed:
            log.info("subscription %s: %s watches %s: active", sub.id, sub.watcher, sub.resource)
            return pb.NewSubscriptionReply(active=pb.Empty())
        # The package's authorization policy said no (or not yet): accept it
        # as pending (RFC 6665 4.2.1.1) rather than refusing outright; its
        # NOTIFYs say `pending` and carry no status.
        log.info("subscription %s: %s watches %s: pending (not allowed by policy)",
                 sub.id, sub.watcher, sub.resource)
        return pb.NewSubscriptionReply(pending=pb.Empty())

    def State(self, request, context):
        content_type = request.content_type.split(";", 1)[0].strip().lower()
        if content_type not in ("", CONTENT_TYPE):
            log.warning("state of %s asked as %r, which this package does not produce", request.resource, content_type)
            return pb.StateReply()
        if not request.resource.strip():
            return pb.StateReply()  # no resource, no state
        status = self.statuses.get().get(user_part(request.resource), "unknown")
        log.info("state of %s (subscription %s, NOTIFY %d): %s",
                 request.resource, request.subscription or "-", request.version, status)
        return pb.StateReply(body=f"{request.resource.strip()} {status}\n".encode("utf-8"))

    # Lifecycle calls, for bookkeeping this package does not need: log them.

    def Established(self, event, context):
        log.info("subscription %s: established", event.subscription.id)
        return pb.Empty()

    def Refreshed(self, event, context):
        log.info("subscription %s: refreshed", event.subscription.id)
        return pb.Empty()

    def Terminated(self, request, context):
        log.info("subscription %s: terminated (%s)", request.subscription.id, reason_name(request.reason))
        return pb.Empty()

    def Notified(self, request, context):
        # Only for subscriptions sipbus makes to other notifiers: none here.
        log.info("NOTIFY for %s (%s) received, %d bytes, ignored",
                 request.resource, request.package, len(request.notify.body))
        return pb.Empty()


def main() -> None:
    parser = argparse.ArgumentParser(description=f"sipbus subscription handler: the {PACKAGE} event package")
    parser.add_argument("--status-file", metavar="FILE", default=os.environ.get("STATUS_FILE"),
                        help="`user status...` lines (env STATUS_FILE); without it every status is unknown")
    args = parser.parse_args()
    if not args.status_file:
        log.warning("no --status-file (or STATUS_FILE): every status is unknown")
        statuses = WatchedFile(os.devnull, parse_status_file, {})
    else:
        if not os.path.exists(args.status_file):
            log.warning("%s does not exist (yet): every status is unknown until it does", args.status_file)
        statuses = WatchedFile(args.status_file, parse_status_file, {})
    registry.serve(
        registry_pb2.SUBSCRIPTION_HANDLER, PACKAGE,
        lambda server: pb_grpc.add_SubscriptionHandlerServicer_to_server(StatusPackage(statuses), server),
        filters=[PACKAGE], types=[CONTENT_TYPE])


if __name__ == "__main__":
    sys.exit(main())
