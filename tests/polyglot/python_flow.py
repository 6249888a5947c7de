#!/usr/bin/env python3
"""One web chat through a running Switchboard gateway, written as a Python client author would.

The stubs come from grpc_tools.protoc run on proto/ (they must be on PYTHONPATH):

    python -m grpc_tools.protoc -I proto --python_out=OUT --grpc_python_out=OUT $(find proto -name '*.proto')
    PYTHONPATH=OUT python tests/polyglot/python_flow.py --gateway 127.0.0.1:50051 \\
        --credentials switchboard-data/dev-credentials.json

protoc writes one directory per proto package (switchboard/conversation/v1/...) without
__init__.py files; Python 3 imports them as namespace packages, so
`from switchboard.conversation.v1 import conversation_service_pb2_grpc` works as is.

Exits 0 when every step passes, 1 with the failed step named otherwise.
"""

import argparse
import json
import queue
import sys
import threading
import time
import uuid

try:
    import grpc
    from google.protobuf import timestamp_pb2

    from switchboard.common.v1 import common_pb2
    from switchboard.conversation.v1 import conversation_pb2
    from switchboard.conversation.v1 import conversation_service_pb2 as conv
    from switchboard.conversation.v1 import conversation_service_pb2_grpc as conv_grpc
    from switchboard.reporting.v1 import reporting_pb2
    from switchboard.reporting.v1 import reporting_service_pb2 as rep
    from switchboard.reporting.v1 import reporting_service_pb2_grpc as rep_grpc
    from switchboard.routing.v1 import routing_pb2
    from switchboard.routing.v1 import routing_service_pb2 as routing
    from switchboard.routing.v1 import routing_service_pb2_grpc as routing_grpc
except ImportError as err:
    sys.exit(
        "python flow: cannot import grpc or the generated stubs (%s).\n"
        "Install grpcio and grpcio-tools (scripts/test puts them in .venv/), generate the stubs with\n"
        "  python -m grpc_tools.protoc -I proto --python_out=OUT --grpc_python_out=OUT <all .proto files>\n"
        "and put OUT on PYTHONPATH." % err
    )

CARD = "4111 1111 1111 1111"
TIMEOUT = 20  # seconds, for each unary call


class FlowError(Exception):
    """A check that did not hold."""


CURRENT_STEP = ["start"]


def step(name):
    CURRENT_STEP[0] = name
    print("  - " + name, flush=True)


def check(condition, message):
    if not condition:
        raise FlowError(message)


def rid():
    return str(uuid.uuid4())


def expect_error(code, call, request, metadata, what):
    """Calls and checks that the call fails with this status code."""
    try:
        response = call(request, metadata=metadata, timeout=TIMEOUT)
    except grpc.RpcError as err:
        check(
            err.code() == code,
            "%s: expected %s, got %s: %s" % (what, code.name, err.code().name, err.details()),
        )
        return err
    raise FlowError("%s: expected %s, but the call succeeded: %s" % (what, code.name, response))


def eventually(what, seconds, probe):
    """Polls probe() until it returns something truthy; fails after `seconds`."""
    deadline = time.monotonic() + seconds
    last = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise FlowError("%s: not within %s s" % (what, seconds))
        time.sleep(0.5)


class OfferListener:
    """Consumes the agent's StreamOffers stream in a thread, as an agent desktop would."""

    def __init__(self, agents, metadata):
        self.offers = queue.Queue()
        # What the stream opened with: the agent's state, then the end of the snapshot.
        self.opening = queue.Queue()
        self.error = None
        self._call = agents.StreamOffers(routing.StreamOffersRequest(), metadata=metadata)
        self._thread = threading.Thread(target=self._run, name="offers", daemon=True)
        self._thread.start()

    def _run(self):
        try:
            for message in self._call:
                kind = message.WhichOneof("update")
                if kind == "offer":
                    self.offers.put(message.offer)
                elif kind in ("agent_state", "snapshot_end"):
                    self.opening.put(kind)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:
                self.error = err

    def wait_for_pending(self, conversation_id, seconds):
        deadline = time.monotonic() + seconds
        seen = []
        while time.monotonic() < deadline:
            try:
                offer = self.offers.get(timeout=0.5)
            except queue.Empty:
                if self.error is not None:
                    raise FlowError(
                        "the offer stream failed: %s %s" % (self.error.code().name, self.error.details())
                    )
                continue
            seen.append((offer.conversation_id, routing_pb2.Offer.State.Name(offer.state)))
            if offer.conversation_id == conversation_id and offer.state == routing_pb2.Offer.STATE_PENDING:
                return offer
        raise FlowError("no pending offer for %s within %s s; seen: %s" % (conversation_id, seconds, seen))

    def opened_with(self, count, seconds):
        """The kinds of the first `count` non-offer messages."""
        kinds = []
        for _ in range(count):
            try:
                kinds.append(self.opening.get(timeout=seconds))
            except queue.Empty:
                raise FlowError("the offer stream sent only %s within %s s" % (kinds, seconds))
        return kinds

    def close(self):
        self._call.cancel()
        self._thread.join(timeout=5)


def flow_window():
    """From an hour before the flow starts to three hours after: a TOTAL report over it counts
    the flow's conversation whatever day it is created or closed on (the flow takes minutes)."""
    start = int(time.time()) - 3600
    return start, start + 4 * 3600


def created_closed_in(reports, metadata, window):
    start, end = window
    response = reports.GetCreatedClosedReport(
        rep.GetCreatedClosedReportRequest(
            filter=reporting_pb2.ReportFilter(
                time_range=common_pb2.TimeRange(
                    start_time=timestamp_pb2.Timestamp(seconds=start),
                    end_time=timestamp_pb2.Timestamp(seconds=end),
                ),
                time_zone="UTC",
            ),
            granularity=reporting_pb2.GRANULARITY_TOTAL,
        ),
        metadata=metadata,
        timeout=TIMEOUT,
    )
    for row in response.rows:
        check(
            row.period.start_time.seconds == start,
            "a TOTAL row starts at the range start %d, not %d" % (start, row.period.start_time.seconds),
        )
    return sum(r.created for r in response.rows), sum(r.closed for r in response.rows)


def accepted_in(reports, metadata, window, queue_id):
    """Queue offers accepted in the queue over the window (from routing-svc's log)."""
    start, end = window
    response = reports.GetQueueMetricsReport(
        rep.GetQueueMetricsReportRequest(
            filter=reporting_pb2.ReportFilter(
                time_range=common_pb2.TimeRange(
                    start_time=timestamp_pb2.Timestamp(seconds=start),
                    end_time=timestamp_pb2.Timestamp(seconds=end),
                ),
                time_zone="UTC",
                queue_ids=[queue_id],
            ),
            granularity=reporting_pb2.GRANULARITY_TOTAL,
        ),
        metadata=metadata,
        timeout=TIMEOUT,
    )
    for row in response.rows:
        check(row.queue_id == queue_id, "a queue row of another queue: %s" % row.queue_id)
    return sum(r.accepted for r in response.rows)


def open_in(reports, metadata, queue_id, program_id):
    """Conversations open now in the queue, counted only within the program (from
    conversation-svc's log; no time range: whenever created)."""
    response = reports.GetOpenConversationsReport(
        rep.GetOpenConversationsReportRequest(
            filter=reporting_pb2.ReportFilter(queue_ids=[queue_id], program_ids=[program_id]),
        ),
        metadata=metadata,
        timeout=TIMEOUT,
    )
    for row in response.rows:
        check(row.queue_id == queue_id, "an open row of another queue: %s" % row.queue_id)
    return sum(r.open for r in response.rows)


def activity_of(reports, metadata, window, agent_id):
    """The agent's activity over the window, one TOTAL row (from routing-svc's log)."""
    start, end = window
    response = reports.GetAgentActivityReport(
        rep.GetAgentActivityReportRequest(
            filter=reporting_pb2.ReportFilter(
                time_range=common_pb2.TimeRange(
                    start_time=timestamp_pb2.Timestamp(seconds=start),
                    end_time=timestamp_pb2.Timestamp(seconds=end),
                ),
                time_zone="UTC",
                agent_ids=[agent_id],
            ),
            granularity=reporting_pb2.GRANULARITY_TOTAL,
        ),
        metadata=metadata,
        timeout=TIMEOUT,
    )
    for row in response.rows:
        check(row.agent_id == agent_id, "an activity row of another agent: %s" % row.agent_id)
    return list(response.rows)


def run(gateway, creds):
    users = {u["handle"]: u for u in creds["users"]}
    agent1 = users["agent1"]
    as_agent1 = (("authorization", "Bearer " + agent1["token"]),)
    as_supervisor = (("authorization", "Bearer " + users["supervisor"]["token"]),)
    as_bot = (("x-api-key", creds["bot"]["api_key"]),)

    channel = grpc.insecure_channel(gateway)
    try:
        grpc.channel_ready_future(channel).result(timeout=TIMEOUT)
    except grpc.FutureTimeoutError:
        raise FlowError("cannot connect to the gateway at %s" % gateway)
    agents = routing_grpc.AgentServiceStub(channel)
    queues = routing_grpc.QueueServiceStub(channel)
    conversations = conv_grpc.ConversationServiceStub(channel)
    reports = rep_grpc.ReportingServiceStub(channel)

    def create_request(request_id):
        return conv.CreateConversationRequest(
            request_id=request_id,
            channel=common_pb2.CHANNEL_WEBCHAT,
            queue_id=creds["queue_id"],
            contact=conversation_pb2.Contact(display_name="Pat Python"),
            channel_address="visitor-python-" + rid(),
            pre_chat_data=[
                conversation_pb2.PreChatField(name="order_number", label="Order number", value="P-2002")
            ],
            bot_transcript=[
                conversation_pb2.TranscriptEntry(
                    sender=conversation_pb2.SENDER_KIND_CUSTOMER, text="My parcel never arrived"
                ),
                conversation_pb2.TranscriptEntry(
                    sender=conversation_pb2.SENDER_KIND_BOT, text="Let me get you a person."
                ),
            ],
        )

    step("bad input: CreateConversation without request_id is INVALID_ARGUMENT")
    err = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        conversations.CreateConversation,
        create_request(""),
        as_bot,
        "CreateConversation with an empty request_id",
    )
    check("request_id" in (err.details() or ""), "the error does not name request_id: %r" % err.details())

    step("bad input: an agent calling QueueService.CreateProgram is PERMISSION_DENIED")
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        queues.CreateProgram,
        routing.CreateProgramRequest(
            request_id=rid(), program=routing_pb2.Program(display_name="Not allowed " + rid())
        ),
        as_agent1,
        "CreateProgram as agent1",
    )

    step("the created-and-closed and queue reports before the flow")
    window = flow_window()
    created_before, closed_before = created_closed_in(reports, as_supervisor, window)
    accepted_before = accepted_in(reports, as_supervisor, window, creds["queue_id"])

    step("agent1 sets presence AVAILABLE")
    state = agents.SetPresence(
        routing.SetPresenceRequest(request_id=rid(), presence=routing_pb2.PRESENCE_AVAILABLE),
        metadata=as_agent1,
        timeout=TIMEOUT,
    ).agent_state
    check(
        state.presence == routing_pb2.PRESENCE_AVAILABLE,
        "presence is %s" % routing_pb2.Presence.Name(state.presence),
    )

    step("agent1 streams offers in a thread")
    listener = OfferListener(agents, as_agent1)
    try:
        opening = listener.opened_with(2, 10)
        check(
            opening == ["agent_state", "snapshot_end"],
            "the offer stream opens with the agent's state, then the snapshot end: %s" % opening,
        )

        step("the bot creates a web chat; a retry with the same request_id returns the same one")
        request = create_request(rid())
        created = conversations.CreateConversation(request, metadata=as_bot, timeout=TIMEOUT).conversation
        check(created.id, "no conversation id")
        check(
            created.state == conversation_pb2.Conversation.STATE_OPEN,
            "a new conversation is %s" % conversation_pb2.Conversation.State.Name(created.state),
        )
        retried = conversations.CreateConversation(request, metadata=as_bot, timeout=TIMEOUT).conversation
        check(
            retried.id == created.id,
            "the retry created another conversation: %s then %s" % (created.id, retried.id),
        )

        step("the offer reaches agent1's stream")
        offer = listener.wait_for_pending(created.id, 20)
        check(offer.agent_id == agent1["id"], "the offer is for %s, not agent1" % offer.agent_id)

        step("agent1 accepts the offer")
        accepted = agents.AcceptOffer(
            routing.AcceptOfferRequest(request_id=rid(), offer_id=offer.id),
            metadata=as_agent1,
            timeout=TIMEOUT,
        )
        check(accepted.conversation_id == created.id, "accepted %s" % accepted.conversation_id)

        step("the conversation is ACTIVE with agent1 as owner")

        def active():
            c = conversations.GetConversation(
                conv.GetConversationRequest(conversation_id=created.id), metadata=as_agent1, timeout=TIMEOUT
            ).conversation
            return c if c.state == conversation_pb2.Conversation.STATE_ACTIVE else None

        conversation = eventually("the conversation to become ACTIVE", 10, active)
        check(conversation.owner_agent_id == agent1["id"], "owner is %s" % conversation.owner_agent_id)
        check(
            [f.value for f in conversation.pre_chat_data] == ["P-2002"],
            "pre-chat data: %s" % conversation.pre_chat_data,
        )
        check(len(conversation.bot_transcript) == 2, "bot transcript: %s" % conversation.bot_transcript)

        step("the customer (through the bot) and agent1 exchange messages")
        customer = conversations.SendMessage(
            conv.SendMessageRequest(
                request_id=rid(),
                conversation_id=created.id,
                text="I paid with %s, can you check?" % CARD,
                sender=conversation_pb2.SENDER_KIND_CUSTOMER,
            ),
            metadata=as_bot,
            timeout=TIMEOUT,
        ).message
        check(customer.sender == conversation_pb2.SENDER_KIND_CUSTOMER, "sender %s" % customer.sender)
        check(CARD not in customer.text and CARD.replace(" ", "") not in customer.text,
              "the card number is not masked: %r" % customer.text)
        reply = conversations.SendMessage(
            conv.SendMessageRequest(
                request_id=rid(), conversation_id=created.id, text="Hello Pat, checking now."
            ),
            metadata=as_agent1,
            timeout=TIMEOUT,
        ).message
        check(reply.sender == conversation_pb2.SENDER_KIND_AGENT, "sender %s" % reply.sender)
        check(
            reply.sender_display_name == agent1["display_name"],
            "the agent's message shows %r" % reply.sender_display_name,
        )

        step("reporting counts it open in the demo queue and program, and in no other program")
        eventually(
            "the open-conversations report to count it",
            15,
            lambda: open_in(reports, as_supervisor, creds["queue_id"], creds["program_id"]) >= 1 or None,
        )
        other_program = str(uuid.uuid4())
        check(
            open_in(reports, as_supervisor, creds["queue_id"], other_program) == 0,
            "a program the queue is not in counts nothing",
        )

        step("ListMessages has both messages")
        messages = conversations.ListMessages(
            conv.ListMessagesRequest(conversation_id=created.id, page_size=100),
            metadata=as_agent1,
            timeout=TIMEOUT,
        ).messages
        ids = [m.id for m in messages]
        check(customer.id in ids and reply.id in ids, "messages: %s" % [m.text for m in messages])

        step("StreamConversation resumes after the last listed message")
        stream = conversations.StreamConversation(
            conv.StreamConversationRequest(conversation_id=created.id, after_sequence=messages[-1].sequence),
            metadata=as_agent1,
            timeout=TIMEOUT,
        )
        opening = []
        for message in stream:
            opening.append(message.WhichOneof("update"))
            if len(opening) == 2:
                break
        stream.cancel()
        check(opening == ["conversation", "snapshot_end"], "the stream opened with %s" % opening)

        step("HTML is refused: messages are plain text")
        expect_error(
            grpc.StatusCode.INVALID_ARGUMENT,
            conversations.SendMessage,
            conv.SendMessageRequest(
                request_id=rid(),
                conversation_id=created.id,
                text="<b>bold</b>",
                format=conversation_pb2.MESSAGE_FORMAT_HTML,
            ),
            as_agent1,
            "SendMessage with format HTML",
        )

        step("agent1 ends the conversation: WRAP_UP")
        ended = conversations.EndConversation(
            conv.EndConversationRequest(request_id=rid(), conversation_id=created.id),
            metadata=as_agent1,
            timeout=TIMEOUT,
        ).conversation
        check(
            ended.state == conversation_pb2.Conversation.STATE_WRAP_UP,
            "state %s" % conversation_pb2.Conversation.State.Name(ended.state),
        )

        step("agent1 submits a wrap-up reason: CLOSED")
        closed = conversations.SubmitWrapUp(
            conv.SubmitWrapUpRequest(
                request_id=rid(), conversation_id=created.id, wrap_up_reason_ids=creds["wrap_up_reason_ids"][:1]
            ),
            metadata=as_agent1,
            timeout=TIMEOUT,
        ).conversation
        check(
            closed.state == conversation_pb2.Conversation.STATE_CLOSED,
            "state %s" % conversation_pb2.Conversation.State.Name(closed.state),
        )
        check(closed.HasField("close_time"), "no close_time")
        check(
            closed.close_time.seconds + 3600 <= window[1],
            "the flow ended more than an hour after the report window's end %d" % window[1],
        )
    finally:
        listener.close()

    step("the created-and-closed report over the whole flow counts one more of each")

    def counted():
        created_now, closed_now = created_closed_in(reports, as_supervisor, window)
        if created_now >= created_before + 1 and closed_now >= closed_before + 1:
            return (created_now, closed_now)
        return None

    eventually(
        "created > %d and closed > %d in the flow's report" % (created_before, closed_before), 15, counted
    )

    step("the queue-metrics report counts the accepted offer")
    eventually(
        "accepted > %d in the queue's report" % accepted_before,
        15,
        lambda: accepted_in(reports, as_supervisor, window, creds["queue_id"]) > accepted_before or None,
    )

    step("the agent-activity report shows agent1 signed in, with capacity used")

    def active():
        rows = activity_of(reports, as_supervisor, window, agent1["id"])
        return next((r for r in rows if r.signed_in.ToMicroseconds() > 0 and r.occupancy > 0), None)

    row = eventually("an activity row for agent1 with time signed in and capacity used", 15, active)
    times = [row.available, row.busy, row.away, row.do_not_disturb, row.rona]
    check(
        row.signed_in.ToMicroseconds() == sum(t.ToMicroseconds() for t in times),
        "signed in is the sum of the presences: %s" % row,
    )
    transfer_then_force_close(creds, users, agents, conversations, channel, create_request)
    channel.close()


def transfer_then_force_close(creds, users, agents, conversations, channel, create_request):
    """agent1 transfers a chat to agent2, who accepts it on the offer stream; agent2 holds a
    conference with agent1 and ends it; a supervisor then force-closes the chat and agent2's
    capacity is free again."""
    as_agent1 = (("authorization", "Bearer " + users["agent1"]["token"]),)
    as_agent2 = (("authorization", "Bearer " + users["agent2"]["token"]),)
    as_supervisor = (("authorization", "Bearer " + users["supervisor"]["token"]),)
    as_bot = (("x-api-key", creds["bot"]["api_key"]),)
    supervisors = conv_grpc.SupervisorServiceStub(channel)

    def presence(metadata, value):
        agents.SetPresence(
            routing.SetPresenceRequest(request_id=rid(), presence=value), metadata=metadata, timeout=TIMEOUT
        )

    step("agent1 takes a second chat")
    listener1 = OfferListener(agents, as_agent1)
    listener2 = None
    try:
        presence(as_agent1, routing_pb2.PRESENCE_AVAILABLE)
        created = conversations.CreateConversation(create_request(rid()), metadata=as_bot, timeout=TIMEOUT).conversation
        offer = listener1.wait_for_pending(created.id, 20)
        agents.AcceptOffer(
            routing.AcceptOfferRequest(request_id=rid(), offer_id=offer.id), metadata=as_agent1, timeout=TIMEOUT
        )

        def owned_by(metadata, agent_id):
            def probe():
                c = conversations.GetConversation(
                    conv.GetConversationRequest(conversation_id=created.id), metadata=metadata, timeout=TIMEOUT
                ).conversation
                return c if c.owner_agent_id == agent_id else None

            return probe

        eventually("agent1 to own the second chat", 15, owned_by(as_agent1, users["agent1"]["id"]))

        step("agent1 transfers it to agent2, who gets a TRANSFER offer and accepts")
        listener2 = OfferListener(agents, as_agent2)
        presence(as_agent2, routing_pb2.PRESENCE_AVAILABLE)
        transfer = conversations.TransferConversation(
            conv.TransferConversationRequest(
                request_id=rid(), conversation_id=created.id, target_agent_id=users["agent2"]["id"], note="over to you"
            ),
            metadata=as_agent1,
            timeout=TIMEOUT,
        ).transfer
        check(transfer.outcome == common_pb2.ANSWER_OUTCOME_PENDING, "the transfer is not PENDING: %s" % transfer)
        offer = listener2.wait_for_pending(created.id, 20)
        check(offer.kind == routing_pb2.OFFER_KIND_TRANSFER, "offer kind %s" % offer.kind)
        check(offer.transfer_id == transfer.id, "the offer proposes %s" % offer.transfer_id)
        agents.AcceptOffer(
            routing.AcceptOfferRequest(request_id=rid(), offer_id=offer.id), metadata=as_agent2, timeout=TIMEOUT
        )
        taken = eventually("agent2 to own the chat", 15, owned_by(as_agent2, users["agent2"]["id"]))
        roles = {p.user_id: p.role for p in taken.participants if p.state == conversation_pb2.Participant.STATE_JOINED}
        check(
            roles.get(users["agent1"]["id"]) == conversation_pb2.PARTICIPANT_ROLE_CONSULTANT,
            "agent1 stays as a consultant: %s" % roles,
        )

        step("agent1 leaves; agent2 invites agent1 to a conference; agent1 accepts on its stream; agent2 ends it")
        conversations.LeaveConversation(
            conv.LeaveConversationRequest(request_id=rid(), conversation_id=created.id),
            metadata=as_agent1,
            timeout=TIMEOUT,
        )

        def released1():
            state = agents.GetAgentState(routing.GetAgentStateRequest(), metadata=as_agent1, timeout=TIMEOUT)
            return state if state.agent_state.capacity_used == 0 else None

        # agent1's hold from before the transfer is released asynchronously (an outbox).
        eventually("agent1 to hold no capacity", 15, released1)
        invited = conversations.InviteParticipant(
            conv.InviteParticipantRequest(
                request_id=rid(),
                conversation_id=created.id,
                agent_id=users["agent1"]["id"],
                role=conversation_pb2.PARTICIPANT_ROLE_CONFERENCE,
                note="second opinion",
            ),
            metadata=as_agent2,
            timeout=TIMEOUT,
        ).participant
        check(invited.state == conversation_pb2.Participant.STATE_INVITED, "not INVITED: %s" % invited)
        offer = listener1.wait_for_pending(created.id, 20)
        check(offer.kind == routing_pb2.OFFER_KIND_CONFERENCE, "offer kind %s" % offer.kind)
        check(offer.invitation_id == invited.invitation_id, "the offer proposes %s" % offer.invitation_id)
        agents.AcceptOffer(
            routing.AcceptOfferRequest(request_id=rid(), offer_id=offer.id), metadata=as_agent1, timeout=TIMEOUT
        )

        def conferencing():
            c = conversations.GetConversation(
                conv.GetConversationRequest(conversation_id=created.id), metadata=as_agent2, timeout=TIMEOUT
            ).conversation
            joined = [
                p
                for p in c.participants
                if p.invitation_id == invited.invitation_id and p.state == conversation_pb2.Participant.STATE_JOINED
            ]
            return joined or None

        eventually("agent1 to join the conference", 15, conferencing)
        ended = conversations.EndConference(
            conv.EndConferenceRequest(
                request_id=rid(), conversation_id=created.id, wrap_up_reason_ids=creds["wrap_up_reason_ids"][:1]
            ),
            metadata=as_agent2,
            timeout=TIMEOUT,
        ).conversation
        left = [p for p in ended.participants if p.invitation_id == invited.invitation_id]
        check(
            left and left[0].state == conversation_pb2.Participant.STATE_LEFT,
            "agent1 left with the conference: %s" % left,
        )

        step("the supervisor force-closes it; agent2's capacity is free again")
        closed = supervisors.ForceCloseConversation(
            conv.ForceCloseConversationRequest(request_id=rid(), conversation_id=created.id, reason="test over"),
            metadata=as_supervisor,
            timeout=TIMEOUT,
        ).conversation
        check(closed.state == conversation_pb2.Conversation.STATE_CLOSED, "not CLOSED: %s" % closed.state)

        def free():
            state = agents.GetAgentState(routing.GetAgentStateRequest(), metadata=as_agent2, timeout=TIMEOUT)
            return state if state.agent_state.capacity_used == 0 else None

        eventually("agent2 to hold no capacity", 15, free)

        step("the transfer ledger shows the chat's queue offer, transfer and conference invitation")
        reports = rep_grpc.ReportingServiceStub(channel)
        start, end = flow_window()

        def ledger():
            entries = reports.ListTransferLedger(
                rep.ListTransferLedgerRequest(
                    filter=reporting_pb2.ReportFilter(
                        time_range=common_pb2.TimeRange(
                            start_time=timestamp_pb2.Timestamp(seconds=start),
                            end_time=timestamp_pb2.Timestamp(seconds=end),
                        ),
                    ),
                    conversation_id=created.id,
                ),
                metadata=as_supervisor,
                timeout=TIMEOUT,
            ).entries
            kinds = [e.kind for e in entries]
            answered = all(e.outcome == common_pb2.ANSWER_OUTCOME_ACCEPTED for e in entries)
            wanted = [
                reporting_pb2.LEDGER_ENTRY_KIND_QUEUE_OFFER,
                reporting_pb2.LEDGER_ENTRY_KIND_TRANSFER,
                reporting_pb2.LEDGER_ENTRY_KIND_CONFERENCE,
            ]
            return entries if kinds == wanted and answered else None

        entries = eventually("the ledger to show three accepted lines", 15, ledger)
        check(entries[1].transfer_id == transfer.id, "the ledger's transfer is %s" % entries[1].transfer_id)
        check(entries[1].from_user_id == users["agent1"]["id"], "sent by %s" % entries[1].from_user_id)
        check(entries[2].to_agent_id == users["agent1"]["id"], "invited %s" % entries[2].to_agent_id)
    finally:
        listener1.close()
        if listener2 is not None:
            listener2.close()
        presence(as_agent2, routing_pb2.PRESENCE_OFFLINE)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", required=True, help="host:port of the gateway")
    parser.add_argument("--credentials", required=True, help="dev-credentials.json of `switchboard dev`")
    args = parser.parse_args()
    try:
        with open(args.credentials, encoding="utf-8") as f:
            creds = json.load(f)
    except (OSError, ValueError) as err:
        print("python flow: cannot read %s: %s" % (args.credentials, err), file=sys.stderr)
        return 2
    try:
        run(args.gateway, creds)
    except KeyError as err:
        print("python flow: %s lacks %s" % (args.credentials, err), file=sys.stderr)
        return 2
    except FlowError as err:
        print("python flow FAILED at step '%s': %s" % (CURRENT_STEP[0], err), file=sys.stderr)
        return 1
    except grpc.RpcError as err:
        print(
            "python flow FAILED at step '%s': %s: %s" % (CURRENT_STEP[0], err.code().name, err.details()),
            file=sys.stderr,
        )
        return 1
    print("python flow: all steps passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
